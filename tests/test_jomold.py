"""JoMoLD: its rules against slow loop references, and the method end to end with resume."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING

from avvp.cli import main
from avvp.config import resolve_config
from avvp.methods import jomold
from avvp.methods.jomold import (
    JoMoLD,
    contrastive_loss,
    denoised_targets,
    jomold_forward,
    noise_ratios,
    noisy_labels,
    warm_up_step,
)
from avvp.training.data import load_splits
from avvp.training.evaluate_run import load_run
from avvp.training.inference import predict_split
from avvp.training.trainer import build_model

EPSILON = 1e-7


def bce(p, y):
    p = min(max(p, EPSILON), 1 - EPSILON)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


# ---- step 2: noise ratios


def reference_noise_ratios(prob_a, prob_v, weak, a_thres, v_thres, smoothing):
    """The calculation of the authors' code, one (video, class) at a time."""
    videos, classes = weak.shape
    mean_a = [sum(prob_a[b][c] for b in range(videos)) / videos for c in range(classes)]
    mean_v = [sum(prob_v[b][c] for b in range(videos)) / videos for c in range(classes)]
    noisy_a, noisy_v, events = [0] * classes, [0] * classes, [0] * classes
    for b in range(videos):
        for c in range(classes):
            if weak[b][c] == 0:
                continue
            events[c] += 1
            target_v = (1 - smoothing) * weak[b][c] + smoothing / 2
            if prob_v[b][c] * target_v / mean_v[c] < v_thres:
                noisy_v[c] += 1
            if prob_a[b][c] * weak[b][c] / mean_a[c] < a_thres:
                noisy_a[c] += 1
    audio = [noisy_a[c] / events[c] if events[c] else 0.0 for c in range(classes)]
    visual = [noisy_v[c] / events[c] if events[c] else 0.0 for c in range(classes)]
    return audio, visual


def test_noise_ratios_match_loops():
    rng = np.random.default_rng(0)
    weak = (rng.random((40, 6)) < 0.4).astype(np.uint8)
    weak[:, 2] = 0  # a class without positives: ratio 0, not 0 / 0
    prob_a, prob_v = rng.random((40, 6)), rng.random((40, 6))
    result = noise_ratios(prob_a, prob_v, weak, 0.6, 1.8, 0.1)
    audio, visual = reference_noise_ratios(prob_a, prob_v, weak, 0.6, 1.8, 0.1)
    np.testing.assert_allclose(result["audio"], audio)
    np.testing.assert_allclose(result["visual"], visual)
    assert result["audio"][2] == result["visual"][2] == 0
    assert result["audio"].sum() > 0 and result["visual"].sum() > 0  # counts are exercised
    np.testing.assert_array_equal(result["positives"], weak.sum(axis=0))


# ---- step 3: which labels are dropped


def reference_noisy_labels(own, other, positive, ratio):
    """The selection of the authors' code for one stream, with lists: per class, the positives
    in ascending order of each loss (stable); the last k by the stream's own loss and the first
    k by the other stream's loss; dropped where both hold."""
    batch, classes = len(own), len(own[0])
    dropped = [[False] * classes for _ in range(batch)]
    for c in range(classes):
        positives = [b for b in range(batch) if positive[b][c]]
        count = int(float(ratio[c]) * len(positives))
        if count <= 0:
            continue
        by_own = sorted(positives, key=lambda b: own[b][c])
        by_other = sorted(positives, key=lambda b: other[b][c])
        largest_own = set(by_own[len(by_own) - count :])
        smallest_other = set(by_other[:count])
        for b in largest_own & smallest_other:
            dropped[b][c] = True
    return dropped


@pytest.mark.parametrize("seed", range(4))
def test_noisy_labels_match_loops(seed):
    rng = np.random.default_rng(seed)
    batch, classes = 16, 7
    own, other = rng.random((batch, classes)), rng.random((batch, classes))
    positive = rng.random((batch, classes)) < 0.6
    # 0, everything, and products that truncate (0.7 x 10 = 7.000000000000001, 0.29 x P).
    ratio = np.array([0.0, 1.0, 0.5, 0.29, 0.7, 0.33, 0.9])
    got = noisy_labels(
        torch.from_numpy(own),
        torch.from_numpy(other),
        torch.from_numpy(positive),
        torch.from_numpy(ratio),
    )
    want = reference_noisy_labels(own, other, positive, ratio)
    assert got.tolist() == want
    assert not got[:, 0].any() and got.any()


