"""The exact AVVP evaluation protocol (SPEC section 3), vectorised over videos and classes.

The reference implementation loops over videos, classes and event lists in Python; here every
step is an array operation, so a 1,200-video split scores in milliseconds and training can
validate every epoch. ``tests/naive_eval.py`` keeps a loop-by-loop transcription of the protocol,
and the tests hold the two equal on random inputs and reproduce the SPEC reference table.

Segment-level inputs are (videos V, segments T, classes C) arrays; any T and C work.

Event level. With T segments there are only K = T (T + 1) / 2 half-open intervals [s, e), and
whether two of them match (IoU >= 0.5) depends on the pair alone, so one (K, K) boolean table per
(T, IoU mode) replaces every IoU computation. The events (maximal runs of ones) of all (stream,
video, class) rows are found at once from where the zero-padded rows flip; each event is then
looked up against all events of the other side in its row (at most ceil(T / 2) of them, laid out
as a padded table). A predicted event is a TP iff it matches at least one ground-truth event, a
ground-truth event an FN iff it matches no predicted event. The reference does not enforce
one-to-one matching; it would change nothing, since two disjoint runs cannot both reach IoU 0.5
with one interval.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from avvp.choices import Choice
from avvp.evaluation.summary import HEADERS, LEVELS, METRICS

# The four per-video scores of a level, in column order of ``Evaluation.per_video``; "event" is
# Event@AV, the F1 of the audio and visual counts pooled per class.
SCORES = ("audio", "visual", "audio_visual", "event")
# The exclusive reading divides the intersection by (union + 1e-12) before comparing with 0.5.
EXCLUSIVE_EPSILON = 1e-12
# The reference gates segments with the video-level probability at this fixed threshold.
VIDEO_THRESHOLD = 0.5


class IoUMode(Choice, label="iou mode"):
    """How an event IoU of exactly 0.5 counts.

    ``inclusive``: IoU >= 0.5 matches, as SPEC section 3 states; this reproduces the published
    label-only reference table to the last digit, and it is what the HAN evaluation code
    (YapengTian/AVVP-ECCV20 ``utils/eval_metrics.py``) computes: ``intersection >= 0.5 * union``.
    ``exclusive``: intersection / (union + 1e-12) >= 0.5, an epsilon-guarded reading found in some
    re-implementations, under which IoU = 0.5 is a miss (event-level audio of the weak-label
    predictor on test: 58.44 instead of 63.03). Offered to compare with numbers computed so.
    """

    INCLUSIVE = "inclusive"
    EXCLUSIVE = "exclusive"


class Gate(Choice, label="gate"):
    """Which video-level probability gates the segment predictions.

    ``global``: the reference rule, the global (modality-pooled) video probability gates both
    streams; ``modality``: each stream is gated by its own video probability, as some later
    repositories do; ``none``: segment probabilities alone.
    """

    GLOBAL = "global"
    MODALITY = "modality"
    NONE = "none"


@dataclass(frozen=True)
class Evaluation:
    """Everything the protocol computes for one split, in percent.

    ``metrics``: the ten numbers, ``{"segment": {...}, "event": {...}}`` with keys
    ``audio, visual, audio_visual, type, event``.
    ``per_video``: level -> (V, 4) scores of each video, columns as :data:`SCORES`; the column
    means are the corresponding ``metrics``.
    ``class_f1``: level -> score name (:data:`SCORES`) -> (C,) per-class F1 over the split: the F1
    of that class's TP, FP and FN summed over all videos (for "event", audio and visual counts
    pooled). The protocol itself averages classes within a video; this split-level view is what
    a per-class chart needs. NaN where a class is neither predicted nor present in any video:
    there is nothing to score.
    """

    metrics: dict[str, dict[str, float]]
    per_video: dict[str, np.ndarray]
    class_f1: dict[str, dict[str, np.ndarray]]


def binarize(
    seg_prob_audio: np.ndarray,
    seg_prob_visual: np.ndarray,
    video_prob: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    gate: str | Gate = Gate.GLOBAL,
    video_prob_audio: np.ndarray | None = None,
    video_prob_visual: np.ndarray | None = None,
    class_thresholds: np.ndarray | None = None,
    video_threshold: float = VIDEO_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """Binary parse ``(pred_audio, pred_visual)``, each (V, T, C) bool, from probabilities.

    A segment is positive when its probability is >= ``threshold`` (or, when given, the class's
    entry of the (C,) ``class_thresholds``, which then replaces ``threshold``) and the gating
    video probability (see :class:`Gate`) is >= ``video_threshold``. The defaults are the
    reference rule of SPEC section 3 step 1. Audio-visual predictions are ``audio & visual``.
    """
    gate = Gate.parse(gate)
    audio = _probabilities("seg_prob_audio", seg_prob_audio, ndim=3)
    visual = _probabilities("seg_prob_visual", seg_prob_visual, ndim=3)
    if audio.shape != visual.shape:
        raise ValueError(
            f"seg_prob_audio has shape {audio.shape} but seg_prob_visual {visual.shape}; "
            "both must be (videos, segments, classes)"
        )
    videos, _, classes = audio.shape
    segment_threshold: float | np.ndarray = _finite_threshold("threshold", threshold)
    if class_thresholds is not None:
        segment_threshold = np.asarray(class_thresholds, dtype=np.float64)
        if segment_threshold.shape != (classes,) or not np.isfinite(segment_threshold).all():
            raise ValueError(
                f"class_thresholds must be {classes} finite numbers (one per class), "
                f"found shape {segment_threshold.shape}"
            )
    _finite_threshold("video_threshold", video_threshold)
    pred_audio = audio >= segment_threshold
    pred_visual = visual >= segment_threshold
    if gate is Gate.NONE:
        return pred_audio, pred_visual
    shape = (videos, classes)
    if gate is Gate.GLOBAL:
        audio_gate = visual_gate = _video_gate(
            "video_prob", video_prob, shape, video_threshold, gate
        )
    else:
        audio_gate = _video_gate("video_prob_audio", video_prob_audio, shape, video_threshold, gate)
        visual_gate = _video_gate(
            "video_prob_visual", video_prob_visual, shape, video_threshold, gate
        )
    return pred_audio & audio_gate, pred_visual & visual_gate


def evaluate(
    pred_audio: np.ndarray,
    pred_visual: np.ndarray,
    gt_audio: np.ndarray,
    gt_visual: np.ndarray,
    *,
    iou: str | IoUMode = IoUMode.INCLUSIVE,
) -> dict[str, dict[str, float]]:
    """The ten numbers of SPEC section 3 in percent (unrounded), as ``Evaluation.metrics``."""
    return evaluate_detailed(pred_audio, pred_visual, gt_audio, gt_visual, iou=iou).metrics


def evaluate_detailed(
    pred_audio: np.ndarray,
    pred_visual: np.ndarray,
    gt_audio: np.ndarray,
    gt_visual: np.ndarray,
    *,
    iou: str | IoUMode = IoUMode.INCLUSIVE,
) -> Evaluation:
    """Metrics, per-video scores and per-class F1 of a binary parse against dense ground truth.

    All four inputs are (V, T, C) arrays of bool or 0/1 numbers in the same shape; audio-visual
    predictions and ground truth are the AND of the two streams.
    """
    iou = IoUMode.parse(iou)
    arrays = {
        "pred_audio": pred_audio,
        "pred_visual": pred_visual,
        "gt_audio": gt_audio,
        "gt_visual": gt_visual,
    }
    checked = {name: as_binary(name, value) for name, value in arrays.items()}
    shapes = {name: value.shape for name, value in checked.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"inputs must share one (videos, segments, classes) shape, found {shapes}")
    pa, pv, ga, gv = checked.values()
    # (3 streams, V, T, C): audio, visual, audio-visual.
    pred = np.stack([pa, pv, pa & pv])
    gt = np.stack([ga, gv, ga & gv])
    per_video: dict[str, np.ndarray] = {}
    class_f1: dict[str, dict[str, np.ndarray]] = {}
    metrics: dict[str, dict[str, float]] = {}
    for level, counts in (
        ("segment", _segment_counts(pred, gt)),
        ("event", _event_counts(pred, gt, iou)),
    ):
        # Event@AV pools the audio and visual counts per class before the F1.
        counts = np.concatenate([counts, counts[:, :1] + counts[:, 1:2]], axis=1)
        scores = _video_scores(counts)
        per_video[level] = 100 * scores.T
        class_f1[level] = dict(zip(SCORES, 100 * _class_f1(counts), strict=True))
        audio, visual, audio_visual, event = (100 * scores.mean(axis=1)).tolist()
        metrics[level] = {
            "audio": audio,
            "visual": visual,
            "audio_visual": audio_visual,
            "type": (audio + visual + audio_visual) / 3,
            "event": event,
        }
    return Evaluation(metrics, per_video, class_f1)


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """The ten numbers as a fixed-width table with two decimals, one row per level."""
    width = 14
    lines = [f"{'':<16}" + "".join(f"{header:>{width}}" for header in HEADERS)]
    for level in LEVELS:
        cells = "".join(f"{metrics[level][name]:>{width}.2f}" for name in METRICS)
        lines.append(f"{level + '-level':<16}{cells}")
    return "\n".join(lines)


def as_binary(name: str, value: np.ndarray) -> np.ndarray:
    """``value`` as a (V, T, C) bool array; a clear error (naming ``name``) unless it is one.

    Accepts bool or numbers that are all 0 or 1, so a NaN or a probability passed where a binary
    parse belongs fails loudly instead of being counted as 0.
    """
    array = np.asarray(value)
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(
            f"{name} must be a non-empty (videos, segments, classes) array, found shape "
            f"{array.shape}"
        )
    if array.dtype == np.bool_:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must hold bool or 0/1 numbers, found dtype {array.dtype}")
    bad = ~((array == 0) | (array == 1))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        found = "NaN" if np.isnan(array[where]) else repr(array[where].item())
        raise ValueError(
            f"{name} must hold only 0 and 1 (a binary parse; binarize probabilities first), "
            f"found {found} at (video, segment, class) {where}; {int(bad.sum())} such entries"
        )
    return array.astype(bool)


def runs(parse: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of ones (events) of a (V, T, C) bool array, all at once.

    Returns (video, class, onset, offset) index arrays, offset exclusive, sorted by video, class
    and onset.
    """
    videos, segments, classes = parse.shape
    padded = np.zeros((videos, classes, segments + 2), dtype=bool)
    padded[:, :, 1:-1] = np.moveaxis(parse, 1, -1)
    # A run [s, e) flips the zero-padded row at s and at e. Flips alternate start, end within a
    # row and no run crosses rows, so in flat order they pair up: even flips start, odd ones end.
    flips = np.flatnonzero(padded[:, :, 1:] != padded[:, :, :-1])
    video, klass, onset = np.unravel_index(flips[0::2], (videos, classes, segments + 1))
    return video, klass, onset, flips[1::2] % (segments + 1)


