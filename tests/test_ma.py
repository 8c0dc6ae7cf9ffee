"""MA (Wu & Yang, CVPR 2021): its losses and exchange rule against loop transcriptions of the
official code, and the three steps end to end, killed and resumed between and within them."""

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING

import avvp.methods.ma as ma
from avvp.classes import CLASSES
from avvp.cli import main
from avvp.config import ConfigError, resolve_config, validate_config
from avvp.data.annotations import DenseLabels
from avvp.methods.base import Batch
from avvp.methods.ma import (
    MA,
    ExchangeProbabilities,
    ExchangeResult,
    GlobalTarget,
    class_error_scales,
    contrastive_alignment_loss,
    exchange_partners,
    label_quality,
    ma_targets,
    modality_removals,
)
from avvp.training.data import load_splits
from avvp.training.trainer import Trainer, build_model

EPSILON = 1e-7


def bce(p, y):
    p = min(max(p, EPSILON), 1 - EPSILON)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def mean_bce(prob, target):
    pairs = zip(torch.as_tensor(prob).flatten().tolist(), np.ravel(target), strict=True)
    values = [bce(p, float(y)) for p, y in pairs]
    return sum(values) / len(values)


# ---- loop transcriptions of the official code


def reference_contrastive(audio, visual, temperature, smoothing):
    """step1/3 main_avvp.py LabelSmoothingLoss on sims = cos(audio t, visual s) / temperature."""
    videos, segments, _ = audio.shape
    total, rows = 0.0, 0
    for b in range(videos):
        for t in range(segments):
            logits = []
            for s in range(segments):
                a, v = audio[b, t], visual[b, s]
                cosine = float(a @ v) / (math.sqrt(float(a @ a)) * math.sqrt(float(v @ v)))
                logits.append(cosine / temperature)
            top = max(logits)
            log_sum = top + math.log(sum(math.exp(x - top) for x in logits))
            for s, logit in enumerate(logits):
                target = 1 - smoothing if s == t else smoothing / (segments - 1)
                total -= target * (logit - log_sum)
            rows += 1
    return total / rows


def reference_scales(prob, weak):
    """step2 main_avvp.py: 1 - accuracy of prob > 0.5 per class, over its maximum (0/0: NaN)."""
    videos, classes = prob.shape
    errors = [
        1 - sum(float((prob[v, c] > 0.5) == (weak[v, c] == 1)) for v in range(videos)) / videos
        for c in range(classes)
    ]
    top = max(errors)
    return np.array([e / top if top > 0 else math.nan for e in errors])


def reference_removals(weak, p, audio_scale, visual_scale):
    """step2 main_avvp.py estimate_label: the need_to_change lists, as (V, C) bool arrays."""
    videos, classes = weak.shape
    not_audible = np.zeros((videos, classes), dtype=bool)
    not_visible = np.zeros((videos, classes), dtype=bool)

    def ratio(x, scale):  # torch semantics: x / 0 is inf (or NaN for 0 / 0), never an error
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.float64(x) / np.float64(scale)

    for b in range(videos):
        for c in range(classes):
            if weak[b][c] != 0:
                a_a, v_a = p.other_audio_audio[b, c], p.other_audio_visual[b, c]
                a_v, v_v = p.other_visual_audio[b, c], p.other_visual_visual[b, c]
                if ratio(v_a, visual_scale[c]) < 0.5 and ratio(a_a, visual_scale[c]) < 0.5:
                    not_visible[b, c] = True
                if ratio(a_v, audio_scale[c]) < 0.5 and ratio(v_v, audio_scale[c]) < 0.5:
                    not_audible[b, c] = True
    return not_audible, not_visible


def reference_targets(weak_row, not_visible_row, not_audible_row):
    """step3 dataloader.py __getitem__, aliasing included: pa IS label, so zeroing pa[c] zeroes
    the label that becomes the global target."""
    label = [float(value) for value in weak_row]
    v = 0.9
    pa = label
    pv = [v * value + (1 - v) * 0.5 for value in label]
    for c in range(len(label)):
        if label[c] != 0:
            if not_visible_row[c]:
                pv[c] = 0
            if not_audible_row[c]:
                pa[c] = 0
    return pa, pv, label


# ---- the pieces against the transcriptions


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.7])
def test_contrastive_loss_matches_the_official_label_smoothing_loss(smoothing):
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(3, 10, 6, generator=generator, dtype=torch.float64)
    visual = torch.randn(3, 10, 6, generator=generator, dtype=torch.float64)
    ours = contrastive_alignment_loss(audio, visual, 0.2, smoothing)
    assert float(ours) == pytest.approx(reference_contrastive(audio, visual, 0.2, smoothing))


