"""PPL as papers 000/001 write it: Eq. 4's MIL loss, both readings of the EMA, the inference rule
apart from the training labels (PPL_Test hard), the Base recipe, against slow references."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING
from test_ppl import random_sets, reference_labels
from torch import nn

from avvp.cli import main
from avvp.config import ConfigError, resolve_config, validate_config
from avvp.losses import attentive_mil_loss
from avvp.methods.base import Batch
from avvp.methods.ppl import Prototypes, frozen_copy, paper_mil_loss, ppl_test
from avvp.registry import create
from avvp.training.trainer import build_model


def reference_paper_mil_loss(video_prob, weak, class_weights):
    """Eq. 4 with loops: mean over (video, class) of w_c * binary cross-entropy."""
    total = 0.0
    for b in range(len(weak)):
        for c in range(weak.shape[1]):
            p = min(max(float(video_prob[b, c]), 1e-7), 1 - 1e-7)
            y = float(weak[b, c])
            total += float(class_weights[c]) * -(y * math.log(p) + (1 - y) * math.log(1 - p))
    return total / weak.numel()


def tiny_method(*overrides, seed=0):
    torch.manual_seed(seed)
    config = resolve_config("ppl", overrides=["model.d_model=16", *overrides])
    return (
        config,
        build_model(config).eval(),
        create("method", "ppl", config=config, train_data=None),
    )


def tiny_batch(config, seed=1):
    generator = torch.Generator().manual_seed(seed)
    features = {
        name: torch.randn(4, 10, dim, generator=generator)
        for name, dim in config["features"]["dims"].items()
    }
    weak = (torch.rand(4, 25, generator=generator) < 0.2).float()
    return Batch(features, weak, torch.arange(4))


def test_paper_mil_loss_matches_loop():
    generator = torch.Generator().manual_seed(2)
    video_prob = torch.rand(5, 25, generator=generator, dtype=torch.float64)
    video_prob[0, 0], video_prob[1, 1] = 0.0, 1.0  # clamped as HAN clamps
    weak = (torch.rand(5, 25, generator=generator) < 0.3).double()
    weights = torch.rand(25, generator=generator, dtype=torch.float64) * 3
    expected = reference_paper_mil_loss(video_prob, weak, weights)
    assert float(paper_mil_loss(video_prob, weak, weights)) == pytest.approx(expected, rel=1e-12)
    unweighted = reference_paper_mil_loss(video_prob, weak, torch.ones(25))
    assert float(paper_mil_loss(video_prob, weak, None)) == pytest.approx(unweighted, rel=1e-12)


@pytest.mark.parametrize("form", ["paper", "han"])
def test_training_forward_uses_the_chosen_mil_loss(form):
    config, model, method = tiny_method(f"method.mil_loss={form}")
    method.class_weights = torch.linspace(0.5, 1.5, 25)
    batch = tiny_batch(config)
    losses, _ = method.training_forward(model, batch)
    output = model(batch.features)
    paper = paper_mil_loss(output.video_prob, batch.weak, method.class_weights)
    han = attentive_mil_loss(output, batch.weak, 0.1, class_weights=method.class_weights)
    torch.testing.assert_close(losses["mil"], paper if form == "paper" else han)
    assert not torch.allclose(paper, han)


def reference_ema(old, new, momentum, reading):
    """Per element, in Python floats: conventional m old + (1 - m) new; literal (1 - eta) old +
    eta new, the paper's words."""
    if reading == "conventional":
        return [momentum * o + (1 - momentum) * n for o, n in zip(old, new, strict=True)]
    return [(1 - momentum) * o + momentum * n for o, n in zip(old, new, strict=True)]


@pytest.mark.parametrize("reading", ["conventional", "literal"])
@pytest.mark.parametrize("momentum", [0.9, 0.999])
def test_momentum_readings_match_reference(reading, momentum):
    config = resolve_config(
        "ppl", overrides=[f"method.momentum_reading={reading}", f"method.momentum={momentum}"]
    )
    method = create("method", "ppl", config=config, train_data=None)
    torch.manual_seed(3)
    model = nn.Linear(3, 2).double()
    method.momentum_model = frozen_copy(model)
    expected = [float(v) for v in method.momentum_model.weight.flatten()]
    for _ in range(3):  # the model moves, the momentum model follows after each step
        with torch.no_grad():
            model.weight.add_(torch.randn(2, 3, dtype=torch.float64))
        method.after_optimizer_step(SimpleNamespace(model=model))
        current = [float(v) for v in model.weight.detach().flatten()]
        expected = reference_ema(expected, current, momentum, reading)
    got = [float(v) for v in method.momentum_model.weight.flatten()]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert method.ema_steps == 3


