"""Features and labels of one LLP split, read through a consolidated memory-mapped cache.

An LLP-layout folder holds the split CSVs and one ``feats/<name>/<video_id>.npy`` per video and
feature set, shaped (T * frames, dim). Every file read is validated (shape, floating dtype, finite
values) and runs of ``frames`` rows are averaged to one segment (res152: 8 frames a segment).

Reading ~36k small files every run is slow, so the first load of a split writes, per feature set,
one (V, T, D) float32 array under ``<root>/.avvp_cache/`` and later loads memory-map it. A JSON
manifest per split records, per array, a fingerprint of its inputs (format version, split CSV
content, the ordered filenames, name, dim, frames, and the size and mtime_ns of every feature
file) and the array file's own stat; an array is used only while both match, otherwise it is
rebuilt. Entries about to be rebuilt are dropped from the manifest before any array is written,
arrays are written atomically, and the manifest last, so a crash never leaves a cache that looks
valid. Known limit: a feature file rewritten with the same size within one tick of the file-system
clock (a few ms) after the cache was built is not noticed; ``avvp cache`` after
``rm -r <root>/.avvp_cache`` (or ``use_cache=False``) always reads the files.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from avvp.classes import NUM_SEGMENTS
from avvp.data.annotations import (
    FILENAME_PATTERN,
    SPLITS,
    AnnotationError,
    AudioGroundTruth,
    DenseLabels,
    LLPAnnotations,
    WeakLabels,
    read_text,
    video_id,
)
from avvp.io_utils import atomic_write, write_json

CACHE_DIRNAME = ".avvp_cache"
FORMAT_VERSION = 1
FEATURES_DIRNAME = "feats"

# Cache folders this process could not write, with the reason: it reads the feature files
# directly there from then on, and warns once.
_unwritable: dict[str, str] = {}
_warned: set[str] = set()


class FeatureError(ValueError):
    """A feature file with the wrong shape, a non-floating dtype or non-finite values."""


class MissingFeatureError(FileNotFoundError):
    """A feature file that a split's CSV asks for is not there; the message names both."""


class CacheWarning(UserWarning):
    """The consolidated cache could not be written; features are read from the files instead."""


class CacheWriteError(OSError):
    """``build_cache`` could not write the cache (read-only folder, full disk, quota)."""


@dataclass(frozen=True, eq=False)
class SplitData:
    """One split: features by set name (V, T, D) float32, weak labels (V, C), dense labels."""

    split: str
    filenames: tuple[str, ...]  # split CSV order
    features: dict[str, np.ndarray]  # memory-mapped (read-only) when read from the cache
    weak: np.ndarray  # (V, C) uint8
    dense: DenseLabels | None  # val and test; None for train

    def __len__(self) -> int:
        return len(self.filenames)

    @property
    def video_ids(self) -> tuple[str, ...]:
        return tuple(video_id(name) for name in self.filenames)

    def subset(self, indices: np.ndarray) -> SplitData:
        """The videos at ``indices`` (in that order), features copied into memory."""
        return SplitData(
            split=self.split,
            filenames=tuple(self.filenames[i] for i in indices),
            features={name: np.asarray(array[indices]) for name, array in self.features.items()},
            weak=self.weak[indices],
            dense=None if self.dense is None else self.dense.subset(indices),
        )


@dataclass(frozen=True)
class CacheInfo:
    """What :func:`build_cache` found or wrote for one split."""

    split: str
    videos: int
    nbytes: int  # bytes of the split's cache arrays on disk
    built: tuple[str, ...]  # feature sets (re)built by this call; empty when all were valid
    paths: tuple[Path, ...]


class _Spec(NamedTuple):
    name: str
    dim: int
    frames: int


@dataclass(frozen=True)
class _Split:
    """Where a split's videos come from: its CSV, the ordered filenames and their lines."""

    root: Path
    split: str
    csv_path: Path
    filenames: tuple[str, ...]
    lines: tuple[int, ...] = ()  # of the filenames in the CSV; empty: unknown

    @classmethod
    def of(cls, root: Path, split: str, weak: WeakLabels) -> _Split:
        return cls(root, split, weak.path, weak.filenames, weak.lines)

    def where(self, row: int) -> str:
        """'video X on line N of CSV (split S)'."""
        place = f"line {self.lines[row]}" if self.lines else f"row {row + 1}"
        return f"video {self.filenames[row]!r} on {place} of {self.csv_path} (split {self.split!r})"

    def feature_path(self, name: str, row: int) -> Path:
        return self.root / FEATURES_DIRNAME / name / f"{video_id(self.filenames[row])}.npy"


