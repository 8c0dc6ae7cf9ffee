"""Every registered model: forward and backward, output contract, no NaN, gradients everywhere."""

import math

import pytest
import torch

from avvp.models.base import ParseOutput
from avvp.pooling import AttentiveMMILPooling
from avvp.registry import available, create

DIMS = {"vggish": 12, "res152": 20, "r2plus1d_18": 8}


def tiny_features(batch=3, segments=10, generator=None):
    return {
        name: torch.randn(batch, segments, dim, generator=generator) for name, dim in DIMS.items()
    }


@pytest.mark.parametrize("name", available("model"))
def test_model_forward_backward(name):
    torch.manual_seed(0)
    model = create("model", name, feature_dims=DIMS, d_model=16, feedforward=16)
    output = model(tiny_features())
    assert isinstance(output, ParseOutput)
    assert output.segment_prob.shape == (3, 10, 2, 25)
    assert output.features.shape == (3, 10, 2, 16)
    for value in (output.video_prob, output.video_prob_audio, output.video_prob_visual):
        assert value.shape == (3, 25)
        assert torch.all((value >= 0) & (value <= 1))
    loss = sum(
        v.sum() for v in (output.video_prob, output.video_prob_audio, output.video_prob_visual)
    )
    loss = loss + output.segment_prob.sum()
    loss.backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name


@pytest.mark.parametrize("name", available("model"))
def test_model_accepts_other_lengths(name):
    # PoiBin runs the model on two videos joined into 2T segments.
    model = create("model", name, feature_dims=DIMS, d_model=16, feedforward=16).eval()
    assert model(tiny_features(segments=20)).segment_prob.shape == (3, 20, 2, 25)


def test_model_single_feature_set_per_stream():
    model = create(
        "model",
        "han",
        feature_dims=DIMS,
        audio_features=["vggish"],
        visual_features=["r2plus1d_18"],
        d_model=16,
        feedforward=16,
    )
    assert model.visual_stem.fusion is None
    assert model(tiny_features()).segment_prob.shape == (3, 10, 2, 25)


def test_model_rejects_unknown_feature_set():
    with pytest.raises(ValueError, match="clip"):
        create("model", "han", feature_dims=DIMS, visual_features=["clip"], d_model=16)


def naive_attentive_pooling(pooling, features):
    """Loop over videos and classes; softmaxes written out."""
    batch, segments, streams, _ = features.shape
    classes = pooling.classifier.out_features
    video = torch.zeros(batch, classes, dtype=torch.float64)
    per_stream = torch.zeros(batch, streams, classes, dtype=torch.float64)
    for b in range(batch):
        for c in range(classes):
            prob = [
                [
                    torch.sigmoid(
                        features[b, t, m] @ pooling.classifier.weight[c]
                        + pooling.classifier.bias[c]
                    )
                    for m in range(streams)
                ]
                for t in range(segments)
            ]
            time_score = [
                [
                    features[b, t, m] @ pooling.time_attention.weight[c]
                    + pooling.time_attention.bias[c]
                    for m in range(streams)
                ]
                for t in range(segments)
            ]
            stream_score = [
                [
                    features[b, t, m] @ pooling.modality_attention.weight[c]
                    + pooling.modality_attention.bias[c]
                    for m in range(streams)
                ]
                for t in range(segments)
            ]
            for m in range(streams):
                normaliser = sum(math.exp(time_score[t][m]) for t in range(segments))
                per_stream[b, m, c] = sum(
                    math.exp(time_score[t][m]) / normaliser * prob[t][m] for t in range(segments)
                )
            total = 0.0
            for t in range(segments):
                stream_normaliser = sum(math.exp(stream_score[t][m]) for m in range(streams))
                for m in range(streams):
                    time_normaliser = sum(math.exp(time_score[s][m]) for s in range(segments))
                    total += (
                        (math.exp(time_score[t][m]) / time_normaliser)
                        * prob[t][m]
                        * (math.exp(stream_score[t][m]) / stream_normaliser)
                    )
            video[b, c] = min(total, 1.0)
    return video, per_stream


def test_attentive_pooling_matches_naive():
    torch.manual_seed(1)
    pooling = AttentiveMMILPooling(d_model=6, num_classes=4).double()
    features = torch.randn(2, 5, 2, 6, dtype=torch.float64)
    with torch.no_grad():
        output = pooling(features)
        video, per_stream = naive_attentive_pooling(pooling, features)
    torch.testing.assert_close(output.video_prob, video, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(output.video_prob_audio, per_stream[:, 0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(output.video_prob_visual, per_stream[:, 1], rtol=1e-9, atol=1e-9)


def test_attentive_pooling_limits():
    # A stream's video probability is a convex combination of that stream's segment probabilities
    # (the global one is not: HAN multiplies two softmaxes without renormalising, and so do we).
    torch.manual_seed(2)
    pooling = AttentiveMMILPooling(d_model=8, num_classes=25)
    with torch.no_grad():
        output = pooling(torch.randn(4, 10, 2, 8))
    for stream, video in ((0, output.video_prob_audio), (1, output.video_prob_visual)):
        segment = output.segment_prob[:, :, stream]
        assert torch.all(video >= segment.amin(dim=1) - 1e-6)
        assert torch.all(video <= segment.amax(dim=1) + 1e-6)
    # with constant features every attention is uniform and all probabilities coincide
    with torch.no_grad():
        constant = pooling(torch.ones(1, 10, 2, 8))
    torch.testing.assert_close(constant.video_prob, constant.segment_prob[:, 0, 0])


def test_global_probability_is_clamped_where_the_two_softmaxes_sum_past_one():
    # Time attention picks segment 0 in the audio stream and segment 1 in the visual one, and
    # modality attention picks exactly those (t, m): HAN's raw global sum is then close to 2.
    pooling = AttentiveMMILPooling(d_model=3, num_classes=1)
    with torch.no_grad():
        for layer, axis in ((pooling.classifier, 0), (pooling.time_attention, 1)):
            layer.weight.zero_()
            layer.bias.zero_()
            layer.weight[0, axis] = 1.0
        pooling.modality_attention.weight.zero_()
        pooling.modality_attention.bias.zero_()
        pooling.modality_attention.weight[0, 2] = 1.0
    features = torch.zeros(1, 4, 2, 3)
    features[..., 0] = 20.0
    for t, m in ((0, 0), (1, 1)):
        features[0, t, m, 1:] = 20.0
    raw = (
        torch.softmax(pooling.time_attention(features), dim=1)
        * pooling(features).segment_prob
        * torch.softmax(pooling.modality_attention(features), dim=2)
    ).sum()
    assert float(raw.detach()) > 1.9, float(raw.detach())
    assert float(pooling(features).video_prob.detach()) == 1.0