def test_contrastive_loss_is_lowest_when_each_audio_segment_matches_its_visual_one():
    visual = torch.eye(4)[None].repeat(2, 1, 1)
    aligned = contrastive_alignment_loss(visual.clone(), visual, 0.2, 0.1)
    shifted = contrastive_alignment_loss(visual.roll(1, dims=1), visual, 0.2, 0.1)
    assert aligned < shifted


def test_class_error_scales_match_the_official_ones():
    rng = np.random.default_rng(1)
    prob = rng.random((40, 6))
    weak = (rng.random((40, 6)) < 0.3).astype(float)
    prob[:, 2] = weak[:, 2]  # a class without errors: scale 0
    ours = class_error_scales(torch.from_numpy(prob), torch.from_numpy(weak)).numpy()
    np.testing.assert_allclose(ours, reference_scales(prob, weak))
    assert ours[2] == 0 and ours.max() == 1
    # No error at all: 0 / 0 for every class, as the official code divides.
    perfect = class_error_scales(torch.from_numpy(weak), torch.from_numpy(weak))
    assert torch.isnan(perfect).all()


def random_probabilities(rng, videos, classes):
    return ExchangeProbabilities(
        *(torch.from_numpy(rng.random((videos, classes))) for _ in ExchangeProbabilities._fields)
    )


@pytest.mark.parametrize("seed", range(5))
def test_removals_match_the_official_estimate_label(seed):
    rng = np.random.default_rng(seed)
    videos, classes = 30, 7
    weak = (rng.random((videos, classes)) < 0.4).astype(float)
    p = random_probabilities(rng, videos, classes)
    audio_scale, visual_scale = rng.random(classes), rng.random(classes)
    audio_scale[0] = 0  # a class without errors: nothing of it is removed
    visual_scale[1] = math.nan
    not_audible, not_visible = modality_removals(
        torch.from_numpy(weak), p, torch.from_numpy(audio_scale), torch.from_numpy(visual_scale)
    )
    expected_audible, expected_visible = reference_removals(weak, p, audio_scale, visual_scale)
    np.testing.assert_array_equal(not_audible.numpy(), expected_audible)
    np.testing.assert_array_equal(not_visible.numpy(), expected_visible)
    assert expected_audible.any() and expected_visible.any()  # the test exercises both rules
    assert not not_audible[:, 0].any() and not not_visible[:, 1].any()


def test_partners_share_no_event_are_uniform_and_missing_only_when_impossible():
    weak = np.zeros((6, 4), dtype=bool)
    weak[0, 0] = weak[1, 1] = weak[2, 2] = weak[3, 0] = True
    weak[4, [0, 1]] = True
    weak[5] = True  # shares an event with every video: no partner exists
    partners = exchange_partners(weak, np.random.default_rng(0))
    assert partners[5] == -1
    for video, other in enumerate(partners[:5]):
        assert other >= 0 and not (weak[video] & weak[other]).any()
    np.testing.assert_array_equal(partners, exchange_partners(weak, np.random.default_rng(0)))
    # Video 0 (class 0) may pair with 1 or 2 only, each half of the time.
    draws = [exchange_partners(weak, np.random.default_rng(seed))[0] for seed in range(600)]
    assert set(draws) == {1, 2}
    assert abs(draws.count(1) / len(draws) - 0.5) < 0.07


def test_step3_targets_match_the_official_loader_including_its_aliasing():
    rng = np.random.default_rng(2)
    weak = (rng.random((12, 25)) < 0.3).astype(np.float32)
    not_visible = (rng.random(weak.shape) < 0.4) & (weak > 0)
    not_audible = (rng.random(weak.shape) < 0.4) & (weak > 0)
    audio, visual, overall = ma_targets(
        torch.from_numpy(weak),
        torch.from_numpy(weak * ~not_audible),
        torch.from_numpy(weak * ~not_visible),
        0.1,
    )
    for row in range(len(weak)):
        pa, pv, label = reference_targets(weak[row], not_visible[row], not_audible[row])
        np.testing.assert_allclose(audio[row].numpy(), pa)
        np.testing.assert_allclose(visual[row].numpy(), pv, atol=1e-7)
        np.testing.assert_allclose(overall[row].numpy(), label)
    zeros = torch.zeros(weak.shape)
    weak_global = ma_targets(torch.from_numpy(weak), zeros, zeros, 0.1, GlobalTarget.WEAK)[2]
    np.testing.assert_array_equal(weak_global.numpy(), weak)


