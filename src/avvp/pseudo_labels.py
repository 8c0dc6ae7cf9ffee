"""Label files: per-stream labels, segment- or video-level, that methods can train from.

A label file is an ``.npz`` with

* ``video_ids`` (V,) strings: the 11-character video ids (``SplitData.video_ids``), unique;
* ``classes`` (25,) strings: the LLP class names in LLP order (``avvp.classes.CLASSES``);
* ``audio`` and/or ``visual``: bool, 0/1 integers or floats in [0, 1] (soft labels), either
  (V, 10, 25), segment-level *pseudo labels* (VPLAN's PLG and PLD write these), or (V, 25),
  *video-level* labels per stream: whether each class is audible / visible anywhere in the video
  (MA's and JoMoLD's refined labels; any method trains on them with ``data.video_labels``).

:func:`load_pseudo_labels` and :func:`load_video_labels` validate everything and return float32
arrays of one level, :func:`load_label_file` reads either; :func:`plg_labels` is VPLAN's
pseudo-label generation from CLIP scores (SPEC section 7), and :func:`label_quality` /
:func:`video_label_quality` score a label file against dense ground truth the way the VPLAN
paper's Tables I and II do.
"""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np

from avvp.classes import CLASSES, NUM_CLASSES, NUM_SEGMENTS
from avvp.io_utils import atomic_write

STREAMS = ("audio", "visual")
# The two levels of label files and what their arrays' axes are.
SEGMENT, VIDEO = "segment", "video"
_AXES = {SEGMENT: "(videos, segments, classes)", VIDEO: "(videos, classes)"}
# PLG's threshold on the CLIP softmax scores (VPLAN paper, Table I).
PLG_THRESHOLD = 0.04
# Soft labels are binarised here before the (binary) evaluation protocol scores them.
SOFT_LABEL_THRESHOLD = 0.5
MAX_NAMED = 5


@dataclass(frozen=True)
class _StreamLabels:
    """Labels of some videos per stream, float32 in [0, 1]; the levels below say the shape."""

    video_ids: tuple[str, ...]
    audio: np.ndarray | None
    visual: np.ndarray | None
    source: str = field(default="pseudo labels", compare=False)  # for error messages

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def streams(self) -> dict[str, np.ndarray]:
        """The streams the labels cover, by name."""
        return {
            name: array
            for name, array in (("audio", self.audio), ("visual", self.visual))
            if array is not None
        }

    def aligned(self, video_ids: Sequence[str], what: str = "videos asked for") -> Self:
        """The labels of ``video_ids``, in that order; a ValueError names the ids not covered
        (``what``: how it names ``video_ids``)."""
        index = {identifier: row for row, identifier in enumerate(self.video_ids)}
        missing = [identifier for identifier in video_ids if identifier not in index]
        if missing:
            raise ValueError(
                f"{self.source}: no labels for {len(missing)} of the {len(video_ids)} {what}: "
                f"{_first_few(missing)}"
            )
        rows = np.array([index[identifier] for identifier in video_ids], dtype=np.intp)

        def pick(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[rows]

        return dataclasses.replace(
            self, video_ids=tuple(video_ids), audio=pick(self.audio), visual=pick(self.visual)
        )


class PseudoLabels(_StreamLabels):
    """Segment-level pseudo labels of some videos, (V, T, C) float32 in [0, 1] per stream."""


class VideoLabels(_StreamLabels):
    """Video-level labels of some videos per stream, (V, C) float32 in [0, 1]."""

    def on_every_segment(self) -> PseudoLabels:
        """Each video's label repeated on its T segments, as the weak label is when scored."""
        return PseudoLabels(
            self.video_ids,
            *(
                None if array is None else np.repeat(array[:, None, :], NUM_SEGMENTS, axis=1)
                for array in (self.audio, self.visual)
            ),
            source=self.source,
        )


def save_pseudo_labels(
    path: Path,
    video_ids: Sequence[str],
    *,
    audio: np.ndarray | None = None,
    visual: np.ndarray | None = None,
) -> Path:
    """Validate and write a segment-level pseudo-label file atomically; returns ``path``.

    Binary labels are stored as bool, soft ones as float32.
    """
    return _save(path, video_ids, SEGMENT, audio=audio, visual=visual)


def save_video_labels(
    path: Path,
    video_ids: Sequence[str],
    *,
    audio: np.ndarray | None = None,
    visual: np.ndarray | None = None,
) -> Path:
    """Validate and write a video-level label file, (V, C) per stream, atomically.

    Binary labels are stored as bool, soft ones as float32; returns ``path``.
    """
    return _save(path, video_ids, VIDEO, audio=audio, visual=visual)


def load_pseudo_labels(path: Path, video_ids: Sequence[str] | None = None) -> PseudoLabels:
    """Read and validate a segment-level pseudo-label file; with ``video_ids``, aligned to them.

    Raises FileNotFoundError for a missing file and ValueError, naming the file and the array,
    video and segment at fault, for anything else: not an .npz, missing keys, a wrong shape
    (video-level labels among them), NaN/inf or values outside [0, 1], another class list,
    duplicate ids, no stream at all.
    """
    labels = _load(Path(path), SEGMENT)
    return labels if video_ids is None else labels.aligned(video_ids)


def load_video_labels(path: Path, video_ids: Sequence[str] | None = None) -> VideoLabels:
    """Read and validate a video-level label file; with ``video_ids``, aligned to them.

    The errors of :func:`load_pseudo_labels`, naming the video and class at fault; a
    segment-level file is an error too.
    """
    labels = _load(Path(path), VIDEO)
    return labels if video_ids is None else labels.aligned(video_ids)


def load_label_file(path: Path) -> PseudoLabels | VideoLabels:
    """A label file of either level, as its first stream's shape says, validated."""
    return _load(Path(path), None)


def _save(
    path: Path,
    video_ids: Sequence[str],
    level: str,
    *,
    audio: np.ndarray | None,
    visual: np.ndarray | None,
) -> Path:
    path = Path(path)
    where = f"{'pseudo' if level == SEGMENT else 'video-level'} labels for {path}"
    ids = _checked_ids(np.asarray(video_ids), where)
    arrays: dict[str, np.ndarray] = {"video_ids": np.array(ids), "classes": np.array(CLASSES)}
    for name, array in (("audio", audio), ("visual", visual)):
        if array is not None:
            checked = _checked_stream(np.asarray(array), name, ids, where, level)
            binary = checked.dtype == np.bool_ or np.isin(checked, (0, 1)).all()
            arrays[name] = checked.astype(bool if binary else np.float32)
    if len(arrays) == 2:
        raise ValueError(f"{where}: give audio and/or visual labels")
    return atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))


