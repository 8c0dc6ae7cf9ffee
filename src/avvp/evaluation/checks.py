"""Checks on a parse before its numbers are printed, warned about as one line each.

A model that predicts no event at all still gets ten well-formed numbers (near 0, but with
nothing to tell them from a weak method), and a prediction file for a few of a split's videos is
scored as if the others predicted nothing. Both are usually a mistake upstream (a diverged run, a
threshold above every probability, a truncated file), so the commands that print final numbers
say so on stderr (:class:`EvaluationWarning`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

# A stream whose predicted events cover fewer than this fraction of a split's segments counts as
# (nearly) empty. LLP's ground truth has an event in most segments of either stream, so no
# trained model should come near it; 1% leaves room for a genuinely sparse subset.
EMPTY_PREDICTION_FRACTION = 0.01


class EvaluationWarning(UserWarning):
    """The numbers about to be printed describe a parse that is probably not what was meant."""


def predicted_fraction(pred: np.ndarray) -> float:
    """The fraction of a (V, T, C) parse's segments (video, second) with at least one event."""
    pred = np.asarray(pred, dtype=bool)
    return float(pred.any(axis=2).mean()) if pred.size else 0.0


def empty_streams(
    pred_audio: np.ndarray,
    pred_visual: np.ndarray,
    min_fraction: float = EMPTY_PREDICTION_FRACTION,
) -> dict[str, float]:
    """Stream -> its :func:`predicted_fraction`, for the streams below ``min_fraction``."""
    fractions = {"audio": predicted_fraction(pred_audio), "visual": predicted_fraction(pred_visual)}
    return {stream: value for stream, value in fractions.items() if value < min_fraction}


def warn_if_empty(pred_audio: np.ndarray, pred_visual: np.ndarray, split: str) -> None:
    """Warn, naming ``split``, when a stream of the parse is (nearly) empty."""
    empty = empty_streams(pred_audio, pred_visual)
    if empty:
        streams = " and ".join(f"{value:.1%} of {stream}" for stream, value in empty.items())
        warnings.warn(
            f"the prediction on {split} is (nearly) empty: an event in {streams} segments "
            f"(warned below {EMPTY_PREDICTION_FRACTION:.0%}), so its numbers score predicting "
            "(almost) nothing; check the run's training and eval.threshold / eval.gate",
            EvaluationWarning,
            stacklevel=2,
        )


def videos_without_rows(pred: np.ndarray) -> int:
    """How many videos of a (V, T, C) parse read from a prediction file have no row in it.

    Every row of a prediction file turns on at least one segment, so these are exactly the
    videos whose parse is all zeros.
    """
    return int((~np.asarray(pred, dtype=bool).any(axis=(1, 2))).sum())


def warn_if_rows_missing(pred: np.ndarray, path: str | Path, split: str) -> None:
    """Warn when some videos of ``split`` have no row in the prediction file ``path``."""
    missing = videos_without_rows(pred)
    if missing:
        warnings.warn(
            f"{missing} of {len(pred)} {split} videos have no prediction row in {path}; "
            "they count as predicting nothing",
            EvaluationWarning,
            stacklevel=2,
        )