def test_training_forward_sums_the_official_losses():
    config = resolve_config("ma", overrides=["model.d_model=8", "model.feedforward=8"])
    torch.manual_seed(0)
    model = build_model(config).eval()
    features = {
        name: torch.randn(2, 10, dim)
        for name, dim in config["features"]["dims"].items()
        if name in config["features"]["audio"] + config["features"]["visual"]
    }
    weak = torch.zeros(2, 25)
    weak[0, [1, 4]] = weak[1, 7] = 1
    method = MA(config, None)
    method.audio_labels = torch.zeros(5, 25)
    method.visual_labels = torch.zeros(5, 25)
    method.audio_labels[3, 1] = method.visual_labels[3, 4] = method.visual_labels[4, 7] = 1
    losses, _ = method.training_forward(model, Batch(features, weak, torch.tensor([3, 4])))
    output = model(features).detach()
    not_audible = (weak > 0) & (method.audio_labels[[3, 4]] == 0)
    not_visible = (weak > 0) & (method.visual_labels[[3, 4]] == 0)
    targets = [reference_targets(weak[row], not_visible[row], not_audible[row]) for row in (0, 1)]
    pa, pv, label = ([target[k] for target in targets] for k in range(3))
    assert losses["audio"].item() == pytest.approx(mean_bce(output.video_prob_audio, pa))
    assert losses["visual"].item() == pytest.approx(mean_bce(output.video_prob_visual, pv))
    assert losses["global"].item() == pytest.approx(mean_bce(output.video_prob, label))
    contrastive = reference_contrastive(
        output.features[:, :, 0].double(), model.visual_stem(features).detach().double(), 0.2, 0.1
    )
    assert losses["contrastive"].item() == pytest.approx(contrastive, rel=1e-5)


def test_label_quality_scores_each_stream_against_the_segment_truth():
    weak = np.array([[1, 1, 0], [0, 1, 1]], dtype=bool)
    result = ExchangeResult(
        weak,
        audio=np.array([[1, 0, 0], [0, 1, 1]], dtype=bool),
        visual=np.array([[0, 1, 0], [0, 1, 0]], dtype=bool),
        partners=np.array([1, -1]),
        audio_scale=np.ones(3),
        visual_scale=np.ones(3),
    )
    truth_audio = np.zeros((2, 10, 3), dtype=bool)
    truth_visual = np.zeros((2, 10, 3), dtype=bool)
    truth_audio[0, 3, 0] = truth_audio[1, 0, 1] = True  # audible: (0, 0), (1, 1)
    truth_visual[0, 5, 1] = truth_visual[1, 9, 1] = truth_visual[1, 2, 2] = True
    quality = label_quality(result, DenseLabels(truth_audio, truth_visual))
    assert quality["removed_audio"] == 1 and quality["removed_visual"] == 2
    assert quality["removed_both"] == 0 and quality["videos_without_partner"] == 1
    # audio labels {(0,0), (1,1), (1,2)} against truth {(0,0), (1,1)}
    assert quality["audio"]["precision"] == pytest.approx(2 / 3)
    assert quality["audio"]["recall"] == 1
    # visual labels {(0,1), (1,1)} against truth {(0,1), (1,1), (1,2)}
    assert quality["visual"]["precision"] == 1
    assert quality["visual"]["recall"] == pytest.approx(2 / 3)
    assert quality["weak_as_audio"]["precision"] == pytest.approx(2 / 4)
    assert quality["label_shares"] == {
        "audio_only": 0.5,
        "visual_only": 0.25,
        "both": 0.25,
        "neither": 0.0,
    }
    assert quality["true_shares"]["visual_only"] == 0.5


# ---- the preset


def test_every_option_of_the_preset_is_checked():
    config = resolve_config("ma")
    validate_config(config)
    for key, bad in [
        ("stage", "all"),
        ("base", "vggish"),
        ("base_run", ""),
        ("checkpoint", "first"),
        ("global_target", "both"),
        ("exchange_threshold", 0),
        ("exchange_scale", "rank"),
        ("visual_label_smoothing", 2),
        ("contrastive_weight", -1),
        ("contrastive_temperature", 0),
        ("contrastive_smoothing", 1.5),
    ]:
        assert key in config["method"]
        broken = resolve_config("ma")
        broken["method"][key] = bad
        with pytest.raises(ConfigError, match=re.escape(f"method.{key}")):
            validate_config(broken)


# ---- end to end on the tiny synthetic dataset