# --- reading one file ---------------------------------------------------------------------------


def read_feature_file(
    path: str | Path, dim: int, frames: int = 1, segments: int = NUM_SEGMENTS
) -> np.ndarray:
    """A validated (segments, dim) float32 array: file rows averaged in runs of ``frames``.

    Raises FileNotFoundError for a missing file and :class:`FeatureError` for an unreadable file,
    a shape other than (segments * frames, dim), a non-floating dtype, or NaN/inf values (naming
    the first bad row of the file).
    """
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"feature file not found: {path}") from None
    except (OSError, ValueError, EOFError) as error:
        raise FeatureError(f"{path}: not a readable .npy array ({error})") from None
    if not isinstance(array, np.ndarray):
        raise FeatureError(f"{path}: expected one .npy array, found {type(array).__name__}")
    if not np.issubdtype(array.dtype, np.floating):
        raise FeatureError(f"{path}: dtype {array.dtype} is not floating point (expected float32)")
    expected = (segments * frames, dim)
    if array.shape != expected:
        raise FeatureError(
            f"{path}: expected shape {expected} ({segments} segments x {frames} frames, "
            f"dim {dim}), found {array.shape}"
        )
    finite = np.isfinite(array)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise FeatureError(
            f"{path}: non-finite value (NaN or inf) in row {row} of {array.shape[0]}"
        )
    array = array.astype(np.float32, copy=False)
    if frames > 1:
        array = array.reshape(segments, frames, dim).mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(array)


def _missing_message(source: _Split, name: str, row: int) -> str:
    return (
        f"feature file not found: {source.feature_path(name, row)} "
        f"(feature set {name!r}, asked for by {source.where(row)})"
    )


def _read_segments(source: _Split, spec: _Spec, row: int) -> np.ndarray:
    """The validated (T, D) segment features of one video; errors name the file and CSV line."""
    path = source.feature_path(spec.name, row)
    try:
        return read_feature_file(path, spec.dim, spec.frames)
    except FileNotFoundError:
        raise MissingFeatureError(_missing_message(source, spec.name, row)) from None
    except FeatureError as error:
        raise FeatureError(f"{error} (feature set {spec.name!r}, {source.where(row)})") from None


def _iter_segments(
    source: _Split, spec: _Spec, advance: Callable[[], object]
) -> Iterator[np.ndarray]:
    """The (T, D) segment features of every video of the split in order, validated."""
    for row in range(len(source.filenames)):
        array = _read_segments(source, spec, row)
        advance()
        yield array


def _progress(total: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="file", disable=not enabled, leave=False)


def _read_in_memory(source: _Split, specs: Sequence[_Spec], progress: bool) -> dict:
    """Every feature set of the split read from its files into (V, T, D) arrays in memory."""
    features: dict[str, np.ndarray] = {}
    videos = len(source.filenames)
    with _progress(videos * len(specs), f"read {source.split}", progress) as bar:
        for spec in specs:
            array = np.empty((videos, NUM_SEGMENTS, spec.dim), dtype=np.float32)
            for row, segments in enumerate(_iter_segments(source, spec, bar.update)):
                array[row] = segments
            features[spec.name] = array
    return features


# --- the consolidated cache ---------------------------------------------------------------------


def cache_dir(root: str | Path) -> Path:
    """The folder of the consolidated cache of an LLP-layout dataset."""
    return Path(root) / CACHE_DIRNAME


def _manifest_path(directory: Path, split: str) -> Path:
    return directory / f"{split}.json"


def _array_name(split: str, name: str) -> str:
    return f"{split}.{name}.npy"