def _load(path: Path, level: str | None) -> PseudoLabels | VideoLabels:
    """The label file at ``path`` of ``level`` (None: the level its arrays have)."""
    kind = {SEGMENT: "pseudo-label file", VIDEO: "video-level label file", None: "label file"}
    what = kind[level]
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        stored = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npz {what} ({error})") from None
    if not isinstance(stored, Mapping):
        raise ValueError(
            f"{path}: a single .npy array, not an .npz {what} with video_ids, "
            "classes and audio and/or visual"
        )
    with stored:
        arrays = {}
        for key in stored.files:
            try:
                arrays[key] = stored[key]
            except ValueError as error:  # object arrays need pickle, which we never load
                raise ValueError(f"{path}: array {key!r} cannot be read ({error})") from None
    where = str(path)
    missing = [key for key in ("video_ids", "classes") if key not in arrays]
    if missing:
        raise ValueError(
            f"{where}: missing {', '.join(repr(key) for key in missing)} "
            f"(found {sorted(arrays) or 'no arrays'})"
        )
    present = [name for name in STREAMS if name in arrays]
    if not present:
        raise ValueError(
            f"{where}: no 'audio' or 'visual' array, so no labels (found {sorted(arrays)})"
        )
    ids = _checked_ids(arrays["video_ids"], where)
    _check_classes(arrays["classes"], where)
    if level is None:
        level = VIDEO if arrays[present[0]].ndim == 2 else SEGMENT
    streams = {
        name: _checked_stream(arrays[name], name, ids, where, level).astype(np.float32)
        for name in present
    }
    labels = PseudoLabels if level == SEGMENT else VideoLabels
    return labels(ids, streams.get("audio"), streams.get("visual"), source=where)


