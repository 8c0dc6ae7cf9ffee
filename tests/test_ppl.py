"""PPL's pieces against naive references, and the method end to end through the CLI."""

import csv
import itertools
import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING
from torch import nn

from avvp.cli import main
from avvp.config import resolve_config
from avvp.losses import pseudo_label_contrastive_loss
from avvp.methods.ppl import (
    LabelType,
    Prototypes,
    Selection,
    binary_quality,
    ema_update,
    frozen_copy,
    kmeans_prototypes,
    prototype_labels,
    select_segments,
    warmed_up_momentum,
)
from avvp.registry import create
from avvp.training.trainer import build_model


def unit(vectors):
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def reference_labels(features, weak, positive_sets, negative_sets, temperature, hard):
    """Eqs. 9-10 with loops and raw exp in float64."""
    batch, segments, streams, _ = features.shape
    classes = len(positive_sets)
    labels = np.zeros((batch, segments, streams, classes))
    for b, t, m, c in itertools.product(
        range(batch), range(segments), range(streams), range(classes)
    ):
        f = features[b, t, m] / np.linalg.norm(features[b, t, m])
        tau = 1.0 if hard else temperature
        positive = [math.exp(float(p @ f) / tau) for p in positive_sets[c]]
        negative = [math.exp(float(n @ f) / tau) for n in negative_sets[c]]
        mean_p = sum(positive) / len(positive) if positive else 0.0
        mean_n = sum(negative) / len(negative) if negative else 0.0
        if hard:
            value = 1.0 if mean_p > mean_n else 0.0
        else:
            value = mean_p / (mean_p + mean_n) if mean_p > 0 else 0.0
        labels[b, t, m, c] = weak[b, c] * value
    return labels


def random_sets(rng, counts, dim):
    return [unit(rng.normal(size=(count, dim))) for count in counts]


@pytest.mark.parametrize("hard", [False, True])
def test_prototype_labels_match_reference(hard):
    rng = np.random.default_rng(0)
    dim, k = 5, 3
    # no positives: label 0 (class 2, and class 4 which has no negatives either);
    # no negatives: label = weak label (class 1)
    positive_sets = random_sets(rng, [3, 1, 0, 2, 0], dim)
    negative_sets = random_sets(rng, [2, 0, 3, 3, 0], dim)
    features = rng.normal(size=(2, 3, 2, dim))
    weak = np.array([[1.0, 1, 1, 0, 1], [1, 0, 1, 1, 1]])
    expected = reference_labels(features, weak, positive_sets, negative_sets, 0.1, hard)
    prototypes = Prototypes.from_sets(positive_sets, negative_sets, k, dim)
    got = prototype_labels(
        torch.from_numpy(features),
        torch.from_numpy(weak),
        prototypes,
        LabelType.HARD if hard else LabelType.SOFT,
        temperature=0.1,
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-7)
    assert np.all(expected[:, :, :, [2, 4]] == 0)
    np.testing.assert_array_equal(
        expected[:, :, :, 1], np.broadcast_to(weak[:, None, None, 1], (2, 3, 2))
    )
    if not hard:
        assert ((expected > 0.05) & (expected < 0.95)).any()  # not only saturated values


def test_soft_labels_stable_where_raw_exp_overflows_float32():
    rng = np.random.default_rng(1)
    dim, temperature = 6, 0.01
    direction = unit(rng.normal(size=dim))
    positive_sets = [unit(direction + 0.1 * rng.normal(size=(4, dim))) for _ in range(3)]
    negative_sets = [unit(direction + 0.1 * rng.normal(size=(4, dim))) for _ in range(3)]
    features = direction + 0.1 * rng.normal(size=(2, 4, 2, dim))
    weak = np.ones((2, 3))
    expected = reference_labels(features, weak, positive_sets, negative_sets, temperature, False)
    prototypes = Prototypes.from_sets(positive_sets, negative_sets, 4, dim)
    features32 = torch.from_numpy(features).float()
    got = prototype_labels(features32, torch.ones(2, 3), prototypes, LabelType.SOFT, temperature)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    assert ((expected > 0.05) & (expected < 0.95)).any()
    # the raw formula in float32 breaks on these inputs
    normalised = torch.nn.functional.normalize(features32, dim=-1)
    raw_positive = torch.exp(normalised @ prototypes.positive[0].T / temperature).mean(-1)
    raw_negative = torch.exp(normalised @ prototypes.negative[0].T / temperature).mean(-1)
    assert torch.isinf(raw_positive).any()
    assert torch.isnan(raw_positive / (raw_positive + raw_negative)).any()


