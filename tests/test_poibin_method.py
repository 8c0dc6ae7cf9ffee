"""The PoiBin method's own pieces against naive references (the pmf: test_poisson_binomial)."""

import csv
import itertools
import math

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING

from avvp.cli import main
from avvp.config import resolve_config, validate_config
from avvp.losses import clamped_bce
from avvp.methods.poibin import (
    Counting,
    PoiBin,
    bce_by_target,
    count_groups,
    joined_tau,
    pooled_probability,
)
from avvp.registry import create
from avvp.training.trainer import Trainer


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


def train_poibin(dataset, run, *overrides):
    flags = ["--data", str(dataset), "--out", str(run), *TINY_TRAINING]
    return main(["train", "--method", "poibin", *flags, *overrides])


def read_rows(run):
    with open(run / "metrics.csv") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("attentive", ["true", "false"])
def test_warmup_trains_the_attentive_loss_alone_then_adds_poibin(dataset, tmp_path, attentive):
    run = tmp_path / "poibin"
    overrides = ["optim.epochs=3", "method.warmup_epochs=2", f"method.attentive_loss={attentive}"]
    assert train_poibin(dataset, run, *overrides) == 0
    rows = read_rows(run)
    assert [bool(row["loss.poibin"]) for row in rows] == [False, False, True]
    assert [bool(row["loss.augmentation"]) for row in rows] == [False, False, True]
    assert [bool(row["loss.attentive"]) for row in rows] == [True, True, attentive == "true"]
    # No E-step during the warm-up: the refinement's first epoch trains with tau = 1.
    assert [bool(row["tau.mean"]) for row in rows] == [False, False, True]
    # The warm-up epochs train a HAN model, never the method's result.
    assert torch.load(run / "best.pt", weights_only=False)["epoch"] == 3


def record_first_refinement_tau(monkeypatch):
    """The largest tau any batch of the first refinement epoch trained with."""
    seen = []
    original = PoiBin.training_forward

    def recording(self, model, batch):
        if not self.warming_up and len(seen) < 1:
            seen.append(int(self.tau[batch.index.cpu()].max()))
        return original(self, model, batch)

    monkeypatch.setattr(PoiBin, "training_forward", recording)
    return seen


def record_optimizer_state(monkeypatch):
    """(epoch, Adam's per-parameter state entries) when each epoch's training starts."""
    seen = []
    original = Trainer.train_one_epoch

    def recording(self, epoch):
        seen.append((epoch, len(self.optimizer.state)))
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_one_epoch", recording)
    return seen


@pytest.mark.parametrize("recipe", ["refinement", "earlier"])
def test_the_refinement_starts_with_tau_one_and_a_fresh_optimizer(
    dataset, tmp_path, monkeypatch, recipe
):
    earlier = recipe == "earlier"
    tau = record_first_refinement_tau(monkeypatch)
    state = record_optimizer_state(monkeypatch)
    # lr_step=1 decays the lr tenfold every epoch: a fresh schedule shows as the lr going back up
    # (to optim.lr: refine_lr=null).
    overrides = ["optim.epochs=3", "optim.lr=1e-3", "optim.lr_step=1", "method.warmup_epochs=2"]
    overrides.append("method.refine_lr=null")
    if earlier:
        overrides += ["method.warmup_estep=true", "method.refine_fresh_optimizer=false"]
    assert train_poibin(dataset, tmp_path / "run", *overrides) == 0
    rows = read_rows(tmp_path / "run")
    lrs = [float(row["lr"]) for row in rows]
    assert lrs == pytest.approx([1e-3, 1e-4, 1e-5] if earlier else [1e-3, 1e-4, 1e-3])
    assert [bool(row["tau.mean"]) for row in rows] == [earlier, earlier, True]
    # Adam's moments: kept from the warm-up, or none when the refinement starts.
    assert (state[2][1] > 0) == earlier and state[1][1] > 0
    # A random-ish starting model counts many segments of 2T; Algorithm 1 starts from 1 anyway.
    assert (tau[0] > 1) == earlier


def test_the_presets_refine_lr_is_unused_without_a_fresh_optimizer():
    """The preset's refine_lr (chosen on val) is no error where no refinement restarts."""
    for overrides in (["method.warmup_epochs=0"], ["method.refine_fresh_optimizer=false"]):
        config = resolve_config("poibin", overrides=overrides)
        validate_config(config)
        method = create("method", "poibin", config=config, train_data=None)
        assert config["method"]["refine_lr"] == 1e-4
        assert all(method.optimizer_restart_lr(epoch) is None for epoch in range(4))


def test_refine_lr_is_the_fresh_optimizers_lr(dataset, tmp_path):
    overrides = ["optim.epochs=3", "optim.lr=1e-3", "method.warmup_epochs=1"]
    assert train_poibin(dataset, tmp_path / "run", *overrides, "method.refine_lr=3e-5") == 0
    lrs = [float(row["lr"]) for row in read_rows(tmp_path / "run")]
    assert lrs == pytest.approx([1e-3, 3e-5, 3e-5])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method.refine_lr=0"], r"method.refine_lr must be null or > 0"),
        (["method.warmup_estep=1"], "'method.warmup_estep' expects bool"),
    ],
)
def test_refinement_options_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        config = resolve_config("poibin", overrides=overrides)
        create("method", "poibin", config=config, train_data=None)


