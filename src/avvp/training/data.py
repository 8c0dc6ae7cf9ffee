"""The splits a run trains and evaluates on, resolved from the ``data`` and ``features`` config."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avvp.config import Config
from avvp.data.annotations import DenseLabels
from avvp.data.dataset import SplitData, load_split

SYNTHETIC = "synthetic"


def data_root(config: Config) -> Path:
    """The dataset folder; ``synthetic`` generates the built-in synthetic set once and reuses it."""
    root = config["data"]["root"]
    if root == SYNTHETIC:
        from avvp.data.synthetic import builtin_dataset

        return builtin_dataset(
            videos=config["data"]["synthetic_videos"],
            difficulty=config["data"]["synthetic_difficulty"],
            progress=config["train"]["progress"],
        )
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"data.root {root!r} is not a folder (or 'synthetic')")
    return path


def train_subset(config: Config, train_size: int) -> np.ndarray | None:
    """Sorted indices of the ``data.train_videos`` subset of the train split; None: all videos."""
    wanted = config["data"]["train_videos"]
    if wanted is None:
        return None
    if not 1 <= wanted <= train_size:
        raise ValueError(f"data.train_videos={wanted}: the train split has {train_size} videos")
    rng = np.random.default_rng(config["data"]["train_subset_seed"])
    return np.sort(rng.choice(train_size, size=wanted, replace=False))


def load_splits(
    config: Config, splits=("train", "val", "test"), progress: bool = True
) -> dict[str, SplitData]:
    root = data_root(config)
    features = config["features"]
    loaded = {
        split: load_split(
            root,
            split,
            feature_dims=features["dims"],
            feature_frames=features["frames"],
            annotations=config["data"]["annotations"],
            audio_gt=config["data"]["audio_gt"],
            use_cache=config["data"]["cache"],
            progress=progress,
        )
        for split in splits
    }
    if "train" in loaded:
        indices = train_subset(config, len(loaded["train"]))
        if indices is not None:
            loaded["train"] = loaded["train"].subset(indices)
    return loaded


def load_hidden_train_labels(config: Config) -> DenseLabels | None:
    """Hidden per-stream train segment labels of a synthetic dataset, for diagnostics only.

    Real LLP has none. Nothing that trains may read them; methods log how close their pseudo labels
    or counts come to them, which is how a user sees EM at work on synthetic data.
    """
    from avvp.data.synthetic import load_hidden_train_labels as load

    hidden = load(data_root(config))
    if hidden is None:
        return None
    indices = train_subset(config, len(hidden.audio))
    return hidden if indices is None else hidden.subset(indices)
