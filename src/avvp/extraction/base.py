"""What every feature extractor shares: its contract, where its weights come from, its errors.

An extractor turns one video file into one feature set of the LLP layout: ``(seconds * frames,
dim)`` float32 rows, ``frames`` rows per one-second segment (VGGish 1 x 128, ResNet-152 8 x 2048,
R(2+1)D-18 1 x 512). Extractors are registered under the ``extractor`` kind of
:mod:`avvp.registry` by their feature-set name, so ``create("extractor", "vggish", ...)`` builds
one and ``avvp extract --features vggish,res152`` names them.

Pretrained weights cannot be downloaded by avvp: they are read from a folder the user fills
(``--weights DIR``), and a missing file is an error naming the file expected and where to get it.
``random_weights=True`` builds the same network untrained, for plumbing tests only; whatever is
written with it records so in the output's metadata.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

# A video shorter than this has no whole segment: it is an error, not an empty feature file.
MIN_SECONDS = 1.0


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file that is not in the ``--weights`` folder."""


class VideoError(ValueError):
    """A video that cannot be turned into features (undecodable, no audio track, under 1 s);
    the message names the file. One video's error does not stop the others."""


def segment_count(duration: float, path: str | Path = "video") -> int:
    """Number of one-second segments of a video lasting ``duration`` seconds.

    Whole seconds, rounded to the nearest (LLP's 10-s clips decode to 9.98-10.03 s): a trailing
    part of at least half a second is a segment of its own, padded by the extractors; a shorter
    one is dropped. Under :data:`MIN_SECONDS` is a :class:`VideoError`.
    """
    if not math.isfinite(duration) or duration < MIN_SECONDS:
        raise VideoError(f"{path}: lasts {duration:.2f} s; a video needs at least 1 s")
    return max(1, math.floor(duration + 0.5))


def weight_path(weights: str | Path | None, filename: str, extractor: str, source: str) -> Path:
    """``weights/filename``, or a :class:`MissingWeightsError` naming it and where to get it."""
    if weights is None:
        raise MissingWeightsError(
            f"{extractor} needs pretrained weights: pass --weights DIR holding {filename} "
            f"({source}), or --random-weights for a plumbing test"
        )
    path = Path(weights) / filename
    if not path.is_file():
        raise MissingWeightsError(f"{extractor}: weight file not found: {path} ({source})")
    return path


class Extractor(ABC):
    """One feature set of the LLP layout, computed from video files.

    Subclasses set the class attributes and implement :meth:`extract`; ``__init__`` loads the
    network once (from ``weights`` or, with ``random_weights``, untrained) onto ``device``.
    """

    name: ClassVar[str]  # the feature-set name: feats/<name>/<id>.npy
    dim: ClassVar[int]
    frames: ClassVar[int]  # rows per one-second segment
    stream: ClassVar[str]  # "audio" or "visual": which part of the file it reads

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        random_weights: bool = False,
    ):
        self.weights = None if weights is None else Path(weights)
        self.device = torch.device(device)
        self.random_weights = random_weights
        # The files (or checkpoint folders) the network was loaded from: extraction.json records
        # each with its sha256, so features are traceable to the exact weights.
        self.weight_files: list[Path] = []

    @abstractmethod
    def extract(self, video: str | Path, seconds: int) -> np.ndarray:
        """``(seconds * frames, dim)`` float32 features of ``video`` (see :func:`segment_count`)."""
