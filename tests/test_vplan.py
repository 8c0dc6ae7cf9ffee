"""VPLAN's losses and label denoising against loop references, and the method end to end."""

import csv
import itertools
import json
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING

from avvp.cli import main
from avvp.config import resolve_config
from avvp.data.synthetic import load_hidden_train_labels
from avvp.losses import category_richness, richness_aware_loss, segment_richness
from avvp.methods.base import Batch
from avvp.methods.vplan import (
    VPLAN,
    denoise_flips,
    denoise_labels,
    denoise_run,
    denoising_statistics,
    label_changes,
)
from avvp.models.base import ParseOutput
from avvp.pseudo_labels import load_pseudo_labels, save_pseudo_labels
from avvp.training.data import load_splits

EPSILON = 1e-7


def bce(p, y):
    p = min(max(p, EPSILON), 1 - EPSILON)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def reference_richness_loss(prob, labels, video_prob=None):
    """Eqs. 6-8 with loops: classes counted per video and segment, probabilities summed."""
    videos, segments, classes = labels.shape
    category_terms, segment_terms = [], []
    for b in range(videos):
        label_classes = sum(
            1 for c in range(classes) if any(labels[b, t, c] for t in range(segments))
        )
        if video_prob is None:
            prob_classes = sum(max(prob[b, t, c] for t in range(segments)) for c in range(classes))
        else:
            prob_classes = sum(video_prob[b])
        if label_classes > 0:
            for t in range(segments):
                target = sum(labels[b, t, c] for c in range(classes)) / label_classes
                predicted = sum(prob[b, t, c] for c in range(classes)) / prob_classes
                category_terms.append(bce(predicted, target))
        for c in range(classes):
            target = sum(labels[b, t, c] for t in range(segments)) / segments
            predicted = sum(prob[b, t, c] for t in range(segments)) / segments
            segment_terms.append(bce(predicted, target))
    category = sum(category_terms) / len(category_terms) if category_terms else 0.0
    return category + sum(segment_terms) / len(segment_terms)


def edge_case_labels(rng, videos=6, segments=10, classes=5):
    """Random binary labels with a single-class video, empty segments and a class-less video."""
    labels = (rng.random((videos, segments, classes)) < 0.3).astype(np.float64)
    labels[0] = 0
    labels[0, 2:7, 3] = 1  # one class, five segments: the others are empty
    labels[1] = 0  # no class at all
    labels[2, :4] = 0  # empty segments in a multi-class video
    labels[3] = 1  # every class everywhere
    return labels


@pytest.mark.parametrize("pooled", [False, True])
def test_richness_loss_matches_loops(pooled):
    rng = np.random.default_rng(0)
    labels = edge_case_labels(rng)
    prob = rng.random(labels.shape)
    prob[4] = (rng.random(labels.shape[1:]) < 0.5).astype(float)  # binary predictions
    video_prob = rng.random(labels.shape[::2]) if pooled else None
    expected = reference_richness_loss(prob, labels, video_prob)
    got = richness_aware_loss(
        torch.from_numpy(prob),
        torch.from_numpy(labels),
        None if video_prob is None else torch.from_numpy(video_prob),
    )
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_richness_of_the_papers_examples():
    # Section I: five segments; vacuum cleaner (class 1) in four, speech (class 0) in the fourth.
    labels = torch.zeros(1, 5, 3)
    labels[0, [0, 1, 3, 4], 1] = 1
    labels[0, 3, 0] = 1
    video = labels.amax(dim=1)
    torch.testing.assert_close(
        category_richness(labels, video), torch.tensor([[0.5, 0.5, 0, 1, 0.5]])
    )
    torch.testing.assert_close(segment_richness(labels), torch.tensor([[0.2, 0.8, 0.0]]))
    # Fig. 2: three events in the first segment, only one in the last: 1 and 1/3.
    labels = torch.zeros(1, 4, 3)
    labels[0, 0] = 1
    labels[0, 3, 0] = 1
    assert category_richness(labels, labels.amax(dim=1))[0, [0, 3]].tolist() == pytest.approx(
        [1, 1 / 3]
    )


