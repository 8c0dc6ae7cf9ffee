"""Pseudo-label files, PLG, simulated CLIP and ``avvp pseudo-labels``, against slow references."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from avvp.classes import CLASSES, NUM_CLASSES, NUM_SEGMENTS
from avvp.cli import main
from avvp.data import synthetic
from avvp.data.annotations import LLPAnnotations
from avvp.data.synthetic import (
    CLIP_SCORES,
    MANIFEST,
    ClipSimulation,
    FrameTruth,
    frame_truth,
    generate,
    load_clip_scores,
    load_hidden_train_labels,
    sample_builtin_labels,
    simulate_clip_scores,
    write_clip_scores,
)
from avvp.evaluation import evaluate
from avvp.pseudo_labels import (
    PseudoLabels,
    load_pseudo_labels,
    plg_labels,
    save_pseudo_labels,
    video_level,
    video_precision_recall,
)

T, C = NUM_SEGMENTS, NUM_CLASSES


def ids(count: int) -> list[str]:
    return [f"video{index:06d}" for index in range(count)]


# ---- PLG and video level -----------------------------------------------------------------------


def naive_plg(scores: np.ndarray, weak: np.ndarray, threshold: float) -> np.ndarray:
    out = np.zeros(scores.shape, dtype=bool)
    for v in range(scores.shape[0]):
        for t in range(scores.shape[1]):
            for c in range(scores.shape[2]):
                out[v, t, c] = bool(scores[v, t, c] >= threshold and weak[v, c] == 1)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_plg_labels_match_a_loop(seed):
    rng = np.random.default_rng(seed)
    scores = rng.dirichlet(np.full(C, 0.3), size=(7, T)).astype(np.float32)
    scores[0, 0, :3] = 0.04  # exactly at the threshold: kept (>=)
    weak = (rng.random((7, C)) < 0.3).astype(np.uint8)
    weak[0, :3] = 1
    for threshold in (0.04, 0.1, 0.5):
        expected = naive_plg(scores, weak, np.float32(threshold))
        np.testing.assert_array_equal(plg_labels(scores, weak, np.float32(threshold)), expected)
    assert plg_labels(scores, weak)[0, 0, :3].all()


def test_plg_labels_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"weak labels have shape \(3, 25\)"):
        plg_labels(np.zeros((2, T, C)), np.zeros((3, C)))
    with pytest.raises(ValueError, match="scores must be"):
        plg_labels(np.zeros((2, C)), np.zeros((2, C)))


def test_video_level_is_the_or_over_segments():
    rng = np.random.default_rng(0)
    binary = rng.random((6, T, C)) < 0.05
    soft = rng.random((6, T, C)).astype(np.float32)
    expected_binary = np.zeros((6, C), dtype=bool)
    expected_soft = np.zeros((6, C), dtype=np.float32)
    for v in range(6):
        for c in range(C):
            expected_binary[v, c] = any(binary[v, t, c] for t in range(T))
            expected_soft[v, c] = max(soft[v, t, c] for t in range(T))
    np.testing.assert_array_equal(video_level(binary), expected_binary)
    np.testing.assert_array_equal(video_level(soft), expected_soft)


def test_video_precision_recall_matches_a_loop():
    rng = np.random.default_rng(1)
    predicted, truth = rng.random((40, C)) < 0.1, rng.random((40, C)) < 0.1
    predicted[0], truth[1] = False, False  # empty rows score 0, as in the paper's Table I
    precisions, recalls = [], []
    for p, g in zip(predicted, truth, strict=True):
        hits = sum(1 for c in range(C) if p[c] and g[c])
        precisions.append(hits / p.sum() if p.sum() else 0.0)
        recalls.append(hits / g.sum() if g.sum() else 0.0)
    numbers = video_precision_recall(predicted, truth)
    assert numbers["precision"] == pytest.approx(100 * np.mean(precisions))
    assert numbers["recall"] == pytest.approx(100 * np.mean(recalls))
    hits = (predicted & truth).sum()
    assert numbers["pooled_precision"] == pytest.approx(100 * hits / predicted.sum())
    assert numbers["pooled_recall"] == pytest.approx(100 * hits / truth.sum())


# ---- the file format ---------------------------------------------------------------------------


def test_round_trip_keeps_binary_and_soft_labels(tmp_path):
    rng = np.random.default_rng(2)
    names = ids(5)
    audio = rng.random((5, T, C)) < 0.2
    visual = rng.random((5, T, C)).astype(np.float32)
    path = save_pseudo_labels(tmp_path / "labels.npz", names, audio=audio, visual=visual)
    labels = load_pseudo_labels(path)
    assert labels.video_ids == tuple(names)
    assert labels.audio.dtype == np.float32 and labels.visual.dtype == np.float32
    np.testing.assert_array_equal(labels.audio, audio.astype(np.float32))
    np.testing.assert_array_equal(labels.visual, visual)
    with np.load(path) as stored:
        assert stored["audio"].dtype == np.bool_  # binary labels are stored compactly
        assert list(stored["classes"]) == list(CLASSES)
    only_visual = load_pseudo_labels(save_pseudo_labels(tmp_path / "v.npz", names, visual=visual))
    assert only_visual.audio is None and set(only_visual.streams) == {"visual"}


def test_aligned_reorders_and_subsets(tmp_path):
    rng = np.random.default_rng(3)
    names = ids(6)
    visual = rng.random((6, T, C)).astype(np.float32)
    labels = load_pseudo_labels(save_pseudo_labels(tmp_path / "l.npz", names, visual=visual))
    wanted = [names[4], names[0], names[5]]
    aligned = labels.aligned(wanted)
    assert aligned.video_ids == tuple(wanted)
    for row, identifier in enumerate(wanted):
        np.testing.assert_array_equal(aligned.visual[row], visual[names.index(identifier)])
    via_load = load_pseudo_labels(tmp_path / "l.npz", wanted)
    np.testing.assert_array_equal(via_load.visual, aligned.visual)


def test_aligned_names_the_missing_ids(tmp_path):
    path = save_pseudo_labels(tmp_path / "l.npz", ids(2), visual=np.zeros((2, T, C), bool))
    wanted = [*ids(2), *[f"missing{index:04d}" for index in range(8)]]
    with pytest.raises(ValueError) as error:
        load_pseudo_labels(path, wanted)
    message = str(error.value)
    assert str(path) in message and "8 of the 10 videos" in message
    assert "'missing0000'" in message and "(8 in all)" in message


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def good_arrays(videos: int = 3) -> dict[str, np.ndarray]:
    return {
        "video_ids": np.array(ids(videos)),
        "classes": np.array(CLASSES),
        "visual": np.zeros((videos, T, C), dtype=np.float32),
    }


def bad_nan() -> dict:
    arrays = good_arrays()
    arrays["visual"][1, 7, 2] = np.nan
    return arrays


def bad_range() -> dict:
    arrays = good_arrays()
    arrays["visual"][2, 4, 0] = 1.5
    return arrays


def bad_classes() -> dict:
    names = list(CLASSES)
    names[3], names[4] = names[4], names[3]
    return {**good_arrays(), "classes": np.array(names)}


def bad_duplicates() -> dict:
    return {**good_arrays(), "video_ids": np.array(["a" * 11, "b" * 11, "a" * 11])}


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({k: v for k, v in good_arrays().items() if k != "classes"}, "missing 'classes'"),
        ({k: v for k, v in good_arrays().items() if k != "video_ids"}, "missing 'video_ids'"),
        ({k: v for k, v in good_arrays().items() if k != "visual"}, "no 'audio' or 'visual'"),
        (
            {**good_arrays(), "visual": np.zeros((3, 8, C))},
            r"array 'visual' has shape \(3, 8, 25\), expected .* \(3, 10, 25\)",
        ),
        (
            {**good_arrays(), "audio": np.zeros((2, T, C))},
            r"array 'audio' has shape \(2, 10, 25\)",
        ),
        (bad_nan(), r"non-finite value \(nan\) at video 'video000001' \(row 1\), segment 7"),
        (bad_range(), r"outside \[0, 1\] \(1.5\) at video 'video000002' \(row 2\), segment 4"),
        (bad_classes(), "at position 3: 'Cat', expected 'Dog'"),
        ({**good_arrays(), "classes": np.array(CLASSES[:24])}, "has 24 names"),
        (bad_duplicates(), r"duplicate video ids .*'aaaaaaaaaaa' \(rows 0 and 2\)"),
        ({**good_arrays(), "video_ids": np.arange(3)}, "'video_ids' must be a 1-D array of str"),
    ],
)
def test_load_names_what_is_wrong(tmp_path, arrays, message):
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message) as error:
        load_pseudo_labels(path)
    assert str(path) in str(error.value)


def test_load_rejects_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pseudo-label file not found: .*nothing\.npz"):
        load_pseudo_labels(tmp_path / "nothing.npz")
    text = tmp_path / "text.npz"
    text.write_text("filename\tevent_labels\n")
    with pytest.raises(ValueError, match=re.escape(f"{text}: not a readable .npz")):
        load_pseudo_labels(text)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros((3, T, C)))
    with pytest.raises(ValueError, match=re.escape(f"{single}: a single .npy array")):
        load_pseudo_labels(single)


def test_save_validates_before_writing(tmp_path):
    path = tmp_path / "labels.npz"
    with pytest.raises(ValueError, match=r"array 'visual' has shape \(2, 10, 25\)"):
        save_pseudo_labels(path, ids(3), visual=np.zeros((2, T, C)))
    with pytest.raises(ValueError, match="give audio and/or visual"):
        save_pseudo_labels(path, ids(3))
    assert not path.exists()


# ---- simulated CLIP ----------------------------------------------------------------------------


def builtin_truth(videos: int, seed: int = 0) -> tuple[FrameTruth, np.ndarray]:
    """Visual labels with LLP statistics, random scenes, and their weak labels."""
    rng = np.random.default_rng(seed)
    audio, visual = sample_builtin_labels(rng, videos)
    scenes = rng.integers(12, size=videos)
    weak = audio.any(axis=1) | visual.any(axis=1)
    return FrameTruth(tuple(ids(videos)), visual, scenes), weak


def test_simulated_scores_are_deterministic_softmax_rows():
    truth, _ = builtin_truth(40)
    preferred = np.arange(C) % 12
    first = simulate_clip_scores(truth, preferred, seed=1)
    again = simulate_clip_scores(truth, preferred, seed=1)
    other = simulate_clip_scores(truth, preferred, seed=2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.dtype == np.float32 and first.shape == (40, T, C)
    assert (first >= 0).all() and (first <= 1).all()
    np.testing.assert_allclose(first.sum(axis=-1), 1.0, atol=1e-5)


def test_simulated_scores_of_a_video_do_not_depend_on_the_others():
    truth, _ = builtin_truth(20)
    preferred = np.arange(C) % 12
    whole = simulate_clip_scores(truth, preferred, seed=0)
    rows = [3, 11, 7]
    part = FrameTruth(
        tuple(truth.video_ids[i] for i in rows), truth.visual[rows], truth.scenes[rows]
    )
    np.testing.assert_array_equal(simulate_clip_scores(part, preferred, seed=0), whole[rows])


def plg_segment_f1(quality: float, truth: FrameTruth, weak: np.ndarray) -> float:
    scores = simulate_clip_scores(truth, np.arange(C) % 12, 0, ClipSimulation(quality=quality))
    labels = plg_labels(scores, weak)
    return evaluate(labels, labels, truth.visual, truth.visual)["segment"]["visual"]


def test_higher_quality_gives_better_plg_labels():
    truth, weak = builtin_truth(300)
    f1 = [plg_segment_f1(quality, truth, weak) for quality in (0.0, 0.3, 1.0, 3.0)]
    assert f1 == sorted(f1) and f1[-1] - f1[0] > 20, f1


def test_quality_must_be_non_negative():
    with pytest.raises(ValueError, match="CLIP quality must be a finite number >= 0"):
        ClipSimulation(quality=-1.0)


def test_replayed_scenes_are_the_rendered_ones(tmp_path, monkeypatch):
    rendered: list[int] = []
    draw = synthetic.FeatureModel.draw_scene

    def recording(self, audio, visual, rng):
        rendered.append(draw(self, audio, visual, rng))
        return rendered[-1]

    monkeypatch.setattr(synthetic.FeatureModel, "draw_scene", recording)
    root = generate(tmp_path / "d", videos=15, seed=4, progress=False, clip_quality=None)
    monkeypatch.undo()
    truth, _ = frame_truth(root)
    replayed = np.concatenate([truth[split].scenes for split in ("train", "val", "test")])
    np.testing.assert_array_equal(replayed, rendered)  # features are rendered in split order


def test_dataset_scores_cover_every_split_in_order(dataset):
    annotations = LLPAnnotations(dataset)
    hidden = load_hidden_train_labels(dataset)
    for split in ("train", "val", "test"):
        video_ids, scores = load_clip_scores(dataset, split)
        assert video_ids == annotations.weak(split).video_ids
        assert scores.shape == (len(video_ids), T, C)
    with np.load(dataset / CLIP_SCORES) as stored:
        assert float(stored["quality"]) == synthetic.DEFAULT_CLIP_QUALITY
    # CLIP sees frames: visible classes mostly pass PLG's threshold, the others mostly not.
    _, train = load_clip_scores(dataset, "train")
    passed = train >= 0.04
    assert passed[hidden.visual].mean() > 0.6 > 0.2 > passed[~hidden.visual].mean()


# ---- the commands ------------------------------------------------------------------------------


def test_commands_end_to_end(dataset, tmp_path, capsys):
    out = tmp_path / "plg.npz"
    # The fixture already has default scores; writing them again leaves it as other tests expect.
    assert main(["pseudo-labels", "simulate-clip", "--data", str(dataset)]) == 0
    flags = ["--data", str(dataset), "--split", "val", "--simulated", "--out", str(out)]
    assert main(["pseudo-labels", "clip", *flags]) == 0
    annotations = LLPAnnotations(dataset)
    weak = annotations.weak("val")
    labels = load_pseudo_labels(out, weak.video_ids)
    assert labels.audio is None
    _, scores = load_clip_scores(dataset, "val")
    np.testing.assert_array_equal(labels.visual, naive_plg(scores, weak.labels, 0.04))

    report = tmp_path / "score.json"
    score = ["pseudo-labels", "score", str(out), "--data", str(dataset), "--split", "val"]
    capsys.readouterr()
    assert main([*score, "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "labels visual" in printed and "weak visual" in printed
    numbers = json.loads(report.read_text())
    assert numbers["file"] == str(out) and numbers["split"] == "val"
    assert numbers["videos"] == len(weak)
    assert set(numbers["labels"]) == {"visual"}
    assert set(numbers["weak"]) == {"audio", "visual", "audio_visual"}
    truth = annotations.dense("val")
    binary = labels.visual.astype(bool)
    reference = evaluate(truth.audio, binary, truth.audio, truth.visual)
    assert numbers["labels"]["visual"]["segment_f1"] == pytest.approx(
        reference["segment"]["visual"]
    )
    assert numbers["labels"]["visual"]["event_f1"] == pytest.approx(reference["event"]["visual"])
    assert numbers["labels"]["visual"]["video"] == pytest.approx(
        video_precision_recall(binary.any(axis=1), truth.visual.any(axis=1))
    )
    broadcast = np.repeat(weak.labels.astype(bool)[:, None, :], T, axis=1)
    weak_reference = evaluate(broadcast, broadcast, truth.audio, truth.visual)
    assert numbers["weak"]["audio_visual"]["segment"]["type"] == pytest.approx(
        weak_reference["segment"]["type"]
    )
    assert numbers["weak"]["visual"]["video"]["precision"] == pytest.approx(
        video_precision_recall(weak.labels, truth.visual.any(axis=1))["precision"]
    )

    train_out = tmp_path / "train.npz"
    train_flags = ["--data", str(dataset), "--simulated", "--out", str(train_out)]
    assert main(["pseudo-labels", "clip", *train_flags]) == 0  # --split train by default
    score_train = ["pseudo-labels", "score", str(train_out), "--data", str(dataset)]
    assert main([*score_train, "--split", "train"]) == 0  # against the hidden labels
    capsys.readouterr()
    assert main(score_train) == 0  # the split the file holds by default
    assert f"{train_out} on train (" in capsys.readouterr().out
    assert main([*score_train, "--split", "val"]) == 2  # not the videos of the file
    assert capsys.readouterr().err == (
        f"avvp pseudo-labels: error: {train_out} has no labels for {len(weak)} of the "
        f"{len(weak)} val videos; pass --split train (the split the file holds), or make labels "
        "of val with `avvp pseudo-labels clip --split val`\n"
    )


def readme_commands(marker: str) -> list[str]:
    """The README's command lines that mention ``marker``, without their comments."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    lines = [line.split("#")[0].strip() for line in readme.splitlines()]
    return [line for line in lines if line.startswith("avvp ") and marker in line]


