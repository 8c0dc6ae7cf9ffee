"""Losses shared by methods; each is tested against a plain reference in tests/test_losses.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from avvp.models.base import ParseOutput

PROBABILITY_EPSILON = 1e-7


def clamped_bce(prob: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean binary cross-entropy of probabilities clamped to [1e-7, 1 - 1e-7], as HAN does."""
    prob = prob.clamp(PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON)
    return fp32_bce(prob, target, weight)


def fp32_bce(prob: Tensor, target: Tensor, weight: Tensor | None = None, **options) -> Tensor:
    """F.binary_cross_entropy outside autocast, at least in fp32: a bf16 training forward
    (train.precision) computes its losses in fp32, and torch refuses this op under CUDA
    autocast."""
    dtype = torch.promote_types(prob.dtype, torch.float32)
    with torch.autocast(prob.device.type, enabled=False):
        return F.binary_cross_entropy(prob.to(dtype), target.to(dtype), weight=weight, **options)


def attentive_mil_loss(
    output: ParseOutput,
    weak: Tensor,
    visual_label_smoothing: float = 0.1,
    class_weights: Tensor | None = None,
    visual_target: Tensor | None = None,
    audio_target: Tensor | None = None,
) -> Tensor:
    """HAN's loss: BCE on the global, audio and visual video probabilities (SPEC section 4).

    The visual target is smoothed, ``(1 - s) w + s / 2``, because a weak label often names a class
    that is only heard. ``class_weights`` (C,) reweights classes (PPL uses inverse frequency);
    ``visual_target`` / ``audio_target`` replace the weak label of one stream (VPLAN's
    video-level pseudo labels, paper 003 Eq. 5); the global probability keeps the weak label.
    """
    weight = None if class_weights is None else class_weights.expand_as(weak)
    audio = weak if audio_target is None else audio_target
    visual = weak if visual_target is None else visual_target
    visual = (1 - visual_label_smoothing) * visual + visual_label_smoothing / 2
    return (
        clamped_bce(output.video_prob, weak, weight)
        + clamped_bce(output.video_prob_audio, audio, weight)
        + clamped_bce(output.video_prob_visual, visual, weight)
    )


def inverse_frequency_weights(weak: Tensor) -> Tensor:
    """Per-class weights proportional to 1 / frequency, normalised to mean 1 over classes."""
    frequency = weak.float().mean(dim=0).clamp_min(1.0 / max(len(weak), 1))
    weights = 1.0 / frequency
    return weights / weights.mean()


def pseudo_label_contrastive_loss(features: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """PPL's contrastive loss over the segments of a batch (paper 000, Eq. 12).

    ``features`` (N, D) are L2-normalised here; ``labels`` (N, C) bool are binarised pseudo labels.
    For anchor i the positives are the other segments sharing at least one label with it, the
    negatives those sharing none, and the loss is
    ``-log(sum_pos e^{s/tau} / (sum_pos e^{s/tau} + sum_neg e^{s/tau}))`` with ``s`` the cosine
    similarity, averaged over anchors that have a positive. The anchor itself is left out of both
    sets: the paper's S(f) would contain f, whose e^{1/tau} term would let every labelled anchor
    reach a near-zero loss without pulling anything closer.
    """
    features = F.normalize(features, dim=-1)
    shared = (labels.float() @ labels.float().T) > 0
    others = ~torch.eye(len(features), dtype=torch.bool, device=features.device)
    positive = shared & others
    logits = features @ features.T / temperature
    # Positives and negatives together are all the other segments, hence the denominator.
    log_all = torch.logsumexp(logits.masked_fill(~others, -torch.inf), dim=1)
    log_positive = torch.logsumexp(logits.masked_fill(~positive, -torch.inf), dim=1)
    anchors = positive.any(dim=1)
    if not anchors.any():
        # Zero that stays on the graph, so a batch without positives still backpropagates.
        return features.sum() * 0.0
    return (log_all - log_positive)[anchors].mean()


def seeded_generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def category_richness(segment: Tensor, video: Tensor) -> Tensor:
    """Classes in each segment over classes in the video, (B, T, C) and (B, C) -> (B, T).

    Paper 003, Eq. 6, with sums in place of counts so that probabilities work too. A video with
    no class gives 0 / 0, returned as 0 (its segments hold no class either).
    """
    return segment.sum(dim=-1) / video.sum(dim=-1, keepdim=True).clamp_min(PROBABILITY_EPSILON)


def segment_richness(segment: Tensor) -> Tensor:
    """Share of the T segments holding each class, (B, T, C) -> (B, C) (paper 003, Eq. 7)."""
    return segment.mean(dim=1)


def richness_aware_loss(
    segment_prob: Tensor, labels: Tensor, video_prob: Tensor | None = None
) -> Tensor:
    """VPLAN's richness-aware loss for one stream (paper 003, Eq. 8).

    ``BCE(category richness of segment_prob, of labels) + BCE(segment richness of segment_prob,
    of labels)`` (Eqs. 6-7), ``segment_prob`` and ``labels`` (B, T, C). The labels' classes in
    the video are their OR (max) over segments (the paper's video-level pseudo label). For the
    predictions they are the max over segments of the probabilities, which gives the label
    formula exactly on binary predictions and keeps every ratio in [0, 1]; ``video_prob`` (B, C),
    e.g. the stream's attentive video probability, replaces that max when given. Videos whose
    labels hold no class have no category richness (0 / 0) and are left out of that term (an
    all-zero target no prediction can reach); their segment richness, 0 for every class, counts.
    """
    label_video = labels.amax(dim=1)
    prob_video = segment_prob.amax(dim=1) if video_prob is None else video_prob
    predicted = category_richness(segment_prob, prob_video).clamp(
        PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON
    )
    terms = fp32_bce(predicted, category_richness(labels, label_video), reduction="none")
    has_classes = (label_video.sum(dim=-1) > 0)[:, None].expand_as(terms)
    # Zero that stays on the graph when no video of the batch has a class.
    category = terms[has_classes].mean() if has_classes.any() else terms.sum() * 0.0
    return category + clamped_bce(segment_richness(segment_prob), segment_richness(labels))