@pytest.mark.parametrize("selection", list(Selection))
@pytest.mark.parametrize("gamma", [1.0, 0.7])
def test_select_segments_matches_loop(gamma, selection):
    generator = torch.Generator().manual_seed(2)
    beta, threshold = 0.2, 0.5
    # coarse values give ties at the top and exact hits on the thresholds
    prob = torch.randint(0, 11, (4, 3, 2, 5), generator=generator).double() / 10
    prob[0, :, :, 0] = 0.3  # all tied below 0.5
    prob[1] = torch.rand(3, 2, 5, generator=generator, dtype=torch.float64)
    prob[2, :, :, 1] = 0.5  # top exactly at the false-positive threshold: not a negative
    weak = (torch.rand(4, 5, generator=generator) > 0.5).double()
    weak[:, 0:2] = 0
    positive, negative = select_segments(prob, weak, gamma, beta, threshold, selection)
    for b, c in itertools.product(range(4), range(5)):
        for t, m in itertools.product(range(3), range(2)):
            streams = [m] if selection is Selection.PER_STREAM else [0, 1]
            top = max(float(prob[b, s, n, c]) for s in range(3) for n in streams)
            p = float(prob[b, t, m, c])
            if weak[b, c] == 1:
                want_positive, want_negative = p >= gamma * top, p <= beta * top
            else:
                want_positive, want_negative = False, p == top and top > threshold
            assert bool(positive[b, t, m, c]) == want_positive, (b, t, m, c)
            assert bool(negative[b, t, m, c]) == want_negative, (b, t, m, c)
    assert negative[~weak.bool()[:, None, None, :].expand_as(prob)].any()


def reference_contrastive(features, labels, temperature):
    features = [f / np.linalg.norm(f) for f in features]
    losses = []
    for i, anchor in enumerate(features):
        similar, dissimilar = [], []
        for j, other in enumerate(features):
            if j == i:
                continue
            term = math.exp(float(anchor @ other) / temperature)
            (similar if np.any(labels[i] & labels[j]) else dissimilar).append(term)
        if similar:
            losses.append(-math.log(sum(similar) / (sum(similar) + sum(dissimilar))))
    return sum(losses) / len(losses), len(losses)


def test_contrastive_loss_matches_loop():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(12, 5))
    labels = rng.random((12, 4)) > 0.7
    labels[0] = False  # no event: never an anchor, a negative of everyone
    labels[1] = [False, False, False, False]
    labels[2] = [True, False, False, False]  # shares class 0 only with others holding it
    labels[:, 3] = False
    labels[3, 3] = True  # a class nobody else has
    labels[3, :3] = False
    expected, anchors = reference_contrastive(features, labels, 0.2)
    assert 0 < anchors < 12
    tensor = torch.from_numpy(features).requires_grad_()
    loss = pseudo_label_contrastive_loss(tensor, torch.from_numpy(labels), 0.2)
    assert math.isclose(loss.item(), expected, rel_tol=1e-10)
    loss.backward()
    assert torch.isfinite(tensor.grad).all()


def test_contrastive_loss_without_positives_is_zero_with_a_gradient():
    features = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.eye(4, dtype=torch.bool)  # everyone alone with its class
    loss = pseudo_label_contrastive_loss(features, labels, 0.2)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


def small_network():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()


def test_warmed_up_momentum_follows_the_cap():
    for step in range(2000):
        expected = 0.999 if (1 + step) / (10 + step) > 0.999 else (1 + step) / (10 + step)
        assert warmed_up_momentum(0.999, step) == expected
    assert warmed_up_momentum(0.999, 0) == pytest.approx(0.1)
    assert warmed_up_momentum(0.0, 5) == 0.0  # no EMA stays no EMA