def test_richness_loss_edge_cases_stay_finite():
    labels = torch.zeros(2, 10, 4, dtype=torch.float64)  # no class: only segment richness counts
    prob = torch.rand(2, 10, 4, dtype=torch.float64, requires_grad=True)
    loss = richness_aware_loss(prob, labels)
    expected = reference_richness_loss(prob.detach().numpy(), labels.numpy())
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    loss.backward()
    assert torch.isfinite(prob.grad).all()
    # predictions of exactly 0 and 1, and a label-perfect binary prediction
    labels = torch.from_numpy(edge_case_labels(np.random.default_rng(1)))
    for prob in (torch.zeros_like(labels), torch.ones_like(labels), labels.clone()):
        prob.requires_grad_(True)
        loss = richness_aware_loss(prob, labels)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(prob.grad).all()
    # predicting the labels themselves matches their richness: BCE's minimum, below any other
    perfect = richness_aware_loss(labels, labels).item()
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        noisy = (labels + 0.3 * torch.rand(labels.shape, generator=generator)).clamp(0, 1)
        assert perfect < richness_aware_loss(noisy.double(), labels).item()


def write_labels(path, video_ids, visual=None, audio=None):
    return save_pseudo_labels(path, video_ids, audio=audio, visual=visual)


class FixedModel(torch.nn.Module):
    """Returns a preset output whatever the features, to test losses of a whole method."""

    def __init__(self, output):
        super().__init__()
        self.output = output

    def forward(self, features):
        return self.output


def random_output(generator, videos, segments=10, classes=25):
    def rand(*shape):
        return torch.rand(*shape, generator=generator)

    return ParseOutput(
        rand(videos, segments, 2, classes),
        rand(videos, classes),
        rand(videos, classes),
        rand(videos, classes),
        rand(videos, segments, 2, 4),
    )


def vplan_method(tmp_path, train_ids, file_ids, labels, *overrides):
    path = write_labels(tmp_path / "labels.npz", file_ids, visual=labels)
    config = resolve_config("vplan", overrides=[f"method.visual_labels={path}", *overrides])
    return VPLAN(config, SimpleNamespace(video_ids=train_ids)), path


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_visual_target_is_the_pseudo_video_label_gathered_by_index(tmp_path, smoothing):
    rng = np.random.default_rng(3)
    train_ids = tuple(f"video{i:02d}" for i in range(12))
    file_order = rng.permutation(12)
    file_ids = [train_ids[i] for i in file_order]
    labels = (rng.random((12, 10, 25)) < 0.1).astype(np.float32)
    labels[5] = 0
    method, _ = vplan_method(
        tmp_path,
        train_ids,
        file_ids,
        labels,
        f"method.visual_label_smoothing={smoothing}",
        "method.rl_weight=0",
    )
    by_id = dict(zip(file_ids, labels, strict=True))
    index = torch.tensor([7, 2, 5, 11, 0])  # a shuffled batch
    weak = torch.from_numpy((rng.random((5, 25)) < 0.3).astype(np.float32))
    output = random_output(torch.Generator().manual_seed(0), 5)
    losses, _ = method.training_forward(FixedModel(output), Batch({}, weak, index))
    assert set(losses) == {"mil"}
    expected = 0.0
    for b, position in enumerate(index.tolist()):
        segment_labels = by_id[train_ids[position]]
        for c in range(25):
            visual = max(segment_labels[t, c] for t in range(10))
            visual = (1 - smoothing) * visual + smoothing / 2
            w = float(weak[b, c])
            expected += bce(float(output.video_prob[b, c]), w)
            expected += bce(float(output.video_prob_audio[b, c]), w)
            expected += bce(float(output.video_prob_visual[b, c]), visual)
    assert losses["mil"].item() == pytest.approx(expected / (5 * 25), rel=1e-5)


def test_richness_and_segment_terms_use_the_batch_rows(tmp_path):
    rng = np.random.default_rng(4)
    train_ids = tuple(f"v{i}" for i in range(6))
    labels = (rng.random((6, 10, 25)) < 0.2).astype(np.float32)
    method, _ = vplan_method(
        tmp_path, train_ids, train_ids[::-1], labels[::-1], "method.segment_bce_weight=0.25"
    )
    index = torch.tensor([4, 1, 3])
    output = random_output(torch.Generator().manual_seed(1), 3)
    weak = torch.ones(3, 25)
    losses, _ = method.training_forward(FixedModel(output), Batch({}, weak, index))
    visual_prob = output.segment_prob[:, :, 1].numpy()
    rows = labels[index.numpy()].astype(np.float64)
    assert losses["richness_visual"].item() == pytest.approx(
        0.5 * reference_richness_loss(visual_prob, rows), rel=1e-6
    )
    segment = np.mean([bce(p, y) for p, y in zip(visual_prob.ravel(), rows.ravel(), strict=True)])
    assert losses["segment_visual"].item() == pytest.approx(0.25 * segment, rel=1e-5)


