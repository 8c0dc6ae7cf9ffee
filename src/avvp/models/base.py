"""The output contract every model honours: methods and evaluation never ask which backbone ran."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

AUDIO, VISUAL = 0, 1


@dataclass
class ParseOutput:
    """What a model says about a batch of videos.

    ``segment_prob[b, t, m, c]``: probability that class c occurs in segment t of stream m
    (0 audio, 1 visual). The three video probabilities come from the MIL pooling: per stream and
    over both (the "global" output that gates predictions in the reference evaluation).
    ``features`` are the per-segment features the classifier saw, for methods that need them.
    """

    segment_prob: Tensor  # (B, T, 2, C)
    video_prob: Tensor  # (B, C)
    video_prob_audio: Tensor  # (B, C)
    video_prob_visual: Tensor  # (B, C)
    features: Tensor  # (B, T, 2, D)

    def detach(self) -> ParseOutput:
        return ParseOutput(*(value.detach() for value in self.__dict__.values()))

    def to(self, device: torch.device | str) -> ParseOutput:
        return ParseOutput(*(value.to(device) for value in self.__dict__.values()))


def pool_in_fp32(pooling: nn.Module, encoded: Tensor) -> ParseOutput:
    """``pooling(encoded)`` with autocast off, on features of at least fp32: under bf16 autocast
    (train.precision=bf16) a model's encoder runs its matmuls in bf16, while the pooling's
    softmaxes and the probabilities the losses read stay fp32. Without autocast, the pooling
    (float64 models stay float64)."""
    with torch.autocast(encoded.device.type, enabled=False):
        return pooling(encoded.to(torch.promote_types(encoded.dtype, torch.float32)))