def test_the_readme_pseudo_label_sequence_runs_as_written(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the commands write their files where they are run
    commands = readme_commands("SYNTH_DIR")
    assert [shlex.split(line)[1:3] for line in commands] == [
        ["pseudo-labels", "simulate-clip"],
        ["pseudo-labels", "clip"],
        ["pseudo-labels", "score"],
    ]
    for line in commands:
        argv = [str(dataset) if word == "SYNTH_DIR" else word for word in shlex.split(line)[1:]]
        assert main(argv) == 0, capsys.readouterr().err
    assert "PLG-val.npz on val (" in capsys.readouterr().out


def test_simulate_clip_on_a_dataset_made_before_it(tmp_path):
    old = generate(tmp_path / "old", videos=20, seed=3, progress=False, clip_quality=None)
    assert not (old / CLIP_SCORES).exists()
    features = {path: path.stat().st_mtime_ns for path in (old / "feats").rglob("*.npy")}
    assert main(["pseudo-labels", "simulate-clip", "--data", str(old), "--quality", "0.5"]) == 0
    new = generate(tmp_path / "new", videos=20, seed=3, progress=False, clip_quality=0.5)
    for split in ("train", "val", "test"):
        before, after = load_clip_scores(old, split), load_clip_scores(new, split)
        assert before[0] == after[0]
        np.testing.assert_array_equal(before[1], after[1])
    assert features == {path: path.stat().st_mtime_ns for path in features}


def test_synth_accepts_an_existing_dataset_and_only_writes_its_scores(tmp_path):
    root = generate(tmp_path / "d", videos=12, seed=2, progress=False, clip_quality=None)
    manifest = (root / MANIFEST).read_bytes()
    flags = ["synth", "--out", str(root), "--videos", "12", "--seed", "2", "--no-progress"]
    assert main(flags) == 0
    assert (root / MANIFEST).read_bytes() == manifest
    written = (root / CLIP_SCORES).stat().st_mtime_ns
    assert main(flags) == 0  # same quality: scores kept
    assert (root / CLIP_SCORES).stat().st_mtime_ns == written
    assert main([*flags, "--clip-quality", "0.5"]) == 0
    with np.load(root / CLIP_SCORES) as stored:
        assert float(stored["quality"]) == 0.5
    assert (root / MANIFEST).read_bytes() == manifest


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["clip", "--frames", "F", "--out", "x.npz"], "need --checkpoint"),
        (["clip", "--simulated", "--checkpoint", "c", "--out", "x.npz"], "--simulated reads"),
        (["simulate-clip", "--quality", "-1"], "CLIP quality must be"),
    ],
)
def test_commands_report_bad_arguments(dataset, capsys, arguments, message):
    action, *rest = arguments
    assert main(["pseudo-labels", action, "--data", str(dataset), *rest]) == 2
    assert message in capsys.readouterr().err


