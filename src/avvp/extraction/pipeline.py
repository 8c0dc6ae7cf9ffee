"""Video files to feature files in the LLP layout: what ``avvp extract`` runs.

:func:`extract` writes, in its output folder ``OUT``:

- ``feats/<name>/<key>.npy`` per video and feature set: ``(seconds * frames, dim)`` float32, the
  layout every avvp command reads. The key is the video file's stem, or its first 11 characters
  (the YouTube id) when the stem is an LLP filename ``<id>_<start>_<end>``, as in LLP.
- ``videos.csv``: tab-separated, header ``filename``, one video a row (its file stem): the videos
  whose every feature set recorded in ``extraction.json`` is on disk. ``avvp predict --data OUT``
  parses them without labels; with split CSVs beside it, OUT is an LLP dataset.
- ``extraction.json``: per feature set the extractor, its options and its weight files with their
  sha256 (or ``RANDOM WEIGHTS (plumbing only)``), the avvp version, and per video its source
  file, length, and status (done, or failed and why).

A run resumes after a kill: a video whose feature files all exist and are valid (shape, dtype,
finite values) is skipped, and every file appears atomically. Adding a feature set to an existing
output extracts only that set. An output whose feature set was made with other weights or options
is refused rather than mixed. One video's :class:`~avvp.extraction.base.VideoError` (undecodable,
no audio track, under 1 s) is recorded and the others go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avvp.extraction.base import Extractor, VideoError, segment_count
from avvp.io_utils import file_sha256

DEFAULT_FEATURES = ("vggish", "res152", "r2plus1d_18")
METADATA = "extraction.json"
FORMAT = "avvp extraction"
FORMAT_VERSION = 1
RANDOM = "RANDOM WEIGHTS (plumbing only)"
RANDOM_WARNING = (
    "made with --random-weights: these features carry no meaning; use them to test plumbing "
    "only, never to train or report"
)
# What a --videos folder is searched for (lower-case suffixes; not recursive).
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp"}
)


@dataclass(frozen=True)
class Video:
    """One input video: its file, the filename it is listed under, the key of its files."""

    path: Path
    filename: str

    @property
    def key(self) -> str:
        from avvp.data.dataset import feature_key

        return feature_key(self.filename)


@dataclass
class ExtractionSummary:
    """What :func:`extract` did: videos extracted now, skipped (already there), failed."""

    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # filename -> why
    random_weights: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        total = len(self.done) + len(self.skipped) + len(self.failed)
        lines = [
            f"{total} videos to {self.out}: {len(self.done)} extracted, {len(self.skipped)} "
            f"already there, {len(self.failed)} failed"
        ]
        lines += [f"failed: {reason}" for reason in self.failed.values()]
        if self.random_weights:
            lines.append(f"warning: {RANDOM_WARNING}")
        return "\n".join(lines)


# --- the inputs ---------------------------------------------------------------------------------


def collect_videos(videos: str | Path | Sequence[str | Path]) -> list[Video]:
    """The videos of a folder (every file with a video suffix, sorted), of a ``.txt`` list (one
    path a line, relative to the list's folder; blank lines and ``#`` comments skipped), or of a
    sequence of paths. Files are not opened here: a missing or broken one fails on its own later.
    """
    if isinstance(videos, (str, Path)):
        source = Path(videos)
        if source.is_dir():
            paths = sorted(
                path
                for path in source.iterdir()
                if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES
            )
            if not paths:
                raise FileNotFoundError(
                    f"--videos {source}: no video files in it (suffixes "
                    f"{', '.join(sorted(VIDEO_SUFFIXES))})"
                )
        elif source.suffix == ".txt" and source.is_file():
            paths = _read_list(source)
        elif not source.exists():
            raise FileNotFoundError(f"--videos {source}: no such folder or .txt list")
        else:
            raise ValueError(
                f"--videos {source}: give a folder of videos or a .txt list of video paths, "
                "one a line"
            )
    else:
        paths = [Path(path) for path in videos]
        if not paths:
            raise ValueError("no videos given")
    return _named(paths)


def _read_list(source: Path) -> list[Path]:
    paths = []
    for line in source.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line).expanduser()
            paths.append(path if path.is_absolute() else source.parent / path)
    if not paths:
        raise ValueError(f"--videos {source}: lists no video paths")
    return paths


def _named(paths: Sequence[Path]) -> list[Video]:
    """Videos named by their stems; two files whose feature files would collide are an error."""
    from avvp.data.dataset import feature_key, video_name_problem

    seen: dict[str, Path] = {}
    named = []
    for path in paths:
        video = Video(path, path.stem)
        problem = video_name_problem(video.filename)
        if problem:
            raise ValueError(f"{path}: its name {video.filename!r} {problem}; rename the file")
        key = feature_key(video.filename)
        if key in seen:
            raise ValueError(
                f"{seen[key]} and {path} would both write feats/<name>/{key}.npy; rename one "
                "(a video's files are named by its file stem)"
            )
        seen[key] = path
        named.append(video)
    return named


# --- one video ----------------------------------------------------------------------------------


def extract_video(
    path: str | Path, extractors: Sequence[Extractor], seconds: int | None = None
) -> dict[str, np.ndarray]:
    """Every extractor's ``(seconds * frames, dim)`` float32 features of one video, in memory.

    ``seconds`` defaults to :func:`~avvp.extraction.base.segment_count` of its duration. A video
    without the stream an extractor reads, or shorter than 1 s, is a :class:`VideoError` before
    any network runs.
    """
    from avvp.extraction.media import probe

    path = Path(path)
    info = probe(path)
    for stream, present in (("audio", info.has_audio), ("visual", info.has_video)):
        users = [extractor.name for extractor in extractors if extractor.stream == stream]
        if users and not present:
            track = "audio track" if stream == "audio" else "video stream"
            raise VideoError(f"{path}: has no {track} (needed by {', '.join(users)})")
    if seconds is None:
        seconds = segment_count(info.duration, path)
    features = {}
    for extractor in extractors:
        array = extractor.extract(path, seconds)
        expected = (seconds * extractor.frames, extractor.dim)
        if not isinstance(array, np.ndarray) or array.shape != expected:
            found = getattr(array, "shape", type(array).__name__)
            raise RuntimeError(
                f"extractor {extractor.name!r} returned {found} for {path}, expected {expected}"
            )
        if not np.isfinite(array).all():
            raise VideoError(f"{path}: {extractor.name} features hold NaN or inf values")
        features[extractor.name] = array.astype(np.float32, copy=False)
    return features


def segment_features(array: np.ndarray, frames: int) -> np.ndarray:
    """``(seconds * frames, dim)`` rows averaged to ``(seconds, dim)``, as the data layer does."""
    return array.reshape(-1, frames, array.shape[1]).mean(axis=1, dtype=np.float32)


# --- extractors and their record ----------------------------------------------------------------


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available here; use cpu or auto")
    return resolved


def feature_list(features: str | Sequence[str]) -> list[str]:
    """``"vggish,res152"`` or a sequence: names in order, each once."""
    names = features.split(",") if isinstance(features, str) else list(features)
    names = [name.strip() for name in names if name.strip()]
    if not names:
        raise ValueError("--features names no feature set")
    return list(dict.fromkeys(names))


def build_extractors(
    features: Sequence[str],
    weights: str | Path | None,
    random_weights: bool,
    device: torch.device,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Extractor]:
    """One extractor per feature set, weights loaded; a missing weight file fails here."""
    from avvp.registry import create

    options = dict(options or {})
    unknown = sorted(set(options) - set(features))
    if unknown:
        raise ValueError(f"options for {', '.join(unknown)}, which --features does not name")
    if weights is not None and random_weights:
        raise ValueError("give --weights DIR or --random-weights, not both")
    if weights is not None and not Path(weights).is_dir():
        raise FileNotFoundError(f"--weights {weights}: no such folder")
    extractors = []
    for name in features:
        kwargs = dict(options.get(name, {}))
        try:
            extractor = create(
                "extractor",
                name,
                weights=weights,
                device=device,
                random_weights=random_weights,
                **kwargs,
            )
        except TypeError as error:
            raise ValueError(f"--option {name}.*: {error}") from None
        extractors.append(extractor)
    return extractors


def describe(extractor: Extractor, options: Mapping[str, Any]) -> dict[str, Any]:
    """What extraction.json records of a feature set; equal records mean equal features.

    The weight files are the extractor's ``weight_files`` (paths; a folder stands for every
    file in it), each with its sha256.
    """
    kind = type(extractor)
    record: dict[str, Any] = {
        "extractor": f"{kind.__module__}.{kind.__qualname__}",
        "dim": int(extractor.dim),
        "frames": int(extractor.frames),
        "stream": extractor.stream,
        "options": json.loads(json.dumps(dict(options), default=str)),
    }
    if extractor.random_weights:
        record["weights"] = RANDOM
    else:
        record["weights"] = {
            str(path): file_sha256(path)
            for listed in extractor.weight_files
            for path in _files(Path(listed))
        }
    return record


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(child for child in path.rglob("*") if child.is_file())
    else:
        yield path


# --- the output folder --------------------------------------------------------------------------


def read_metadata(out: Path) -> dict[str, Any] | None:
    """``out/extraction.json``, or None if there is none; anything else there is an error."""
    path = out / METADATA
    if not path.is_file():
        return None
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not readable as an avvp extraction record ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not an `avvp extract` record; choose another --out")
    return metadata


def warn_if_random_features(folder: Path) -> None:
    """A warning, every time, where ``folder``'s features were made by ``avvp extract
    --random-weights`` (its extraction.json says so); nothing for other folders."""
    import warnings

    if (read_metadata(folder) or {}).get("random_weights"):
        warnings.warn(f"{folder}: features {RANDOM_WARNING}", stacklevel=3)


def check_out(out: Path) -> dict[str, Any] | None:
    """Refuse an ``out`` that is a file, or a non-empty folder that extract did not write;
    returns the metadata of an earlier extraction there (None for a new or empty folder)."""
    from avvp.commands.common import check_output_folder

    check_output_folder(out, "--out")
    metadata = read_metadata(out) if out.is_dir() else None
    if metadata is None and out.is_dir() and any(out.iterdir()):
        raise ValueError(
            f"--out {out} is not empty and holds no {METADATA}: extract writes only into a new "
            "or empty folder or one it wrote; choose another --out"
        )
    return metadata


def _check_same_settings(out: Path, previous: Mapping[str, Any], records: Mapping) -> None:
    for name, record in records.items():
        before = previous.get(name)
        if before is None or before == record:
            continue
        changed = sorted(key for key in {*before, *record} if before.get(key) != record.get(key))
        raise ValueError(
            f"{out / 'feats' / name} was extracted with other settings ({', '.join(changed)} "
            f"differ, see {out / METADATA}); extract into another --out, or delete "
            f"{out / 'feats' / name} to extract it again"
        )


def _valid(path: Path, shape: tuple[int, int]) -> bool:
    """Whether a feature file left by an earlier run is complete and sound."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return array.shape == shape and array.dtype == np.float32 and bool(np.isfinite(array).all())


