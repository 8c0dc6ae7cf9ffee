"""The splits a run trains and evaluates on, resolved from the ``data`` and ``features`` config."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from avvp.config import SYNTHETIC, Config
from avvp.data import dataset
from avvp.data.annotations import DenseLabels
from avvp.data.dataset import SplitData, Videos, load_split

SPLITS = ("train", "val", "test")


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


def data_label(config: Config) -> str:
    """How output names a run's data: its folder, or what ``synthetic`` stands for."""
    root = config["data"]["root"]
    return "the built-in synthetic set" if root == SYNTHETIC else str(root)


def data_announcement(config: Config) -> str | None:
    """For the built-in synthetic set, a line saying so before it is generated or read: a run
    that forgot ``--data`` must not pass for one on real data."""
    if config["data"]["root"] != SYNTHETIC:
        return None
    from avvp.data.synthetic import default_home

    return (
        f"data: {data_label(config)} ({config['data']['synthetic_videos']} synthetic videos, "
        f"not real data; generated once under {default_home()}, set AVVP_HOME to move it); "
        "pass --data DIR to train on your own data"
    )


def describe_data(config: Config, data: dict[str, SplitData]) -> str:
    """'data: ROOT (...): train N, val N, test N videos', with the size on disk of the built-in
    synthetic set, which avvp wrote on its own."""
    root = data_root(config)
    counts = ", ".join(f"{split} {len(split_data)}" for split, split_data in data.items())
    if config["data"]["root"] == SYNTHETIC:
        where = f"{root}, synthetic, {_gigabytes(root)} on disk"
    else:
        annotations = config["data"]["annotations"]
        where = str(root) if annotations is None else f"{root}, annotations {annotations}"
    return f"data: {where}: {counts} videos"


def _gigabytes(folder: Path) -> str:
    size = sum(
        os.path.getsize(os.path.join(parent, name))
        for parent, _, names in os.walk(folder)
        for name in names
    )
    return f"{size / 1e9:.2f} GB"


def data_fingerprint(config: Config, splits=SPLITS) -> str:
    """:func:`avvp.data.dataset.data_fingerprint` of a run's data (what a resume compares)."""
    features = config["features"]
    return dataset.data_fingerprint(
        data_root(config),
        splits,
        feature_dims=features["dims"],
        feature_frames=features["frames"],
        annotations=config["data"]["annotations"],
    )


def train_subset(config: Config, train_size: int) -> np.ndarray | None:
    """Sorted indices of the ``data.train_videos`` subset of the train split; None: all videos."""
    wanted = config["data"]["train_videos"]
    if wanted is None:
        return None
    if not 1 <= wanted <= train_size:
        raise ValueError(f"data.train_videos={wanted}: the train split has {train_size} videos")
    rng = np.random.default_rng(config["data"]["train_subset_seed"])
    return np.sort(rng.choice(train_size, size=wanted, replace=False))


def interactive() -> bool:
    """Whether progress bars have a terminal to show on. The commands that load data on the side
    (evaluate, predict, plot, parse, report, PPL_Test, denoising statistics) pass this as
    ``progress``: a first cache build, minutes on real LLP, shows there and stays out of logs."""
    return sys.stderr.isatty()


def load_splits(
    config: Config, splits=SPLITS, progress: bool = True, dense: bool = True
) -> dict[str, SplitData]:
    """The ``splits`` of a run's data; ``dense=False``: without the dense ground truth."""
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
            dense=dense,
        )
        for split in splits
    }
    if "train" in loaded:
        indices = train_subset(config, len(loaded["train"]))
        if indices is not None:
            loaded["train"] = loaded["train"].subset(indices)
    return loaded


def model_features(config: Config) -> tuple[dict[str, int], dict[str, int]]:
    """(dims, frames) of the feature sets a run's model reads, and of those only."""
    features = config["features"]
    names = dict.fromkeys(features["audio"] + features["visual"])
    return (
        {name: features["dims"][name] for name in names},
        {name: features["frames"].get(name, 1) for name in names},
    )


def load_unlabelled(
    config: Config, root: str | Path, video_list: str | Path | None = None
) -> Videos:
    """The videos of ``root/videos.csv`` (or ``video_list``) without labels, as
    :func:`avvp.data.dataset.load_videos` reads them, in the feature sets of the run's model."""
    dims, frames = model_features(config)
    return dataset.load_videos(
        root, feature_dims=dims, feature_frames=frames, video_list=video_list
    )


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