def test_denoised_targets_drop_to_zero_per_stream():
    rng = np.random.default_rng(5)
    weak = torch.from_numpy((rng.random((12, 4)) < 0.7).astype(np.float32))
    targets = {"audio": weak, "visual": 0.9 * weak + 0.05}
    prob = {stream: torch.from_numpy(rng.random((12, 4)).astype(np.float32)) for stream in targets}
    ratios = {"audio": torch.full((4,), 0.5, dtype=torch.float64), "visual": torch.zeros(4)}
    new, dropped = denoised_targets(prob, targets, ratios)
    loss = {
        stream: [
            [
                bce(float(p), float(y))
                for p, y in zip(prob[stream][b], targets[stream][b], strict=True)
            ]
            for b in range(12)
        ]
        for stream in targets
    }
    want = reference_noisy_labels(loss["audio"], loss["visual"], weak > 0.5, [0.5] * 4)
    assert dropped["audio"].tolist() == want and dropped["audio"].any()
    assert not dropped["visual"].any()
    # A dropped label becomes 0 (not the smoothed negative); the rest keep their targets.
    assert torch.equal(new["audio"], weak * ~dropped["audio"])
    assert torch.equal(new["visual"], targets["visual"])


def reference_warm_up(ratio, epochs, batches, warmup):
    """The code's ratios per (epoch, batch): restarted each epoch, min(r, r x factor) per batch."""
    seen = []
    for epoch in range(epochs):
        current = ratio
        for batch in range(batches):
            factor = (epoch * batches + batch) / (warmup * batches)
            current = min(current, current * factor)
            seen.append(current)
    return seen


@pytest.mark.parametrize("warmup", [0.9, 2.5])
def test_warm_up_is_the_codes_running_product(warmup):
    ratios = torch.tensor([0.0, 0.3, 0.8], dtype=torch.float64)
    seen = []
    for epoch in range(4):
        current = ratios.clone()
        for batch in range(5):
            current = warm_up_step(current, epoch, batch, 5, warmup)
            seen.append(current)
    for klass in range(3):
        want = reference_warm_up(float(ratios[klass]), 4, 5, warmup)
        assert [float(row[klass]) for row in seen] == pytest.approx(want, abs=0)
    if warmup == 0.9:  # nothing dropped in epoch 1, the full ratios afterwards
        assert all(float(row.max()) == 0 for row in seen[:5])
        assert all(torch.equal(row, ratios) for row in seen[5:])


# ---- the model as the code runs it


def reference_contrast(audio, visual, temperature, smoothing):
    batch, segments, _ = audio.shape
    terms = []
    for b in range(batch):
        for t in range(segments):
            a = audio[b, t] / np.linalg.norm(audio[b, t])
            logits = [
                float(a @ (visual[b, u] / np.linalg.norm(visual[b, u]))) / temperature
                for u in range(segments)
            ]
            top = max(logits)
            weights = [math.exp(x - top) for x in logits]
            prob = [w / sum(weights) for w in weights]
            target = [
                1 - smoothing if u == t else smoothing / (segments - 1) for u in range(segments)
            ]
            terms.append(-math.log(sum(p * y for p, y in zip(prob, target, strict=True))))
    return sum(terms) / len(terms)


def test_contrastive_loss_matches_loops():
    rng = np.random.default_rng(1)
    audio, visual = rng.normal(size=(3, 10, 8)), rng.normal(size=(3, 10, 8))
    got = contrastive_loss(torch.from_numpy(audio), torch.from_numpy(visual), 0.2, 0.1)
    assert float(got) == pytest.approx(reference_contrast(audio, visual, 0.2, 0.1), rel=1e-9)


def tiny_model_and_features(seed=0):
    config = resolve_config("jomold", overrides=["model.d_model=16", "model.feedforward=16"])
    torch.manual_seed(seed)
    model = build_model(config).eval()
    generator = torch.Generator().manual_seed(seed)
    dims = config["features"]["dims"]
    features = {
        name: torch.randn(2, 10, dims[name], generator=generator)
        for name in (*config["features"]["audio"], *config["features"]["visual"])
    }
    return model, features


