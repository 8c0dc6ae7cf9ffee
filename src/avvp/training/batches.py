"""Assembling batches: from a split's (memory-mapped) arrays, or from arrays shaped as on disk."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike

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


class SegmentFeatures(NamedTuple):
    """Model inputs made from arrays shaped as on disk (see :func:`segment_features`)."""

    arrays: dict[str, np.ndarray]  # feature set -> (V, T, D) float32
    batched: bool  # the arrays came as a batch (V, rows, D), not as one video (rows, D)


def segment_features(features: Mapping[str, ArrayLike], config: Config) -> SegmentFeatures:
    """The feature sets the model reads, as (V, T, D) float32 segment features, from arrays in
    the shapes feature files have on disk.

    Set ``name`` comes as one video, (T * frames, dim), or as a batch, (V, T * frames, dim), with
    ``dim`` and ``frames`` from the config's ``features.dims`` and ``features.frames`` (LLP:
    vggish (T, 128), res152 (8 T, 2048), r2plus1d_18 (T, 512)); runs of ``frames`` rows are
    averaged to one segment, as the dataset loader does, so any T works. Every set must come in
    one layout with the same V and T; sets the model does not read are ignored. A missing set, a
    shape that fits no T, or non-finite values are a ValueError naming the set, the expected
    shape and the one found.
    """
    names = feature_names(config)
    missing = [name for name in names if name not in features]
    if missing:
        raise ValueError(
            f"feature sets {', '.join(missing)} are missing: the model reads {', '.join(names)} "
            f"(given: {', '.join(sorted(features)) or 'none'})"
        )
    dims, frames = config["features"]["dims"], config["features"]["frames"]
    batched = np.ndim(features[names[0]]) == 3
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        array = np.asarray(features[name])
        dim, rows = dims[name], frames.get(name, 1)
        fits = (
            array.ndim == (3 if batched else 2)
            and np.issubdtype(array.dtype, np.number)
            and array.shape[-1] == dim
            and array.shape[-2] > 0
            and array.shape[-2] % rows == 0
        )
        if not fits:
            expected = f"(V, T * {rows}, {dim})" if batched else f"(T * {rows}, {dim})"
            raise ValueError(
                f"feature set {name!r}: expected {expected} for "
                f"{'a batch' if batched else 'one video'} ({rows} rows a segment, as in "
                f"feats/{name}/<id>.npy), found shape {array.shape} dtype {array.dtype}"
            )
        if not np.isfinite(array).all():
            raise ValueError(f"feature set {name!r}: non-finite values (NaN or inf)")
        array = array.astype(np.float32, copy=False).reshape(-1, array.shape[-2] // rows, rows, dim)
        arrays[name] = array.mean(axis=2, dtype=np.float32)
    shapes = {name: array.shape[:2] for name, array in arrays.items()}
    if len(set(shapes.values())) > 1:
        found = ", ".join(f"{name} {shape[0]} x {shape[1]}" for name, shape in shapes.items())
        raise ValueError(
            f"feature sets disagree on videos x segments ({found}); give every set for the same "
            "videos, with the rows as stored on disk"
        )
    return SegmentFeatures(arrays, batched)
