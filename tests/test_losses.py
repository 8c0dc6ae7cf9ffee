import math

import torch

from avvp.losses import attentive_mil_loss, clamped_bce, inverse_frequency_weights
from avvp.models.base import ParseOutput


def naive_bce(prob, target):
    total = 0.0
    for p, y in zip(prob.flatten().tolist(), target.flatten().tolist(), strict=True):
        p = min(max(p, 1e-7), 1 - 1e-7)
        total += -(y * math.log(p) + (1 - y) * math.log(1 - p))
    return total / prob.numel()


def random_output(batch=5, classes=25, generator=None):
    probs = [torch.rand(batch, classes, generator=generator, dtype=torch.float64) for _ in range(3)]
    probs[0][0, 0], probs[1][0, 1] = 0.0, 1.0  # exercise the clamp
    segment = torch.rand(batch, 10, 2, classes, dtype=torch.float64)
    return ParseOutput(segment, probs[0], probs[1], probs[2], torch.zeros(batch, 10, 2, 4))


def test_clamped_bce_matches_naive():
    generator = torch.Generator().manual_seed(0)
    prob = torch.rand(7, 25, generator=generator, dtype=torch.float64)
    prob[0, :3] = torch.tensor([0.0, 1.0, 0.5])
    target = (torch.rand(7, 25, generator=generator) > 0.5).double()
    assert math.isclose(float(clamped_bce(prob, target)), naive_bce(prob, target), rel_tol=1e-12)


def test_attentive_mil_loss_matches_naive():
    generator = torch.Generator().manual_seed(1)
    output = random_output(generator=generator)
    weak = (torch.rand(5, 25, generator=generator) > 0.7).double()
    expected = (
        naive_bce(output.video_prob, weak)
        + naive_bce(output.video_prob_audio, weak)
        + naive_bce(output.video_prob_visual, 0.9 * weak + 0.05)
    )
    assert math.isclose(float(attentive_mil_loss(output, weak)), expected, rel_tol=1e-12)


def test_attentive_mil_loss_class_weights_and_visual_target():
    generator = torch.Generator().manual_seed(2)
    output = random_output(batch=3, classes=4, generator=generator)
    weak = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0], [1, 1, 0, 0]], dtype=torch.float64)
    visual = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.float64)
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)

    def weighted(prob, target):
        total = 0.0
        for b in range(3):
            for c in range(4):
                p = min(max(float(prob[b, c]), 1e-7), 1 - 1e-7)
                y = float(target[b, c])
                total += -float(weights[c]) * (y * math.log(p) + (1 - y) * math.log(1 - p))
        return total / 12

    expected = (
        weighted(output.video_prob, weak)
        + weighted(output.video_prob_audio, weak)
        + weighted(output.video_prob_visual, 0.9 * visual + 0.05)
    )
    loss = attentive_mil_loss(output, weak, class_weights=weights, visual_target=visual)
    assert math.isclose(float(loss), expected, rel_tol=1e-12)

    audio = torch.tensor([[0.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.float64)
    expected = (
        weighted(output.video_prob, weak)
        + weighted(output.video_prob_audio, audio)  # the audio target is not smoothed
        + weighted(output.video_prob_visual, 0.9 * visual + 0.05)
    )
    loss = attentive_mil_loss(
        output, weak, class_weights=weights, visual_target=visual, audio_target=audio
    )
    assert math.isclose(float(loss), expected, rel_tol=1e-12)


def test_inverse_frequency_weights():
    weak = torch.tensor([[1.0, 0, 1], [1, 0, 0], [1, 1, 0], [1, 0, 0]])
    weights = inverse_frequency_weights(weak)
    # frequencies 1, 1/4, 1/4 -> raw weights 1, 4, 4 -> mean 3
    torch.testing.assert_close(weights, torch.tensor([1 / 3, 4 / 3, 4 / 3]))
    # a class never seen gets the weight of a class seen once, not infinity
    assert torch.isfinite(inverse_frequency_weights(torch.tensor([[1.0, 0.0]]))).all()