def test_ema_update_matches_formula():
    torch.manual_seed(4)
    ema, model = small_network(), small_network()
    model.train()(torch.randn(8, 3, dtype=torch.float64))  # moves BatchNorm's running stats
    before = {name: value.clone() for name, value in ema.state_dict().items()}
    ema_update(ema, model, 0.9)
    parameters = dict(model.named_parameters())
    for name, value in ema.state_dict().items():
        current = model.state_dict()[name]
        if name in parameters:
            torch.testing.assert_close(
                value, 0.9 * before[name] + 0.1 * current, rtol=1e-12, atol=0
            )
        else:
            assert torch.equal(value, current), name  # buffers follow the model
    ema_update(ema, model, 0.0)
    for name, value in ema.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_kmeans_prototypes_few_points_and_seeded():
    rng = np.random.default_rng(5)
    few = unit(rng.normal(size=(3, 4))).astype(np.float32)
    assert np.array_equal(kmeans_prototypes(few, k=5, seed=0), few)
    assert kmeans_prototypes(np.zeros((0, 4), np.float32), k=5, seed=0).shape == (0, 4)
    centres = unit(rng.normal(size=(6, 4)))
    points = unit(centres[rng.integers(0, 6, 300)] + 0.3 * rng.normal(size=(300, 4)))
    points = points.astype(np.float32)
    first = kmeans_prototypes(points, k=10, seed=7)
    assert first.shape == (10, 4) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(kmeans_prototypes(points, k=10, seed=7), first)
    raw = kmeans_prototypes(points, k=10, seed=7, normalize=False)
    assert np.all(np.linalg.norm(raw, axis=1) < 1.0)  # centroids of unit vectors are shorter


def test_binary_quality():
    predicted = torch.tensor([True, True, False, False, True])
    truth = torch.tensor([True, False, True, False, True])
    assert binary_quality(predicted, truth) == {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3}
    nothing = torch.zeros(3, dtype=torch.bool)
    assert binary_quality(nothing, nothing) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def tiny_model(seed):
    torch.manual_seed(seed)
    config = resolve_config("ppl", overrides=["model.d_model=16", "model.feedforward=16"])
    return config, build_model(config).eval()


def test_prototype_inference_uses_momentum_features_and_predicted_labels():
    config, model = tiny_model(6)
    _, momentum = tiny_model(7)
    with torch.no_grad():
        model.pooling.classifier.bias[:12] = 6.0  # classes 0-11 predicted present, others absent
        model.pooling.classifier.bias[12:] = -6.0
    generator = torch.Generator().manual_seed(8)
    features = {
        name: torch.randn(2, 10, dim, generator=generator)
        for name, dim in config["features"]["dims"].items()
    }
    method = create("method", "ppl", config=config, train_data=None)
    rng = np.random.default_rng(9)
    method.prototypes = Prototypes.from_sets(
        random_sets(rng, [3] * 25, 16), random_sets(rng, [2] * 25, 16), 10, 16
    )
    method.momentum_model = frozen_copy(momentum)
    output = method.infer(model, features)
    own = model(features)
    predicted = (own.video_prob >= 0.5).float()
    assert predicted[:, :12].all() and not predicted[:, 12:].any()
    expected = prototype_labels(momentum(features).features, predicted, method.prototypes)
    torch.testing.assert_close(output.segment_prob, expected)
    torch.testing.assert_close(output.video_prob, own.video_prob)
    assert not torch.allclose(
        expected, prototype_labels(own.features, predicted, method.prototypes)
    )

    # an evaluation-only method rebuilds the momentum model from the saved state
    loaded = create("method", "ppl", config=config, train_data=None)
    loaded.load_state_dict(method.state_dict())
    torch.testing.assert_close(loaded.infer(model, features).segment_prob, expected)


def test_options_are_checked():
    with pytest.raises(ValueError, match="soft, hard"):
        create(
            "method",
            "ppl",
            config=resolve_config("ppl", overrides=["method.label_type=medium"]),
            train_data=None,
        )
    zero = ["method.mil_weight=0", "method.pl_weight=0", "method.cl_weight=0"]
    with pytest.raises(ValueError, match="no loss"):
        create("method", "ppl", config=resolve_config("ppl", overrides=zero), train_data=None)
    with pytest.raises(ValueError, match="warm-up"):
        create(
            "method",
            "ppl",
            config=resolve_config("ppl", overrides=["method.mil_weight=0"]),
            train_data=None,
        )


