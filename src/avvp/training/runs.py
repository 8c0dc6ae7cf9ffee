"""Reading what `avvp train` left in a run folder: its seed runs, per-epoch history and parse.

A run folder holds ``best.pt`` and the files beside it; ``avvp train --seeds`` writes one such
folder per seed under ``RUN/seed-S``. :func:`seed_runs` accepts either, so every consumer (plot,
report) treats a single run as a one-seed experiment.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from avvp.config import Config
from avvp.data.annotations import SPLIT_FILES, DenseLabels
from avvp.data.dataset import SplitData
from avvp.training.batches import feature_names
from avvp.training.data import data_root, interactive, load_splits
from avvp.training.evaluate_run import load_run
from avvp.training.inference import SplitProbabilities, predict_split
from avvp.training.trainer import BEST_CHECKPOINT, resolve_device

SEED_FOLDER = re.compile(r"seed-(-?\d+)")


def seed_runs(path: str | Path) -> list[Path]:
    """``[path]`` for a run folder, or its ``seed-S`` run folders in seed order."""
    path = Path(path)
    if (path / BEST_CHECKPOINT).is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"run folder not found: {path}")
    seeds = sorted(
        (int(match.group(1)), child)
        for child in path.iterdir()
        if (match := SEED_FOLDER.fullmatch(child.name)) and (child / BEST_CHECKPOINT).is_file()
    )
    if not seeds:
        raise FileNotFoundError(
            f"{path} holds neither {BEST_CHECKPOINT} nor seed-S/{BEST_CHECKPOINT}: "
            "is it a folder written by `avvp train --out`?"
        )
    return [child for _, child in seeds]


def read_history(run_dir: str | Path) -> dict[str, np.ndarray]:
    """``metrics.csv`` of a run as column -> (epochs,) float array; NaN where a cell is blank.

    Blank cells occur when a method reports a value in some epochs only.
    """
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: has the run finished an epoch?")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path} has no epochs")
    return {
        column: np.array([float(row[column]) if row[column] else math.nan for row in rows])
        for column in rows[0]
    }


def best_epoch(history: dict[str, np.ndarray], select_metric: str) -> int | None:
    """The epoch whose checkpoint became ``best.pt``: the first maximum of the selection metric.

    The trainer keeps a checkpoint only when the score strictly improves, hence the first maximum.
    """
    scores = history.get(f"val.{select_metric}")
    if scores is None or np.isnan(scores).all():
        return None
    return int(history["epoch"][np.nanargmax(scores)])


@dataclass(frozen=True)
class RunParse:
    """A run's probabilities and binary parse of a split (or one of its videos), in split order."""

    run_dir: Path
    config: Config
    data: SplitData
    gt: DenseLabels  # what the parse is scored against (``data.dense``)
    probabilities: SplitProbabilities
    pred_audio: np.ndarray  # (V, T, C) bool
    pred_visual: np.ndarray  # (V, T, C) bool

    @property
    def title(self) -> str:
        """'method: run folder (threshold, gate)', how plots and reports name a run."""
        rule = self.config["eval"]
        return (
            f"{self.config['method']['name']}: {self.run_dir} "
            f"(threshold {rule['threshold']}, gate {rule['gate']})"
        )


def split_csv(config: Config, split: str) -> Path:
    """The CSV that lists the videos of ``split`` for a run's data config."""
    folder = config["data"]["annotations"] or data_root(config)
    return Path(folder) / SPLIT_FILES[split]


def select_video(data: SplitData, video: str, csv_path: Path) -> SplitData:
    """The one-video split of ``data`` whose YouTube id or full filename is ``video``."""
    matches = [
        row
        for row, (filename, key) in enumerate(zip(data.filenames, data.video_ids, strict=True))
        if video in (filename, key)
    ]
    if not matches:
        raise ValueError(
            f"video {video!r} is not in the {data.split} split ({len(data)} videos); give a "
            f"filename from the first column of {csv_path} or its first 11 characters "
            f"(the YouTube id), e.g. {data.video_ids[0]!r}"
        )
    rows = slice(matches[0], matches[0] + 1)
    dense = data.dense
    return replace(
        data,
        filenames=data.filenames[rows],
        features={name: array[rows] for name, array in data.features.items()},
        weak=data.weak[rows],
        dense=None if dense is None else DenseLabels(dense.audio[rows], dense.visual[rows]),
    )


def parse_run(
    run_dir: str | Path,
    split: str = "test",
    overrides: Sequence[str] = (),
    device: str = "cpu",
    video: str | None = None,
) -> RunParse:
    """Rebuild a run from ``best.pt`` and parse ``split`` (only ``video`` when given).

    ``overrides`` adjust the data or eval config as in ``avvp predict`` (e.g. ``data.root=...``).
    """
    runs = seed_runs(run_dir)
    if len(runs) > 1:
        names = ", ".join(str(path) for path in runs)
        raise ValueError(f"{run_dir} holds one run per seed; pass one of them: {names}")
    run_dir = runs[0]
    config, model, method = load_run(run_dir, device, list(overrides))
    data = load_splits(config, (split,), progress=interactive())[split]
    if data.dense is None:
        raise ValueError(f"split {split!r} has no dense ground truth; use val or test")
    if video is not None:
        data = select_video(data, video, split_csv(config, split))
    probabilities = predict_split(
        model, method, data, feature_names(config), resolve_device(device)
    )
    pred_audio, pred_visual = probabilities.binarize(config["eval"])
    return RunParse(run_dir, config, data, data.dense, probabilities, pred_audio, pred_visual)
