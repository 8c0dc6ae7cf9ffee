"""Slow, obvious per-video implementation of the SPEC section 3 protocol.

Written loop by loop from the protocol text, for testing the vectorised metric against. It keeps
the reference implementation's habits (lists of events, first-match break, Python floats).
"""

from __future__ import annotations

import numpy as np


def extract_events(sequence: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of ones as half-open (start, end) pairs."""
    events = []
    start = None
    for t, value in enumerate(list(sequence) + [0]):
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


def mean_f1(counts: list[tuple[int, int, int]]) -> float:
    scores = []
    for tp, fp, fn in counts:
        if tp + fp > 0 or tp + fn > 0:
            scores.append(2 * tp / (2 * tp + fn + fp))
    return 1.0 if not scores else sum(scores) / len(scores)


def video_scores(pa, pv, ga, gv, count_fn, epsilon):
    """pa, pv, ga, gv: (C, T) 0/1 arrays of one video -> (audio, visual, av, event) scores."""
    pav, gav = pa * pv, ga * gv
    n_classes = pa.shape[0]
    audio = [count_fn(pa[c], ga[c], epsilon) for c in range(n_classes)]
    visual = [count_fn(pv[c], gv[c], epsilon) for c in range(n_classes)]
    av = [count_fn(pav[c], gav[c], epsilon) for c in range(n_classes)]
    pooled = [tuple(x + y for x, y in zip(a, v)) for a, v in zip(audio, visual)]
    return mean_f1(audio), mean_f1(visual), mean_f1(av), mean_f1(pooled)


def naive_evaluate(pred_audio, pred_visual, gt_audio, gt_visual, epsilon: float = 0.0) -> dict:
    """Arrays of shape (V, T, C), 0/1. Returns the ten numbers in percent."""
    result = {}
    for level, count_fn in (("segment", segment_counts), ("event", event_counts)):
        per_video = [
            video_scores(
                np.asarray(pred_audio[i]).T.astype(int),
                np.asarray(pred_visual[i]).T.astype(int),
                np.asarray(gt_audio[i]).T.astype(int),
                np.asarray(gt_visual[i]).T.astype(int),
                count_fn,
                epsilon,
            )
            for i in range(len(pred_audio))
        ]
        audio, visual, av, event = (100 * np.mean([s[k] for s in per_video]) for k in range(4))
        result[level] = {
            "audio": audio,
            "visual": visual,
            "audio_visual": av,
            "type": (audio + visual + av) / 3,
            "event": event,
        }
    return result