PSEUDO_PHASES = ("features", "prototypes", "labels")  # seconds.pseudo.* of metrics.csv


def read_json(path):
    return json.loads(path.read_text())


def read_metrics(run):
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def train(dataset, run, *overrides):
    return main(
        [
            "train",
            "--method",
            "ppl",
            "--data",
            str(dataset),
            "--out",
            str(run),
            *TINY_TRAINING,
            *overrides,
        ]
    )


def test_train_and_evaluate(dataset, tmp_path):
    run = tmp_path / "ppl"
    assert train(dataset, run) == 0
    rows = read_metrics(run)
    assert len(rows) == 2
    warmup, trained = rows
    assert warmup["loss.pl"] == "" and warmup["pseudo.f1"] == ""  # L_MIL only before labels
    assert float(trained["loss.pl"]) > 0 and float(trained["loss.cl"]) > 0
    for row in rows:
        assert float(row["pseudo.positives"]) > 0 and float(row["pseudo.negatives"]) > 0
    for name in ("precision", "recall", "f1"):
        assert 0 < float(trained[f"pseudo.{name}"]) <= 1
    assert trained["pseudo.label_epoch"] == "1.0"
    assert (
        main(["evaluate", "--run", str(run), "--split", "test", "--json", str(tmp_path / "e.json")])
        == 0
    )
    assert read_json(tmp_path / "e.json") == read_json(run / "test_metrics.json")


@pytest.mark.parametrize(
    ("overrides", "present", "absent"),
    [
        (["method.pseudo_labels=naive", "method.label_type=hard"], ["loss.pl"], []),
        (["method.label_type=hard"], ["loss.pl", "loss.cl"], []),
        (["method.cl_weight=0"], ["loss.pl"], ["loss.cl"]),
        (
            ["method.pseudo_labels=naive", "method.inference=classifier"],
            ["loss.cl"],
            ["pseudo.positives"],
        ),
        (["method.warmup_epochs=0", "method.label_model=latest"], ["loss.pl"], []),
        (["method.momentum_warmup=true"], ["loss.pl", "loss.cl"], []),
    ],
)
def test_ablations_train(dataset, tmp_path, overrides, present, absent):
    assert train(dataset, tmp_path / "run", *overrides) == 0
    rows = read_metrics(tmp_path / "run")
    for name in present:
        assert rows[-1][name] != "", name
    for name in absent:
        assert name not in rows[-1], name
    assert (tmp_path / "run" / "test_metrics.json").is_file()


@pytest.mark.parametrize(
    ("keep_labels", "options"),
    # the warmed-up momentum depends on the step count, which must survive the kill too
    [(False, []), (True, []), (False, ["method.momentum_warmup=true"])],
)
def test_resume_after_kill_gives_identical_results(
    dataset, tmp_path, monkeypatch, keep_labels, options
):
    from avvp.methods import ppl
    from avvp.training import trainer as trainer_module

    if keep_labels:
        # No epoch beats the first labels' epoch, so the resumed run must restore those labels
        # rather than recompute them.
        monkeypatch.setattr(ppl, "_previous_epoch_was_best", lambda trainer, epoch: False)
    epochs = ["optim.epochs=3", *options]
    uninterrupted = tmp_path / "full"
    assert train(dataset, uninterrupted, *epochs) == 0

    killed = tmp_path / "killed"
    original = trainer_module.Trainer._run_epoch

    def run_then_die(self, writer):
        original(self, writer)
        if self.epoch == 2:  # after pseudo labels exist, so they must survive the resume
            raise KeyboardInterrupt("simulated kill after epoch 2")

    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", run_then_die)
    assert train(dataset, killed, *epochs) == 130
    assert not (killed / "test_metrics.json").exists()
    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", original)
    assert train(dataset, killed, *epochs) == 0
    assert read_json(killed / "test_metrics.json") == read_json(uninterrupted / "test_metrics.json")
    assert read_json(killed / "meta.json")["resumed_from_epoch"] == 2
    full, resumed = read_metrics(uninterrupted), read_metrics(killed)
    if keep_labels:
        assert full[-1]["pseudo.label_epoch"] == "1.0"
    for full_row, resumed_row in zip(full, resumed, strict=True):
        assert without_times(full_row) == without_times(resumed_row)


