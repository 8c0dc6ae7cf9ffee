"""HAN: the hybrid attention network of Tian et al. (ECCV 2020), SPEC section 4.

The stem projects each configured feature set to ``d_model`` and fuses the sets of a stream; a
hybrid attention layer (self-attention within a stream plus cross-attention to the other, shared
weights for both streams) contextualises the segments; a registered pooling turns the (B, T, 2, D)
features into probabilities. Works for any number of segments T (PoiBin joins two videos).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avvp.classes import NUM_CLASSES
from avvp.models.base import ParseOutput, pool_in_fp32
from avvp.registry import create, register


def check_feature_shapes(features: Mapping[str, Tensor], dims: Mapping[str, int]) -> None:
    """A ValueError naming the feature set unless every set of ``dims`` (name -> dimension) is in
    ``features``, shaped (B, T, dim) with one B and T: without it a per-frame array (res152 as
    stored on disk, 8 rows a segment) fails deep inside a model with a bare tensor size error."""
    missing = [name for name in dims if name not in features]
    if missing:
        raise ValueError(
            f"feature sets {', '.join(missing)} are missing: the model reads {', '.join(dims)}"
        )
    first = next(iter(dims))
    leading = tuple(features[first].shape[:2])
    for name, dim in dims.items():
        shape = tuple(features[name].shape)
        if shape != (*leading, dim):
            raise ValueError(
                f"feature set {name!r}: expected shape {(*leading, dim)} (videos, segments, "
                f"dim, as {first!r} gives them), found {shape}; the model "
                "takes one row per segment, so average each segment's frames first (Run."
                "predict of avvp.load_run takes the features as stored on disk)"
            )


class StreamStem(nn.Module):
    """Linear projection of each feature set of one stream, fused by a linear layer if several.

    No activations, as in HAN: with one linear map per set, averaging frames before or after the
    projection is the same, which is why the cache stores segment-averaged features.
    """

    def __init__(self, dims: Mapping[str, int], names: Sequence[str], d_model: int):
        super().__init__()
        if not names:
            raise ValueError("a stream needs at least one feature set")
        missing = [name for name in names if name not in dims]
        if missing:
            raise ValueError(f"feature sets {missing} have no dimension in features.dims")
        self.names = list(names)
        self.projections = nn.ModuleDict({name: nn.Linear(dims[name], d_model) for name in names})
        self.fusion = nn.Linear(d_model * len(names), d_model) if len(names) > 1 else None

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        projected = [self.projections[name](features[name]) for name in self.names]
        if self.fusion is None:
            return projected[0]
        return self.fusion(torch.cat(projected, dim=-1))


def keep_mask(shape: tuple[int, ...], p: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """What ``F.dropout(x, p, training=True)`` multiplies an ``x`` of this shape, dtype and device
    by (0 or 1 / (1 - p)), drawn from the same random numbers as that call: dropout of ones."""
    return F.dropout(torch.ones(shape, dtype=dtype, device=device), p, training=True)


def masked_attention(query: Tensor, key: Tensor, value: Tensor, weights_mask: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) v over (B, heads, T, d) inputs, the attention weights multiplied
    by ``weights_mask`` (a :func:`keep_mask`): scaled_dot_product_attention's dropout with the
    mask drawn beforehand. Computed as torch's math kernel computes it on the CPU (in fp32, each
    side scaled by d^-1/4): bit-identical to it there, bf16 autocast included."""
    dtype = query.dtype
    with torch.autocast(query.device.type, enabled=False):
        query, key, value = (
            x.to(torch.promote_types(x.dtype, torch.float32)) for x in (query, key, value)
        )
        root_scale = query.shape[-1] ** -0.25
        scores = (query * root_scale) @ (key.transpose(-2, -1) * root_scale)
        return ((torch.softmax(scores, dim=-1) * weights_mask) @ value).to(dtype)