def test_hard_inference_rule_matches_reference_and_is_apart_from_training_labels():
    # Training labels soft, inference hard (Eq. 9), and the other way round.
    config, model, method = tiny_method(
        "method.label_type=soft", "method.inference_label_type=hard", seed=4
    )
    with torch.no_grad():
        model.pooling.classifier.bias[:10] = 8.0  # classes 0-9 predicted present
        model.pooling.classifier.bias[10:] = -8.0
    rng = np.random.default_rng(5)
    positive, negative = random_sets(rng, [3] * 25, 16), random_sets(rng, [2] * 25, 16)
    method.prototypes = Prototypes.from_sets(positive, negative, 10, 16)
    method.momentum_model = model
    features = tiny_batch(config).features
    output = method.infer(model, features)
    with torch.no_grad():
        own = model(features)
    predicted = (own.video_prob >= 0.5).double().numpy()
    assert predicted[:, :10].all() and not predicted[:, 10:].any()
    hard = reference_labels(own.features.double().numpy(), predicted, positive, negative, 0.1, True)
    np.testing.assert_allclose(output.segment_prob.numpy(), hard, atol=1e-6)
    assert set(np.unique(hard)) == {0.0, 1.0}

    _, _, soft_method = tiny_method("method.label_type=hard", "method.inference_label_type=soft")
    soft_method.prototypes, soft_method.momentum_model = method.prototypes, model
    soft = reference_labels(
        own.features.double().numpy(), predicted, positive, negative, 0.1, False
    )
    np.testing.assert_allclose(
        soft_method.infer(model, features).segment_prob.numpy(), soft, atol=1e-5
    )


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("method.mil_loss=bag", "method.mil_loss"),
        ("method.momentum_reading=reversed", "method.momentum_reading"),
        ("method.inference_label_type=medium", "method.inference_label_type"),
    ],
)
def test_new_keys_are_validated(override, key):
    with pytest.raises(ConfigError, match=key):
        validate_config(resolve_config("ppl", overrides=[override]), training=False)


def test_literal_reading_without_momentum_is_refused():
    literal = ["method.momentum_reading=literal", "method.momentum=0"]
    with pytest.raises(
        ConfigError, match=r"method\.momentum=0 with method\.momentum_reading=literal"
    ):
        validate_config(resolve_config("ppl", overrides=literal), training=False)
    validate_config(resolve_config("ppl", overrides=[literal[0], "method.momentum=1"]))


def read_json(path):
    return json.loads(path.read_text())


def test_cli_ppl_network_base_recipe_and_ppl_test_hard(dataset, tmp_path):
    flags = ["--data", str(dataset), *TINY_TRAINING]
    # PPL on its own network, the preset's default
    assert main(["train", "--method", "ppl", "--out", str(tmp_path / "ppl"), *flags]) == 0
    saved = torch.load(tmp_path / "ppl" / "best.pt", weights_only=False)
    assert saved["config"]["model"]["name"] == "ppl"
    assert any(name.startswith("audio_stem.heads.vggish") for name in saved["model"])
    # Base: the recipe, no pseudo labels, the classifier's own output
    base = tmp_path / "base"
    assert (
        main(
            ["train", "--method", "ppl", "--config", "recipe:ppl_base", "--out", str(base), *flags]
        )
        == 0
    )
    rows = (base / "metrics.csv").read_text().splitlines()
    assert "loss.mil" in rows[0] and "loss.pl" not in rows[0] and "pseudo.positives" not in rows[0]
    config = torch.load(base / "best.pt", weights_only=False)["config"]
    assert (config["model"]["name"], config["method"]["inference"]) == ("ppl", "classifier")
    assert read_json(base / "test_metrics.json")
    # PPL on HAN with HAN's loss: today's behaviour stays reachable
    han_flags = ["model.name=han", "method.mil_loss=han", *flags]
    assert main(["train", "--method", "ppl", "--out", str(tmp_path / "on-han"), *han_flags]) == 0
    # PPL_Test defaults to the hard labels of Eq. 9; soft stays an option
    han_run = tmp_path / "han"
    assert main(["train", "--method", "han", "--out", str(han_run), *flags]) == 0
    hard = ppl_test(han_run)
    assert hard == ppl_test(han_run, overrides=["method.inference_label_type=hard"])
    assert hard != ppl_test(han_run, overrides=["method.inference_label_type=soft"])