def _fingerprints(source: _Split, specs: Sequence[_Spec]) -> dict[str, str]:
    """Per feature set, a hash of every input of its cache array; stats each file once."""
    base = hashlib.sha256()
    base.update(f"avvp feature cache, format {FORMAT_VERSION}\n{source.split}\n".encode())
    base.update(hashlib.sha256(source.csv_path.read_bytes()).hexdigest().encode())
    base.update(("\n" + "\n".join(source.filenames) + "\n").encode())
    ids = [video_id(filename) for filename in source.filenames]
    result = {}
    for spec in specs:
        folder = os.path.join(source.root, FEATURES_DIRNAME, spec.name)
        parts = [f"{spec.name}\t{spec.dim}\t{spec.frames}\t{NUM_SEGMENTS}"]
        for row, key in enumerate(ids):
            try:
                stat = os.stat(f"{folder}/{key}.npy")
            except FileNotFoundError:
                raise MissingFeatureError(_missing_message(source, spec.name, row)) from None
            parts.append(f"{stat.st_size} {stat.st_mtime_ns}")
        digest = base.copy()
        digest.update("\n".join(parts).encode())
        result[spec.name] = digest.hexdigest()
    return result


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        return {}
    if not isinstance(manifest.get("arrays"), dict):
        return {}
    return manifest


def _file_stat(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}


def _open_entry(
    directory: Path, manifest: dict, spec: _Spec, fingerprint: str, videos: int
) -> np.ndarray | None:
    """The memory-mapped cache array of a feature set if its manifest entry is current."""
    entry = manifest.get("arrays", {}).get(spec.name)
    if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
        return None
    path = directory / str(entry.get("file"))
    try:
        if {key: entry.get(key) for key in ("size", "mtime_ns", "inode")} != _file_stat(path):
            return None
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if array.shape != (videos, NUM_SEGMENTS, spec.dim) or array.dtype != np.float32:
        return None
    return array


def _write_array(
    path: Path, source: _Split, spec: _Spec, advance: Callable[[], object]
) -> dict[str, int]:
    """Stream the split's segment features into a .npy file atomically, one video at a time."""
    shape = (len(source.filenames), NUM_SEGMENTS, spec.dim)

    def write(handle: BinaryIO) -> None:
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
            "fortran_order": False,
            "shape": shape,
        }
        np.lib.format.write_array_header_1_0(handle, header)
        for segments in _iter_segments(source, spec, advance):
            handle.write(segments.tobytes())

    atomic_write(path, write)
    return _file_stat(path)