def without_times(row: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in row.items() if not key.startswith("seconds")}


def test_ppl_test_on_a_han_run(dataset, tmp_path):
    from avvp.methods.ppl import ppl_test

    run = tmp_path / "han"
    flags = ["--data", str(dataset), "--out", str(run), *TINY_TRAINING]
    assert main(["train", "--method", "han", *flags]) == 0
    han = read_json(run / "test_metrics.json")
    # the classifier rule through PPL_Test is HAN's own inference
    assert ppl_test(run, overrides=["method.inference=classifier"]) == han
    prototype = ppl_test(run)
    assert set(prototype) == {"segment", "event"}
    assert prototype != han

    # the same from the command line: avvp evaluate --run RUN --inference prototype|classifier
    for inference, expected in (("prototype", prototype), ("classifier", han)):
        out = tmp_path / f"{inference}.json"
        argv = ["evaluate", "--run", str(run), "--inference", inference, "--json", str(out)]
        assert main(argv) == 0
        assert read_json(out) == expected
    # --set reaches the PPL_Test method: per-stream selection as an option
    out = tmp_path / "per_stream.json"
    argv = ["evaluate", "--run", str(run), "--inference", "prototype", "--json", str(out)]
    assert main([*argv, "--set", "method.selection=per_stream"]) == 0
    assert read_json(out) == ppl_test(run, overrides=["method.selection=per_stream"])
    assert read_json(out) != prototype


def test_evaluate_inference_switches_a_ppl_run_between_its_rules(dataset, tmp_path):
    run = tmp_path / "ppl"
    flags = ["--data", str(dataset), "--out", str(run), *TINY_TRAINING]
    assert main(["train", "--method", "ppl", *flags]) == 0
    scores = {}
    for inference in ("prototype", "classifier"):
        out = tmp_path / f"{inference}.json"
        argv = ["evaluate", "--run", str(run), "--inference", inference, "--json", str(out)]
        assert main(argv) == 0
        scores[inference] = read_json(out)
    assert scores["prototype"] == read_json(run / "test_metrics.json")  # the preset's rule
    assert scores["classifier"] != scores["prototype"]
    # A run saved before method.selection existed still evaluates, with the old behaviour.
    checkpoint = torch.load(run / "best.pt", weights_only=False)
    del checkpoint["config"]["method"]["selection"]
    torch.save(checkpoint, run / "best.pt")
    out = tmp_path / "older.json"
    assert main(["evaluate", "--run", str(run), "--json", str(out)]) == 0
    assert read_json(out) == scores["prototype"]


def test_one_momentum_pass_per_epoch_serves_prototypes_and_labels(dataset, tmp_path, monkeypatch):
    from avvp.methods.ppl import PPL

    passes = []
    original = PPL.momentum_outputs

    def counted(self, names, device):
        passes.append(len(self.train_data))
        return original(self, names, device)

    monkeypatch.setattr(PPL, "momentum_outputs", counted)
    # optim.epochs=2 in TINY_TRAINING; 3 here: warm-up, then two epochs with pseudo labels
    # label_model=latest: labels are recomputed at both starts whatever validation says
    assert train(dataset, tmp_path / "run", "optim.epochs=3", "method.label_model=latest") == 0
    assert len(passes) == 3  # one at each epoch's end, none at the starts
    rows = read_metrics(tmp_path / "run")
    for row in rows:
        parts = [float(row[f"seconds.pseudo.{part}"] or 0) for part in PSEUDO_PHASES]
        assert 0 < sum(parts) <= float(row["seconds.method"])
    assert [bool(row["seconds.pseudo.labels"]) for row in rows] == [False, True, True]
    # Without a warm-up the first labels need a pass of their own, one for prototypes and labels.
    passes.clear()
    no_warmup = ["optim.epochs=3", "method.label_model=latest", "method.warmup_epochs=0"]
    assert train(dataset, tmp_path / "no-warmup", *no_warmup) == 0
    assert len(passes) == 4