def plg_labels(
    scores: np.ndarray, weak: np.ndarray, threshold: float = PLG_THRESHOLD
) -> np.ndarray:
    """VPLAN's PLG: (V, T, C) bool, ``scores >= threshold`` and the video's weak label.

    ``scores`` (V, T, C) are CLIP's softmax scores over the classes, ``weak`` (V, C) the weak
    labels. The paper's Eq. 4 compares with the threshold, but the operator did not survive in
    its text; we take >= (SPEC section 7). It matters only for a score exactly at the threshold.
    """
    scores = np.asarray(scores)
    weak = np.asarray(weak)
    if scores.ndim != 3:
        raise ValueError(f"scores must be (videos, segments, classes), found shape {scores.shape}")
    if weak.shape != (scores.shape[0], scores.shape[2]):
        raise ValueError(
            f"weak labels have shape {weak.shape}, expected (videos, classes) = "
            f"{(scores.shape[0], scores.shape[2])} to match scores {scores.shape}"
        )
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, found {threshold!r}")
    return (scores >= threshold) & weak.astype(bool)[:, None, :]


def video_level(labels: np.ndarray) -> np.ndarray:
    """(V, C) video-level labels from (V, T, C) segment labels: OR over segments (max if soft)."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (videos, segments, classes), found shape {labels.shape}")
    return labels.any(axis=1) if labels.dtype == np.bool_ else labels.max(axis=1)


def video_precision_recall(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Video-level precision, recall and F1 in percent of (V, C) binary labels.

    ``precision``/``recall``: the per-video values averaged over videos, 0 for a video with no
    predicted (precision) or no true (recall) class; this is how the VPLAN paper's Table I is
    computed (it reproduces its weak-label row: precision 66.96 on LLP val). ``pooled_*``: the
    counts summed over all (video, class) pairs first; ``pooled_f1`` is their harmonic mean.
    """
    predicted = np.asarray(predicted).astype(bool)
    truth = np.asarray(truth).astype(bool)
    hits = (predicted & truth).sum(axis=1)
    said, real = predicted.sum(axis=1), truth.sum(axis=1)
    precision = np.divide(hits, said, out=np.zeros(len(hits)), where=said > 0)
    recall = np.divide(hits, real, out=np.zeros(len(hits)), where=real > 0)
    return {
        "precision": 100 * float(precision.mean()),
        "recall": 100 * float(recall.mean()),
        "pooled_precision": 100 * float(hits.sum() / max(said.sum(), 1)),
        "pooled_recall": 100 * float(hits.sum() / max(real.sum(), 1)),
        "pooled_f1": 100 * float(2 * hits.sum() / max(said.sum() + real.sum(), 1)),
    }


def label_quality(
    labels: PseudoLabels, weak: np.ndarray, truth_audio: np.ndarray, truth_visual: np.ndarray
) -> dict:
    """How close pseudo labels come to dense ground truth (the VPLAN paper's Tables I and II).

    ``labels`` aligned to the split; ``weak`` (V, C); ``truth_*`` (V, T, C) bool. Returns, per
    stream the labels cover and for the weak label alone (``weak``, the reference row: the weak
    label on every segment of both streams), the video-level precision and recall
    (:func:`video_precision_recall`) and the segment- and event-level F-scores of the exact
    evaluation protocol; soft labels count as positive at >= 0.5. ``audio_visual`` and ``type``
    F-scores are given where both streams are.
    """
    from avvp.evaluation.metrics import evaluate

    truth = {"audio": np.asarray(truth_audio, bool), "visual": np.asarray(truth_visual, bool)}
    weak_segments = np.broadcast_to(np.asarray(weak, bool)[:, None, :], truth["audio"].shape)
    rows = {
        "labels": {name: array >= SOFT_LABEL_THRESHOLD for name, array in labels.streams.items()},
        "weak": {"audio": weak_segments, "visual": weak_segments},
    }
    result: dict = {}
    for row, streams in rows.items():
        # A missing stream is scored as its ground truth and left out of the report.
        pred = {name: streams.get(name, truth[name]) for name in STREAMS}
        metrics = evaluate(pred["audio"], pred["visual"], truth["audio"], truth["visual"])
        result[row] = {}
        for name in streams:
            result[row][name] = {
                "video": video_precision_recall(
                    video_level(streams[name]), video_level(truth[name])
                ),
                "segment_f1": metrics["segment"][name],
                "event_f1": metrics["event"][name],
            }
        if len(streams) == len(STREAMS):
            result[row]["audio_visual"] = {
                level: {key: metrics[level][key] for key in ("audio_visual", "type", "event")}
                for level in ("segment", "event")
            }
    return result