def _writable(directory: Path) -> str | None:
    """None if the cache folder can be created and written, else the reason."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(dir=directory, prefix=".probe.")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        return str(error)
    return None


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on the cache folder (POSIX), so concurrent ranks build it once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, atomic writes still hold
        yield
        return
    with open(directory / ".lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _cached_features(
    source: _Split, specs: Sequence[_Spec], progress: bool, require_writable: bool = False
) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """(features by name, names built now): memory-mapped cache arrays, built where stale.

    A cache folder that cannot be written (read-only, or a write fails: disk full, quota) means
    direct reads instead, with one warning; this process then stops trying to write there.
    """
    directory = cache_dir(source.root)
    manifest_path = _manifest_path(directory, source.split)
    videos = len(source.filenames)
    fingerprints = _fingerprints(source, specs)

    def current(manifest: dict) -> dict[str, np.ndarray]:
        opened = {}
        for spec in specs:
            array = _open_entry(directory, manifest, spec, fingerprints[spec.name], videos)
            if array is not None:
                opened[spec.name] = array
        return opened

    features = current(_read_manifest(manifest_path))
    stale = [spec for spec in specs if spec.name not in features]
    if not stale:
        return features, ()
    key = str(directory.resolve())
    reason = _unwritable.get(key) or _writable(directory)
    if reason is None:
        try:
            return _build(source, specs, current, fingerprints, progress)
        except MissingFeatureError:
            raise
        except OSError as error:  # writing failed: _build left no array that is not in use
            reason = str(error)
    _unwritable[key] = reason
    if require_writable:
        raise CacheWriteError(
            f"cannot write the feature cache in {directory}: {reason}; free space or make it "
            "writable and rerun (training reads the feature files directly meanwhile)"
        )
    if key not in _warned:
        _warned.add(key)
        warnings.warn(
            f"cannot write the feature cache in {directory} ({reason}); reading the feature "
            "files directly (slower, and again on every load)",
            CacheWarning,
            stacklevel=3,
        )
    features.update(_read_in_memory(source, stale, progress))
    return {spec.name: features[spec.name] for spec in specs}, ()


def _build(
    source: _Split,
    specs: Sequence[_Spec],
    current: Callable[[dict], dict[str, np.ndarray]],
    fingerprints: Mapping[str, str],
    progress: bool,
) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """Build the stale cache arrays of the split under the lock; ``_cached_features``'s result.

    If a write fails, the arrays written by this call are removed (the manifest never names
    them) before the error propagates, so a full disk is left no fuller.
    """
    directory = cache_dir(source.root)
    manifest_path = _manifest_path(directory, source.split)
    videos = len(source.filenames)
    with _locked(directory):
        manifest = _read_manifest(manifest_path)  # another process may have built it meanwhile
        features = current(manifest)
        stale = [spec for spec in specs if spec.name not in features]
        if stale:
            for leftover in directory.glob(".*.tmp"):  # temporaries of a killed build
                leftover.unlink(missing_ok=True)
            # Drop the entries about to change first: a crash from here on leaves no entry
            # pointing at a half-replaced array.
            entries = {
                name: entry
                for name, entry in manifest.get("arrays", {}).items()
                if name not in {spec.name for spec in stale}
            }
            manifest = {
                "format_version": FORMAT_VERSION,
                "split": source.split,
                "videos": videos,
                "segments": NUM_SEGMENTS,
                "csv": str(source.csv_path),
                "arrays": entries,
            }
            write_json(manifest_path, manifest)
            written: list[Path] = []
            try:
                with _progress(videos * len(stale), f"cache {source.split}", progress) as bar:
                    for spec in stale:
                        file = _array_name(source.split, spec.name)
                        written.append(directory / file)
                        stat = _write_array(directory / file, source, spec, bar.update)
                        entries[spec.name] = {
                            "file": file,
                            "shape": [videos, NUM_SEGMENTS, spec.dim],
                            "dim": spec.dim,
                            "frames": spec.frames,
                            "fingerprint": fingerprints[spec.name],
                            **stat,
                        }
                write_json(manifest_path, manifest)
            except OSError:
                for path in written:
                    path.unlink(missing_ok=True)
                raise
            features = current(manifest)
        missing = [spec.name for spec in specs if spec.name not in features]
        if missing:  # pragma: no cover - only if the files change under us while building
            raise RuntimeError(f"feature cache {directory} for {missing} is invalid after building")
    return {spec.name: features[spec.name] for spec in specs}, tuple(spec.name for spec in stale)


# --- public entry points ------------------------------------------------------------------------


def _specs(feature_dims: Mapping[str, int], feature_frames: Mapping[str, int]) -> list[_Spec]:
    if not feature_dims:
        raise ValueError("no feature sets: feature_dims is empty")
    unknown = sorted(set(feature_frames) - set(feature_dims))
    if unknown:
        raise ValueError(f"feature_frames names feature sets without a dimension: {unknown}")
    specs = []
    for name, dim in feature_dims.items():
        frames = feature_frames.get(name, 1)
        for what, value in (("dimension", dim), ("frames", frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"feature set {name!r}: {what} must be a positive int, got {value!r}"
                )
        if not name or os.sep in name or name.startswith("."):
            raise ValueError(f"feature set name {name!r} is not a plain folder name")
        specs.append(_Spec(name, dim, frames))
    return specs


def _folder_problems(root: Path, specs: Sequence[_Spec]) -> dict[str, str]:
    """Per feature set whose folder is missing, the message saying so and what exists."""
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    features = root / FEATURES_DIRNAME
    problems = {}
    for spec in specs:
        folder = features / spec.name
        if not folder.is_dir():
            if not features.is_dir():
                found = f"there is no {features} folder"
            else:
                present = sorted(path.name for path in features.iterdir() if path.is_dir())
                found = f"feature sets in {features}: {', '.join(present) or 'none'}"
            problems[spec.name] = (
                f"feature folder not found: {folder} (feature set {spec.name!r}); {found}"
            )
    return problems


def _check_folders(root: Path, specs: Sequence[_Spec]) -> None:
    for problem in _folder_problems(root, specs).values():
        raise FileNotFoundError(problem)


def _source(root: Path, annotations: LLPAnnotations, split: str) -> _Split:
    return _Split.of(root, split, annotations.weak(split))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def load_split(
    root: str | Path,
    split: str,
    *,
    feature_dims: Mapping[str, int],
    feature_frames: Mapping[str, int],
    annotations: str | Path | None = None,
    audio_gt: str | AudioGroundTruth = "2024",
    use_cache: bool = True,
    progress: bool = True,
    dense: bool = True,
) -> SplitData:
    """Features, weak labels and (val, test) dense labels of one split of an LLP-layout folder.

    ``feature_dims`` names every feature set to read (any names; ``feats/<name>/<id>.npy``);
    ``feature_frames`` how many file rows make a segment (default 1). With ``use_cache`` the
    features are memory-mapped from ``<root>/.avvp_cache``, built or rebuilt there when missing or
    stale (or, if the folder cannot be written, read into memory with one warning); without, read
    from the files into memory every time. The split CSVs live in ``annotations`` (default: root).
    ``dense=False`` reads no dense labels (``SplitData.dense`` is None), so a split can be
    predicted where the ``AVVP_eval_*.csv`` files are absent.
    """
    _check_split(split)
    root = Path(root)
    specs = _specs(feature_dims, feature_frames)
    _check_folders(root, specs)
    labels = LLPAnnotations(root if annotations is None else annotations, audio_gt)
    source = _source(root, labels, split)
    weak = labels.weak(split)
    dense_labels = labels.dense(split) if dense and split != "train" else None
    if use_cache:
        features, _ = _cached_features(source, specs, progress)
    else:
        features = _read_in_memory(source, specs, progress)
    return SplitData(split, weak.filenames, features, weak.labels, dense_labels)


def build_cache(
    root: str | Path,
    splits: Sequence[str] = SPLITS,
    *,
    feature_dims: Mapping[str, int],
    feature_frames: Mapping[str, int],
    annotations: str | Path | None = None,
    progress: bool = True,
) -> list[CacheInfo]:
    """Build (or check) the consolidated cache of ``splits``; raises if it cannot be written.

    Only the split CSVs are read (no dense labels); every feature file of a stale array is read and
    validated. Returns per split the number of videos, the bytes on disk and what was built.
    """
    for split in splits:
        _check_split(split)
    root = Path(root)
    specs = _specs(feature_dims, feature_frames)
    _check_folders(root, specs)
    labels = LLPAnnotations(root if annotations is None else annotations)
    infos = []
    for split in splits:
        source = _source(root, labels, split)
        _, built = _cached_features(source, specs, progress, require_writable=True)
        paths = tuple(cache_dir(root) / _array_name(split, spec.name) for spec in specs)
        infos.append(
            CacheInfo(
                split=split,
                videos=len(source.filenames),
                nbytes=sum(path.stat().st_size for path in paths),
                built=built,
                paths=paths,
            )
        )
    return infos


def missing_feature_folders(
    root: str | Path, *, feature_dims: Mapping[str, int], feature_frames: Mapping[str, int]
) -> dict[str, str]:
    """Per feature set without its ``feats/<name>`` folder, the error ``load_split`` would raise."""
    return _folder_problems(Path(root), _specs(feature_dims, feature_frames))


def feature_file_problems(
    root: str | Path,
    split: str,
    weak: WeakLabels,
    *,
    feature_dims: Mapping[str, int],
    feature_frames: Mapping[str, int],
    advance: Callable[[], object] = lambda: None,
) -> list[str]:
    """Every feature file of a split that ``load_split`` would reject, one message each.

    The same validation and wording as loading, but it goes on past the first bad file; the
    feature sets' folders must exist (:func:`missing_feature_folders`). ``advance`` is called
    once a file checked.
    """
    source = _Split.of(Path(root), split, weak)
    problems = []
    for spec in _specs(feature_dims, feature_frames):
        for row in range(len(source.filenames)):
            try:
                _read_segments(source, spec, row)
            except (FileNotFoundError, FeatureError) as error:
                problems.append(str(error))
            advance()
    return problems


def data_fingerprint(
    root: str | Path,
    splits: Sequence[str] = SPLITS,
    *,
    feature_dims: Mapping[str, int],
    feature_frames: Mapping[str, int],
    annotations: str | Path | None = None,
) -> str:
    """A hash of what :func:`load_split` reads for ``splits``, cheap enough for every start.

    Per split and feature set, the fingerprint the cache manifest keys its arrays by (the split
    CSV's content, its filenames, the feature set's name, dim and frames, and the size and
    mtime_ns of every feature file: files are stat-ed, not read), plus the content of the dense
    annotation files (``AVVP_eval_*.csv``). A run records it so that a resume notices data that
    changed under it. The cache's known limit holds here too (see the module docstring).
    """
    root = Path(root)
    specs = _specs(feature_dims, feature_frames)
    _check_folders(root, specs)
    labels = LLPAnnotations(root if annotations is None else annotations)
    digest = hashlib.sha256(f"avvp data, cache format {FORMAT_VERSION}\n".encode())
    for split in splits:
        _check_split(split)
        for name, value in sorted(_fingerprints(_source(root, labels, split), specs).items()):
            digest.update(f"{split}\t{name}\t{value}\n".encode())
    for path in sorted(labels.root.glob("AVVP_eval_*.csv")):
        digest.update(f"{path.name}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


# --- videos without labels ----------------------------------------------------------------------
#
# ``avvp extract`` writes the features of any videos in the LLP layout and lists them in
# ``videos.csv`` (tab-separated, header ``filename``, one video a row). Such a folder has no split
# CSVs and no ground truth, and its videos may last any number of seconds, so it is read into one
# (T, D) array per video and feature set, without the consolidated cache.

VIDEO_LIST = "videos.csv"
VIDEO_LIST_COLUMN = "filename"


def feature_key(filename: str) -> str:
    """The name of a video's feature files ``feats/<name>/<key>.npy``: the YouTube id for an LLP
    filename (``<11-char id>_<start>_<end>``), the filename itself otherwise (the file stem that
    ``avvp extract`` lists)."""
    return video_id(filename) if FILENAME_PATTERN.fullmatch(filename) else filename


def video_name_problem(filename: str) -> str | None:
    """Why ``filename`` cannot name a video in a video list and its feature files, or None."""
    if not filename:
        return "is empty"
    if "/" in filename or "\\" in filename or filename.startswith("."):
        return "is not a plain file name (a slash, or a leading dot)"
    if any(character.isspace() and character != " " for character in filename):
        return "holds a tab or a line break"
    return None


@dataclass(frozen=True)
class VideoList:
    """The videos of a ``videos.csv``, in file order, with their 1-based lines."""

    path: Path
    filenames: tuple[str, ...]
    lines: tuple[int, ...]

    def where(self, row: int) -> str:
        return f"video {self.filenames[row]!r} on line {self.lines[row]} of {self.path}"


def read_video_list(path: str | Path) -> VideoList:
    """Read a video list: tab-separated, first column ``filename``; further columns (an LLP split
    CSV's ``event_labels``) are ignored, so a split CSV lists its videos too."""
    path = Path(path)
    rows = list(csv.reader(io.StringIO(read_text(path), newline=""), delimiter="\t"))
    if not rows or not rows[0] or rows[0][0].strip() != VIDEO_LIST_COLUMN:
        found = rows[0] if rows else "nothing"
        raise AnnotationError(
            f"{path}: line 1: header {found} does not start with {VIDEO_LIST_COLUMN!r} "
            "(a video list is tab-separated, one video a row, as `avvp extract` writes it)"
        )
    filenames: list[str] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not any(value.strip() for value in row):
            continue
        filename = row[0].strip()
        problem = video_name_problem(filename)
        if problem:
            raise AnnotationError(f"{path}: line {line}: filename {filename!r} {problem}")
        key = feature_key(filename)
        if key in seen:
            raise AnnotationError(
                f"{path}: line {line}: video {filename!r} reads the feature files of line "
                f"{seen[key]} ({key}.npy); list each video once"
            )
        seen[key] = line
        filenames.append(filename)
        lines.append(line)
    if not filenames:
        raise AnnotationError(f"{path}: no videos")
    return VideoList(path, tuple(filenames), tuple(lines))


def write_video_list(path: str | Path, filenames: Sequence[str]) -> Path:
    """Write a video list (header ``filename``, one video a row) atomically."""
    for filename in filenames:
        problem = video_name_problem(filename)
        if problem:
            raise ValueError(f"video name {filename!r} {problem}; rename the file")
    return atomic_write(
        path,
        lambda handle: handle.write(
            "\n".join([VIDEO_LIST_COLUMN, *filenames]).encode("utf-8") + b"\n"
        ),
    )


@dataclass(frozen=True, eq=False)
class Videos:
    """Features of videos without labels, each of its own length, in list order.

    ``features[v][name]`` is video v's (T_v, D) float32 segment features of a feature set
    (file rows averaged in runs of ``frames``, as in :func:`load_split`).
    """

    root: Path
    filenames: tuple[str, ...]
    features: tuple[dict[str, np.ndarray], ...]

    def __len__(self) -> int:
        return len(self.filenames)

    @property
    def segments(self) -> tuple[int, ...]:
        """The number of one-second segments of each video."""
        return tuple(len(next(iter(video.values()))) for video in self.features)


def _read_any_length(path: Path, spec: _Spec, where: str) -> np.ndarray:
    """The (T, D) segment features of one file of any T; errors name the file and ``where``."""
    try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    except FileNotFoundError:
        raise MissingFeatureError(
            f"feature file not found: {path} (feature set {spec.name!r}, asked for by {where})"
        ) from None
    except (OSError, ValueError, EOFError) as error:
        raise FeatureError(f"{path}: not a readable .npy array ({error}) ({where})") from None
    rows = shape[0] if len(shape) == 2 else 0
    if rows < spec.frames or rows % spec.frames or shape[1:] != (spec.dim,):
        raise FeatureError(
            f"{path}: expected shape (T * {spec.frames}, {spec.dim}) (T segments x "
            f"{spec.frames} frames, dim {spec.dim}, T >= 1), found {shape} "
            f"(feature set {spec.name!r}, {where})"
        )
    try:
        return read_feature_file(path, spec.dim, spec.frames, rows // spec.frames)
    except FeatureError as error:
        raise FeatureError(f"{error} (feature set {spec.name!r}, {where})") from None


def load_videos(
    root: str | Path,
    *,
    feature_dims: Mapping[str, int],
    feature_frames: Mapping[str, int],
    video_list: str | Path | None = None,
) -> Videos:
    """The features of the videos of ``video_list`` (default ``root/videos.csv``), no labels.

    ``feature_dims`` names the feature sets to read (a model's); every file is validated as by
    :func:`load_split` except that a video may have any number of segments T, the same in every
    feature set. A missing feature set is an error naming the ``avvp extract`` that makes it.
    """
    root = Path(root)
    specs = _specs(feature_dims, feature_frames)
    listed = read_video_list(root / VIDEO_LIST if video_list is None else video_list)
    problems = _folder_problems(root, specs)
    if problems:
        missing = ",".join(problems)
        raise MissingFeatureError(
            f"{next(iter(problems.values()))}; make it with `avvp extract --videos VIDEOS "
            f"--out {root} --features {missing} --weights DIR`"
        )
    features = []
    for row, filename in enumerate(listed.filenames):
        video: dict[str, np.ndarray] = {}
        for spec in specs:
            path = root / FEATURES_DIRNAME / spec.name / f"{feature_key(filename)}.npy"
            video[spec.name] = _read_any_length(path, spec, listed.where(row))
        lengths = {name: len(array) for name, array in video.items()}
        if len(set(lengths.values())) > 1:
            found = ", ".join(f"{name} {length}" for name, length in lengths.items())
            raise FeatureError(
                f"{listed.where(row)}: its feature sets disagree on its number of seconds "
                f"({found}); extract them again from the same video file"
            )
        features.append(video)
    return Videos(root, listed.filenames, tuple(features))


__all__ = [
    "CACHE_DIRNAME",
    "VIDEO_LIST",
    "CacheInfo",
    "CacheWarning",
    "CacheWriteError",
    "FeatureError",
    "MissingFeatureError",
    "SplitData",
    "VideoList",
    "Videos",
    "build_cache",
    "cache_dir",
    "data_fingerprint",
    "feature_key",
    "load_split",
    "load_videos",
    "read_feature_file",
    "read_video_list",
    "video_name_problem",
    "write_video_list",
]