def test_clip_without_simulated_scores_says_how_to_make_them(tmp_path, capsys):
    root = generate(tmp_path / "d", videos=12, seed=1, progress=False, clip_quality=None)
    flags = ["--data", str(root), "--simulated", "--out", str(tmp_path / "x.npz")]
    assert main(["pseudo-labels", "clip", *flags]) == 2
    assert "avvp pseudo-labels simulate-clip" in capsys.readouterr().err


def test_simulate_clip_needs_a_synthetic_dataset(tmp_path, capsys):
    assert main(["pseudo-labels", "simulate-clip", "--data", str(tmp_path)]) == 2
    assert "is not a synthetic dataset" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        write_clip_scores(tmp_path)


def test_pseudo_labels_dataclass_streams():
    visual = np.zeros((2, T, C), dtype=np.float32)
    labels = PseudoLabels(("a" * 11, "b" * 11), None, visual)
    assert len(labels) == 2 and list(labels.streams) == ["visual"]


def test_clip_without_the_clip_extra_says_what_to_install(dataset, tmp_path, capsys, monkeypatch):
    for module in ("av", "transformers"):
        monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like
    flags = ["--data", str(dataset), "--split", "val", "--frames", str(tmp_path)]
    flags += ["--checkpoint", str(tmp_path), "--out", str(tmp_path / "x.npz")]
    assert main(["pseudo-labels", "clip", *flags]) == 2  # an error line, not a traceback
    assert "install avvp[clip]" in capsys.readouterr().err
