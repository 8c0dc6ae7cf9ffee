"""Video-level per-stream label files: the format, ``avvp pseudo-labels score`` on them, and
training on them with ``data.video_labels``, against slow references."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from naive_eval import naive_evaluate

from avvp.classes import CLASSES, NUM_CLASSES, NUM_SEGMENTS
from avvp.cli import main
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