def test_options_and_missing_labels_are_errors(tmp_path):
    with pytest.raises(ValueError, match=re.escape("method.visual_labels=FILE")):
        VPLAN(resolve_config("vplan"), SimpleNamespace(video_ids=("a",)))
    VPLAN(resolve_config("vplan"), None)  # evaluation reads no labels
    with pytest.raises(ValueError, match=re.escape("method.rl_weight must be >= 0")):
        VPLAN(resolve_config("vplan", overrides=["method.rl_weight=-1"]), None)
    with pytest.raises(ValueError, match="expected one of max, attentive"):
        VPLAN(resolve_config("vplan", overrides=["method.richness_video=mean"]), None)
    with pytest.raises(ValueError, match=re.escape("'method.pld_guard' expects bool")):
        resolve_config("vplan", overrides=["method.pld_guard=sometimes"])
    labels = np.zeros((2, 10, 25), dtype=np.float32)
    path = write_labels(tmp_path / "audio_only.npz", ["a", "b"], audio=labels)
    config = resolve_config("vplan", overrides=[f"method.visual_labels={path}"])
    with pytest.raises(ValueError, match="holds no visual labels"):
        VPLAN(config, SimpleNamespace(video_ids=("a", "b")))


# ---- denoising
def reference_flips(prob, labels, k, alpha, guard=False):
    videos, segments, classes = labels.shape
    flips = np.zeros(labels.shape, dtype=bool)
    for v, c in itertools.product(range(videos), range(classes)):
        if not any(labels[v, t, c] for t in range(segments)):
            continue  # not in the video-level pseudo label: its losses are masked to 0
        losses = [bce(prob[v, t, c], labels[v, t, c]) for t in range(segments)]
        threshold = alpha * sum(sorted(losses)[:k]) / k
        for t in range(segments):
            model_agrees = (prob[v, t, c] >= 0.5) == (labels[v, t, c] >= 0.5)
            flips[v, t, c] = losses[t] > threshold and not (guard and model_agrees)
    return flips


@pytest.mark.parametrize("guard", [False, True])
@pytest.mark.parametrize(("k", "alpha"), [(5, 10.0), (1, 3.0), (10, 1.5)])
def test_denoise_flips_match_loops(k, alpha, guard):
    rng = np.random.default_rng(5)
    labels = (rng.random((8, 10, 6)) < 0.4).astype(np.float64)
    labels[0] = 0
    prob = rng.random(labels.shape) ** 3
    prob[1] = np.where(rng.random(labels.shape[1:]) < 0.5, 0.0, 1.0)  # saturated predictions
    expected = reference_flips(prob, labels, k, alpha, guard)
    got = denoise_flips(torch.from_numpy(prob), torch.from_numpy(labels), k, alpha, guard).numpy()
    np.testing.assert_array_equal(got, expected)
    assert expected.any() and not expected.all()


def test_denoise_labels_on_a_hand_built_video():
    labels = np.zeros((1, 10, 25), dtype=np.float32)
    prob = np.full((1, 10, 25), 0.5)
    # class 0: labelled in 8 segments, the model sees it in all 10 (losses 0.105 and 3.0;
    # threshold 10 x 0.105): the two missing segments become 1
    labels[0, :8, 0] = 1
    prob[0, :, 0] = [0.9] * 8 + [0.95] * 2
    # class 1: not in the video-level label; the model's confidence changes nothing
    prob[0, :, 1] = 0.99
    # class 2: agrees with the model up to small losses: kept
    labels[0, :3, 2] = 1
    prob[0, :, 2] = [0.8] * 3 + [0.1] * 7
    # class 3: one labelled segment the model rejects (loss 4.6, threshold 10 x 0.02): dropped
    labels[0, 0, 3] = 1
    prob[0, :, 3] = [0.01] + [0.02] * 9
    refined = denoise_labels(prob, labels, k=5, alpha=10.0)
    expected = labels.copy()
    expected[0, 8:, 0] = 1
    expected[0, 0, 3] = 0
    np.testing.assert_array_equal(refined, expected)
    statistics = label_changes(labels, refined)
    assert statistics.to_positive.tolist() == [2] + [0] * 24
    assert statistics.to_negative.tolist() == [0, 0, 0, 1] + [0] * 21
    assert statistics.flips.sum() == 3 and statistics.f1_before is None
    text = statistics.format()
    assert "3 segment labels flipped in 1 videos: 2 became 1, 1 became 0" in text
    assert "Speech" in text and "Dog" in text and "Car" not in text
    with pytest.raises(ValueError, match=re.escape("k must be in 1..10")):
        denoise_labels(prob, labels, k=11)


