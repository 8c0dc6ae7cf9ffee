"""The splits a run trains and evaluates on, resolved from the ``data`` and ``features`` config."""

from __future__ import annotations

from pathlib import Path

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


def load_splits(
    config: Config, splits=("train", "val", "test"), progress: bool = True
) -> dict[str, SplitData]:
    root = data_root(config)
    features = config["features"]
    return {
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


def load_hidden_train_labels(config: Config) -> DenseLabels | None:
    """Hidden per-stream train segment labels of a synthetic dataset, for diagnostics only.

    Real LLP has none. Nothing that trains may read them; methods log how close their pseudo labels
    or counts come to them, which is how a user sees EM at work on synthetic data.
    """
    from avvp.data.synthetic import load_hidden_train_labels as load

    return load(data_root(config))