def _save(path: Path, array: np.ndarray) -> None:
    from avvp.io_utils import atomic_write

    atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False))


def _complete(out: Path, key: str, names: Sequence[str]) -> bool:
    return all((out / "feats" / name / f"{key}.npy").is_file() for name in names)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- the whole run ------------------------------------------------------------------------------


def extract(
    videos: str | Path | Sequence[str | Path],
    out: str | Path,
    features: str | Sequence[str] = DEFAULT_FEATURES,
    weights: str | Path | None = None,
    random_weights: bool = False,
    device: str | torch.device = "auto",
    progress: bool = True,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> ExtractionSummary:
    """Extract ``features`` of ``videos`` into ``out`` in the LLP layout (module docstring).

    ``videos``: a folder, a ``.txt`` list or a sequence of paths (:func:`collect_videos`);
    ``weights``: the folder of pretrained weight files (``random_weights``: untrained networks,
    for plumbing tests only, recorded as such); ``options``: per feature set, keyword options of
    its extractor (e.g. ``{"res152": {"batch_size": 16}}``). Everything that can be checked
    before the first video is (inputs, output folder, weights, settings of an earlier run).
    """
    from tqdm.auto import tqdm

    from avvp import __version__
    from avvp.data.dataset import VIDEO_LIST, feature_key, write_video_list
    from avvp.io_utils import write_json

    out = Path(out)
    names = feature_list(features)
    inputs = collect_videos(videos)
    metadata = check_out(out) or {}
    resolved = resolve_device(device)
    options = dict(options or {})
    extractors = build_extractors(names, weights, random_weights, resolved, options)
    records = {ex.name: describe(ex, options.get(ex.name, {})) for ex in extractors}
    _check_same_settings(out, metadata.get("features", {}), records)

    recorded: dict[str, Any] = dict(metadata.get("videos", {}))
    feature_records = {**metadata.get("features", {}), **records}
    random = any(record["weights"] == RANDOM for record in feature_records.values())
    summary = ExtractionSummary(out, random_weights=random)
    started = _now()

    def save_record(finished: bool) -> None:
        listed = [
            filename
            for filename in recorded
            if recorded[filename]["status"] == "done"
            and _complete(out, feature_key(filename), list(feature_records))
        ]
        write_video_list(out / VIDEO_LIST, listed)
        write_json(
            out / METADATA,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "avvp_version": __version__,
                "random_weights": random,
                **({"warning": RANDOM_WARNING} if random else {}),
                "video_list": VIDEO_LIST,
                "features": feature_records,
                "last_run": {
                    "started": started,
                    "finished": _now() if finished else None,
                    "device": str(resolved),
                    "extracted": len(summary.done),
                    "skipped": len(summary.skipped),
                    "failed": len(summary.failed),
                },
                "videos": recorded,
            },
        )

    # Written before the first video: a killed first run leaves a folder marked as ours, which
    # the next run resumes instead of refusing.
    out.mkdir(parents=True, exist_ok=True)
    save_record(finished=False)
    bar = tqdm(inputs, desc="extract", unit="video", disable=not progress)
    try:
        for video in bar:
            _extract_one(video, out, extractors, recorded, summary)
            bar.set_postfix(failed=len(summary.failed), refresh=False)
    finally:
        bar.close()
        save_record(finished=True)
    return summary