def test_the_literal_rule_flips_a_label_the_model_agrees_with_and_the_guard_does_not():
    """Issue 13: all losses of a class tiny, a p = 0.998 prediction on a label-1 segment (loss
    0.002) exceeds 10 x the mean of the 5 smallest losses (1e-5) and is flipped to 0."""
    labels = np.zeros((1, 10, 25), dtype=np.float32)
    prob = np.full((1, 10, 25), 0.01)
    labels[0, :4, 0] = 1
    prob[0, :, 0] = [0.998] + [1 - 1e-5] * 3 + [1e-5] * 6
    # class 1: a label the model contradicts (label 0, p = 0.9): both rules flip it
    labels[0, 5:, 1] = 1
    prob[0, :, 1] = [0.01] * 4 + [0.9] + [0.99] * 5
    literal = denoise_labels(prob, labels, k=5, alpha=10.0)
    guarded = denoise_labels(prob, labels, k=5, alpha=10.0, guard=True)
    assert literal[0, 0, 0] == 0 and guarded[0, 0, 0] == 1
    assert literal[0, 4, 1] == guarded[0, 4, 1] == 1
    expected = labels.copy()
    expected[0, 4, 1] = 1
    np.testing.assert_array_equal(guarded, expected)
    expected[0, 0, 0] = 0
    np.testing.assert_array_equal(literal, expected)


def test_label_changes_scores_against_truth():
    truth = np.zeros((2, 10, 25), dtype=bool)
    truth[:, :5, 0] = True
    before = np.zeros((2, 10, 25), dtype=np.float32)
    before[:, :, 0] = 1  # half the segments wrong
    statistics = label_changes(before, truth.astype(np.float32), truth)
    assert statistics.f1_after == {"segment": 100.0, "event": 100.0}
    assert statistics.f1_before["segment"] < 100.0
    assert (
        statistics.to_negative[0] == 10 and "visual F against hidden labels" in statistics.format()
    )


# ---- end to end on the tiny synthetic dataset
def read_json(path):
    return json.loads(path.read_text())


def read_metrics(run):
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def train(dataset, run, labels, *overrides):
    flags = ["--data", str(dataset), "--out", str(run), *TINY_TRAINING]
    return main(
        ["train", "--method", "vplan", *flags, f"method.visual_labels={labels}", *overrides]
    )


@pytest.fixture(scope="module")
def noisy_labels(dataset, tmp_path_factory):
    """Visual labels from the hidden train labels AND weak, with 10 % of segments flipped
    inside each video's weak classes; the file lists the videos in reverse order."""
    from avvp.data.annotations import read_weak_labels

    weak_labels = read_weak_labels(dataset / "AVVP_train.csv")
    weak = np.asarray(weak_labels.labels, dtype=bool)
    hidden = load_hidden_train_labels(dataset)
    visual = hidden.visual & weak[:, None, :]
    rng = np.random.default_rng(0)
    noise = (rng.random(visual.shape) < 0.1) & weak[:, None, :]
    labels = (visual ^ noise).astype(np.float32)
    ids = list(weak_labels.video_ids)
    path = tmp_path_factory.mktemp("labels") / "plg.npz"
    return write_labels(path, ids[::-1], visual=labels[::-1])