def video_label_quality(
    labels: VideoLabels, weak: np.ndarray, truth_audio: np.ndarray, truth_visual: np.ndarray
) -> dict:
    """:func:`label_quality` of video-level labels, each put on every segment of its video.

    The video-level numbers compare the labels with the ground truth's video level (a class is
    audible in a video iff it is in any of its audio segments, likewise visible); the segment-
    and event-level F-scores are those of the labels on every segment, as the weak row is scored,
    so that row is their reference (a video-level label cannot place an event in time).
    """
    return label_quality(labels.on_every_segment(), weak, truth_audio, truth_visual)


def _first_few(values: Sequence[str]) -> str:
    shown = ", ".join(repr(value) for value in values[:MAX_NAMED])
    return shown + (f", ... ({len(values)} in all)" if len(values) > MAX_NAMED else "")


def _checked_ids(ids: np.ndarray, where: str) -> tuple[str, ...]:
    if ids.ndim != 1 or ids.dtype.kind not in "US":
        raise ValueError(
            f"{where}: 'video_ids' must be a 1-D array of strings, found shape {ids.shape} "
            f"dtype {ids.dtype}"
        )
    if len(ids) == 0:
        raise ValueError(f"{where}: 'video_ids' is empty")
    values = tuple(str(value) for value in ids.astype(str))
    first: dict[str, int] = {}
    duplicates = []
    for row, identifier in enumerate(values):
        if identifier in first:
            duplicates.append(f"{identifier!r} (rows {first[identifier]} and {row})")
        else:
            first[identifier] = row
    if duplicates:
        shown = ", ".join(duplicates[:MAX_NAMED])
        more = f", ... ({len(duplicates)} in all)" if len(duplicates) > MAX_NAMED else ""
        raise ValueError(f"{where}: duplicate video ids in 'video_ids': {shown}{more}")
    return values


def _check_classes(classes: np.ndarray, where: str) -> None:
    if classes.ndim != 1 or classes.dtype.kind not in "US":
        raise ValueError(
            f"{where}: 'classes' must be a 1-D array of the {NUM_CLASSES} LLP class names, "
            f"found shape {classes.shape} dtype {classes.dtype}"
        )
    names = [str(name) for name in classes.astype(str)]
    for position, (found, expected) in enumerate(zip(names, CLASSES, strict=False)):
        if found != expected:
            raise ValueError(
                f"{where}: 'classes' differs from the LLP class order at position {position}: "
                f"{found!r}, expected {expected!r} (avvp.classes.CLASSES)"
            )
    if len(names) != NUM_CLASSES:
        raise ValueError(
            f"{where}: 'classes' has {len(names)} names, expected the {NUM_CLASSES} LLP classes"
        )


def _level_shape(level: str, videos: int) -> tuple[int, ...]:
    return (videos, NUM_SEGMENTS, NUM_CLASSES) if level == SEGMENT else (videos, NUM_CLASSES)


def _checked_stream(
    array: np.ndarray, name: str, ids: tuple[str, ...], where: str, level: str
) -> np.ndarray:
    expected = _level_shape(level, len(ids))
    if array.shape != expected:
        other = VIDEO if level == SEGMENT else SEGMENT
        hint = (
            f": {other}-level labels, where {level}-level ones are needed"
            if array.shape == _level_shape(other, len(ids))
            else ""
        )
        raise ValueError(
            f"{where}: array {name!r} has shape {array.shape}, expected "
            f"{_AXES[level]} = {expected}{hint}"
        )
    if array.dtype == np.bool_:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(
            f"{where}: array {name!r} has dtype {array.dtype}, expected bool or numbers"
        )
    for bad, what in (
        (~np.isfinite(array), "a non-finite value"),
        (~((array >= 0) & (array <= 1)), "a value outside [0, 1]"),
    ):
        if bad.any():
            position = tuple(int(i) for i in np.argwhere(bad)[0])
            video, klass = position[0], position[-1]
            segment = f", segment {position[1]}" if level == SEGMENT else ""
            raise ValueError(
                f"{where}: array {name!r} has {what} ({array[position].item()!r}) at video "
                f"{ids[video]!r} (row {video}){segment}, class {CLASSES[klass]}; "
                f"{int(bad.sum())} such entries"
            )
    return array