def attend(
    attention: nn.MultiheadAttention,
    query: Tensor,
    other: Tensor,
    weights_mask: Tensor | None = None,
) -> Tensor:
    """``attention(query, other, other)`` of a batch-first nn.MultiheadAttention, computed in the
    batch-first layout with its own weights and the same scaled_dot_product_attention call
    (shapes, dropout) as torch's, hence the same dropout draws: torch's own forward transposes
    its inputs to sequence-first and backpropagates its packed projections through zero-filled
    buffers. ``query is other`` is self-attention, whose three projections are one matmul. Equal
    to the module to float rounding (tests/test_speed_paths.py). ``weights_mask``: the dropout
    of the attention weights drawn beforehand (:func:`masked_attention`)."""
    width, weight, bias = attention.embed_dim, attention.in_proj_weight, attention.in_proj_bias
    if query is other:
        q, k, v = F.linear(query, weight, bias).chunk(3, dim=-1)
    else:
        # split, not slicing: its backward concatenates the two gradients, where slices' would
        # fill and add two zero matrices of the packed weight's size.
        (query_weight, pair_weight), (query_bias, pair_bias) = (
            tensor.split((width, 2 * width)) for tensor in (weight, bias)
        )
        q = F.linear(query, query_weight, query_bias)
        k, v = F.linear(other, pair_weight, pair_bias).chunk(2, dim=-1)

    def heads(x: Tensor) -> Tensor:  # (B, T, D) -> (B, heads, T, D / heads)
        return x.unflatten(-1, (attention.num_heads, -1)).transpose(1, 2)

    if weights_mask is None:
        dropout = attention.dropout if attention.training else 0.0
        mixed = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), dropout_p=dropout)
    else:
        mixed = masked_attention(heads(q), heads(k), heads(v), weights_mask)
    # Projected in the sequence-first memory order torch's module returns, (T, B, D) seen as
    # (B, T, D): a dropout applied to the result draws its mask in memory order, so another
    # layout would drop other elements than torch's module does.
    return attention.out_proj(mixed.permute(2, 0, 1, 3).flatten(2)).transpose(0, 1)


