"""Loading an LLP-layout split: validation, segment averaging, and the consolidated cache."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from avvp.classes import CLASSES, NUM_CLASSES
from avvp.cli import main
from avvp.data import dataset
from avvp.data.dataset import (
    CacheWarning,
    FeatureError,
    SplitData,
    build_cache,
    cache_dir,
    load_split,
    read_feature_file,
)

DIMS = {"vggish": 128, "res152": 2048, "r2plus1d_18": 512}
FRAMES = {"vggish": 1, "res152": 8, "r2plus1d_18": 1}
VIDEOS = {
    "train": ["a-b_cdefghi_0_10", "-_-_-_-_-_-_30_40", "abcdefghijk_5_15"],
    "val": ["val00000001_0_10", "val-0000_02_10_20"],
    "test": ["1-VMTJRpjbE_150_160", "tst00000001_0_10"],
}
LABELS = {
    "train": ["Speech,Dog", "Clapping", "Car,Cat"],
    "val": ["Speech", "Dog,Banjo"],
    "test": ["Cello", "Speech,Singing"],
}
CSV = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
# (filename, onset, offset, class) rows of the dense ground truth.
AUDIO_ROWS = [
    ("val00000001_0_10", 0, 5, "Speech"),
    ("val-0000_02_10_20", 3, 10, "Dog"),
    ("1-VMTJRpjbE_150_160", 2, 4, "Cello"),
]
VISUAL_ROWS = [("val-0000_02_10_20", 0, 10, "Banjo"), ("tst00000001_0_10", 6, 9, "Singing")]


def write_tsv(path: Path, header: list[str], rows) -> None:
    lines = ["\t".join(header)] + ["\t".join(str(value) for value in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_annotations(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, names in VIDEOS.items():
        write_tsv(
            folder / CSV[split],
            ["filename", "event_labels"],
            zip(names, LABELS[split], strict=True),
        )
    dense_header = ["filename", "onset", "offset", "event_labels"]
    write_tsv(folder / "AVVP_eval_audio.csv", dense_header, AUDIO_ROWS)
    write_tsv(folder / "AVVP_eval_visual.csv", dense_header, VISUAL_ROWS)


def write_features(root: Path, dims=DIMS, frames=FRAMES, seed: int = 0) -> dict:
    """Random float32 files of the official shapes; returns raw[name][filename]."""
    rng = np.random.default_rng(seed)
    raw: dict[str, dict[str, np.ndarray]] = {}
    for name, dim in dims.items():
        (root / "feats" / name).mkdir(parents=True, exist_ok=True)
        raw[name] = {}
        for filename in [name for names in VIDEOS.values() for name in names]:
            array = rng.standard_normal((10 * frames[name], dim)).astype(np.float32)
            np.save(root / "feats" / name / f"{filename[:11]}.npy", array)
            raw[name][filename] = array
    return raw


@pytest.fixture
def llp(tmp_path):
    root = tmp_path / "llp"
    write_annotations(root)
    return root, write_features(root)


def load(root: Path, split: str, use_cache: bool = True, **kwargs) -> SplitData:
    return load_split(
        root,
        split,
        feature_dims=kwargs.pop("dims", DIMS),
        feature_frames=kwargs.pop("frames", FRAMES),
        use_cache=use_cache,
        progress=False,
        **kwargs,
    )


def naive_segments(array: np.ndarray, frames: int) -> np.ndarray:
    """Segment t = the plain mean of rows t*frames .. t*frames + frames - 1, in float64."""
    return np.stack(
        [array[t * frames : (t + 1) * frames].astype(np.float64).mean(axis=0) for t in range(10)]
    )


def feature_path(root: Path, name: str, filename: str) -> Path:
    return root / "feats" / name / f"{filename[:11]}.npy"


def count_reads(monkeypatch) -> dict[str, int]:
    """Count the feature files read from now on (a cache build reads every file of a stale
    array)."""
    counter = {"files": 0}
    original = dataset.read_feature_file

    def counting(*args, **kwargs):
        counter["files"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(dataset, "read_feature_file", counting)
    return counter


@pytest.fixture
def reads(monkeypatch):
    return count_reads(monkeypatch)


# --- values, shapes, labels ----------------------------------------------------------------------


@pytest.mark.parametrize("use_cache", [False, True])
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_shapes_values_and_weak_labels(llp, split, use_cache):
    root, raw = llp
    data = load(root, split, use_cache)
    names = VIDEOS[split]
    assert data.split == split
    assert data.filenames == tuple(names)
    assert data.video_ids == tuple(name[:11] for name in names)
    assert len(data) == len(names)
    assert data.weak.dtype == np.uint8
    expected = np.zeros((len(names), NUM_CLASSES), dtype=np.uint8)
    for row, labels in enumerate(LABELS[split]):
        for label in labels.split(","):
            expected[row, CLASSES.index(label)] = 1
    np.testing.assert_array_equal(data.weak, expected)
    assert list(data.features) == list(DIMS)
    for name, dim in DIMS.items():
        array = data.features[name]
        assert array.shape == (len(names), 10, dim)
        assert array.dtype == np.float32
        for row, filename in enumerate(names):
            naive = naive_segments(raw[name][filename], FRAMES[name])
            np.testing.assert_allclose(array[row], naive, rtol=1e-5, atol=1e-6)
            if FRAMES[name] == 1:
                np.testing.assert_array_equal(array[row], raw[name][filename])


def test_res152_average_of_eight_frames(llp):
    root, raw = llp
    filename = VIDEOS["val"][1]
    segments = read_feature_file(feature_path(root, "res152", filename), 2048, 8)
    assert segments.shape == (10, 2048)
    assert segments.dtype == np.float32
    rows = raw["res152"][filename]
    np.testing.assert_allclose(segments[3], rows[24:32].mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(segments, naive_segments(rows, 8), rtol=1e-5, atol=1e-6)
    assert not np.allclose(segments, rows[::8], atol=1e-3)  # an average, not a subsample


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_cached_equals_uncached_exactly_and_is_memory_mapped(llp, split):
    root, _ = llp
    direct = load(root, split, use_cache=False)
    assert not cache_dir(root).exists()
    cached = load(root, split, use_cache=True)
    again = load(root, split, use_cache=True)
    for name in DIMS:
        for data in (cached, again):
            assert isinstance(data.features[name], np.memmap)
            assert not data.features[name].flags.writeable
            np.testing.assert_array_equal(data.features[name], direct.features[name])
        assert not isinstance(direct.features[name], np.memmap)
        assert (cache_dir(root) / f"{split}.{name}.npy").is_file()
    np.testing.assert_array_equal(cached.weak, direct.weak)
    assert cached.filenames == direct.filenames


@pytest.mark.parametrize("use_cache", [False, True])
def test_dense_labels_for_val_and_test_only(llp, use_cache):
    root, _ = llp
    assert load(root, "train", use_cache).dense is None
    for split in ("val", "test"):
        dense = load(root, split, use_cache).dense
        names = VIDEOS[split]
        expected = {
            stream: np.zeros((len(names), 10, NUM_CLASSES), dtype=bool)
            for stream in ("audio", "visual")
        }
        for stream, rows in (("audio", AUDIO_ROWS), ("visual", VISUAL_ROWS)):
            for filename, onset, offset, event in rows:
                if filename in names:
                    expected[stream][names.index(filename), onset:offset, CLASSES.index(event)] = 1
        np.testing.assert_array_equal(dense.audio, expected["audio"])
        np.testing.assert_array_equal(dense.visual, expected["visual"])
        assert dense.audio.any() and dense.visual.any()


def test_annotations_in_another_folder(tmp_path):
    root, labels = tmp_path / "features", tmp_path / "labels"
    write_annotations(labels)
    raw = write_features(root)
    for use_cache in (False, True):
        data = load(root, "val", use_cache, annotations=labels)
        assert data.filenames == tuple(VIDEOS["val"])
        assert data.dense is not None and data.dense.audio.any()
        np.testing.assert_array_equal(data.features["vggish"][1], raw["vggish"][VIDEOS["val"][1]])
    with pytest.raises(FileNotFoundError, match=r"AVVP_val_pd\.csv"):
        load(root, "val")


def test_a_video_in_train_and_test_is_refused_on_every_split(llp):
    root, _ = llp
    rows = zip([*VIDEOS["train"], VIDEOS["test"][1]], [*LABELS["train"], "Dog"], strict=True)
    write_tsv(root / CSV["train"], ["filename", "event_labels"], rows)
    message = (
        rf"video id '{VIDEOS['test'][1][:11]}' is in {re.escape(str(root / CSV['train']))} "
        rf"line 5 \(train\) and in {re.escape(str(root / CSV['test']))} line 3 \(test\)"
    )
    for split in ("train", "val", "test"):
        with pytest.raises(ValueError, match=message):
            load(root, split)


@pytest.mark.parametrize("use_cache", [False, True])
def test_custom_feature_names_and_dims(tmp_path, use_cache):
    root = tmp_path / "llp"
    write_annotations(root)
    dims, frames = {"clip": 64, "clap": 32}, {"clip": 2, "clap": 1}
    raw = write_features(root, dims, frames, seed=3)
    data = load(root, "test", use_cache, dims=dims, frames=frames)
    assert list(data.features) == ["clip", "clap"]
    assert data.features["clip"].shape == (2, 10, 64)
    assert data.features["clap"].shape == (2, 10, 32)
    for row, filename in enumerate(VIDEOS["test"]):
        for name in dims:
            expected = naive_segments(raw[name][filename], frames[name])
            np.testing.assert_allclose(data.features[name][row], expected, rtol=1e-5, atol=1e-6)
    # Only the named sets are read: a subset of the folders is enough, and frames default to 1.
    subset = load(root, "test", use_cache, dims={"clap": 32}, frames={})
    assert list(subset.features) == ["clap"]
    np.testing.assert_array_equal(subset.features["clap"], data.features["clap"])


# --- the cache: reuse, invalidation, crashes ------------------------------------------------------


def cache_state(root: Path, split: str) -> dict[str, tuple[int, int]]:
    return {
        path.name: (path.stat().st_mtime_ns, path.stat().st_ino)
        for path in cache_dir(root).iterdir()
        if path.name.startswith(f"{split}.")
    }


def manifest_entries(root: Path, split: str) -> dict:
    path = cache_dir(root) / f"{split}.json"
    return json.loads(path.read_text())["arrays"] if path.exists() else {}


def test_cache_is_built_once_and_reused(llp, reads):
    root, _ = llp
    load(root, "train")
    assert reads["files"] == 3 * 3
    before = cache_state(root, "train")
    assert set(before) == {"train.json"} | {f"train.{name}.npy" for name in DIMS}
    assert set(manifest_entries(root, "train")) == set(DIMS)
    load(root, "train")
    load(root, "train")
    assert reads["files"] == 3 * 3
    assert cache_state(root, "train") == before
    load(root, "val")  # another split gets its own arrays
    assert reads["files"] == 3 * 3 + 2 * 3


def test_cache_rebuilt_when_a_feature_file_changes(llp, reads):
    root, raw = llp
    load(root, "train")
    filename = VIDEOS["train"][1]
    path = feature_path(root, "res152", filename)
    new = np.random.default_rng(9).standard_normal((80, 2048)).astype(np.float32)
    old_stat = path.stat()
    np.save(path, new)
    # Same size: only the mtime tells. File-system clocks tick in milliseconds, so push it on.
    os.utime(path, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns + 1_000_000_000))
    data = load(root, "train")
    assert reads["files"] == 9 + 3  # only res152 rebuilt
    np.testing.assert_allclose(data.features["res152"][1], naive_segments(new, 8), atol=1e-6)
    np.testing.assert_array_equal(
        data.features["res152"], load(root, "train", use_cache=False).features["res152"]
    )
    # A size change (a float64 file) is noticed without any help from the clock.
    path = feature_path(root, "vggish", filename)
    np.save(path, raw["vggish"][filename].astype(np.float64) + 1.0)
    data = load(root, "train")
    assert reads["files"] == 9 + 3 + 9 + 3  # the uncached load above read 9, vggish rebuilt 3
    np.testing.assert_array_equal(data.features["vggish"][1], raw["vggish"][filename] + 1.0)


def test_cache_rebuilt_when_the_split_csv_changes(llp, reads):
    root, raw = llp
    load(root, "train")
    names, labels = VIDEOS["train"][::2], LABELS["train"][::2]
    write_tsv(root / CSV["train"], ["filename", "event_labels"], zip(names, labels, strict=True))
    data = load(root, "train")
    assert reads["files"] == 9 + 2 * 3
    assert data.filenames == tuple(names)
    assert data.features["r2plus1d_18"].shape == (2, 10, 512)
    np.testing.assert_array_equal(data.features["r2plus1d_18"][1], raw["r2plus1d_18"][names[1]])
    # Same videos, other labels: the features are still valid, but the CSV hash changed.
    write_tsv(
        root / CSV["train"], ["filename", "event_labels"], zip(names, ["Dog", "Dog"], strict=True)
    )
    data = load(root, "train")
    assert reads["files"] == 9 + 6 + 6
    assert data.weak[:, CLASSES.index("Dog")].tolist() == [1, 1]


def crash_after(monkeypatch, files: int) -> None:
    """Make the cache build die (as a kill would) when reading file number ``files + 1``."""
    original = dataset.read_feature_file
    count = {"n": 0}

    def flaky(*args, **kwargs):
        count["n"] += 1
        if count["n"] > files:
            raise KeyboardInterrupt("simulated crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(dataset, "read_feature_file", flaky)


def test_crash_during_first_build_leaves_no_valid_cache(llp, monkeypatch):
    root, _ = llp
    crash_after(monkeypatch, 3 + 1)  # vggish done, inside res152
    with pytest.raises(KeyboardInterrupt):
        load(root, "train")
    monkeypatch.undo()
    assert manifest_entries(root, "train") == {}
    assert not list(cache_dir(root).glob("*.tmp")) + list(cache_dir(root).glob(".*.tmp"))
    assert not (cache_dir(root) / "train.res152.npy").exists()
    counter = count_reads(monkeypatch)
    data = load(root, "train")
    assert counter["files"] == 9  # everything rebuilt, the finished vggish array too
    direct = load(root, "train", use_cache=False)
    for name in DIMS:
        np.testing.assert_array_equal(data.features[name], direct.features[name])


def test_crash_during_rebuild_then_inputs_restored(llp, monkeypatch):
    """The worst case: a crash after a stale array was replaced, then the inputs are put back as
    they were. The old manifest must not vouch for the replaced array."""
    root, raw = llp
    original = load(root, "train", use_cache=False)
    load(root, "train")
    filename = VIDEOS["train"][0]
    stats = {}
    for name in ("vggish", "res152"):
        path = feature_path(root, name, filename)
        stats[name] = path.stat()
        np.save(path, raw[name][filename].astype(np.float64) * 2)  # other size and values
    crash_after(monkeypatch, 3 + 1)  # vggish array replaced, crash inside res152
    with pytest.raises(KeyboardInterrupt):
        load(root, "train")
    monkeypatch.undo()
    assert set(manifest_entries(root, "train")) == {"r2plus1d_18"}
    for name in ("vggish", "res152"):
        path = feature_path(root, name, filename)
        np.save(path, raw[name][filename])
        os.utime(path, ns=(stats[name].st_atime_ns, stats[name].st_mtime_ns))
    data = load(root, "train")
    for name in DIMS:
        np.testing.assert_array_equal(data.features[name], original.features[name])


def test_damaged_cache_array_is_rebuilt(llp, reads):
    root, _ = llp
    load(root, "val")
    path = cache_dir(root) / "val.r2plus1d_18.npy"
    path.write_bytes(path.read_bytes()[:-100])
    data = load(root, "val")
    assert reads["files"] == 6 + 2
    np.testing.assert_array_equal(
        data.features["r2plus1d_18"], load(root, "val", use_cache=False).features["r2plus1d_18"]
    )


def test_unwritable_cache_falls_back_with_one_warning(llp):
    root, _ = llp
    cache_dir(root).write_text("not a folder")  # the cache folder cannot be created
    with pytest.warns(CacheWarning, match=r"cannot write the feature cache"):
        data = load(root, "test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load(root, "test")
    direct = load(root, "test", use_cache=False)
    for name in DIMS:
        assert not isinstance(data.features[name], np.memmap)
        np.testing.assert_array_equal(data.features[name], direct.features[name])
        np.testing.assert_array_equal(again.features[name], direct.features[name])
    assert main(["cache", "--data", str(root), "--no-progress"]) == 2


def fill_the_disk(monkeypatch) -> None:
    """Every cache array write finds the disk full after its header."""
    original = dataset.atomic_write

    def full(path, write):
        def failing(handle):
            class Full:
                def write(self, data):
                    if handle.tell() > 0:
                        raise OSError(errno.ENOSPC, "No space left on device")
                    return handle.write(data)

            write(Full())

        return original(path, failing)

    monkeypatch.setattr(dataset, "atomic_write", full)


def test_full_disk_falls_back_with_one_warning_and_no_partial_file(llp, monkeypatch, reads):
    root, _ = llp
    fill_the_disk(monkeypatch)
    with pytest.warns(CacheWarning, match=rf"{re.escape(str(cache_dir(root)))} \(.*No space left"):
        data = load(root, "val")
    assert not list(cache_dir(root).glob("*.npy")) and not list(cache_dir(root).glob(".*tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load(root, "val")
    direct = load(root, "val", use_cache=False)
    for name in DIMS:
        np.testing.assert_array_equal(data.features[name], direct.features[name])
        np.testing.assert_array_equal(again.features[name], direct.features[name])
    # Tried once: later loads of the process read the files without writing again.
    assert reads["files"] == 1 + 6 + 6 + 6
    with pytest.raises(OSError, match=r"cannot write the feature cache in .*No space left"):
        build_cache(root, ("test",), feature_dims=DIMS, feature_frames=FRAMES, progress=False)
    assert main(["cache", "--data", str(root), "--no-progress"]) == 2


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anyway")
def test_read_only_root_falls_back(llp):
    root, _ = llp
    root.chmod(0o555)
    try:
        with pytest.warns(CacheWarning):
            data = load(root, "val")
    finally:
        root.chmod(0o755)
    assert not isinstance(data.features["vggish"], np.memmap)


# --- validation errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("use_cache", [False, True])
def test_missing_feature_file_names_path_and_csv_line(llp, use_cache):
    root, _ = llp
    path = feature_path(root, "res152", VIDEOS["train"][2])
    path.unlink()
    message = (
        rf"feature file not found: {re.escape(str(path))}.*'res152'.*"
        rf"'{VIDEOS['train'][2]}' on line 4 of .*AVVP_train\.csv \(split 'train'\)"
    )
    with pytest.raises(FileNotFoundError, match=message):
        load(root, "train", use_cache)


@pytest.mark.parametrize("use_cache", [False, True])
def test_missing_feature_folder_lists_what_exists(llp, use_cache):
    root, _ = llp
    shutil.rmtree(root / "feats" / "r2plus1d_18")
    message = r"feature folder not found: .*r2plus1d_18.*feature sets in .*feats: res152, vggish"
    with pytest.raises(FileNotFoundError, match=message):
        load(root, "val", use_cache)
    shutil.rmtree(root / "feats")
    with pytest.raises(FileNotFoundError, match=r"there is no .*feats folder"):
        load(root, "val", use_cache)


def corrupt(root: Path, name: str, filename: str, array: np.ndarray) -> Path:
    path = feature_path(root, name, filename)
    np.save(path, array)
    return path


def bad_rows(shape, row, value):
    """Zeros with ``value`` in ``row`` and in every later row (the error names the first)."""
    array = np.zeros(shape, dtype=np.float32)
    array[row, 5] = value
    array[row + 1 :, -1] = value
    return array


@pytest.mark.parametrize("use_cache", [False, True])
@pytest.mark.parametrize(
    ("name", "array", "pattern"),
    [
        (
            "res152",
            np.zeros((79, 2048), np.float32),
            r"expected shape \(80, 2048\) .*found \(79, 2048\)",
        ),
        ("vggish", np.zeros((10, 127), np.float32), r"expected shape \(10, 128\).*found \(10, 127"),
        ("vggish", np.zeros((10, 128), np.int32), r"dtype int32 is not floating point"),
        ("res152", bad_rows((80, 2048), 37, np.nan), r"NaN or inf\) in row 37 of 80"),
        ("r2plus1d_18", bad_rows((10, 512), 0, np.inf), r"NaN or inf\) in row 0 of 10"),
        ("r2plus1d_18", bad_rows((10, 512), 9, -np.inf), r"NaN or inf\) in row 9 of 10"),
    ],
)
def test_bad_feature_content(llp, use_cache, name, array, pattern):
    root, _ = llp
    filename = VIDEOS["test"][1]
    path = corrupt(root, name, filename, array)
    message = rf"{re.escape(str(path))}: .*{pattern}.*'{filename}' on line 3 of .*AVVP_test_pd"
    with pytest.raises(FeatureError, match=message):
        load(root, "test", use_cache)
    assert not manifest_entries(root, "test").get(name)


def test_unreadable_file_and_float64_accepted(llp):
    root, raw = llp
    filename = VIDEOS["val"][0]
    path = feature_path(root, "vggish", filename)
    path.write_bytes(b"not numpy")
    with pytest.raises(FeatureError, match=rf"{re.escape(str(path))}: not a readable \.npy"):
        read_feature_file(path, 128)
    np.save(path, raw["vggish"][filename].astype(np.float64))
    segments = read_feature_file(path, 128)
    assert segments.dtype == np.float32
    np.testing.assert_array_equal(segments, raw["vggish"][filename])
    with pytest.raises(FileNotFoundError, match=r"nothing\.npy"):
        read_feature_file(path.parent / "nothing.npy", 128)


def test_bad_arguments(llp):
    root, _ = llp
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load(root, "dev")
    with pytest.raises(ValueError, match="no feature sets"):
        load(root, "val", dims={})
    with pytest.raises(ValueError, match="'vggish': frames must be a positive int"):
        load(root, "val", frames={**FRAMES, "vggish": 0})
    with pytest.raises(ValueError, match=r"without a dimension: \['clip'\]"):
        load(root, "val", frames={**FRAMES, "clip": 1})
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        load(root / "missing", "val")


# --- build_cache and the command line ------------------------------------------------------------


def test_build_cache_reports(llp):
    root, _ = llp
    infos = build_cache(root, ("val", "test"), feature_dims=DIMS, feature_frames=FRAMES)
    assert [(info.split, info.videos) for info in infos] == [("val", 2), ("test", 2)]
    assert infos[0].built == tuple(DIMS)
    per_video = 10 * 4 * sum(DIMS.values())
    for info in infos:
        assert info.nbytes >= 2 * per_video
        assert info.nbytes == sum(path.stat().st_size for path in info.paths)
    again = build_cache(root, ("val",), feature_dims=DIMS, feature_frames=FRAMES, progress=False)
    assert again[0].built == ()


def test_cli_cache(llp, capsys, tmp_path):
    root, _ = llp
    assert main(["cache", "--data", str(root), "--splits", "train,val", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    sizes = {
        split: sum((cache_dir(root) / f"{split}.{name}.npy").stat().st_size for name in DIMS)
        for split in ("train", "val")
    }
    assert f"train: 3 videos, {sizes['train'] / 1024:.1f} KiB (built vggish" in printed
    assert f"val: 2 videos, {sizes['val'] / 1024:.1f} KiB" in printed
    assert "test:" not in printed
    assert not (cache_dir(root) / "test.json").exists()
    config = tmp_path / "features.yaml"
    config.write_text("features:\n  frames: {res152: 8}\n")
    assert main(["cache", "--data", str(root), "--config", str(config), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "train: 3 videos" in printed and "(up to date)" in printed
    assert "test: 2 videos" in printed and "(built vggish, res152, r2plus1d_18)" in printed
    assert main(["cache", "--data", str(root), "--splits", "train,dev"]) == 2
    assert "--splits" in capsys.readouterr().err
