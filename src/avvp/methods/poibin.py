"""PoiBin: Poisson-binomial MIL with EM-estimated positive counts (SPEC section 5, paper 002).

The number of positive segments z of a class is a sum of independent Bernoullis with the segment
probabilities; the video is positive when z >= tau. tau starts at 1 (the plain MIL constraint) and,
after every epoch, becomes the most likely count under the current model for every positive
(video, class) pair (the E-step); training maximises P(z >= tau) for positives and P(z >= 1) = 0
for negatives (the M-step). Pairs of videos joined into one of 2T segments give tighter bounds on
tau (the augmentation). Counting runs over both streams jointly (N = 2T, the paper) or per stream,
where a class is positive when at least tau_a segments are audible or tau_v visible.

An optional warm-up trains with HAN's attentive loss alone first (the paper refines a pre-trained
model); the best checkpoint is chosen among the epochs after it. The refinement then starts as a
refinement of a finished run does (Algorithm 1): tau = 1 for its first epoch (no E-step during the
warm-up) and a fresh optimiser at ``method.refine_lr``; ``method.warmup_estep`` and
``method.refine_fresh_optimizer`` bring back the earlier recipe (tau estimated after every warm-up
epoch, one optimiser throughout). At the start of the refinement an E-step on the starting model
is reported (``tau_start.*``; on synthetic data its error against the true counts), never used.
``--init-from RUN`` starts from a finished run instead (paper 002: "a model pre-trained with MA
setup"), and ``data.video_labels`` (e.g. MA's ``ma_labels.npz``) replaces the weak labels: L_att
takes its per-stream targets, joint counting its union; per-stream counting takes each stream's
labels as that stream's positives and targets
(``BCE(P(z_a >= tau_a), y_a) + BCE(P(z_v >= tau_v), y_v)``, ours: the paper counts jointly).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avvp.choices import Choice
from avvp.classes import NUM_CLASSES
from avvp.config import Config, Rule, boolean, number, one_of
from avvp.losses import PROBABILITY_EPSILON, attentive_mil_loss, clamped_bce
from avvp.methods.base import Batch, Method
from avvp.poisson_binomial import PmfMethod, most_likely_count, poisson_binomial_tail
from avvp.registry import register
from avvp.training.inference import iterate_outputs

if TYPE_CHECKING:
    from avvp.data.dataset import SplitData
    from avvp.training.trainer import Trainer


class Counting(Choice, label="method.counting"):
    JOINT = "joint"
    PER_STREAM = "per_stream"


class TauRule(Choice, label="method.tau"):
    EM = "em"
    FIXED = "fixed"


def count_groups(segment_prob: Tensor, counting: Counting) -> Tensor:
    """Segment probabilities regrouped as (B, G, C, N): the Bernoullis each count runs over.

    Joint counting: one group of N = 2T (both streams); per stream: two groups of N = T.
    """
    batch, segments, streams, classes = segment_prob.shape
    if counting is Counting.JOINT:
        return segment_prob.reshape(batch, segments * streams, classes).transpose(1, 2).unsqueeze(1)
    return segment_prob.permute(0, 2, 3, 1)


def pooled_probability(groups: Tensor, tau: Tensor, pmf_method: str) -> Tensor:
    """P(z >= tau) per (video, class), combining stream groups as "any stream reaches its tau".

    ``groups`` (B, G, C, N), ``tau`` (B, G, C).
    """
    tail = poisson_binomial_tail(groups, tau, method=pmf_method)  # (B, G, C)
    if tail.shape[1] == 1:
        return tail[:, 0]
    return 1 - torch.prod(1 - tail, dim=1)


def joined_tau(tau_i: Tensor, tau_j: Tensor, positive_i: Tensor, positive_j: Tensor) -> Tensor:
    """tau of a video made of two videos (SPEC section 5).

    Both positive: tau_i + tau_j; one positive: max(tau_i, tau_j) (negatives hold tau = 1);
    neither: 1. ``positive_*`` broadcast against ``tau_*``.
    """
    both = positive_i & positive_j
    either = positive_i | positive_j
    return torch.where(both, tau_i + tau_j, torch.where(either, torch.maximum(tau_i, tau_j), 1))


@torch.no_grad()
def bce_by_target(prob: Tensor, target: Tensor) -> dict[str, float]:
    """``clamped_bce(prob, target)`` split into the share of positive (target > 0) and of negative
    pairs: the two values sum to the loss, so a jump of either names the pairs that cause it."""
    prob = prob.clamp(PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON)
    elementwise = F.binary_cross_entropy(prob, target, reduction="none")
    positive = target > 0
    total = elementwise.numel()
    return {
        "positive": float(elementwise[positive].sum()) / total,
        "negative": float(elementwise[~positive].sum()) / total,
    }


@register("method", "poibin")
class PoiBin(Method):
    TRAINS_ON_VIDEO_LABELS = True
    OPTIONS: ClassVar[Mapping[str, Rule]] = {
        **Method.OPTIONS,
        "counting": one_of(Counting),
        "tau": one_of(TauRule),
        "fixed_tau": number(1, integer=True),
        "pmf": one_of(PmfMethod),
        "attentive_loss": boolean(),
        "poibin_loss": boolean(),
        "augmentation": boolean(),
        # Its range depends on optim.epochs: config_problems.
        "warmup_epochs": number(integer=True),
        "warmup_estep": boolean(),
        "refine_fresh_optimizer": boolean(),
        "refine_lr": number(0, above=True, nullable=True),
    }

    @classmethod
    def config_problems(cls, config: Config, training: bool) -> list[str]:
        method = config["method"]
        epochs, warmup = config["optim"]["epochs"], method["warmup_epochs"]
        if isinstance(warmup, int) and isinstance(epochs, int) and not 0 <= warmup < epochs:
            return [
                f"method.warmup_epochs must be in [0, optim.epochs = {epochs}), got {warmup}: "
                "the best checkpoint is chosen after the warm-up"
            ]
        return []

    def __init__(self, config: Config, train_data: SplitData | None):
        super().__init__(config, train_data)
        options = self.options
        self.counting = Counting.parse(options["counting"])
        self.tau_rule = TauRule.parse(options["tau"])
        self.pmf_method = options["pmf"]
        self.warming_up = options["warmup_epochs"] > 0
        groups = 1 if self.counting is Counting.JOINT else 2
        videos = 0 if train_data is None else len(train_data)
        # tau per (video, stream group, class); negatives keep 1 whatever the rule.
        self.tau = torch.ones(videos, groups, NUM_CLASSES, dtype=torch.long)
        self.positive = self._train_positives(groups)
        if train_data is not None and self.tau_rule is TauRule.FIXED:
            self.tau = (
                torch.where(self.positive, options["fixed_tau"], 1).expand_as(self.tau).clone()
            )

    def _train_positives(self, groups: int) -> Tensor:
        """(train videos, groups, C) bool: the pairs whose count is estimated, from the weak
        labels or, with ``data.video_labels``, from its union (joint) or its streams."""
        if self.train_data is None:
            return torch.zeros(0, groups, NUM_CLASSES, dtype=torch.bool)
        weak = torch.from_numpy(np.asarray(self.train_data.weak) > 0)
        labels = self.video_labels
        if labels is None:
            return weak[:, None, :].expand(-1, groups, -1)
        audio, visual = (
            weak if stream is None else stream > 0 for stream in (labels.audio, labels.visual)
        )
        if groups == 1:
            return (audio | visual)[:, None, :]
        return torch.stack((audio, visual), dim=1)

    # ---- training
    def training_forward(
        self, model: nn.Module, batch: Batch
    ) -> tuple[dict[str, Tensor], dict[str, float]]:
        options = self.options
        losses: dict[str, Tensor] = {}
        output = model(batch.features)
        target, audio, visual = self.mil_targets(batch)
        # Warm-up pre-trains the segment classifier with L_att whatever the loss switches say.
        if options["attentive_loss"] or self.warming_up:
            losses["attentive"] = attentive_mil_loss(
                output,
                target,
                options["visual_label_smoothing"],
                audio_target=audio,
                visual_target=visual,
            )
        if self.warming_up:
            return losses, {}
        tau = self.tau[batch.index.cpu()].to(batch.weak.device)
        report: dict[str, float] = {}
        if options["poibin_loss"]:
            groups = count_groups(output.segment_prob, self.counting)
            if self.video_labels is not None and self.counting is Counting.PER_STREAM:
                prob = poisson_binomial_tail(groups, tau, method=self.pmf_method)  # (B, 2, C)
                poibin_target = torch.stack((audio, visual), dim=1)
            else:
                prob = pooled_probability(groups, tau, self.pmf_method)
                poibin_target = target
            losses["poibin"] = clamped_bce(prob, poibin_target)
            shares = bce_by_target(prob, poibin_target)
            report = {f"loss.poibin_{name}": value for name, value in shares.items()}
        if options["augmentation"] and len(batch.weak) > 1:
            losses["augmentation"] = self._augmentation_loss(model, batch, tau, target)
        return losses, report

    def _augmentation_loss(
        self, model: nn.Module, batch: Batch, tau: Tensor, labels: Tensor
    ) -> Tensor:
        """Each video joined with a random partner from the batch into one of 2T segments."""
        partner = torch.randperm(len(batch.weak)).to(batch.weak.device)
        joined = {
            name: torch.cat((value, value[partner]), dim=1)
            for name, value in batch.features.items()
        }
        positive = labels > 0
        target = (positive | positive[partner]).float()
        joined_counts = joined_tau(tau, tau[partner], positive[:, None], positive[partner][:, None])
        groups = count_groups(model(joined).segment_prob, self.counting)
        return clamped_bce(pooled_probability(groups, joined_counts, self.pmf_method), target)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        self.warming_up = epoch < self.options["warmup_epochs"]
        if epoch != self.options["warmup_epochs"] or self.train_data is None:
            return {}
        # The refinement starts: how the starting model counts, reported and never used (the
        # method assumes it under-counts; tau stays as it is for this epoch).
        trainer.note(f"epoch {epoch + 1}: the starting model's most likely counts (reported only)")
        counts = torch.where(self.positive, self.most_likely_counts(trainer), 1)
        return self.tau_report(trainer, counts, self.positive, name="tau_start")

    def optimizer_restart_lr(self, epoch: int) -> float | None:
        warmup = self.options["warmup_epochs"]
        if warmup == 0 or epoch != warmup or not self.options["refine_fresh_optimizer"]:
            return None
        refine_lr = self.options["refine_lr"]
        return self.config["optim"]["lr"] if refine_lr is None else refine_lr

    def selectable(self, epoch: int) -> bool:
        # A warm-up epoch is a HAN model; the loss ablations (paper Table 3) would otherwise all
        # pick the same warm-up checkpoint and report identical rows.
        return epoch > self.options["warmup_epochs"]

    # ---- E-step
    def on_epoch_end(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        if self.tau_rule is TauRule.FIXED or (self.warming_up and not self.options["warmup_estep"]):
            return {}
        trainer.note(
            f"epoch {epoch + 1}: E-step, the most likely count of every positive class of the "
            f"{len(self.train_data)} train videos"
        )
        counts = self.most_likely_counts(trainer)
        self.tau = torch.where(self.positive, counts, 1)
        return self.tau_report(trainer, self.tau, self.positive)

    @torch.no_grad()
    def most_likely_counts(self, trainer: Trainer) -> Tensor:
        """argmax_k pmf(k) for every (train video, stream group, class) under the current model."""
        trainer.model.eval()
        counts = torch.empty_like(self.tau)
        for indices, output in iterate_outputs(
            trainer.model, self.train_data, trainer.feature_names, trainer.device
        ):
            groups = count_groups(output.segment_prob, self.counting)
            counts[torch.from_numpy(indices)] = most_likely_count(groups, minimum=1).cpu()
        trainer.model.train()
        return counts

    def tau_report(
        self, trainer: Trainer, tau: Tensor, positive: Tensor, name: str = "tau"
    ) -> dict[str, float]:
        """``tau`` over positive pairs and, on synthetic data, its signed error against the true
        count (true - tau: negative when the model over-counts), as ``{name}.*`` columns."""
        mask = positive.expand_as(tau)
        values = tau[mask].float()
        report = {f"{name}.mean": float(values.mean()), f"{name}.max": float(values.max())}
        hidden = trainer.hidden_train_labels
        if hidden is not None:
            audio = torch.from_numpy(np.asarray(hidden.audio, dtype=np.int64).sum(axis=1))
            visual = torch.from_numpy(np.asarray(hidden.visual, dtype=np.int64).sum(axis=1))
            true = (
                (audio + visual)[:, None]
                if self.counting is Counting.JOINT
                else (torch.stack((audio, visual), dim=1))
            )
            difference = (true - tau)[mask].float()
            report[f"{name}.error_mean"] = float(difference.mean())
            report[f"{name}.error_abs"] = float(difference.abs().mean())
            report[f"{name}.exact"] = float((difference == 0).float().mean())
        return report

    # ---- state
    def state_dict(self) -> dict[str, Any]:
        return {"tau": self.tau.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tau = state["tau"].clone()