def train_ma(dataset, out, *overrides):
    flags = ["--data", str(dataset), "--out", str(out), *TINY_TRAINING, *overrides]
    return main(["train", "--method", "ma", *flags])


@pytest.fixture(scope="module")
def ma_run(dataset, tmp_path_factory):
    """An uninterrupted MA run (steps 1-3, 2 epochs each)."""
    run = tmp_path_factory.mktemp("ma") / "run"
    assert train_ma(dataset, run) == 0
    return run


def test_ma_trains_its_three_steps_into_one_run_folder(dataset, ma_run, capsys):
    train = load_splits(resolve_config("ma", overrides=[f"data.root={dataset}"]), ("train",))
    train = train["train"]
    with np.load(ma_run / "ma_labels.npz") as stored:
        assert sorted(stored.files) == ["audio", "classes", "video_ids", "visual"]
        assert list(stored["video_ids"]) == list(train.video_ids)
        assert list(stored["classes"]) == list(CLASSES)
        audio, visual = stored["audio"], stored["visual"]
    weak = np.asarray(train.weak) > 0
    assert audio.shape == visual.shape == weak.shape and audio.dtype == np.float32
    assert not (audio.astype(bool) & ~weak).any() and not (visual.astype(bool) & ~weak).any()
    record = json.loads((ma_run / "ma_exchange.json").read_text())
    rows = {video: row for row, video in enumerate(train.video_ids)}
    for video, partner in zip(train.video_ids, record["partners"], strict=True):
        assert partner is not None and not (weak[rows[video]] & weak[rows[partner]]).any()
    with np.load(ma_run / "ma_labels_val.npz") as stored:
        assert stored["visual"].shape == (len(stored["video_ids"]), len(CLASSES))
    quality = json.loads((ma_run / "ma_labels_quality.json").read_text())
    for split in ("train", "val"):  # train: the hidden labels of the synthetic set
        for stream in ("audio", "visual"):
            assert set(quality[split][stream]) == {"precision", "recall", "f1"}
    assert len(quality["train"]["class_scales"]["visual"]) == len(CLASSES)
    removed = int((weak & (audio == 0)).sum()) + int((weak & (visual == 0)).sum())
    assert quality["train"]["removed_audio"] + quality["train"]["removed_visual"] == removed
    # The official code keeps the last epoch of steps 1 and 3.
    for folder in (ma_run, ma_run / "base"):
        assert torch.load(folder / "best.pt", weights_only=False)["epoch"] == 2
    assert (ma_run / "base" / "config.yaml").read_text().count("stage: base") == 1
    assert main(["evaluate", "--run", str(ma_run), "--split", "test"]) == 0
    assert "Type@AV" in capsys.readouterr().out


def kill_at(monkeypatch, point):
    """Make the next `avvp train --method ma` stop with Ctrl-C at ``point``."""
    original_epoch, original_exchange = Trainer._run_epoch, ma.modality_exchange

    def run_epoch(self, writer):
        step = 1 if self.run_dir.name == ma.BASE_FOLDER else 3
        if point == "before step 3" and step == 3:
            raise KeyboardInterrupt("simulated kill")
        original_epoch(self, writer)
        if point == f"step {step}, epoch 1" and self.epoch == 1:
            raise KeyboardInterrupt("simulated kill")

    def exchange(*args, **kwargs):
        if point == "before step 2":
            raise KeyboardInterrupt("simulated kill")
        return original_exchange(*args, **kwargs)

    monkeypatch.setattr(Trainer, "_run_epoch", run_epoch)
    monkeypatch.setattr(ma, "modality_exchange", exchange)


