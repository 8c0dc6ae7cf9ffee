"""Pseudo-label files: segment-level labels per stream that any method can train from.

A pseudo-label file is an ``.npz`` with

* ``video_ids`` (V,) strings: the 11-character video ids (``SplitData.video_ids``), unique;
* ``classes`` (25,) strings: the LLP class names in LLP order (``avvp.classes.CLASSES``);
* ``audio`` and/or ``visual`` (V, 10, 25): bool, 0/1 integers or floats in [0, 1] (soft labels).

:func:`load_pseudo_labels` validates everything and returns float32 arrays; :func:`plg_labels`
is VPLAN's pseudo-label generation from CLIP scores (SPEC section 7), and
:func:`label_quality` scores a label file against dense ground truth the way the VPLAN paper's
Tables I and II do.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avvp.classes import CLASSES, NUM_CLASSES, NUM_SEGMENTS
from avvp.io_utils import atomic_write

STREAMS = ("audio", "visual")
# PLG's threshold on the CLIP softmax scores (VPLAN paper, Table I).
PLG_THRESHOLD = 0.04
# Soft labels are binarised here before the (binary) evaluation protocol scores them.
SOFT_LABEL_THRESHOLD = 0.5
MAX_NAMED = 5


@dataclass(frozen=True)
class PseudoLabels:
    """Segment-level pseudo labels of some videos, (V, T, C) float32 in [0, 1] per stream."""

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

    def aligned(self, video_ids: Sequence[str]) -> PseudoLabels:
        """The labels of ``video_ids``, in that order; a ValueError names the ids not covered."""
        index = {identifier: row for row, identifier in enumerate(self.video_ids)}
        missing = [identifier for identifier in video_ids if identifier not in index]
        if missing:
            raise ValueError(
                f"{self.source}: no labels for {len(missing)} of the {len(video_ids)} videos "
                f"asked for: {_first_few(missing)}"
            )
        rows = np.array([index[identifier] for identifier in video_ids], dtype=np.intp)

        def pick(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[rows]

        return PseudoLabels(
            tuple(video_ids), pick(self.audio), pick(self.visual), source=self.source
        )


def save_pseudo_labels(
    path: Path,
    video_ids: Sequence[str],
    *,
    audio: np.ndarray | None = None,
    visual: np.ndarray | None = None,
) -> Path:
    """Validate and write a pseudo-label file atomically; returns ``path``.

    Binary labels are stored as bool, soft ones as float32.
    """
    path = Path(path)
    where = f"pseudo labels for {path}"
    ids = _checked_ids(np.asarray(video_ids), where)
    arrays: dict[str, np.ndarray] = {"video_ids": np.array(ids), "classes": np.array(CLASSES)}
    for name, array in (("audio", audio), ("visual", visual)):
        if array is not None:
            checked = _checked_stream(np.asarray(array), name, ids, where)
            binary = checked.dtype == np.bool_ or np.isin(checked, (0, 1)).all()
            arrays[name] = checked.astype(bool if binary else np.float32)
    if len(arrays) == 2:
        raise ValueError(f"{where}: give audio and/or visual labels")
    return atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))


def load_pseudo_labels(path: Path, video_ids: Sequence[str] | None = None) -> PseudoLabels:
    """Read and validate a pseudo-label file; with ``video_ids``, aligned to them.

    Raises FileNotFoundError for a missing file and ValueError, naming the file and the array,
    video and segment at fault, for anything else: not an .npz, missing keys, a wrong shape,
    NaN/inf or values outside [0, 1], another class list, duplicate ids, no stream at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pseudo-label file not found: {path}")
    try:
        stored = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npz pseudo-label file ({error})") from None
    if not isinstance(stored, Mapping):
        raise ValueError(
            f"{path}: a single .npy array, not an .npz pseudo-label file with video_ids, "
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
    if not any(name in arrays for name in STREAMS):
        raise ValueError(
            f"{where}: no 'audio' or 'visual' array, so no labels (found {sorted(arrays)})"
        )
    ids = _checked_ids(arrays["video_ids"], where)
    _check_classes(arrays["classes"], where)
    streams = {
        name: _checked_stream(arrays[name], name, ids, where).astype(np.float32)
        for name in STREAMS
        if name in arrays
    }
    labels = PseudoLabels(ids, streams.get("audio"), streams.get("visual"), source=where)
    return labels if video_ids is None else labels.aligned(video_ids)


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
    """Video-level precision and recall in percent of (V, C) binary labels, two ways.

    ``precision``/``recall``: the per-video values averaged over videos, 0 for a video with no
    predicted (precision) or no true (recall) class; this is how the VPLAN paper's Table I is
    computed (it reproduces its weak-label row: precision 66.96 on LLP val). ``pooled_*``: the
    counts summed over all videos first.
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


def _checked_stream(array: np.ndarray, name: str, ids: tuple[str, ...], where: str) -> np.ndarray:
    expected = (len(ids), NUM_SEGMENTS, NUM_CLASSES)
    if array.shape != expected:
        raise ValueError(
            f"{where}: array {name!r} has shape {array.shape}, expected (videos, segments, "
            f"classes) = {expected}"
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
            video, segment, klass = (int(i) for i in np.argwhere(bad)[0])
            value = array[video, segment, klass].item()
            raise ValueError(
                f"{where}: array {name!r} has {what} ({value!r}) at video {ids[video]!r} "
                f"(row {video}), segment {segment}, class {CLASSES[klass]}; "
                f"{int(bad.sum())} such entries"
            )
    return array
