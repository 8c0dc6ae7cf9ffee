"""Assembling batches from a split's (memory-mapped) arrays."""

from __future__ import annotations

import numpy as np
import torch

from avvp.config import Config
from avvp.data.dataset import SplitData
from avvp.methods.base import Batch


def feature_names(config: Config) -> list[str]:
    """Every feature set the model reads, audio sets first, each once."""
    return list(dict.fromkeys(config["features"]["audio"] + config["features"]["visual"]))


def make_batch(data: SplitData, indices: np.ndarray, names: list[str]) -> Batch:
    """Gather videos ``indices`` of a split into tensors."""
    return Batch(
        features={
            name: torch.from_numpy(
                np.ascontiguousarray(data.features[name][indices], dtype=np.float32)
            )
            for name in names
        },
        weak=torch.from_numpy(np.asarray(data.weak[indices], dtype=np.float32)),
        index=torch.from_numpy(np.asarray(indices, dtype=np.int64)),
    )
