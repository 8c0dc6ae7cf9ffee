"""Video-level per-stream label files: the format, ``avvp pseudo-labels score`` on them, and
training on them with ``data.video_labels``, against slow references."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING as TINY
from naive_eval import naive_evaluate

from avvp.classes import CLASSES, NUM_CLASSES, NUM_SEGMENTS
from avvp.cli import main
from avvp.config import resolve_config
from avvp.data.annotations import LLPAnnotations
from avvp.data.synthetic import load_hidden_train_labels
from avvp.pseudo_labels import (
    PseudoLabels,
    VideoLabels,
    load_label_file,
    load_pseudo_labels,
    load_video_labels,
    save_pseudo_labels,
    save_video_labels,
)

T, C = NUM_SEGMENTS, NUM_CLASSES


def ids(count: int) -> list[str]:
    return [f"video{index:06d}" for index in range(count)]


# ---- the file format ---------------------------------------------------------------------------


def test_round_trip_keeps_binary_and_soft_labels(tmp_path):
    rng = np.random.default_rng(0)
    names = ids(5)
    audio = rng.random((5, C)) < 0.2
    visual = rng.random((5, C)).astype(np.float32)
    path = save_video_labels(tmp_path / "labels.npz", names, audio=audio, visual=visual)
    labels = load_video_labels(path)
    assert isinstance(labels, VideoLabels) and labels.video_ids == tuple(names)
    assert labels.audio.dtype == np.float32 and labels.visual.dtype == np.float32
    np.testing.assert_array_equal(labels.audio, audio.astype(np.float32))
    np.testing.assert_array_equal(labels.visual, visual)
    with np.load(path) as stored:
        assert stored["audio"].dtype == np.bool_ and stored["audio"].shape == (5, C)
        assert list(stored["classes"]) == list(CLASSES)
    only_audio = load_video_labels(save_video_labels(tmp_path / "a.npz", names, audio=audio))
    assert only_audio.visual is None and set(only_audio.streams) == {"audio"}
    wanted = [names[3], names[0]]
    aligned = load_video_labels(path, wanted)
    np.testing.assert_array_equal(aligned.visual, visual[[3, 0]])
    assert isinstance(aligned, VideoLabels)


def test_a_file_written_with_plain_numpy_savez_loads(tmp_path):
    # The contract other tools write to: numpy.savez with these keys, nothing of avvp.
    path = tmp_path / "plain.npz"
    visual = np.eye(3, C, dtype=np.float64)
    np.savez(path, video_ids=np.array(ids(3)), classes=np.array(CLASSES), visual=visual)
    labels = load_video_labels(path)
    np.testing.assert_array_equal(labels.visual, visual.astype(np.float32))


def test_load_label_file_reads_either_level(tmp_path):
    video = save_video_labels(tmp_path / "v.npz", ids(2), audio=np.ones((2, C), bool))
    segment = save_pseudo_labels(tmp_path / "s.npz", ids(2), audio=np.ones((2, T, C), bool))
    assert isinstance(load_label_file(video), VideoLabels)
    assert isinstance(load_label_file(segment), PseudoLabels)


def test_on_every_segment_repeats_the_video_label():
    rng = np.random.default_rng(1)
    visual = rng.random((4, C)).astype(np.float32)
    segments = VideoLabels(tuple(ids(4)), None, visual).on_every_segment()
    assert segments.audio is None and segments.visual.shape == (4, T, C)
    for v in range(4):
        for t in range(T):
            np.testing.assert_array_equal(segments.visual[v, t], visual[v])


def good_arrays(videos: int = 3) -> dict[str, np.ndarray]:
    return {
        "video_ids": np.array(ids(videos)),
        "classes": np.array(CLASSES),
        "audio": np.zeros((videos, C), dtype=np.float32),
    }


def with_value(row: int, klass: int, value: float) -> dict[str, np.ndarray]:
    arrays = good_arrays()
    arrays["audio"][row, klass] = value
    return arrays


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {**good_arrays(), "audio": np.zeros((3, T, C))},
            r"array 'audio' has shape \(3, 10, 25\), expected \(videos, classes\) = \(3, 25\): "
            "segment-level labels, where video-level ones are needed",
        ),
        ({**good_arrays(), "visual": np.zeros((2, C))}, r"array 'visual' has shape \(2, 25\)"),
        (
            with_value(1, 2, np.nan),
            r"'audio' has a non-finite value \(nan\) at video 'video000001' \(row 1\), class "
            f"{CLASSES[2]}; 1 such entries",
        ),
        (
            with_value(2, 0, -0.5),
            rf"outside \[0, 1\] \(-0.5\) at video 'video000002' \(row 2\), class {CLASSES[0]};",
        ),
        ({k: v for k, v in good_arrays().items() if k != "audio"}, "no 'audio' or 'visual'"),
        ({**good_arrays(), "classes": np.array(CLASSES[:24])}, "has 24 names"),
        (
            {**good_arrays(), "video_ids": np.array(["a" * 11, "b" * 11, "a" * 11])},
            r"duplicate video ids .*'aaaaaaaaaaa' \(rows 0 and 2\)",
        ),
    ],
)
def test_load_names_what_is_wrong(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message) as error:
        load_video_labels(path)
    assert str(path) in str(error.value)


def test_segment_level_readers_say_a_video_level_file_is_one(tmp_path):
    path = save_video_labels(tmp_path / "v.npz", ids(3), visual=np.zeros((3, C), bool))
    expected = (
        f"{path}: array 'visual' has shape (3, 25), expected (videos, segments, classes) = "
        "(3, 10, 25): video-level labels, where segment-level ones are needed"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_pseudo_labels(path)


def test_missing_files_and_bad_saves(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"video-level label file not found: .*none\.npz"):
        load_video_labels(tmp_path / "none.npz")
    path = tmp_path / "out.npz"
    with pytest.raises(ValueError, match=r"video-level labels for .*out\.npz: array 'audio'"):
        save_video_labels(path, ids(3), audio=np.zeros((3, T, C), bool))
    with pytest.raises(ValueError, match="give audio and/or visual"):
        save_video_labels(path, ids(3))
    assert not path.exists()


# ---- scoring -----------------------------------------------------------------------------------


def naive_video_scores(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Video-level P/R/F1 in percent of (V, C) labels against (V, T, C) ground truth, by loops."""
    precisions, recalls = [], []
    hits = said = real = 0
    for v in range(len(labels)):
        present = [any(truth[v, t, c] for t in range(T)) for c in range(C)]
        given = [labels[v, c] >= 0.5 for c in range(C)]
        video_hits = sum(1 for c in range(C) if given[c] and present[c])
        precisions.append(video_hits / sum(given) if sum(given) else 0.0)
        recalls.append(video_hits / sum(present) if sum(present) else 0.0)
        hits, said, real = hits + video_hits, said + sum(given), real + sum(present)
    return {
        "precision": 100 * sum(precisions) / len(precisions),
        "recall": 100 * sum(recalls) / len(recalls),
        "pooled_precision": 100 * hits / said,
        "pooled_recall": 100 * hits / real,
        "pooled_f1": 100 * 2 * hits / (said + real),
    }


