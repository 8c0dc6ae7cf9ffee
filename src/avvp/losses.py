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
    return F.binary_cross_entropy(prob, target, weight=weight)


def attentive_mil_loss(
    output: ParseOutput,
    weak: Tensor,
    visual_label_smoothing: float = 0.1,
    class_weights: Tensor | None = None,
    visual_target: Tensor | None = None,
) -> Tensor:
    """HAN's loss: BCE on the global, audio and visual video probabilities (SPEC section 4).

    The visual target is smoothed, ``(1 - s) w + s / 2``, because a weak label often names a class
    that is only heard. ``class_weights`` (C,) reweights classes (PPL uses inverse frequency);
    ``visual_target`` replaces the weak label for the visual stream (VPLAN's visual pseudo labels).
    """
    weight = None if class_weights is None else class_weights.expand_as(weak)
    visual = weak if visual_target is None else visual_target
    visual = (1 - visual_label_smoothing) * visual + visual_label_smoothing / 2
    return (
        clamped_bce(output.video_prob, weak, weight)
        + clamped_bce(output.video_prob_audio, weak, weight)
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
