"""Slow, obvious per-video implementation of the SPEC section 3 protocol.

Written loop by loop from the protocol text, for testing the vectorised metric against. It keeps
the reference implementation's habits (lists of events, first-match break, Python floats).
"""

from __future__ import annotations

import numpy as np

EXCLUSIVE_EPSILON = 1e-12  # the exclusive reading's IoU denominator is union + 1e-12
LEVELS = ("segment", "event")
SCORES = ("audio", "visual", "audio_visual", "event")


def extract_events(sequence: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of ones as half-open (start, end) pairs."""
    events = []
    start = None
    for t, value in enumerate([*list(sequence), 0]):
        if value and start is None:
            start = t
        elif not value and start is not None:
            events.append((start, t))
            start = None
    return events


def interval_iou(a: tuple[int, int], b: tuple[int, int], epsilon: float) -> float:
    intersection = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return intersection / (union + epsilon)


def event_counts(pred: np.ndarray, gt: np.ndarray, epsilon: float) -> tuple[int, int, int]:
    pred_events, gt_events = extract_events(pred), extract_events(gt)
    tp = fp = fn = 0
    for p in pred_events:
        if any(interval_iou(p, g, epsilon) >= 0.5 for g in gt_events):
            tp += 1
        else:
            fp += 1
    for g in gt_events:
        if not any(interval_iou(g, p, epsilon) >= 0.5 for p in pred_events):
            fn += 1
    return tp, fp, fn


def segment_counts(pred: np.ndarray, gt: np.ndarray, epsilon: float) -> tuple[int, int, int]:
    tp = int(np.sum(pred * gt))
    fp = int(np.sum(pred * (1 - gt)))
    fn = int(np.sum((1 - pred) * gt))
    return tp, fp, fn


def f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fn + fp)


def mean_f1(counts: list[tuple[int, int, int]]) -> float:
    scores = []
    for tp, fp, fn in counts:
        if tp + fp > 0 or tp + fn > 0:
            scores.append(f1(tp, fp, fn))
    return 1.0 if not scores else sum(scores) / len(scores)


def class_counts(pa, pv, ga, gv, count_fn, epsilon):
    """pa, pv, ga, gv: (C, T) 0/1 arrays of one video -> per score name, a (TP, FP, FN) a class."""
    pav, gav = pa * pv, ga * gv
    n_classes = pa.shape[0]
    audio = [count_fn(pa[c], ga[c], epsilon) for c in range(n_classes)]
    visual = [count_fn(pv[c], gv[c], epsilon) for c in range(n_classes)]
    av = [count_fn(pav[c], gav[c], epsilon) for c in range(n_classes)]
    pooled = [
        tuple(x + y for x, y in zip(a, v, strict=True)) for a, v in zip(audio, visual, strict=True)
    ]
    return {"audio": audio, "visual": visual, "audio_visual": av, "event": pooled}


def all_class_counts(pred_audio, pred_visual, gt_audio, gt_visual, epsilon):
    """level -> one dict per video of :func:`class_counts`."""
    result = {}
    for level, count_fn in (("segment", segment_counts), ("event", event_counts)):
        result[level] = [
            class_counts(
                np.asarray(pred_audio[i]).T.astype(int),
                np.asarray(pred_visual[i]).T.astype(int),
                np.asarray(gt_audio[i]).T.astype(int),
                np.asarray(gt_visual[i]).T.astype(int),
                count_fn,
                epsilon,
            )
            for i in range(len(pred_audio))
        ]
    return result


def naive_per_video(pred_audio, pred_visual, gt_audio, gt_visual, epsilon: float = 0.0) -> dict:
    """level -> list over videos of (audio, visual, audio_visual, event) scores in [0, 1]."""
    counts = all_class_counts(pred_audio, pred_visual, gt_audio, gt_visual, epsilon)
    return {
        level: [tuple(mean_f1(video[name]) for name in SCORES) for video in videos]
        for level, videos in counts.items()
    }


def naive_evaluate(pred_audio, pred_visual, gt_audio, gt_visual, epsilon: float = 0.0) -> dict:
    """Arrays of shape (V, T, C), 0/1. Returns the ten numbers in percent."""
    result = {}
    per_video = naive_per_video(pred_audio, pred_visual, gt_audio, gt_visual, epsilon)
    for level in LEVELS:
        scores = per_video[level]
        audio, visual, av, event = (100 * np.mean([s[k] for s in scores]) for k in range(4))
        result[level] = {
            "audio": audio,
            "visual": visual,
            "audio_visual": av,
            "type": (audio + visual + av) / 3,
            "event": event,
        }
    return result


def naive_class_f1(pred_audio, pred_visual, gt_audio, gt_visual, epsilon: float = 0.0) -> dict:
    """level -> score name -> list over classes of the F1 (percent) of counts summed over videos.

    None where a class has no TP, FP or FN in any video.
    """
    counts = all_class_counts(pred_audio, pred_visual, gt_audio, gt_visual, epsilon)
    result = {}
    for level, videos in counts.items():
        result[level] = {}
        for name in SCORES:
            scores = []
            for c in range(len(videos[0][name])):
                tp = sum(video[name][c][0] for video in videos)
                fp = sum(video[name][c][1] for video in videos)
                fn = sum(video[name][c][2] for video in videos)
                scores.append(None if tp + fp + fn == 0 else 100 * f1(tp, fp, fn))
            result[level][name] = scores
    return result


def naive_binarize(
    seg_prob_audio,
    seg_prob_visual,
    video_prob=None,
    threshold=0.5,
    gate="global",
    video_prob_audio=None,
    video_prob_visual=None,
    class_thresholds=None,
    video_threshold=0.5,
):
    """Element by element: segment prob >= its threshold and, unless ungated, gate prob >= 0.5."""
    videos, segments, classes = np.shape(seg_prob_audio)
    pred_audio = np.zeros((videos, segments, classes), dtype=bool)
    pred_visual = np.zeros((videos, segments, classes), dtype=bool)
    for v in range(videos):
        for c in range(classes):
            cut = threshold if class_thresholds is None else class_thresholds[c]
            if gate == "global":
                gate_audio = gate_visual = video_prob[v][c] >= video_threshold
            elif gate == "modality":
                gate_audio = video_prob_audio[v][c] >= video_threshold
                gate_visual = video_prob_visual[v][c] >= video_threshold
            else:
                gate_audio = gate_visual = True
            for t in range(segments):
                pred_audio[v, t, c] = seg_prob_audio[v][t][c] >= cut and gate_audio
                pred_visual[v, t, c] = seg_prob_visual[v][t][c] >= cut and gate_visual
    return pred_audio, pred_visual