class HybridAttentionLayer(nn.Module):
    """``q = LN(q + drop(cross(q, o, o)) + drop(self(q, q, q)))``, then a post-norm feed-forward."""

    def __init__(self, d_model: int, num_heads: int, feedforward: int, dropout: float):
        super().__init__()
        self.self_attention = nn.MultiheadAttention(d_model, num_heads, dropout, batch_first=True)
        self.cross_attention = nn.MultiheadAttention(d_model, num_heads, dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, feedforward)
        self.linear2 = nn.Linear(feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout_cross = nn.Dropout(dropout)
        self.dropout_self = nn.Dropout(dropout)
        self.dropout_ff = nn.Dropout(dropout)
        self.dropout_out = nn.Dropout(dropout)

    def forward(self, query: Tensor, other: Tensor) -> Tensor:
        return self._attend_and_feed(query, other, masks=None)

    def forward_pair(self, audio: Tensor, visual: Tensor) -> tuple[Tensor, Tensor]:
        """``(self(audio, visual), self(visual, audio))``; in training, one pass over both streams
        stacked on the batch: half the operator calls, twice the matmul rows, and the gradients
        of the weights both calls share summed inside the matmuls. The dropout masks are drawn
        first, in the order and from the random numbers the two calls would use, so the result
        equals the two calls to float rounding (tests/test_speed_paths.py)."""
        if not self.training:
            # Evaluation batches are whole splits: stacking would double the peak activation
            # memory for a per-step saving that matters only at training's small batches.
            return self(audio, visual), self(visual, audio)
        videos = audio.shape[0]
        masks = self._pair_dropout_masks(audio, visual)
        both = self._attend_and_feed(
            torch.cat((audio, visual)), torch.cat((visual, audio)), masks=masks
        )
        return both[:videos], both[videos:]

    def _pair_dropout_masks(self, audio: Tensor, visual: Tensor) -> dict[str, Tensor]:
        """Every dropout mask of ``self(audio, visual)`` then of ``self(visual, audio)``, drawn in
        the order forward draws them, each pair stacked as forward_pair stacks the streams."""
        device = audio.device
        # Dropout multiplies a tensor in its own dtype: under autocast the layer's linear outputs
        # are in the autocast dtype; the attention weights are fp32 (masked_attention).
        autocast = torch.is_autocast_enabled(device.type)
        features = torch.get_autocast_dtype(device.type) if autocast else audio.dtype
        weights = torch.promote_types(features, torch.float32)
        per_stream = []
        for query, other in ((audio, visual), (visual, audio)):
            videos, steps = query.shape[:2]
            cross, itself = self.cross_attention, self.self_attention
            draws = {
                "cross_attention": keep_mask(
                    (videos, cross.num_heads, steps, other.shape[1]), cross.dropout, weights, device
                ),
                "self_attention": keep_mask(
                    (videos, itself.num_heads, steps, steps), itself.dropout, weights, device
                ),
            }
            # attend returns (B, T, D) views of sequence-first memory, and dropout draws its
            # mask in memory order: those two masks are drawn (T, B, D) and transposed.
            for name, width, sequence_first in (
                ("dropout_cross", self.linear2.out_features, True),
                ("dropout_self", self.linear2.out_features, True),
                ("dropout_ff", self.linear1.out_features, False),
                ("dropout_out", self.linear2.out_features, False),
            ):
                rate = getattr(self, name).p
                if sequence_first:
                    mask = keep_mask((steps, videos, width), rate, features, device)
                    draws[name] = mask.transpose(0, 1)
                else:
                    draws[name] = keep_mask((videos, steps, width), rate, features, device)
            per_stream.append(draws)
        return {
            name: torch.cat((per_stream[0][name], per_stream[1][name])) for name in per_stream[0]
        }

    def _attend_and_feed(
        self, query: Tensor, other: Tensor, masks: dict[str, Tensor] | None
    ) -> Tensor:
        """The layer; ``masks``: dropout masks drawn beforehand (_pair_dropout_masks), or None
        for the dropout modules."""

        def drop(name: str, x: Tensor) -> Tensor:
            return getattr(self, name)(x) if masks is None else x * masks[name]

        cross_mask = None if masks is None else masks["cross_attention"]
        self_mask = None if masks is None else masks["self_attention"]
        cross = attend(self.cross_attention, query, other, cross_mask)
        itself = attend(self.self_attention, query, query, self_mask)
        query = self.norm1(query + drop("dropout_cross", cross) + drop("dropout_self", itself))
        hidden = self.linear2(drop("dropout_ff", F.relu(self.linear1(query))))
        return self.norm2(query + drop("dropout_out", hidden))


class HAN(nn.Module):
    def __init__(
        self,
        feature_dims: Mapping[str, int],
        audio_features: Sequence[str] = ("vggish",),
        visual_features: Sequence[str] = ("res152", "r2plus1d_18"),
        d_model: int = 512,
        num_heads: int = 1,
        feedforward: int = 512,
        dropout: float = 0.1,
        num_layers: int = 1,
        num_classes: int = NUM_CLASSES,
        pooling: str = "attentive_mmil",
    ):
        super().__init__()
        self.audio_stem = StreamStem(feature_dims, audio_features, d_model)
        self.visual_stem = StreamStem(feature_dims, visual_features, d_model)
        self.layers = nn.ModuleList(
            HybridAttentionLayer(d_model, num_heads, feedforward, dropout)
            for _ in range(num_layers)
        )
        self.pooling = create("pooling", pooling, d_model=d_model, num_classes=num_classes)

    def check_features(self, features: Mapping[str, Tensor]) -> None:
        """A ValueError naming the feature set unless every set the model reads is there."""
        dims = {
            name: projection.in_features
            for stem in (self.audio_stem, self.visual_stem)
            for name, projection in stem.projections.items()
        }
        check_feature_shapes(features, dims)

    def encode(self, features: Mapping[str, Tensor]) -> Tensor:
        """Per-segment features (B, T, 2, d_model) before the pooling."""
        self.check_features(features)
        audio, visual = self.audio_stem(features), self.visual_stem(features)
        for layer in self.layers:
            audio, visual = layer.forward_pair(audio, visual)
        return torch.stack((audio, visual), dim=2)

    def forward(self, features: Mapping[str, Tensor]) -> ParseOutput:
        return pool_in_fp32(self.pooling, self.encode(features))


@register("model", "han")
def han(**kwargs) -> HAN:
    """HAN as in SPEC section 4 (one hybrid attention layer, d_model 512, one head)."""
    return HAN(**kwargs)
