"""MIL poolings from segment features to segment and video probabilities, created by name."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avvp.models.base import ParseOutput
from avvp.registry import register


@register("pooling", "attentive_mmil")
class AttentiveMMILPooling(nn.Module):
    """HAN's attentive multimodal MIL pooling (SPEC section 4).

    A shared classifier gives segment probabilities; one attention softmaxed over time weights
    segments within a stream, another softmaxed over the two streams weights the streams.
    """

    def __init__(self, d_model: int, num_classes: int):
        super().__init__()
        self.classifier = nn.Linear(d_model, num_classes)
        self.time_attention = nn.Linear(d_model, num_classes)
        self.modality_attention = nn.Linear(d_model, num_classes)

    def forward(self, features: Tensor) -> ParseOutput:
        """``features`` (B, T, 2, D) -> ParseOutput."""
        segment_prob = torch.sigmoid(self.classifier(features))
        time_weights = torch.softmax(self.time_attention(features), dim=1)
        modality_weights = torch.softmax(self.modality_attention(features), dim=2)
        weighted = time_weights * segment_prob
        stream_prob = weighted.sum(dim=1)  # (B, 2, C)
        # Two softmaxes multiplied without renormalising (as in HAN) can sum to up to 2; the
        # loss clamps anyway and the gate compares with 0.5, so clamping changes neither
        # training nor the parse, and keeps the output a probability.
        video_prob = (weighted * modality_weights).sum(dim=(1, 2)).clamp(max=1.0)
        return ParseOutput(
            segment_prob=segment_prob,
            video_prob=video_prob,
            video_prob_audio=stream_prob[:, 0],
            video_prob_visual=stream_prob[:, 1],
            features=features,
        )
