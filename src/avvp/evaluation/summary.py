"""Mean and standard deviation of the ten numbers over several runs (seeds)."""

from __future__ import annotations

import numpy as np

LEVELS = ("segment", "event")
METRICS = ("audio", "visual", "audio_visual", "type", "event")
HEADERS = ("Audio", "Visual", "Audio-Visual", "Type@AV", "Event@AV")


def summarize(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{"mean": metrics, "std": metrics}``; std is the sample standard deviation (ddof=1)."""
    if not runs:
        raise ValueError("no runs to summarize")
    values = np.array(
        [[[run[level][name] for name in METRICS] for level in LEVELS] for run in runs]
    )
    mean = values.mean(axis=0)
    std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
    return {
        key: {
            level: dict(zip(METRICS, map(float, array[i]), strict=True))
            for i, level in enumerate(LEVELS)
        }
        for key, array in (("mean", mean), ("std", std))
    }


def format_summary_table(summary: dict[str, dict[str, dict[str, float]]], runs: int) -> str:
    """The ten numbers as ``mean ± std`` over ``runs`` runs."""
    width = 14
    lines = [f"{f'mean ± std, {runs} runs':<16}" + "".join(f"{h:>{width}}" for h in HEADERS)]
    for level in LEVELS:
        cells = "".join(
            f"{summary['mean'][level][name]:>{width - 7}.2f} ± {summary['std'][level][name]:<4.2f}"
            for name in METRICS
        )
        lines.append(f"{level + '-level':<16}{cells}")
    return "\n".join(lines)
