"""The synthetic LLP generator: layout, statistics, determinism, resume, annotation-driven mode."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from avvp.classes import CLASSES, NUM_CLASSES
from avvp.cli import main
from avvp.data.annotations import SPLITS, LLPAnnotations
from avvp.data.synthetic import (
    AUDIO,
    LLP_CLASS_STATISTICS,
    MANIFEST,
    STARTED,
    VISUAL,
    FeatureModel,
    GeneratorConfig,
    annotation_driven_labels,
    builtin_dataset,
    class_frequencies,
    generate,
    llp_class_table,
    load_hidden_train_labels,
    read_manifest,
    sample_builtin_labels,
    sample_stream_pattern,
    split_sizes,
    with_label_model,
)
from avvp.evaluation import evaluate

LLP_ANNOTATIONS = Path(__file__).resolve().parents[1].parent / "shared" / "llp" / "annotations"
needs_llp = pytest.mark.skipif(
    not LLP_ANNOTATIONS.is_dir(), reason=f"real LLP annotations not found at {LLP_ANNOTATIONS}"
)
SHAPES = {"vggish": (10, 128), "res152": (80, 2048), "r2plus1d_18": (10, 512)}


@pytest.fixture(scope="module")
def builtin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("builtin")
    assert (
        main(["synth", "--out", str(root), "--videos", "40", "--seed", "3", "--no-progress"]) == 0
    )
    return root


def quiet_annotations(root: Path, audio_gt: str = "2024") -> LLPAnnotations:
    annotations = LLPAnnotations(root, audio_gt, warn=False)
    for split in ("val", "test"):
        annotations.dense(split)
    return annotations


def runs_of(pattern: np.ndarray) -> int:
    return int(np.sum(np.diff(np.concatenate(([0], pattern.astype(int)))) == 1))


# --- built-in mode --------------------------------------------------------------------------


def test_builtin_writes_the_official_layout(builtin):
    annotations = quiet_annotations(builtin)
    sizes = {split: len(annotations.weak(split)) for split in SPLITS}
    assert sizes == {"train": 28, "val": 6, "test": 6}
    for split in SPLITS:
        for identifier in annotations.weak(split).video_ids:
            for name, shape in SHAPES.items():
                array = np.load(builtin / "feats" / name / f"{identifier}.npy")
                assert array.shape == shape and array.dtype == np.float32, (name, identifier)
                assert np.isfinite(array).all()
    assert (np.load(builtin / "feats" / "res152" / f"{identifier}.npy") >= 0).all()


def test_builtin_weak_labels_are_the_union_of_the_dense_labels(builtin):
    annotations = quiet_annotations(builtin)
    for split in ("val", "test"):
        dense = annotations.dense(split)
        union = dense.audio.any(axis=1) | dense.visual.any(axis=1)
        np.testing.assert_array_equal(annotations.weak(split).labels.astype(bool), union)
        assert dense.ignored_rows == ()
    hidden = load_hidden_train_labels(builtin)
    union = hidden.audio.any(axis=1) | hidden.visual.any(axis=1)
    np.testing.assert_array_equal(annotations.weak("train").labels.astype(bool), union)


def test_pre2024_ground_truth_exists_and_equals_the_2024_one(builtin):
    fixed, old = quiet_annotations(builtin, "2024"), quiet_annotations(builtin, "pre2024")
    np.testing.assert_array_equal(fixed.dense("test").audio, old.dense("test").audio)


def test_real_data_has_no_hidden_labels(tmp_path):
    assert load_hidden_train_labels(tmp_path) is None


def test_global_label_model_statistics_follow_spec_section_2():
    audio, visual = sample_builtin_labels(np.random.default_rng(0), 8_000, label_model="global")
    heard, seen = audio.any(axis=1), visual.any(axis=1)
    present = heard | seen
    cardinality = np.bincount(present.sum(axis=1), minlength=4)[1:] / len(present)
    np.testing.assert_allclose(cardinality, [0.403, 0.588, 0.009], atol=0.01)
    np.testing.assert_allclose(present.mean(axis=0), class_frequencies(), atol=0.015)
    pairs = present.sum()
    shares = np.array([(heard & seen).sum(), (heard & ~seen).sum(), (~heard & seen).sum()])
    np.testing.assert_allclose(shares / pairs, np.array([2054, 1185, 155]) / 3394, atol=0.015)
    assert audio.sum(axis=1)[heard].mean() == pytest.approx(7.0, abs=0.2)
    assert visual.sum(axis=1)[seen].mean() == pytest.approx(8.1, abs=0.2)


def test_per_class_label_model_follows_llp_class_by_class():
    audio, visual = sample_builtin_labels(np.random.default_rng(0), 8_000, label_model="per_class")
    heard, seen = audio.any(axis=1), visual.any(axis=1)
    present = heard | seen
    cardinality = np.bincount(present.sum(axis=1), minlength=4)[1:] / len(present)
    np.testing.assert_allclose(cardinality, [0.403, 0.588, 0.009], atol=0.01)
    table = llp_class_table()
    np.testing.assert_allclose(present.mean(axis=0), table[:, :2].sum(axis=1) / 10_000, atol=0.015)
    single = present.sum(axis=1) == 1
    assert not present[single, CLASSES.index("Speech")].any()  # never alone in LLP train either
    pairs = present.sum(axis=0)
    drawn = np.stack([(heard & ~seen).sum(0), (seen & ~heard).sum(0), (heard & seen).sum(0)], 1)
    real = table[:, 2:] / table[:, 2:].sum(axis=1, keepdims=True)
    # Kinds within 4 standard errors of the real proportions, class by class.
    tolerance = 4 * np.sqrt(real * (1 - real) / pairs[:, None]) + 0.005
    assert (np.abs(drawn / pairs[:, None] - real) <= tolerance).all()
    speech = CLASSES.index("Speech")
    assert drawn[speech, 0] / pairs[speech] == pytest.approx(752 / 971, abs=0.02)
    # What the per-class kinds change per video: LLP val+test has no visible event in 10.3 % of
    # its videos, the global model in 21 %.
    assert (~seen.any(axis=1)).mean() == pytest.approx(0.124, abs=0.01)
    assert audio.sum(axis=1)[heard].mean() == pytest.approx(7.0, abs=0.2)
    assert visual.sum(axis=1)[seen].mean() == pytest.approx(8.1, abs=0.2)


def test_unknown_label_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="label model must be one of"):
        sample_builtin_labels(np.random.default_rng(0), 3, label_model="uniform")
    with pytest.raises(ValueError, match="--label-model must be one of"):
        generate(tmp_path / "x", videos=3, label_model="uniform", progress=False)
    assert not (tmp_path / "x").exists()


def recount_llp_class_statistics(folder: Path) -> dict[str, tuple[int, ...]]:
    """LLP_CLASS_STATISTICS counted from the CSVs with the csv module alone."""

    def rows(name: str) -> list[dict[str, str]]:
        with (folder / name).open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle, delimiter="\t"))

    counts = {name: [0] * 5 for name in CLASSES}
    for row in rows("AVVP_train.csv"):
        labels = set(row["event_labels"].split(","))  # a class named twice is one label
        for name in labels:
            counts[name][0 if len(labels) == 1 else 1] += 1
    streams = []
    for name in ("AVVP_eval_audio.csv", "AVVP_eval_visual.csv"):
        held = set()
        for row in rows(name):
            if int(row["offset"]) > int(row["onset"]):  # the evaluation's valid rows
                held.add((row["filename"], row["event_labels"]))
        streams.append(held)
    audible, visible = streams
    for name in ("AVVP_val_pd.csv", "AVVP_test_pd.csv"):
        for row in rows(name):
            for label in set(row["event_labels"].split(",")):
                pair = (row["filename"], label)
                if pair in audible or pair in visible:
                    kind = 4 if pair in audible and pair in visible else 2 if pair in audible else 3
                    counts[label][kind] += 1
    return {name: tuple(values) for name, values in counts.items()}


@needs_llp
def test_llp_class_statistics_are_the_counts_of_the_real_annotations():
    assert recount_llp_class_statistics(LLP_ANNOTATIONS) == LLP_CLASS_STATISTICS
    assert list(LLP_CLASS_STATISTICS) == list(CLASSES)


def label_files_digest(root: Path) -> str:
    names = ("AVVP_train.csv", "AVVP_val_pd.csv", "AVVP_eval_audio.csv", "AVVP_eval_visual.csv")
    return hashlib.sha256(b"".join((root / name).read_bytes() for name in names)).hexdigest()


def make_pre_label_model_set(root: Path, videos: int, seed: int) -> Path:
    """A built-in set as avvp wrote it before label models existed: a global one whose
    manifest has no label_model."""
    generate(
        root, videos=videos, seed=seed, progress=False, clip_quality=None, label_model="global"
    )
    manifest = json.loads((root / MANIFEST).read_text())
    del manifest["settings"]["label_model"]
    (root / MANIFEST).write_text(json.dumps(manifest))
    return root


def test_global_label_model_makes_the_labels_avvp_made_before_label_models(tmp_path):
    # Digest of the label files that `generate(videos=12, seed=5)` wrote before label models
    # existed (avvp at e370a9d); the global model must keep making them, draw for draw.
    root = generate(
        tmp_path / "g", videos=12, seed=5, progress=False, clip_quality=None, label_model="global"
    )
    assert label_files_digest(root) == (
        "a10765236346dc1e18fb99aa1e34f076f288b965d33601890c2eb7db2e607602"
    )
    assert read_manifest(root)["settings"]["label_model"] == "global"
    per_class = generate(tmp_path / "p", videos=12, seed=5, progress=False, clip_quality=None)
    assert read_manifest(per_class)["settings"]["label_model"] == "per_class"
    assert label_files_digest(per_class) != label_files_digest(root)


def test_a_set_made_before_label_models_is_read_as_global_and_never_mixed(tmp_path, capsys):
    old = make_pre_label_model_set(tmp_path / "old", videos=12, seed=2)
    assert with_label_model(read_manifest(old)["settings"])["label_model"] == "global"
    before = label_files_digest(old)
    flags = ["synth", "--out", str(old), "--videos", "12", "--seed", "2", "--no-progress"]
    assert main(flags) == 2  # the default label model is per_class: refused, not regenerated
    error = capsys.readouterr().err
    assert "label model 'global', not 'per_class': pass --label-model global" in error, error
    assert main([*flags, "--label-model", "global"]) == 0
    assert "builtin (global label model) synthetic LLP" in capsys.readouterr().out
    assert label_files_digest(old) == before
    assert "label_model" not in read_manifest(old)["settings"]  # read, not rewritten


def test_label_model_is_for_builtin_labels_only(builtin, tmp_path, capsys):
    annotations = annotation_copy(builtin, tmp_path / "llp")
    flags = ["synth", "--out", str(tmp_path / "out"), "--annotations", str(annotations)]
    assert main([*flags, "--label-model", "global"]) == 2
    assert "--label-model applies to built-in labels only" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_builtin_home_gets_the_per_class_set_beside_an_old_global_one(tmp_path, monkeypatch):
    monkeypatch.setenv("AVVP_HOME", str(tmp_path / "home"))
    global_root = builtin_dataset(videos=3, progress=False, label_model="global")
    old = make_pre_label_model_set(tmp_path / "old", videos=3, seed=0)
    # What an earlier avvp left in the home folder under the name it still has.
    for path in sorted(global_root.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    old.rename(global_root)
    before = label_files_digest(global_root)
    assert builtin_dataset(videos=3, progress=False, label_model="global") == global_root
    root = builtin_dataset(videos=3, progress=False)
    assert root != global_root and "per_class" in root.name
    assert read_manifest(root)["settings"]["label_model"] == "per_class"
    assert label_files_digest(global_root) == before


@pytest.mark.parametrize("stream", [AUDIO, VISUAL])
def test_stream_patterns_are_nonempty_runs(stream):
    rng = np.random.default_rng(1)
    patterns = [sample_stream_pattern(rng, stream, 10) for _ in range(2000)]
    assert all(pattern.any() for pattern in patterns)
    counts = np.bincount([runs_of(pattern) for pattern in patterns])
    assert counts[1] > counts[2] > counts[3] > 0 and len(counts) == 4


def test_same_seed_same_dataset_other_seed_other_dataset(tmp_path):
    first = generate(tmp_path / "a", videos=12, seed=5, progress=False)
    second = generate(tmp_path / "b", videos=12, seed=5, progress=False)
    third = generate(tmp_path / "c", videos=12, seed=6, progress=False)
    for name in ("AVVP_train.csv", "AVVP_eval_visual.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
        assert (first / name).read_bytes() != (third / name).read_bytes()
    for path in sorted((first / "feats").rglob("*.npy")):
        np.testing.assert_array_equal(np.load(path), np.load(second / path.relative_to(first)))


def test_killed_generation_resumes_to_the_same_files(tmp_path):
    reference = generate(tmp_path / "reference", videos=12, seed=2, progress=False)
    killed = generate(tmp_path / "killed", videos=12, seed=2, progress=False)
    # A kill leaves the marker written first and not the manifest written last.
    (killed / MANIFEST).rename(killed / STARTED)
    removed = sorted((killed / "feats" / "res152").glob("*.npy"))[:5]
    for path in removed:
        path.unlink()
    kept = killed / "feats" / "vggish" / removed[0].name
    kept_mtime = kept.stat().st_mtime_ns
    with pytest.raises(ValueError, match="other settings"):
        generate(killed, videos=12, seed=3, progress=False)
    generate(killed, videos=12, seed=2, progress=False)
    assert (killed / MANIFEST).is_file() and not (killed / STARTED).exists()
    for path in sorted((reference / "feats").rglob("*.npy")):
        np.testing.assert_array_equal(np.load(path), np.load(killed / path.relative_to(reference)))
    assert kept.stat().st_mtime_ns != kept_mtime  # a video with a missing file is redone whole


def test_generating_the_same_dataset_again_reuses_it(tmp_path):
    root = generate(tmp_path / "d", videos=12, seed=2, progress=False)
    manifest = (root / MANIFEST).stat().st_mtime_ns
    assert generate(root, videos=12, seed=2, progress=False) == root
    assert (root / MANIFEST).stat().st_mtime_ns == manifest


def test_refuses_to_overwrite_a_dataset_made_with_other_settings(tmp_path, capsys):
    generate(tmp_path / "d", videos=12, seed=2, progress=False)
    code = main(["synth", "--out", str(tmp_path / "d"), "--videos", "12", "--seed", "3"])
    assert code == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "needs --videos N"),
        (["--videos", "2"], "at least 3"),
        (["--videos", "10", "--difficulty", "-1"], "--difficulty must be >= 0"),
    ],
)
def test_synth_reports_bad_arguments(tmp_path, capsys, flags, message):
    assert main(["synth", "--out", str(tmp_path / "x"), *flags]) == 2
    assert message in capsys.readouterr().err


def segment_probe_accuracy(difficulty: float) -> float:
    """Nearest-class-mean accuracy of vggish segments carrying exactly one audible class."""
    model = FeatureModel(GeneratorConfig(difficulty=difficulty), seed=0)
    rng = np.random.default_rng(0)
    audio, visual = sample_builtin_labels(rng, 400)
    rows, classes = [], []
    for v in range(len(audio)):
        features = model.render(audio[v], visual[v], rng, names=["vggish"])["vggish"]
        single = audio[v].sum(axis=1) == 1
        rows.append(features[single])
        classes.append(audio[v][single].argmax(axis=1))
    x, y = np.concatenate(rows), np.concatenate(classes)
    half = len(x) // 2
    means = np.stack(
        [
            x[:half][y[:half] == c].mean(axis=0)
            if (y[:half] == c).any()
            else np.full(x.shape[1], np.inf)
            for c in range(NUM_CLASSES)
        ]
    )
    distances = ((x[half:, None, :] - means[None]) ** 2).sum(axis=-1)
    return float((distances.argmin(axis=1) == y[half:]).mean())


def test_difficulty_knob_makes_segments_harder_to_classify():
    accuracies = [segment_probe_accuracy(d) for d in (0.0, 1.0, 3.0)]
    assert accuracies[0] > accuracies[1] > accuracies[2], accuracies
    assert accuracies[0] > 0.5


# --- annotation-driven mode -----------------------------------------------------------------


def weak_broadcast_metrics(annotations: LLPAnnotations, split: str, rows=None):
    weak = annotations.weak(split).labels.astype(bool)
    dense = annotations.dense(split)
    audio, visual = dense.audio, dense.visual
    if rows is not None:
        weak, audio, visual = weak[rows], audio[rows], visual[rows]
    pred = np.repeat(weak[:, None, :], 10, axis=1)
    return evaluate(pred, pred, audio, visual)


@needs_llp
def test_annotation_driven_subset_scores_what_the_same_real_videos_score(tmp_path):
    root = generate(tmp_path / "llp", annotations=LLP_ANNOTATIONS, videos=60, progress=False)
    synthetic, real = quiet_annotations(root), quiet_annotations(LLP_ANNOTATIONS)
    for split in ("val", "test"):
        names = synthetic.weak(split).filenames
        rows = [real.weak(split).filenames.index(name) for name in names]
        assert weak_broadcast_metrics(synthetic, split) == weak_broadcast_metrics(real, split, rows)
    train = synthetic.weak("train")
    hidden = load_hidden_train_labels(root)
    union = hidden.audio.any(axis=1) | hidden.visual.any(axis=1)
    real_rows = [real.weak("train").filenames.index(name) for name in train.filenames]
    np.testing.assert_array_equal(union, real.weak("train").labels[real_rows].astype(bool))
    for identifier in train.video_ids:
        assert (root / "feats" / "res152" / f"{identifier}.npy").is_file()


@needs_llp
def test_annotation_driven_full_set_reproduces_the_spec_reference_numbers(tmp_path):
    """With every video, the annotation files are the real ones: SPEC section 3's table holds.

    Features are not written here (7.8 GB at full size); the labels and files are what matter.
    """
    from avvp.data.synthetic import _write_annotation_subset

    real = quiet_annotations(LLP_ANNOTATIONS)
    labels = annotation_driven_labels(real, None, seed=0)
    _write_annotation_subset(real, tmp_path, labels)
    synthetic = quiet_annotations(tmp_path)
    metrics = weak_broadcast_metrics(synthetic, "test")
    segment = [round(metrics["segment"][k], 2) for k in ("audio", "visual", "audio_visual")]
    event = [round(metrics["event"][k], 2) for k in ("type", "event")]
    assert segment == [76.12, 60.35, 52.61]
    assert event == [54.49, 61.60]
    assert len(labels["train"].filenames) == 10_000
    hidden = labels["train"]
    np.testing.assert_array_equal(
        hidden.audio.any(axis=1) | hidden.visual.any(axis=1),
        real.weak("train").labels.astype(bool),
    )


# --- where synth may write ------------------------------------------------------------------


def annotation_copy(source: Path, folder: Path) -> Path:
    """The annotation CSVs of ``source`` copied into ``folder`` (an LLP annotation folder)."""
    folder.mkdir(parents=True)
    for path in source.glob("AVVP_*.csv"):
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_synth_refuses_to_write_into_the_annotation_folder_it_reads(builtin, tmp_path, capsys):
    annotations = annotation_copy(builtin, tmp_path / "llp")
    before = snapshot(annotations)
    outs = [annotations, annotations / "synth", tmp_path]  # same, inside it, around it
    for out in outs:
        assert main(["synth", "--out", str(out), "--annotations", str(annotations)]) == 2
        error = capsys.readouterr().err
        assert "never writes into the annotation folder it reads" in error, error
    # Another spelling of the same folder is the same folder.
    spelled = tmp_path / "llp" / ".." / "llp"
    assert main(["synth", "--out", str(spelled), "--annotations", str(annotations)]) == 2
    assert snapshot(annotations) == before
    assert not (annotations / "synth").exists()


def test_synth_refuses_a_folder_it_did_not_make(builtin, tmp_path, capsys):
    real = annotation_copy(builtin, tmp_path / "real")
    (real / "feats" / "vggish").mkdir(parents=True)
    mine = np.ones((10, 128), np.float32)
    identifier = LLPAnnotations(real).weak("train").video_ids[0]
    np.save(real / "feats" / "vggish" / f"{identifier}.npy", mine)
    before = snapshot(real)
    assert main(["synth", "--out", str(real), "--videos", "40", "--seed", "3"]) == 2
    error = capsys.readouterr().err
    assert f"{real} is not empty and holds no synthetic dataset" in error, error
    assert snapshot(real) == before
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    assert main(["synth", "--out", str(afile), "--videos", "5"]) == 2
    assert f"--out {afile} is a file" in capsys.readouterr().err
    assert afile.read_text() == "mine"


def test_synth_writes_into_an_empty_folder_and_the_builtin_home(tmp_path, monkeypatch):
    from avvp.data.synthetic import builtin_dataset

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["synth", "--out", str(empty), "--videos", "3", "--no-progress"]) == 0
    assert (empty / MANIFEST).is_file()
    monkeypatch.setenv("AVVP_HOME", str(tmp_path / "home"))
    root = builtin_dataset(videos=3, progress=False)
    assert builtin_dataset(videos=3, progress=False) == root
    assert (root / MANIFEST).is_file()


# --- how many videos ------------------------------------------------------------------------


@pytest.mark.parametrize("videos", [*range(3, 41), 97, 1201, 4999, 11_849, 12_345])
def test_builtin_split_sizes_add_up_to_the_videos_asked_for(videos):
    sizes = split_sizes(videos)
    assert sum(sizes.values()) == videos and min(sizes.values()) >= 1, sizes


def test_builtin_dataset_has_exactly_the_videos_asked_for(tmp_path):
    root = generate(tmp_path / "seven", videos=7, seed=1, progress=False, clip_quality=None)
    assert sum(len(LLPAnnotations(root).weak(split)) for split in SPLITS) == 7
    assert len(list((root / "feats" / "vggish").glob("*.npy"))) == 7


@needs_llp
def test_annotation_driven_subsets_have_exactly_the_videos_asked_for():
    real = quiet_annotations(LLP_ANNOTATIONS)
    total = sum(len(real.weak(split)) for split in SPLITS)
    for videos in [*range(3, 41), 60, 97, 1201, 4999, total - 1]:
        labels = annotation_driven_labels(real, videos, seed=0)
        sizes = {split: len(labels[split].filenames) for split in SPLITS}
        assert sum(sizes.values()) == videos and min(sizes.values()) >= 1, (videos, sizes)
    assert (
        sum(len(labels.filenames) for labels in annotation_driven_labels(real, total, 0).values())
        == total
    )
    with pytest.raises(ValueError, match=f"--videos {total + 1}: .* {total:,} videos"):
        annotation_driven_labels(real, total + 1, seed=0)


def test_too_many_videos_is_refused_before_anything_is_written(builtin, tmp_path, capsys):
    annotations = annotation_copy(builtin, tmp_path / "llp")
    out = tmp_path / "out"
    flags = ["synth", "--out", str(out), "--annotations", str(annotations), "--no-progress"]
    assert main([*flags, "--videos", "41"]) == 2
    assert "--videos 41: the annotations in" in capsys.readouterr().err
    assert not out.exists()
    assert main([*flags, "--videos", "11"]) == 0
    assert "train 8, val 2, test 1" in capsys.readouterr().out