def _extract_one(
    video: Video,
    out: Path,
    extractors: Sequence[Extractor],
    recorded: dict[str, Any],
    summary: ExtractionSummary,
) -> None:
    """Extract what one video lacks; its outcome goes to ``recorded`` and ``summary``."""
    from avvp.extraction.media import probe

    source = str(video.path.resolve())
    earlier = recorded.get(video.filename)
    if earlier is not None and earlier.get("source") != source:
        reason = (
            f"{video.path}: its name {video.filename!r} is taken in {out / METADATA} by "
            f"{earlier.get('source')}; rename the file or extract into another --out"
        )
        summary.failed[video.filename] = reason
        return
    entry: dict[str, Any] = {"source": source, "seconds": None}
    try:
        seconds = segment_count(probe(video.path).duration, video.path)
        entry["seconds"] = seconds
        paths = {ex.name: out / "feats" / ex.name / f"{video.key}.npy" for ex in extractors}
        missing = [
            ex for ex in extractors if not _valid(paths[ex.name], (seconds * ex.frames, ex.dim))
        ]
        if missing:
            for name, array in extract_video(video.path, missing, seconds).items():
                _save(paths[name], array)
            summary.done.append(video.filename)
        else:
            summary.skipped.append(video.filename)
        entry["status"] = "done"
    except VideoError as error:
        entry.update(status="failed", error=str(error))
        summary.failed[video.filename] = str(error)
    recorded[video.filename] = entry