def test_a_run_killed_within_and_between_steps_ends_as_an_uninterrupted_one(
    dataset, ma_run, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    expected = {
        "step 1, epoch 1": "MA step 1/3",
        "before step 2": "resuming",
        "before step 3": "MA step 2/3: modality exchange",
        "step 3, epoch 1": "is up to date",
    }
    for point, line in expected.items():
        with monkeypatch.context() as patch:
            kill_at(patch, point)
            assert train_ma(dataset, run) == 130
        assert line in capsys.readouterr().out, point
    assert train_ma(dataset, run) == 0
    out = capsys.readouterr().out
    assert "is finished" in out and f"resuming {run} after epoch 1" in out
    for name in ("test_metrics.json", "ma_labels_quality.json", "base/test_metrics.json"):
        assert json.loads((run / name).read_text()) == json.loads((ma_run / name).read_text())
    with np.load(run / "ma_labels.npz") as ours, np.load(ma_run / "ma_labels.npz") as theirs:
        np.testing.assert_array_equal(ours["visual"], theirs["visual"])


def test_step2_runs_again_for_missing_labels_or_new_settings_but_not_under_step3(
    dataset, ma_run, tmp_path, capsys
):
    run = Path(shutil.copytree(ma_run, tmp_path / "run"))
    (run / "ma_labels.npz").unlink()
    assert train_ma(dataset, run) == 0  # the same labels again: the finished run stands
    assert "MA step 2/3: modality exchange" in capsys.readouterr().out
    labels = (run / "ma_labels.npz").read_bytes()
    assert train_ma(dataset, run, "method.exchange_threshold=0.3") == 2
    assert "step 3 has trained on it" in capsys.readouterr().err
    assert (run / "ma_labels.npz").read_bytes() == labels
    for name in ("last.pt", "best.pt"):  # as if killed before step 3's first epoch
        (run / name).unlink()
    assert train_ma(dataset, run, "method.exchange_threshold=0.3") == 0
    out = capsys.readouterr().out
    assert f"{run / 'base'} is finished" in out and "MA step 2/3: modality exchange" in out
    record = json.loads((run / "ma_exchange.json").read_text())
    assert record["settings"]["threshold"] == 0.3


def test_a_finished_run_or_the_han_preset_can_be_the_base(dataset, tmp_path, monkeypatch, capsys):
    han = tmp_path / "han"
    flags = ["--data", str(dataset), "--out", str(han), *TINY_TRAINING]
    assert main(["train", "--method", "han", *flags]) == 0
    run = tmp_path / "on-han"
    monkeypatch.chdir(tmp_path)
    assert train_ma(dataset, run, "method.base_run=han") == 0  # saved resolved
    assert f"base_run: {han.resolve()}" in (run / "config.yaml").read_text()
    assert not (run / "base").exists()
    record = json.loads((run / "ma_exchange.json").read_text())
    assert record["base_checkpoint"] == str((han / "best.pt").resolve())
    capsys.readouterr()
    run = tmp_path / "han-base"
    assert train_ma(dataset, run, "method.base=han") == 0
    base = (run / "base" / "config.yaml").read_text()
    assert "name: han" in base and "epochs: 2" in base
    assert "MA step 1/3: base model (han)" in capsys.readouterr().out


def test_class_scales_without_errors_remove_nothing_unless_the_threshold_stands_alone(
    dataset, ma_run, tmp_path, monkeypatch, capsys
):
    base = f"method.base_run={ma_run / 'base'}"
    with monkeypatch.context() as patch:  # a base model without any error on the train split
        patch.setattr(ma, "class_error_scales", lambda prob, weak: torch.full((25,), math.nan))
        assert train_ma(dataset, tmp_path / "official", base) == 0
    out = capsys.readouterr().out
    for stream in ("audio", "visual"):
        assert f"makes no {stream} error on the training split" in out
    quality = json.loads((tmp_path / "official" / "ma_labels_quality.json").read_text())
    assert quality["train"]["removed_audio"] == quality["train"]["removed_visual"] == 0
    assert quality["train"]["class_scales"]["audio"] == [None] * 25
    assert train_ma(dataset, tmp_path / "unscaled", base, "method.exchange_scale=none") == 0
    record = json.loads((tmp_path / "unscaled" / "ma_exchange.json").read_text())
    assert record["audio_scale"] == record["visual_scale"] == [1.0] * 25
    assert "makes no" not in capsys.readouterr().out


def test_step1_alone_trains_on_the_weak_labels(dataset, tmp_path):
    run = tmp_path / "base-only"
    assert train_ma(dataset, run, "method.stage=base") == 0
    assert (run / "best.pt").is_file()
    assert not (run / "base").exists() and not (run / "ma_labels.npz").exists()


def test_a_missing_base_run_is_an_error_before_anything_is_written(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_ma(dataset, run, f"method.base_run={tmp_path / 'nothing'}") == 2
    err = capsys.readouterr().err
    assert "method.base_run" in err and "best.pt not found" in err
    assert not run.exists()


def test_the_test_table_says_which_epoch_best_pt_is(tmp_path):
    from avvp.config import resolve_config
    from avvp.registry import get

    official = resolve_config("ma")
    assert get("method", "ma").checkpoint_rule(official) == (
        "the model after the last epoch (the official rule)"
    )
    best = resolve_config("ma", overrides=["method.checkpoint=best"])
    assert (
        get("method", "ma").checkpoint_rule(best) == "the epoch with the best val segment Type@AV"
    )