def test_train_denoise_and_retrain(dataset, noisy_labels, tmp_path):
    run = tmp_path / "plg"
    assert train(dataset, run, noisy_labels) == 0
    rows = read_metrics(run)
    assert len(rows) == 2 and float(rows[-1]["loss.richness_visual"]) > 0
    assert main(["evaluate", "--run", str(run), "--json", str(tmp_path / "e.json")]) == 0
    assert read_json(tmp_path / "e.json") == read_json(run / "test_metrics.json")

    # a 2-epoch model is too unsure of itself for alpha = 10 to flip anything
    refined_path = denoise_run(run, tmp_path / "pld.npz", alpha=2.0, progress=False)
    original, refined = load_pseudo_labels(noisy_labels), load_pseudo_labels(refined_path)
    assert refined.video_ids == original.video_ids and refined.audio is None
    changed = original.visual != refined.visual
    assert changed.any()
    # only classes of the video-level pseudo label change, and only by flipping
    video_classes = original.visual.max(axis=1, keepdims=True) > 0
    assert not (changed & ~video_classes).any()
    np.testing.assert_array_equal(refined.visual[changed], 1 - original.visual[changed])

    statistics = denoising_statistics(run, refined_path)
    assert statistics.videos == len(original.video_ids)
    assert statistics.flips.sum() == changed.sum()
    assert statistics.to_positive.sum() == (changed & (refined.visual == 1)).sum()
    for level in ("segment", "event"):
        assert 0 < statistics.f1_before[level] <= 100 and 0 < statistics.f1_after[level] <= 100

    with pytest.raises(ValueError, match="is the label file"):
        denoise_run(run, noisy_labels, progress=False)
    # the same from the command line
    command_out = tmp_path / "pld_command.npz"
    argv = ["pseudo-labels", "denoise", "--run", str(run), "--out", str(command_out)]
    assert main([*argv, "--alpha", "2", "--no-progress"]) == 0
    np.testing.assert_array_equal(load_pseudo_labels(command_out).visual, refined.visual)
    # the guard keeps a subset of the paper's flips: those the model contradicts
    guarded = load_pseudo_labels(denoise_run(run, tmp_path / "g.npz", alpha=2.0, guard=True))
    guarded_changed = guarded.visual != original.visual
    assert not (guarded_changed & ~changed).any()
    assert main([*argv, "--alpha", "2", "--guard", "--no-progress"]) == 0
    np.testing.assert_array_equal(load_pseudo_labels(command_out).visual, guarded.visual)
    # another split's label file (the paper scores PLD on val): only that split's videos change
    config = resolve_config("vplan", None, [f"data.root={dataset}"])
    val_ids = list(load_splits(config, ("val",), progress=False)["val"].video_ids)
    rng = np.random.default_rng(1)
    val_labels = (rng.random((len(val_ids), 10, 25)) < 0.3).astype(np.float32)
    val_file = write_labels(tmp_path / "val_plg.npz", val_ids, visual=val_labels)
    val_out = tmp_path / "val_pld.npz"
    argv = ["pseudo-labels", "denoise", "--run", str(run), "--out", str(val_out)]
    argv += ["--labels", str(val_file), "--split", "val", "--alpha", "2", "--no-progress"]
    assert main(argv) == 0
    val_refined = load_pseudo_labels(val_out)
    assert val_refined.video_ids == tuple(val_ids)
    assert (val_refined.visual != val_labels).any()
    assert not (
        (val_refined.visual != val_labels) & (val_labels.max(axis=1, keepdims=True) == 0)
    ).any()
    assert train(dataset, tmp_path / "pld", refined_path) == 0
    assert (tmp_path / "pld" / "test_metrics.json").is_file()


@pytest.mark.parametrize(
    ("overrides", "present", "absent"),
    [
        (["method.rl_weight=0"], [], ["loss.richness_visual"]),
        (["method.rl_weight=0", "method.segment_bce_weight=0.5"], ["loss.segment_visual"], []),
        (["method.richness_video=attentive"], ["loss.richness_visual"], ["loss.segment_visual"]),
    ],
)
def test_table_iii_settings_train(dataset, noisy_labels, tmp_path, overrides, present, absent):
    assert train(dataset, tmp_path / "run", noisy_labels, "optim.epochs=1", *overrides) == 0
    row = read_metrics(tmp_path / "run")[-1]
    for name in present:
        assert float(row[name]) > 0, name
    for name in absent:
        assert name not in row, name


def test_audio_labels_train_the_audio_stream(dataset, noisy_labels, tmp_path):
    both = load_pseudo_labels(noisy_labels)
    path = write_labels(
        tmp_path / "both.npz", both.video_ids, visual=both.visual, audio=both.visual
    )
    assert (
        train(dataset, tmp_path / "run", path, f"method.audio_labels={path}", "optim.epochs=1") == 0
    )
    row = read_metrics(tmp_path / "run")[-1]
    assert float(row["loss.richness_audio"]) > 0 and float(row["loss.richness_visual"]) > 0


