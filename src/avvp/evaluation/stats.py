"""How sure a comparison of two methods is: paired differences with confidence intervals.

Two sources of chance move a method's score on a benchmark: the training seed, and which videos
happen to be in the test split. Each has its interval here, for the difference ``method -
baseline`` of a metric (in F-score points):

* **over seeds** (:func:`t_interval`): the per-seed differences (both methods trained with the
  same seed on the same dataset), a Student t interval of their mean. It says whether another
  set of seeds would likely give the same sign; with 3 seeds it is wide (t = 4.30 at 95 %).
* **over test videos** (:func:`paired_bootstrap`): the test videos are shared by both methods, so
  each video gives a paired difference of its per-video F-score, averaged over the seeds. The
  percentile bootstrap resamples videos with replacement and recomputes the mean difference; it
  says whether another test split of the same kind would likely give the same sign. The mean
  over videos of a per-video score is exactly how the protocol averages (SPEC section 3).

Everything is vectorised over trailing axes (several metrics at once) and seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
RESAMPLES = 2000


def mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation (ddof=1; 0 for one value) over the first axis."""
    values = np.asarray(values, dtype=np.float64)
    std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1:])
    return values.mean(axis=0), std


def t_interval(
    differences: np.ndarray, level: float = LEVEL
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) of paired differences over the first axis (seeds): the Student t
    interval ``mean -+ t_{(1+level)/2, n-1} * sd / sqrt(n)``; NaN bounds for fewer than 2."""
    differences = np.asarray(differences, dtype=np.float64)
    count = len(differences)
    mean = differences.mean(axis=0)
    if count < 2:
        nan = np.full(mean.shape, np.nan)
        return mean, nan, nan.copy()
    half = stats.t.ppf((1 + level) / 2, count - 1) * differences.std(axis=0, ddof=1)
    half = half / np.sqrt(count)
    return mean, mean - half, mean + half


def paired_bootstrap(
    method: np.ndarray,
    baseline: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(difference, low, high): percentile bootstrap over videos of the mean per-video difference.

    ``method`` and ``baseline`` are (seeds, videos, ...) per-video scores, rows paired (same
    seed, same video). Each resample draws the videos with replacement, the same draw for both
    methods, and takes the mean over the drawn videos of the seed-averaged difference.
    """
    method, baseline = _paired("method", method, "baseline", baseline)
    per_video = method.mean(axis=0) - baseline.mean(axis=0)  # (videos, ...)
    draws = np.random.default_rng(seed).integers(0, len(per_video), (resamples, len(per_video)))
    means = per_video[draws].mean(axis=1)  # (resamples, ...)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return per_video.mean(axis=0), low, high


def excludes_zero(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Whether the interval [low, high] lies wholly on one side of 0 (False where NaN)."""
    low, high = np.asarray(low), np.asarray(high)
    return (low > 0) | (high < 0)


@dataclass(frozen=True)
class Comparison:
    """``method - baseline`` of one or more metrics (arrays over trailing axes), in points."""

    difference: np.ndarray  # mean over the paired seeds (and videos: the same number)
    seed_low: np.ndarray  # t interval over seeds
    seed_high: np.ndarray
    video_low: np.ndarray  # paired bootstrap over test videos
    video_high: np.ndarray

    @property
    def significant(self) -> np.ndarray:
        """Both intervals exclude 0 (and so lie on the same side, the difference's)."""
        return excludes_zero(self.seed_low, self.seed_high) & excludes_zero(
            self.video_low, self.video_high
        )


def compare(
    method: np.ndarray,
    baseline: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> Comparison:
    """Both intervals of ``method - baseline`` from (seeds, videos, ...) paired per-video scores.

    A run's metric is the mean of its per-video scores, so the per-seed differences are the
    video means of the paired rows.
    """
    method, baseline = _paired("method", method, "baseline", baseline)
    difference, seed_low, seed_high = t_interval(method.mean(axis=1) - baseline.mean(axis=1), level)
    _, video_low, video_high = paired_bootstrap(method, baseline, resamples, seed, level)
    return Comparison(difference, seed_low, seed_high, video_low, video_high)


def _paired(
    name: str, values: np.ndarray, other_name: str, other: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if values.shape != other.shape or values.ndim < 2 or 0 in values.shape[:2]:
        raise ValueError(
            f"{name} and {other_name} must be paired (seeds, videos, ...) scores of one shape, "
            f"found {values.shape} and {other.shape}"
        )
    return values, other