EVENT_STREAMS = ("audio", "visual", "audio-visual")


def stream_events(
    pred_audio: np.ndarray, pred_visual: np.ndarray
) -> list[tuple[str, int, int, int]]:
    """One video's events as the evaluation counts them, from its (T, C) bool parse: a maximal
    run of one class's positive segments in the audio stream, in the visual stream, or in both
    ("audio-visual"; those segments also belong to an audio and to a visual event, as the audio
    and visual scores and the prediction files count them). (stream, class index, onset, offset
    exclusive), by onset, then stream (:data:`EVENT_STREAMS` order), then class."""
    found = []
    for order, parse in enumerate((pred_audio, pred_visual, pred_audio & pred_visual)):
        _, klass, onset, offset = runs(parse[None])
        found += zip(
            onset.tolist(), [order] * len(klass), klass.tolist(), offset.tolist(), strict=True
        )
    return [(EVENT_STREAMS[order], c, start, end) for start, order, c, end in sorted(found)]


def _segment_counts(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(3 TP/FP/FN, streams, V, C) segment counts from (streams, V, T, C) bool arrays."""
    return np.stack(
        [(pred & gt).sum(axis=2), (pred & ~gt).sum(axis=2), (~pred & gt).sum(axis=2)]
    ).astype(np.int64)


def _event_counts(pred: np.ndarray, gt: np.ndarray, iou: IoUMode) -> np.ndarray:
    """(3 TP/FP/FN, streams, V, C) event counts from (streams, V, T, C) bool arrays."""
    streams, videos, segments, classes = pred.shape
    rows = streams * videos * classes
    match = _match_matrix(segments, iou)
    pred_row, pred_interval = _events(pred)
    gt_row, gt_interval = _events(gt)
    # A predicted event is a TP if it matches any ground-truth event of its (stream, video,
    # class), a ground-truth event an FN if it matches no predicted one.
    matched = _any_match(pred_row, pred_interval, gt_row, gt_interval, rows, match)
    missed = ~_any_match(gt_row, gt_interval, pred_row, pred_interval, rows, match)
    tp = np.bincount(pred_row, weights=matched, minlength=rows)
    fp = np.bincount(pred_row, minlength=rows) - tp
    fn = np.bincount(gt_row, weights=missed, minlength=rows)
    return np.stack([tp, fp, fn]).reshape(3, streams, videos, classes).astype(np.int64)


def _events(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximal runs of a (streams, V, T, C) array as (row, interval index k) pairs.

    Row r is the flattened (stream, video, class) index; runs come sorted by row and start.
    """
    _, _, segments, classes = binary.shape
    video, klass, onset, offset = runs(binary.reshape(-1, segments, classes))
    return video * classes + klass, _interval_index(segments)[onset, offset]


def _any_match(
    row: np.ndarray,
    interval: np.ndarray,
    other_row: np.ndarray,
    other_interval: np.ndarray,
    rows: int,
    match: np.ndarray,
) -> np.ndarray:
    """(E,) bool: event e matches at least one of the other events in its row."""
    # Lay the other events out as a (rows, width) table, width = most events in one row (at most
    # ceil(T / 2)), padded with the index K of an empty interval that matches nothing; every
    # event then meets all candidates of its row in one lookup.
    per_row = np.bincount(other_row, minlength=rows)
    slot = np.arange(len(other_row)) - (np.cumsum(per_row) - per_row)[other_row]
    table = np.full((rows, max(int(per_row.max(initial=0)), 1)), len(match) - 1, dtype=np.intp)
    table[other_row, slot] = other_interval
    return match[interval[:, None], table[row]].any(axis=1)


@functools.cache
def _intervals(segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and (exclusive) ends of the K = T (T + 1) / 2 non-empty intervals of 0..T."""
    return np.triu_indices(segments + 1, k=1)


@functools.cache
def _interval_index(segments: int) -> np.ndarray:
    """(T + 1, T + 1): position k of interval [s, e) in :func:`_intervals` (s < e only)."""
    start, end = _intervals(segments)
    index = np.full((segments + 1, segments + 1), -1, dtype=np.intp)
    index[start, end] = np.arange(len(start))
    index.flags.writeable = False
    return index


@functools.cache
def _match_matrix(segments: int, iou: IoUMode) -> np.ndarray:
    """(K + 1, K + 1) bool: intervals i and j have IoU >= 0.5; row and column K match nothing."""
    start, end = _intervals(segments)
    intersection = np.clip(
        np.minimum(end[:, None], end[None, :]) - np.maximum(start[:, None], start[None, :]), 0, None
    )
    # The reference's "union" is the hull of the two intervals; it differs from the true union
    # only for disjoint intervals, whose IoU is 0 either way.
    union = np.maximum(end[:, None], end[None, :]) - np.minimum(start[:, None], start[None, :])
    matrix = np.zeros((len(start) + 1, len(start) + 1), dtype=bool)
    if iou is IoUMode.INCLUSIVE:
        matrix[:-1, :-1] = 2 * intersection >= union
    else:
        matrix[:-1, :-1] = intersection / (union + EXCLUSIVE_EPSILON) >= 0.5
    matrix.flags.writeable = False
    return matrix


def _video_scores(counts: np.ndarray) -> np.ndarray:
    """(4 scores, V) mean F1 over counted classes, 1.0 where no class counts, from counts."""
    tp, fp, fn = counts
    denominator = 2 * tp + fp + fn
    counted = denominator > 0  # the class was predicted (TP + FP > 0) or present (TP + FN > 0)
    f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=counted)
    number = counted.sum(axis=-1)
    total = f1.sum(axis=-1)
    return np.divide(total, number, out=np.ones(total.shape), where=number > 0)


def _class_f1(counts: np.ndarray) -> np.ndarray:
    """(4 scores, C) F1 of the counts summed over videos; NaN for classes with no counts."""
    tp, fp, fn = counts.sum(axis=2)
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.full(tp.shape, np.nan), where=denominator > 0)


def _probabilities(name: str, value: np.ndarray, ndim: int) -> np.ndarray:
    array = np.asarray(value)
    axes = "(videos, segments, classes)" if ndim == 3 else "(videos, classes)"
    if array.ndim != ndim:
        raise ValueError(f"{name} must be a {axes} array, found shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must hold probabilities, found dtype {array.dtype}")
    bad = ~((array >= 0) & (array <= 1))  # NaN fails both comparisons
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], found {array[where].item()!r} at "
            f"index {where}; {int(bad.sum())} such entries (logits instead of probabilities?)"
        )
    return array


def _video_gate(
    name: str, value: np.ndarray | None, shape: tuple[int, int], threshold: float, gate: Gate
) -> np.ndarray:
    """(V, 1, C) bool: the video probability ``value`` is >= ``threshold``."""
    if value is None:
        raise ValueError(f"gate {gate.value!r} needs {name}")
    prob = _probabilities(name, value, ndim=2)
    if prob.shape != shape:
        raise ValueError(f"{name} has shape {prob.shape}, expected (videos, classes) = {shape}")
    return (prob >= threshold)[:, None, :]


def _finite_threshold(name: str, value: float) -> float:
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, found {value!r}")
    return float(value)