def test_labels_not_covering_the_train_split_name_the_file(dataset, noisy_labels, tmp_path, capsys):
    labels = load_pseudo_labels(noisy_labels)
    short = write_labels(tmp_path / "short.npz", labels.video_ids[3:], visual=labels.visual[3:])
    assert train(dataset, tmp_path / "run", short) == 2
    error = capsys.readouterr().err
    assert "method.visual_labels" in error and str(short) in error
    assert train(dataset, tmp_path / "run", tmp_path / "absent.npz") == 2
    assert "absent.npz" in capsys.readouterr().err


def test_resume_after_kill_gives_identical_results(dataset, noisy_labels, tmp_path, monkeypatch):
    from avvp.training import trainer as trainer_module

    epochs = "optim.epochs=3"
    uninterrupted = tmp_path / "full"
    assert train(dataset, uninterrupted, noisy_labels, epochs) == 0

    killed = tmp_path / "killed"
    original = trainer_module.Trainer._run_epoch

    def run_then_die(self, writer):
        original(self, writer)
        if self.epoch == 2:
            raise KeyboardInterrupt("simulated kill after epoch 2")

    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", run_then_die)
    assert train(dataset, killed, noisy_labels, epochs) == 130
    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", original)
    assert train(dataset, killed, noisy_labels, epochs) == 0
    assert read_json(killed / "test_metrics.json") == read_json(uninterrupted / "test_metrics.json")
    assert read_json(killed / "meta.json")["resumed_from_epoch"] == 2
    full, resumed = read_metrics(uninterrupted), read_metrics(killed)
    for full_row, resumed_row in zip(full, resumed, strict=True):
        assert without_times(full_row) == without_times(resumed_row)


def without_times(row):
    return {key: value for key, value in row.items() if not key.startswith("seconds")}


def test_resume_refuses_a_changed_label_file(dataset, noisy_labels, tmp_path, monkeypatch, capsys):
    from avvp.training import trainer as trainer_module

    labels = load_pseudo_labels(noisy_labels)
    path = write_labels(tmp_path / "labels.npz", labels.video_ids, visual=labels.visual)
    original = trainer_module.Trainer._run_epoch

    def run_then_die(self, writer):
        original(self, writer)
        raise KeyboardInterrupt("simulated kill after epoch 1")

    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", run_then_die)
    assert train(dataset, tmp_path / "run", path) == 130
    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", original)
    write_labels(path, labels.video_ids, visual=1 - labels.visual)
    assert train(dataset, tmp_path / "run", path) == 2
    assert f"{path} (visual_labels) changed since this run started" in capsys.readouterr().err


def test_video_level_audio_labels_serve_the_stream_no_segment_file_covers(tmp_path):
    from avvp.pseudo_labels import save_video_labels

    rng = np.random.default_rng(5)
    train_ids = tuple(f"video{i:02d}" for i in range(12))
    visual = (rng.random((12, 10, 25)) < 0.1).astype(np.float32)
    audio = rng.random((12, 25)) < 0.3  # e.g. MA's audio labels
    ma = save_video_labels(tmp_path / "ma.npz", list(train_ids), audio=audio)
    method, _ = vplan_method(
        tmp_path,
        train_ids,
        list(train_ids),
        visual,
        f"data.video_labels={ma}",
        "method.visual_label_smoothing=0",
        "method.rl_weight=0",
    )
    index = torch.tensor([3, 9, 0])
    weak = torch.from_numpy((rng.random((3, 25)) < 0.3).astype(np.float32))
    output = random_output(torch.Generator().manual_seed(1), 3)
    losses, _ = method.training_forward(FixedModel(output), Batch({}, weak, index))
    expected = 0.0
    for b, position in enumerate(index.tolist()):
        for c in range(25):
            heard = float(audio[position, c])
            seen = max(visual[position, t, c] for t in range(10))
            # the file has no visual stream: its union target falls back to weak for it
            union = max(heard, float(weak[b, c]))
            expected += bce(float(output.video_prob[b, c]), union)
            expected += bce(float(output.video_prob_audio[b, c]), heard)
            expected += bce(float(output.video_prob_visual[b, c]), seen)
    assert losses["mil"].item() == pytest.approx(expected / (3 * 25), rel=1e-5)
