"""PPL's base network (paper 001, Table 1 and Eqs. 1-5) against a loop written from the paper."""

import math

import pytest
import torch
from torch import nn

from avvp.config import resolve_config
from avvp.models.ppl import PPLNet, hidden_width
from avvp.registry import create
from avvp.training.trainer import build_model

DIMS = {"vggish": 12, "res152": 20, "r2plus1d_18": 8}


def tiny_features(batch=2, segments=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(batch, segments, dim, generator=generator, dtype=torch.float64)
        for name, dim in DIMS.items()
    }


def test_hidden_widths_are_table_1s():
    assert hidden_width(128, 512) == 256  # audio: Linear 128-256, Linear 256-512
    assert hidden_width(2048, 512) == 1024  # visual: Linear 2048-1024, Linear 1024-512
    assert hidden_width(512, 512) == 512


def test_layout_of_table_1():
    config = resolve_config("ppl")
    model = build_model(config)
    assert isinstance(model, PPLNet)
    audio = [
        (
            type(layer).__name__,
            getattr(layer, "in_features", None),
            getattr(layer, "out_features", None),
        )
        for layer in model.audio_stem.heads["vggish"].modules()
        if not isinstance(layer, nn.Sequential)
    ]
    assert audio == [
        ("Linear", 128, 256),
        ("LayerNorm", None, None),
        ("LeakyReLU", None, None),
        ("Linear", 256, 512),
        ("LayerNorm", None, None),
        ("LeakyReLU", None, None),
    ]
    first = model.visual_stem.heads["res152"][0][0]
    assert (first.in_features, first.out_features) == (2048, 1024)
    # Only projections and the pooling carry weights: attention is weight-free (Eq. 4) and there
    # is no feed-forward block.
    assert {name.split(".")[0] for name, _ in model.named_parameters()} == {
        "audio_stem",
        "visual_stem",
        "pooling",
    }
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())


def reference_projection(head, x):
    """Linear -> LayerNorm -> Leaky-ReLU, twice, one vector at a time."""
    for linear, norm, _ in head:
        y = linear.weight @ x + linear.bias
        mean = y.mean()
        var = ((y - mean) ** 2).mean()
        y = (y - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias
        x = torch.where(y > 0, y, 0.01 * y)
    return x


def reference_attention(query, keys, heads):
    """softmax(q k_j / d) summed over j with v_j = k_j, per head of width d, with math.exp."""
    width = len(query) // heads
    out = torch.zeros_like(query)
    for h in range(heads):
        part = slice(h * width, (h + 1) * width)
        scores = [math.exp(float(query[part] @ key[part]) / width) for key in keys]
        total = sum(scores)
        for score, key in zip(scores, keys, strict=True):
            out[part] += score / total * key[part]
    return out


@torch.no_grad()
def reference_encode(model, features, heads):
    batch, segments = features["vggish"].shape[:2]
    out = torch.zeros(batch, segments, 2, model.pooling.classifier.in_features, dtype=torch.float64)
    for b in range(batch):
        streams = []
        for stem in (model.audio_stem, model.visual_stem):
            rows = []
            for t in range(segments):
                parts = [reference_projection(stem.heads[n], features[n][b, t]) for n in stem.names]
                if stem.fusion is not None:
                    parts = [reference_projection([stem.fusion], torch.cat(parts))]
                rows.append(parts[0])
            streams.append(rows)
        for m, (own, other) in enumerate((streams, streams[::-1])):
            for t in range(segments):
                q = own[t]
                out[b, t, m] = (
                    q + reference_attention(q, own, heads) + reference_attention(q, other, heads)
                )
    return out


@pytest.mark.parametrize("heads", [1, 2])
def test_forward_matches_the_papers_equations(heads):
    torch.manual_seed(0)
    model = create("model", "ppl", feature_dims=DIMS, d_model=8, num_heads=heads).double().eval()
    features = tiny_features()
    expected = reference_encode(model, features, heads)
    torch.testing.assert_close(model.encode(features), expected, rtol=1e-10, atol=1e-10)
    output = model(features)
    torch.testing.assert_close(output.features, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        output.segment_prob,
        torch.sigmoid(expected @ model.pooling.classifier.weight.T + model.pooling.classifier.bias),
    )


def test_any_feature_sets_per_stream():
    model = create(
        "model",
        "ppl",
        feature_dims=DIMS,
        audio_features=["vggish"],
        visual_features=["r2plus1d_18"],
        d_model=8,
    )
    assert model.visual_stem.fusion is None
    features = {name: value.float() for name, value in tiny_features().items()}
    assert model(features).segment_prob.shape == (2, 5, 2, 25)
    three = create(
        "model",
        "ppl",
        feature_dims=DIMS,
        audio_features=["vggish", "r2plus1d_18"],
        visual_features=["res152", "r2plus1d_18", "vggish"],
        d_model=8,
    )
    assert three.visual_stem.fusion[0].in_features == 24
    assert three(features).features.shape == (2, 5, 2, 8)
    with pytest.raises(ValueError, match="feature sets res152 are missing"):
        three({"vggish": features["vggish"], "r2plus1d_18": features["r2plus1d_18"]})
    with pytest.raises(ValueError, match="clip"):
        create("model", "ppl", feature_dims=DIMS, visual_features=["clip"], d_model=8)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        create("model", "ppl", feature_dims=DIMS, d_model=8, num_heads=3)
