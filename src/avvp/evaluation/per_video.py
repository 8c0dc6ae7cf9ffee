"""Per-video scores of a split's evaluation, saved beside a run's ``test_metrics.json``.

The protocol's numbers are means over videos of per-video F-scores (SPEC section 3,
:func:`avvp.evaluation.metrics.evaluate_detailed`), so the per-video scores are what a bootstrap
over test videos resamples (:mod:`avvp.evaluation.stats`). ``RUN/test_per_video.npz`` holds
``videos`` (V,) filenames and, per level, a (V, 4) array whose columns are
:data:`~avvp.evaluation.metrics.SCORES`; Type@AV of a video is the mean of its first three.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avvp.evaluation.metrics import SCORES, Evaluation
from avvp.evaluation.summary import LEVELS, METRICS
from avvp.io_utils import atomic_write

PER_VIDEO_FILE = "test_per_video.npz"
# Type@AV averages these per-video scores, as the protocol averages their split means.
TYPE_PARTS = ("audio", "visual", "audio_visual")


def write_per_video(path: str | Path, evaluation: Evaluation, videos: list[str]) -> Path:
    """Save ``evaluation``'s per-video scores, rows in the order of ``videos``."""
    arrays = {level: evaluation.per_video[level] for level in LEVELS}
    return atomic_write(
        path,
        lambda handle: np.savez(handle, videos=np.array(videos), scores=np.array(SCORES), **arrays),
    )


def read_per_video(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """``(videos, {"segment.type": (V,) scores, ...})``: every metric of the ten, per video."""
    with np.load(path, allow_pickle=False) as saved:
        videos = saved["videos"].tolist()
        columns = saved["scores"].tolist()
        table = {level: saved[level] for level in LEVELS}
    metrics = {}
    for level in LEVELS:
        for name in METRICS:
            if name == "type":
                parts = [columns.index(part) for part in TYPE_PARTS]
                metrics[f"{level}.{name}"] = table[level][:, parts].mean(axis=1)
            else:
                metrics[f"{level}.{name}"] = table[level][:, columns.index(name)]
    return videos, metrics