def test_forward_with_cross_attention_is_the_model_and_without_it_keeps_streams_apart():
    model, features = tiny_model_and_features()
    with torch.no_grad():
        full, _ = jomold_forward(model, features, cross_attention=True, classifier_dropout=0.5)
        alone, _ = jomold_forward(model, features, cross_attention=False, classifier_dropout=0.5)
        changed = {**features, "res152": features["res152"] + 1.0}
        alone_changed, encoded = jomold_forward(
            model, changed, cross_attention=False, classifier_dropout=0.5
        )
        full_changed, _ = jomold_forward(
            model, changed, cross_attention=True, classifier_dropout=0.5
        )
    # In eval mode the classifier dropout is off: with cross-attention it is HAN itself.
    assert torch.equal(full.segment_prob, model(features).segment_prob)
    # Without it, the audio stream never sees the visual features.
    assert torch.equal(alone.segment_prob[:, :, 0], alone_changed.segment_prob[:, :, 0])
    assert torch.equal(alone.video_prob_audio, alone_changed.video_prob_audio)
    assert not torch.equal(full.video_prob_audio, full_changed.video_prob_audio)
    assert encoded.shape == (2, 10, 2, 16)


# ---- end to end


def train(dataset, out, *extra, progress=False):
    flags = TINY_TRAINING if not progress else TINY_TRAINING[1:]
    return main(
        ["train", "--method", "jomold", "--data", str(dataset), "--out", str(out), *flags, *extra]
    )