def noisy_labels(truth: np.ndarray, weak: np.ndarray, seed: int) -> np.ndarray:
    """Soft (V, C) labels near the truth's video level, within the weak labels mostly."""
    rng = np.random.default_rng(seed)
    present = truth.any(axis=1).astype(np.float32)
    flipped = np.where(rng.random(present.shape) < 0.15, 1 - present, present)
    return np.clip(flipped * weak + rng.normal(0, 0.2, present.shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("split", ["val", "train"])
def test_score_a_video_level_file_matches_loops(dataset, tmp_path, capsys, split):
    annotations = LLPAnnotations(dataset)
    weak = annotations.weak(split)
    truth = load_hidden_train_labels(dataset) if split == "train" else annotations.dense(split)
    audio = noisy_labels(truth.audio, weak.labels, 0)
    visual = noisy_labels(truth.visual, weak.labels, 1)
    # Stored in another order than the split's: scoring aligns by id.
    order = np.random.default_rng(2).permutation(len(weak))
    path = save_video_labels(
        tmp_path / "labels.npz",
        [weak.video_ids[row] for row in order],
        audio=audio[order],
        visual=visual[order],
    )
    report = tmp_path / "score.json"
    command = ["pseudo-labels", "score", str(path), "--data", str(dataset), "--json", str(report)]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert f"{path} on {split} ({len(weak)} videos, audio GT 2024, video-level labels)" in printed
    assert "each video-level label on all 10 segments" in printed
    numbers = json.loads(report.read_text())
    assert numbers["level"] == "video" and numbers["split"] == split
    on_segments = {
        name: np.repeat((labels >= 0.5)[:, None, :], T, axis=1)
        for name, labels in (("audio", audio), ("visual", visual))
    }
    reference = naive_evaluate(
        on_segments["audio"], on_segments["visual"], truth.audio, truth.visual
    )
    for name, labels, stream_truth in (
        ("audio", audio, truth.audio),
        ("visual", visual, truth.visual),
    ):
        scored = numbers["labels"][name]
        assert scored["video"] == pytest.approx(naive_video_scores(labels, stream_truth))
        assert scored["segment_f1"] == pytest.approx(reference["segment"][name])
        assert scored["event_f1"] == pytest.approx(reference["event"][name])
    assert numbers["labels"]["audio_visual"]["segment"]["type"] == pytest.approx(
        reference["segment"]["type"]
    )
    # The reference row: the weak label, which is the same whatever the file.
    weak_video = naive_video_scores(weak.labels.astype(np.float32), truth.visual)
    assert numbers["weak"]["visual"]["video"] == pytest.approx(weak_video)


def test_score_names_a_file_of_other_videos(dataset, tmp_path, capsys):
    path = save_video_labels(tmp_path / "v.npz", ids(3), audio=np.zeros((3, C), bool))
    assert main(["pseudo-labels", "score", str(path), "--data", str(dataset)]) == 2
    assert "cover none of the splits" in capsys.readouterr().err


# ---- training on a label file (data.video_labels) ----------------------------------------------


def train_ids(dataset: Path) -> tuple[str, ...]:
    return LLPAnnotations(dataset).weak("train").video_ids


def weak_as_file(dataset: Path, path: Path, streams=("audio", "visual")) -> Path:
    """The weak train labels as a video-level label file, in reversed order."""
    weak = LLPAnnotations(dataset).weak("train")
    order = slice(None, None, -1)
    arrays = {name: weak.labels[order].astype(bool) for name in streams}
    return save_video_labels(path, list(weak.video_ids[order]), **arrays)


def train(dataset: Path, out: Path, *extra: str, method: str = "han") -> int:
    return main(
        ["train", "--method", method, "--data", str(dataset), "--out", str(out), *TINY, *extra]
    )


def test_a_file_of_the_weak_labels_trains_exactly_as_none(dataset, tmp_path):
    labels = weak_as_file(dataset, tmp_path / "weak.npz")
    assert train(dataset, tmp_path / "plain") == 0
    assert train(dataset, tmp_path / "file", f"data.video_labels={labels}") == 0
    plain = torch.load(tmp_path / "plain" / "best.pt", weights_only=False)
    with_file = torch.load(tmp_path / "file" / "best.pt", weights_only=False)
    assert plain["epoch"] == with_file["epoch"]
    for name, value in plain["model"].items():
        assert torch.equal(value, with_file["model"][name]), name
    for name in ("val_metrics.json", "test_metrics.json"):
        assert (tmp_path / "plain" / name).read_text() == (tmp_path / "file" / name).read_text()
    losses = [
        [row["loss.mil"] for row in csv.DictReader((tmp_path / run / "metrics.csv").open())]
        for run in ("plain", "file")
    ]
    assert losses[0] == losses[1]
    assert with_file["config"]["data"]["video_labels"] == str(labels)


def record_targets(monkeypatch) -> list[tuple[np.ndarray, ...]]:
    """(batch positions, global, audio, visual targets) of every attentive MIL loss of training."""
    from avvp.methods import base

    calls: list[tuple[np.ndarray, ...]] = []
    positions: list[np.ndarray] = []
    forward, loss = base.Method.training_forward, base.attentive_mil_loss

    def recording_forward(self, model, batch):
        positions.append(batch.index.numpy().copy())
        return forward(self, model, batch)

    def recording_loss(output, weak, smoothing, audio_target=None, visual_target=None, **rest):
        def copy(target):
            return None if target is None else target.detach().numpy().copy()

        calls.append((positions[-1], copy(weak), copy(audio_target), copy(visual_target)))
        return loss(output, weak, smoothing, audio_target=audio_target, visual_target=visual_target)

    monkeypatch.setattr(base.Method, "training_forward", recording_forward)
    monkeypatch.setattr(base, "attentive_mil_loss", recording_loss)
    return calls


@pytest.mark.parametrize("streams", [("audio", "visual"), ("audio",)])
def test_training_uses_the_files_labels_as_targets(dataset, tmp_path, monkeypatch, streams):
    ids_ = train_ids(dataset)
    weak = LLPAnnotations(dataset).weak("train").labels
    rng = np.random.default_rng(3)
    stored = {name: (rng.random((len(ids_), C)) < 0.3) for name in streams}
    order = rng.permutation(len(ids_))
    path = save_video_labels(
        tmp_path / "labels.npz",
        [ids_[row] for row in order],
        **{name: array[order] for name, array in stored.items()},
    )
    calls = record_targets(monkeypatch)
    assert train(dataset, tmp_path / "run", f"data.video_labels={path}") == 0
    assert calls
    for positions, used_global, used_audio, used_visual in calls:
        for row, position in enumerate(positions):
            video = ids_[position]  # no train subset: position = row of the split
            index = ids_.index(video)
            for c in range(C):
                audio = float(stored["audio"][index, c])
                visual = float(stored["visual"][index, c]) if "visual" in stored else weak[index, c]
                assert used_audio[row, c] == audio
                assert used_visual[row, c] == visual
                assert used_global[row, c] == max(audio, visual)
    metrics = [row for row in csv.DictReader((tmp_path / "run" / "metrics.csv").open())]
    assert train(dataset, tmp_path / "plain") == 0
    plain = [row for row in csv.DictReader((tmp_path / "plain" / "metrics.csv").open())]
    assert metrics[0]["loss.mil"] != plain[0]["loss.mil"]


def test_a_train_subset_is_covered_by_its_own_videos(dataset, tmp_path, monkeypatch):
    from avvp.training.data import train_subset

    ids_ = train_ids(dataset)
    config = {"data": {"train_videos": 20, "train_subset_seed": 0}}
    subset = [ids_[index] for index in train_subset(config, len(ids_))]
    path = save_video_labels(tmp_path / "s.npz", subset, audio=np.ones((20, C), bool))
    calls = record_targets(monkeypatch)
    flags = [f"data.video_labels={path}", "data.train_videos=20"]
    assert train(dataset, tmp_path / "run", *flags) == 0
    assert all((audio == 1).all() for _, _, audio, _ in calls)


def test_labels_missing_train_videos_are_an_error_before_the_data_load(
    dataset, tmp_path, monkeypatch, capsys
):
    from avvp.training import data

    ids_ = train_ids(dataset)
    path = save_video_labels(tmp_path / "part.npz", ids_[3:], visual=np.ones((len(ids_) - 3, C)))

    def no_data_load(*args, **kwargs):
        raise AssertionError("the data was loaded")

    monkeypatch.setattr(data, "load_splits", no_data_load)
    assert train(dataset, tmp_path / "run", f"data.video_labels={path}") == 2
    error = capsys.readouterr().err
    assert error == (
        f"avvp train: error: data.video_labels: {path}: no labels for 3 of the {len(ids_)} train "
        f"videos: {ids_[0]!r}, {ids_[1]!r}, {ids_[2]!r}; label every train video\n"
    )
    assert not (tmp_path / "run").exists()


def test_the_method_checks_the_loaded_split_too(dataset, tmp_path):
    from avvp.config import resolve_config
    from avvp.methods.base import Method
    from avvp.training.data import load_splits

    ids_ = train_ids(dataset)
    path = save_video_labels(tmp_path / "part.npz", ids_[1:], audio=np.ones((len(ids_) - 1, C)))
    config = resolve_config("han", overrides=[f"data.root={dataset}", f"data.video_labels={path}"])
    splits = load_splits(config, ("train",), progress=False, dense=False)
    with pytest.raises(ValueError, match=re.escape(f"no labels for 1 of the {len(ids_)} train")):
        Method(config, splits["train"])
    assert Method(config, None).video_labels is None  # evaluation reads no label file


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "absent.npz", "data.video_labels: video-level label file not found"),
        (
            lambda tmp: save_pseudo_labels(tmp / "s.npz", ids(2), audio=np.ones((2, T, C))),
            "segment-level labels, where video-level ones are needed",
        ),
    ],
)
def test_bad_label_files_are_config_errors(dataset, tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert train(dataset, tmp_path / "run", f"data.video_labels={path}") == 2
    error = capsys.readouterr().err
    assert error.startswith("avvp train: error: ") and message in error and str(path) in error


def test_methods_that_ignore_the_file_refuse_it(dataset, tmp_path, capsys):
    path = weak_as_file(dataset, tmp_path / "weak.npz")
    flags = [f"data.video_labels={path}"]
    assert train(dataset, tmp_path / "run", *flags, method="ppl") == 2
    error = capsys.readouterr().err
    assert "data.video_labels: method ppl does not train on video-level label files" in error
    assert "(methods that do: han, poibin, vplan)" in error


def test_resume_refuses_a_label_file_that_changed(dataset, tmp_path, monkeypatch, capsys):
    from avvp.training import trainer as trainer_module

    path = weak_as_file(dataset, tmp_path / "weak.npz")
    original = trainer_module.Trainer._run_epoch

    def run_then_die(self, writer):
        original(self, writer)
        raise KeyboardInterrupt("simulated kill after epoch 1")

    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", run_then_die)
    assert train(dataset, tmp_path / "run", f"data.video_labels={path}") == 130
    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", original)
    weak_as_file(dataset, path, streams=("audio",))  # the same path, other labels
    assert train(dataset, tmp_path / "run", f"data.video_labels={path}") == 2
    assert f"data.video_labels {path} changed since this run started" in capsys.readouterr().err


def test_poibin_on_a_file_of_the_weak_labels_trains_exactly_as_none(dataset, tmp_path):
    # Joint counting: the file's union is the weak labels. (Per-stream counting takes a file's
    # streams as each stream's targets, which the weak labels alone never claim.)
    labels = weak_as_file(dataset, tmp_path / "weak.npz")
    flags = ["method.warmup_epochs=1"]
    assert train(dataset, tmp_path / "plain", *flags, method="poibin") == 0
    file_flags = [*flags, f"data.video_labels={labels}"]
    assert train(dataset, tmp_path / "file", *file_flags, method="poibin") == 0
    plain = torch.load(tmp_path / "plain" / "best.pt", weights_only=False)
    with_file = torch.load(tmp_path / "file" / "best.pt", weights_only=False)
    for name, value in plain["model"].items():
        assert torch.equal(value, with_file["model"][name]), name


def test_poibin_counts_each_streams_labels_with_per_stream_counting(dataset, tmp_path):
    from avvp.methods.poibin import PoiBin
    from avvp.training.data import load_splits

    weak = LLPAnnotations(dataset).weak("train")
    audio = weak.labels.astype(bool)
    visual = audio.copy()
    visual[:, :12] = False  # some classes heard, never seen
    path = save_video_labels(tmp_path / "ma.npz", list(weak.video_ids), audio=audio, visual=visual)
    for counting, expected in (
        ("per_stream", np.stack((audio, visual), axis=1)),
        ("joint", (audio | visual)[:, None, :]),
    ):
        overrides = [*TINY, f"data.video_labels={path}", f"method.counting={counting}"]
        overrides.append("method.warmup_epochs=1")
        overrides = [item for item in overrides if "=" in item and not item.startswith("--")]
        config = resolve_config("poibin", None, [f"data.root={dataset}", *overrides])
        train_data = load_splits(config, ("train",), progress=False)["train"]
        method = PoiBin(config, train_data)
        rows = [weak.video_ids.index(key) for key in train_data.video_ids]
        np.testing.assert_array_equal(method.positive.numpy(), expected[rows])
