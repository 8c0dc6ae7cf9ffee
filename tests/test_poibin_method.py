"""The PoiBin method's own pieces against naive references (the pmf: test_poisson_binomial)."""

import csv
import itertools

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING

from avvp.cli import main
from avvp.config import resolve_config
from avvp.methods.poibin import Counting, count_groups, joined_tau, pooled_probability
from avvp.registry import create


def brute_force_tail(probs, tau):
    """P(at least tau successes) by enumerating every outcome."""
    total = 0.0
    for outcome in itertools.product((0, 1), repeat=len(probs)):
        if sum(outcome) >= tau:
            weight = 1.0
            for p, o in zip(probs, outcome, strict=True):
                weight *= p if o else 1 - p
            total += weight
    return total


def test_joined_tau_rules():
    for tau_i, tau_j, pos_i, pos_j in itertools.product(range(1, 5), range(1, 5), (0, 1), (0, 1)):
        expected = tau_i + tau_j if pos_i and pos_j else max(tau_i, tau_j) if pos_i or pos_j else 1
        got = joined_tau(
            torch.tensor(tau_i),
            torch.tensor(tau_j),
            torch.tensor(bool(pos_i)),
            torch.tensor(bool(pos_j)),
        )
        assert int(got) == expected, (tau_i, tau_j, pos_i, pos_j)


def test_count_groups_layout():
    segment_prob = torch.arange(2 * 3 * 2 * 4, dtype=torch.float64).reshape(2, 3, 2, 4)
    joint = count_groups(segment_prob, Counting.JOINT)
    assert joint.shape == (2, 1, 4, 6)
    per_stream = count_groups(segment_prob, Counting.PER_STREAM)
    assert per_stream.shape == (2, 2, 4, 3)
    for b, c in itertools.product(range(2), range(4)):
        assert sorted(joint[b, 0, c].tolist()) == sorted(
            segment_prob[b, :, :, c].flatten().tolist()
        )
        assert per_stream[b, 0, c].tolist() == segment_prob[b, :, 0, c].tolist()
        assert per_stream[b, 1, c].tolist() == segment_prob[b, :, 1, c].tolist()


@pytest.mark.parametrize("counting", list(Counting))
def test_pooled_probability_matches_brute_force(counting):
    generator = torch.Generator().manual_seed(0)
    segment_prob = torch.rand(3, 4, 2, 5, generator=generator, dtype=torch.float64)
    segment_prob[0, 0, 0, 0] = 1.0
    segment_prob[1, :, :, 1] = 0.0
    groups = count_groups(segment_prob, counting)
    tau = torch.randint(0, 6, groups.shape[:3], generator=generator)
    pooled = pooled_probability(groups, tau, "recursion")
    for b, c in itertools.product(range(3), range(5)):
        if counting is Counting.JOINT:
            expected = brute_force_tail(
                segment_prob[b, :, :, c].flatten().tolist(), int(tau[b, 0, c])
            )
        else:
            tails = [
                brute_force_tail(segment_prob[b, :, m, c].tolist(), int(tau[b, m, c]))
                for m in (0, 1)
            ]
            expected = 1 - (1 - tails[0]) * (1 - tails[1])
        assert float(pooled[b, c]) == pytest.approx(expected, abs=1e-12)


def test_tau_one_joint_is_noisy_or():
    generator = torch.Generator().manual_seed(1)
    segment_prob = torch.rand(2, 10, 2, 25, generator=generator, dtype=torch.float64)
    groups = count_groups(segment_prob, Counting.JOINT)
    pooled = pooled_probability(groups, torch.ones(2, 1, 25, dtype=torch.long), "recursion")
    noisy_or = 1 - torch.prod(1 - segment_prob.flatten(1, 2), dim=1)
    torch.testing.assert_close(pooled, noisy_or)


def test_unknown_option_lists_choices():
    config = resolve_config("poibin", overrides=["method.counting=both"])
    with pytest.raises(ValueError, match="joint, per_stream"):
        create("method", "poibin", config=config, train_data=None)
    assert np.all(
        create("method", "poibin", config=resolve_config("poibin"), train_data=None).tau.numpy()
        == 1
    )


@pytest.mark.parametrize("attentive", ["true", "false"])
def test_warmup_trains_the_attentive_loss_alone_then_adds_poibin(dataset, tmp_path, attentive):
    run = tmp_path / "poibin"
    flags = ["--data", str(dataset), "--out", str(run), *TINY_TRAINING, "optim.epochs=3"]
    overrides = ["method.warmup_epochs=2", f"method.attentive_loss={attentive}"]
    assert main(["train", "--method", "poibin", *flags, *overrides]) == 0
    with open(run / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert [bool(row["loss.poibin"]) for row in rows] == [False, False, True]
    assert [bool(row["loss.augmentation"]) for row in rows] == [False, False, True]
    assert [bool(row["loss.attentive"]) for row in rows] == [True, True, attentive == "true"]
    assert all(row["tau.mean"] for row in rows)  # tau is estimated after warm-up epochs too
    # The warm-up epochs train a HAN model, never the method's result.
    assert torch.load(run / "best.pt", weights_only=False)["epoch"] == 3


@pytest.mark.parametrize("warmup", [-1, 3, 4])
def test_warmup_outside_the_schedule_is_an_error(warmup):
    config = resolve_config(
        "poibin", overrides=[f"method.warmup_epochs={warmup}", "optim.epochs=3"]
    )
    with pytest.raises(ValueError, match=r"warmup_epochs must be in \[0, optim.epochs = 3\)"):
        create("method", "poibin", config=config, train_data=None)
