"""PPL's base network (paper 000 section 3.2, supplementary paper 001 section 1 and Table 1).

HAN's layout with the paper's modifications: each feature set goes through a projection head of
two Linear -> LayerNorm -> Leaky-ReLU blocks (Table 1: "All layers use Leaky-ReLU activation");
the segments of a stream are then aggregated by weight-free scaled dot-product attention within
the stream and across to the other, added to the projected features (supplementary Eqs. 2-4:
``f = f_hat + Att(f_hat, F_own, F_own) + Att(f_hat, F_other, F_other)`` with
``Att(q, K, V) = softmax(q K^T / d) V``), with no LayerNorm after the sum and no feed-forward
block; HAN's attentive MMIL pooling (Table 1: segment classifier, temporal and modality attention,
each 512 -> 25) gives the probabilities.

What the paper leaves open, and how it is filled here:

* Table 1 as extracted lists audio ``Linear 128-256, LayerNorm 256, Linear 256-512`` and visual
  ``LayerNorm 512, Linear 2048-1024, LayerNorm 1024`` followed by ``Linear 2048-1024, LayerNorm
  1024, Linear 1024-512`` under "Attentive Fusion", whereas Eq. 4 has no weights at all. We read
  each projection as two Linear + LayerNorm blocks (the stray ``LayerNorm 512`` closes the audio
  head, the ``2048-1024, 1024-512`` rows are the visual head) and keep the attention weight-free.
* The hidden width of a head is the power of two nearest to ``sqrt(d_in * d_model)``: it gives
  Table 1's 256 for VGGish (128) and 1024 for ResNet-152 (2048), and a width for any other set.
* Several feature sets in one stream (HAN's ResNet-152 + R(2+1)D; the paper says "a 512-d visual
  feature per segment" without saying how the two are joined) are concatenated after their heads
  and fused by one more Linear -> LayerNorm -> Leaky-ReLU block, as HAN fuses them with a linear
  layer.
* Leaky-ReLU's negative slope is not given: PyTorch's default, 0.01.
* Dropout is not mentioned: ``dropout`` applies to the two attention terms, where HAN has it.
* ``num_heads`` > 1 splits the width into heads, each attending with ``1 / (d / heads)``; the
  paper's Eq. 4 is one head (``model.num_heads=1``, base.yaml).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from avvp.classes import NUM_CLASSES
from avvp.models.base import ParseOutput, pool_in_fp32
from avvp.models.han import check_feature_shapes
from avvp.registry import create, register


def hidden_width(in_dim: int, out_dim: int) -> int:
    """The power of two nearest to the geometric mean of ``in_dim`` and ``out_dim`` (in log
    space): Table 1's 256 for 128 -> 512 and 1024 for 2048 -> 512."""
    return 2 ** round(math.log2(in_dim * out_dim) / 2)


def dense_block(in_dim: int, out_dim: int) -> nn.Sequential:
    """Linear -> LayerNorm -> Leaky-ReLU, the unit every row pair of Table 1 describes."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.LeakyReLU())


class ProjectionStem(nn.Module):
    """The projection heads of one stream's feature sets, fused by one more block if several."""

    def __init__(self, dims: Mapping[str, int], names: Sequence[str], d_model: int):
        super().__init__()
        if not names:
            raise ValueError("a stream needs at least one feature set")
        missing = [name for name in names if name not in dims]
        if missing:
            raise ValueError(f"feature sets {missing} have no dimension in features.dims")
        self.names = list(names)
        self.in_dims = {name: dims[name] for name in names}
        self.heads = nn.ModuleDict(
            {
                name: nn.Sequential(
                    dense_block(dims[name], hidden_width(dims[name], d_model)),
                    dense_block(hidden_width(dims[name], d_model), d_model),
                )
                for name in names
            }
        )
        self.fusion = dense_block(d_model * len(names), d_model) if len(names) > 1 else None

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        projected = [self.heads[name](features[name]) for name in self.names]
        if self.fusion is None:
            return projected[0]
        return self.fusion(torch.cat(projected, dim=-1))


def scaled_attention(query: Tensor, key_value: Tensor, num_heads: int) -> Tensor:
    """``softmax(q K^T / d) V`` with keys = values (supplementary Eq. 4), per head of width d:
    (B, T, D) x (B, S, D) -> (B, T, D). No weights: Eq. 4 has none."""
    batch, length, width = query.shape
    head_width = width // num_heads
    q = query.view(batch, length, num_heads, head_width).transpose(1, 2)
    kv = key_value.view(batch, key_value.shape[1], num_heads, head_width).transpose(1, 2)
    weights = torch.softmax(q @ kv.transpose(-2, -1) / head_width, dim=-1)
    return (weights @ kv).transpose(1, 2).reshape(batch, length, width)


class PPLNet(nn.Module):
    def __init__(
        self,
        feature_dims: Mapping[str, int],
        audio_features: Sequence[str] = ("vggish",),
        visual_features: Sequence[str] = ("res152", "r2plus1d_18"),
        d_model: int = 512,
        num_heads: int = 1,
        dropout: float = 0.1,
        num_layers: int = 1,
        num_classes: int = NUM_CLASSES,
        pooling: str = "attentive_mmil",
        feedforward: int | None = None,
    ):
        """``feedforward`` is accepted because every model reads the one ``model`` section of
        base.yaml; this network has no feed-forward block (Table 1), so it is not used."""
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of num_heads ({num_heads})")
        self.audio_stem = ProjectionStem(feature_dims, audio_features, d_model)
        self.visual_stem = ProjectionStem(feature_dims, visual_features, d_model)
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.dropout_self = nn.Dropout(dropout)
        self.dropout_cross = nn.Dropout(dropout)
        self.pooling = create("pooling", pooling, d_model=d_model, num_classes=num_classes)

    def aggregate(self, query: Tensor, other: Tensor) -> Tensor:
        """Supplementary Eqs. 2-3 for one stream: ``q + Att(q, q, q) + Att(q, o, o)``."""
        itself = scaled_attention(query, query, self.num_heads)
        cross = scaled_attention(query, other, self.num_heads)
        return query + self.dropout_self(itself) + self.dropout_cross(cross)

    def check_features(self, features: Mapping[str, Tensor]) -> None:
        """A ValueError naming the feature set unless every set the model reads is there."""
        check_feature_shapes(features, {**self.audio_stem.in_dims, **self.visual_stem.in_dims})

    def encode(self, features: Mapping[str, Tensor]) -> Tensor:
        """Per-segment features (B, T, 2, d_model) before the pooling."""
        self.check_features(features)
        audio, visual = self.audio_stem(features), self.visual_stem(features)
        for _ in range(self.num_layers):
            audio, visual = self.aggregate(audio, visual), self.aggregate(visual, audio)
        return torch.stack((audio, visual), dim=2)

    def forward(self, features: Mapping[str, Tensor]) -> ParseOutput:
        return pool_in_fp32(self.pooling, self.encode(features))


@register("model", "ppl")
def ppl(**kwargs) -> PPLNet:
    """PPL's base network (supplementary Table 1), one aggregation step as in the paper."""
    return PPLNet(**kwargs)
