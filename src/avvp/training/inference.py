"""Model -> probabilities -> binary parse -> metrics, for a whole split."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from avvp.config import Config
from avvp.data.dataset import SplitData
from avvp.evaluation.checks import warn_if_empty
from avvp.evaluation.metrics import Evaluation, binarize, evaluate_detailed
from avvp.models.base import ParseOutput
from avvp.training.batches import feature_names, make_batch

if TYPE_CHECKING:
    # Annotation only: avvp.methods imports this module (PoiBin's E-step iterates outputs).
    from avvp.methods.base import Method

INFERENCE_BATCH_SIZE = 64


@dataclass
class SplitProbabilities:
    """Probabilities for every video of a split, in split order."""

    segment_prob: np.ndarray  # (V, T, 2, C)
    video_prob: np.ndarray  # (V, C)
    video_prob_audio: np.ndarray  # (V, C)
    video_prob_visual: np.ndarray  # (V, C)

    def binarize(self, eval_config: dict) -> tuple[np.ndarray, np.ndarray]:
        """(pred_audio, pred_visual), each (V, T, C) bool, under the configured rule."""
        return binarize(
            self.segment_prob[:, :, 0],
            self.segment_prob[:, :, 1],
            self.video_prob,
            threshold=eval_config["threshold"],
            gate=eval_config["gate"],
            video_prob_audio=self.video_prob_audio,
            video_prob_visual=self.video_prob_visual,
        )


@torch.no_grad()
def iterate_outputs(
    infer: Callable[[dict[str, torch.Tensor]], ParseOutput],
    data: SplitData,
    names: list[str],
    device: torch.device,
    batch_size: int = INFERENCE_BATCH_SIZE,
) -> Iterator[tuple[np.ndarray, ParseOutput]]:
    """(split positions, output) for consecutive batches of a whole split, gradients off.

    Methods use it between epochs (PoiBin's EM over tau, PPL's prototypes); ``infer`` is a model,
    an EMA copy, or a method's inference rule, already in eval mode.
    """
    for start in range(0, len(data), batch_size):
        indices = np.arange(start, min(start + batch_size, len(data)))
        batch = make_batch(data, indices, names).to(device)
        yield indices, infer(batch.features)


def predict_split(
    model: nn.Module, method: Method, data: SplitData, names: list[str], device: torch.device
) -> SplitProbabilities:
    model.eval()
    parts: dict[str, list[np.ndarray]] = {
        key: [] for key in SplitProbabilities.__dataclass_fields__
    }
    for _, output in iterate_outputs(lambda f: method.infer(model, f), data, names, device):
        for key in parts:
            parts[key].append(getattr(output, key).float().cpu().numpy())
    return SplitProbabilities(**{key: np.concatenate(value) for key, value in parts.items()})


def score_split(
    model: nn.Module,
    method: Method,
    data: SplitData,
    config: Config,
    device: torch.device,
    *,
    warn_empty: bool = False,
) -> dict[str, dict[str, float]]:
    """The ten numbers of the evaluation protocol for ``data`` (which must have dense labels).

    ``warn_empty``: warn (:func:`avvp.evaluation.checks.warn_if_empty`) when the parse is (nearly)
    empty; for numbers that are printed as a result, not for the per-epoch validation.
    """
    return evaluate_split(model, method, data, config, device, warn_empty=warn_empty).metrics


def evaluate_split(
    model: nn.Module,
    method: Method,
    data: SplitData,
    config: Config,
    device: torch.device,
    *,
    warn_empty: bool = False,
) -> Evaluation:
    """:func:`score_split` with the per-video scores (``Evaluation.per_video``) the numbers
    average."""
    if data.dense is None:
        raise ValueError(f"split {data.split!r} has no dense ground truth to score against")
    probabilities = predict_split(model, method, data, feature_names(config), device)
    pred_audio, pred_visual = probabilities.binarize(config["eval"])
    if warn_empty:
        warn_if_empty(pred_audio, pred_visual, data.split)
    return evaluate_detailed(
        pred_audio, pred_visual, data.dense.audio, data.dense.visual, iou=config["eval"]["iou"]
    )