@pytest.fixture(scope="module")
def jomold_run(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("jomold") / "run"
    assert train(dataset, run, progress=True) == 0
    return run


def test_train_end_to_end_writes_each_step(jomold_run, dataset, capsys):
    run = jomold_run
    # Step 1: a normal run folder, trained without cross-modal attention.
    estimator = load_run(run / "estimator")[0]
    assert estimator["method"]["stage"] == "estimator"
    assert (run / "estimator" / "test_metrics.json").is_file()
    # Step 2: the ratios are those of the estimator's probabilities on the train split.
    config, model, method = load_run(run / "estimator")
    train_data = load_splits(config, ("train",), progress=False)["train"]
    names = [*config["features"]["audio"], *config["features"]["visual"]]
    probabilities = predict_split(model, method, train_data, names, torch.device("cpu"))
    want = noise_ratios(
        probabilities.video_prob_audio,
        probabilities.video_prob_visual,
        train_data.weak,
        0.6,
        1.8,
        0.1,
    )
    with np.load(run / "noise_ratios.npz") as stored:
        np.testing.assert_allclose(stored["audio"], want["audio"])
        np.testing.assert_allclose(stored["visual"], want["visual"])
        assert stored["estimator"].item() == "estimator"
    report = json.loads((run / "noise_ratios.json").read_text())
    assert set(report["classes"]["Speech"]) >= {"audio", "visual", "true_audio", "true_visual"}
    # Step 3: the labels of the last epoch, per stream and video level, at most the weak ones.
    with np.load(run / "jomold_labels.npz") as labels:
        assert tuple(labels["video_ids"]) == train_data.video_ids
        assert labels["audio"].shape == labels["visual"].shape == (len(train_data), 25)
        weak = train_data.weak.astype(np.float32)
        for stream in ("audio", "visual"):
            assert np.isin(labels[stream], (0, 1)).all()
            assert (labels[stream] <= weak).all()
        dropped = int((weak - labels["visual"]).sum() + (weak - labels["audio"]).sum())
    assert dropped > 0
    quality = json.loads((run / "jomold_labels_quality.json").read_text())
    assert quality["videos"] == len(train_data)
    assert set(quality["labels"]["visual"]) >= {"precision", "recall"}
    total = sum(quality["dropped"][stream]["labels"] for stream in ("audio", "visual"))
    assert total == dropped
    # Warm-up 0.9: epoch 1 drops nothing; epoch 2 drops what the ratios ask for.
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    epochs = [dict(zip(header, row.split(","), strict=True)) for row in rows[1:]]
    assert float(epochs[0]["dropped.visual"]) == float(epochs[0]["dropped.audio"]) == 0
    assert float(epochs[1]["dropped.visual"]) + float(epochs[1]["dropped.audio"]) > 0
    # The runs evaluate; the estimator with its own inference rule.
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--split", "test"]) == 0
    assert main(["evaluate", "--run", str(run / "estimator"), "--split", "test"]) == 0


def test_progress_lines_name_the_steps(dataset, tmp_path, capsys):
    assert train(dataset, tmp_path / "run", progress=True) == 0
    out = capsys.readouterr().out
    for step in ("step 1 of 3", "step 2 of 3", "step 3 of 3"):
        assert f"jomold {step}" in out
    assert out.index("step 1 of 3") < out.index("step 2 of 3") < out.index("step 3 of 3")


def same_results(run, reference):
    for name in ("test_metrics.json", "noise_ratios.json", "estimator/test_metrics.json"):
        assert json.loads((run / name).read_text()) == json.loads((reference / name).read_text())
    with (
        np.load(run / "jomold_labels.npz") as got,
        np.load(reference / "jomold_labels.npz") as want,
    ):
        for key in ("audio", "visual"):
            np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("where", ["estimator", "ratios", "denoising"])
def test_killed_run_resumes_where_it_stopped(
    where, jomold_run, dataset, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        if where == "ratios":

            def killed(*args, **kwargs):
                raise KeyboardInterrupt

            patch.setattr(jomold, "noise_ratios", killed)
        else:
            stage = "estimator" if where == "estimator" else "denoise"
            forward = JoMoLD.training_forward

            def killed_in_epoch_2(self, model, batch):
                if self.stage == stage and self._epoch == 1:
                    raise KeyboardInterrupt
                return forward(self, model, batch)

            patch.setattr(JoMoLD, "training_forward", killed_in_epoch_2)
        assert train(dataset, run, progress=True) != 0
    err = capsys.readouterr().err
    assert "rerun the same command" in err
    if where == "estimator":
        assert "jomold step 1 of 3" in err and not (run / "noise_ratios.npz").exists()
    elif where == "ratios":
        assert "jomold step 2 of 3" in err and (run / "estimator" / "test_metrics.json").is_file()
    else:
        assert (run / "noise_ratios.npz").is_file() and (run / "last.pt").is_file()
    assert train(dataset, run, progress=True) == 0
    out = capsys.readouterr().out
    if where == "estimator":
        assert f"resuming {run / 'estimator'} after epoch 1/2" in out
    elif where == "ratios":
        assert f"{run / 'estimator'} is finished" in out and "step 2 of 3" in out
    else:
        assert "steps 1-2 done before" in out and f"resuming {run} after epoch 1/2" in out
    same_results(run, jomold_run)


def test_reuses_a_given_estimator(jomold_run, dataset, tmp_path):
    run = tmp_path / "run"
    estimator = jomold_run / "estimator"
    assert train(dataset, run, f"method.estimator_run={estimator}") == 0
    assert not (run / "estimator").exists()
    with np.load(run / "noise_ratios.npz") as got, np.load(jomold_run / "noise_ratios.npz") as want:
        for key in ("audio", "visual"):
            np.testing.assert_array_equal(got[key], want[key])
        assert got["estimator"].item() == str(estimator.resolve())
    # The same estimator, the same schedule: the same model as training it in the run.
    assert json.loads((run / "test_metrics.json").read_text()) == json.loads(
        (jomold_run / "test_metrics.json").read_text()
    )


def test_bad_estimator_runs_are_refused_before_the_data(jomold_run, tmp_path, capsys):
    han = tmp_path / "han"
    han.mkdir()
    (han / "best.pt").touch()
    (han / "config.yaml").write_text("method: {name: han}\nfeatures: {}\n")
    cases = [
        (tmp_path / "missing", "best.pt not found"),
        (han, "is a han run"),
        (jomold_run, "is a jomold run (method.stage denoise)"),
    ]
    for estimator, message in cases:
        out = tmp_path / "out"
        code = main(
            [
                "train",
                "--method",
                "jomold",
                "--data",
                "unused",
                "--out",
                str(out),
                *TINY_TRAINING,
                f"method.estimator_run={estimator}",
            ]
        )
        err = capsys.readouterr().err
        assert code == 2
        assert "method.estimator_run" in err and message in err
        assert not out.exists()


def test_stale_noise_ratios_are_refused(jomold_run, dataset, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(jomold_run / "noise_ratios.npz", run / "noise_ratios.npz")
    (run / ".avvp.lock").touch()  # an avvp run folder, as the first training left it
    assert train(dataset, run, "method.audio_threshold=0.5") == 2
    err = capsys.readouterr().err
    assert "noise_ratios.npz was computed with" in err and "audio_threshold" in err
    assert (run / "noise_ratios.npz").is_file()  # never overwritten