def test_the_starting_models_counts_are_reported_not_used(dataset, tmp_path):
    """tau_start.* comes from an E-step on the model the warm-up left: the same numbers the
    earlier recipe's E-step after the last warm-up epoch used as tau."""
    base = ["optim.epochs=3", "method.warmup_epochs=2"]
    assert train_poibin(dataset, tmp_path / "new", *base) == 0
    assert train_poibin(dataset, tmp_path / "old", *base, "method.warmup_estep=true") == 0
    new, old = read_rows(tmp_path / "new"), read_rows(tmp_path / "old")
    assert [bool(row["tau_start.mean"]) for row in new] == [False, False, True]
    names = ["mean", "max", "error_mean", "error_abs", "exact"]  # errors: synthetic data
    for name in names:
        assert float(new[2][f"tau_start.{name}"]) == pytest.approx(float(old[1][f"tau.{name}"]))
    # Identical warm-ups; the refinement's first epoch differs only by its tau.
    assert new[1]["loss.total"] == old[1]["loss.total"]
    assert new[2]["loss.poibin"] != old[2]["loss.poibin"]


@pytest.mark.parametrize("extra", [[], ["method.counting=per_stream"]])
def test_poibin_loss_is_logged_over_positive_and_negative_pairs(dataset, tmp_path, extra):
    overrides = ["optim.epochs=2", "method.warmup_epochs=1", *extra]
    assert train_poibin(dataset, tmp_path / "run", *overrides) == 0
    rows = read_rows(tmp_path / "run")
    assert not rows[0]["loss.poibin_positive"]  # warm-up: no L_poibin
    positive = float(rows[1]["loss.poibin_positive"])
    negative = float(rows[1]["loss.poibin_negative"])
    assert positive > 0 and negative > 0
    # Batch means of shares that sum to each batch's loss: the epoch means sum too.
    assert positive + negative == pytest.approx(float(rows[1]["loss.poibin"]), rel=1e-5)


def test_bce_by_target_against_a_loop():
    generator = torch.Generator().manual_seed(3)
    prob = torch.rand(4, 2, 6, generator=generator, dtype=torch.float64)
    prob[0, 0, 0], prob[1, 1, 1] = 0.0, 1.0  # clamped as the loss clamps them
    target = (torch.rand(4, 2, 6, generator=generator) > 0.6).double()
    target[2, 0, 3] = 0.4  # a soft label counts as positive
    positive = negative = 0.0
    for p, y in zip(prob.flatten().tolist(), target.flatten().tolist(), strict=True):
        p = min(max(p, 1e-7), 1 - 1e-7)
        term = -(y * math.log(p) + (1 - y) * math.log(1 - p))
        if y > 0:
            positive += term
        else:
            negative += term
    shares = bce_by_target(prob, target)
    assert shares["positive"] == pytest.approx(positive / prob.numel(), rel=1e-9)
    assert shares["negative"] == pytest.approx(negative / prob.numel(), rel=1e-9)
    total = float(clamped_bce(prob, target))
    assert shares["positive"] + shares["negative"] == pytest.approx(total, rel=1e-9)


@pytest.mark.parametrize("killed_after", [2, 3])  # at the switch to the refinement, and within it
def test_resume_across_the_refinement_switch_gives_identical_results(
    dataset, tmp_path, monkeypatch, killed_after
):
    overrides = ["optim.epochs=4", "optim.lr_step=1", "method.warmup_epochs=2"]
    assert train_poibin(dataset, tmp_path / "full", *overrides) == 0
    original = Trainer._run_epoch

    def run_then_die(self, writer):
        original(self, writer)
        if self.epoch == killed_after:
            raise KeyboardInterrupt(f"simulated kill after epoch {killed_after}")

    monkeypatch.setattr(Trainer, "_run_epoch", run_then_die)
    assert train_poibin(dataset, tmp_path / "killed", *overrides) == 130
    monkeypatch.setattr(Trainer, "_run_epoch", original)
    assert train_poibin(dataset, tmp_path / "killed", *overrides) == 0
    for name in ("test_metrics.json", "val_metrics.json"):
        assert (tmp_path / "killed" / name).read_text() == (tmp_path / "full" / name).read_text()
    timing = {key for key in read_rows(tmp_path / "full")[0] if key.startswith("seconds")}
    for full, resumed in zip(
        read_rows(tmp_path / "full"), read_rows(tmp_path / "killed"), strict=True
    ):
        assert {k: v for k, v in full.items() if k not in timing} == {
            k: v for k, v in resumed.items() if k not in timing
        }


@pytest.mark.parametrize("warmup", [-1, 3, 4])
def test_warmup_outside_the_schedule_is_an_error(warmup):
    config = resolve_config(
        "poibin", overrides=[f"method.warmup_epochs={warmup}", "optim.epochs=3"]
    )
    with pytest.raises(ValueError, match=r"warmup_epochs must be in \[0, optim.epochs = 3\)"):
        create("method", "poibin", config=config, train_data=None)
