"""PPL: prototype-based pseudo labels (SPEC section 6, papers 000 and 001).

Once per epoch a momentum (EMA) copy of the model runs over the training split. Per training
video and class it selects confident positive segments (``p >= gamma p*`` where the weak label is
1) and negatives (``p <= beta p*`` where it is 1; the top segment if ``p* > 0.5`` where it is 0);
k-means on the pooled, L2-normalised features of each set gives k positive and k negative
prototypes per class. A segment's soft pseudo label is how much closer, on average, it lies to the
positive prototypes than to the negative ones (paper Eq. 10, computed in log space); the hard
variant (Eq. 9) is the indicator of the same comparison without a temperature, as written. The
model then trains on ``L_MIL + lambda_PL L_PL + lambda_CL L_CL``: the MIL loss of Eq. 4 (BCE of the
global video probability, each class weighted by its inverse train frequency) [``mil_loss:
paper``] or HAN's three-term attentive MIL loss with the same weights [``han``], BCE of the
segment probabilities against the pseudo labels, and an InfoNCE loss pulling together segments of
a batch that share a pseudo-labelled event. At inference the segment probabilities are the
prototype labels with the predicted video labels (global video probability >= 0.5) in place of
the weak labels [``inference_label_type``: soft, Eq. 10, as section 4.4 says; PPL_Test uses hard,
Eq. 9, as section 5.3 says], or the classifier's own output [``inference: classifier``]. The
network is PPL's own (``avvp.models.ppl``, ``model.name: ppl`` in the preset); ``model.name=han``
trains PPL on HAN. "Base" of paper Table 2 is ``--config recipe:ppl_base`` (no pseudo labels).

Decisions where SPEC and the papers are silent (the option, where there is one, in brackets):

* Timing. Prototypes are rebuilt in ``on_epoch_end`` from the EMA model as it is after the epoch,
  so validation (which runs right after it) and ``best.pt`` hold prototypes from the same network
  whose features the prototype inference uses. Pseudo labels are recomputed in the next
  ``on_epoch_start``; the EMA has not moved in between, so they come from the same network and
  prototypes. "With the best model so far" [``label_model: best``]: the labels are recomputed only
  when the epoch just finished set a new best validation score, otherwise the labels of the best
  epoch stay in use; ``latest`` recomputes them every epoch. The first labels after the warm-up
  are computed whatever validation said, as there is nothing to keep. Before
  [``warmup_epochs``] epochs have finished, training uses L_MIL only.
* Which network labels. The EMA copy (encoder and classifier) gives both the probabilities that
  select segments and the features that are clustered and labelled; its momentum 0 is the paper's
  "without momentum encoder" ablation. The paper writes the update as ``theta_E <- (1 - eta)
  theta_E + eta theta`` with eta = 0.999, which read literally keeps 0.1 % of the old weights
  [``momentum_reading: literal``, the default, chosen on val]; momentum encoders (MoCo, the
  paper's reference [19]) read 0.999 as the weight of the old weights [``conventional``], with
  which most of the random start is still in the EMA copy after a short schedule. In the literal
  reading the no-EMA ablation is momentum 1. [``momentum_warmup``] caps the momentum at
  ``(1 + t) / (10 + t)`` after t steps, for schedules too short for m = 0.999 to leave its
  start. Prototype inference takes features from the EMA copy too (the space its prototypes
  live in) and the video labels from the model being evaluated.
* Ties. "The top segment" is every segment reaching ``p*``, as the set notation of Eqs. 5-6 reads.
* Streams. ``p*`` is the maximum over both streams (SPEC); with a model whose audio is more
  confident than its visual stream (HAN), gamma = 1 then keeps only audio segments as positives.
  [``selection: per_stream``] takes ``p*`` within each stream, so the positive set holds the
  top audio and the top visual segment (PPL_Test on HAN runs, docs/results.md).
* Prototypes. Centroids are re-normalised to unit length [``normalize_prototypes``] so that the
  similarity with temperature is a cosine, as for the features; without it a spread-out cluster
  (typically negatives) would get a short centroid and lose weight whatever its direction. A set
  of at most k points is its own prototypes; k-means (scikit-learn, ``n_init`` [``kmeans_n_init``],
  random_state = the run seed) runs only on larger sets. An empty positive set (a class no
  training video is labelled with) labels every segment 0; an empty negative set makes the
  negative mean 0, so a positive video's segments all get the class (the limit of Eq. 10).
* Both label rules L2-normalise the features. The hard rule keeps Eq. 9 literally (no
  temperature), so it is not the soft rule thresholded at 0.5. [``label_type``] is the rule of
  the training pseudo labels, [``inference_label_type``] the rule of prototype inference.
* Naive pseudo labels [``pseudo_labels: naive``] (paper Table 2, NPL) are the EMA model's segment
  probabilities times the weak label (soft), or thresholded at 0.5 (hard).
* L_CL binarises soft labels with ``>= 0.5`` (the evaluation's rule), leaves the anchor out of its
  own positives (see ``pseudo_label_contrastive_loss``) and runs on the online model's features of
  both streams; L_PL averages over every (segment, stream, class) of the batch.
* Loss weights of 0 leave a term out entirely [``mil_weight``, ``pl_weight``, ``cl_weight``]; with
  both pseudo-label weights 0 no labels are computed.
* The learning-rate schedule is HAN's (x0.1 every 10 epochs); the paper names none.

The checkpoint holds the EMA weights, the prototypes and the pseudo labels in use (float32,
V x T x 2 x C: 20 MB on LLP), so a killed run resumes exactly and ``avvp evaluate`` on ``best.pt``
infers with the prototypes (``best.pt`` carries the labels too, unused there).

Logged per epoch (metrics.csv): ``pseudo.positives`` / ``pseudo.negatives`` (selected features over
the training split), ``pseudo.classes_without_positives`` / ``_negatives`` (classes whose set is
empty), ``pseudo.label_epoch`` (epochs the model behind the labels in use had trained for) and, on
synthetic data, ``pseudo.precision`` / ``recall`` / ``f1`` of the labels binarised at 0.5 against
the hidden segment labels (micro over video, segment, stream and class). The between-epoch cost
(the trainer's ``seconds.method``) is split into ``seconds.pseudo.features`` (the momentum model
over the training split), ``seconds.pseudo.prototypes`` (selection and k-means) and
``seconds.pseudo.labels``.

PPL_Test (paper Table 3) needs no training: ``ppl_test("runs/han")`` returns the metrics of a
trained run's best model with prototype inference, the prototypes built once from that model's own
features on the training split; ``ppl_test_method`` returns (config, model, method) for
``score_split`` / ``predict_split``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avvp.choices import Choice
from avvp.config import (
    Config,
    Rule,
    boolean,
    merge,
    number,
    one_of,
    parse_overrides,
    resolve_config,
    validate_config,
)
from avvp.losses import (
    attentive_mil_loss,
    clamped_bce,
    inverse_frequency_weights,
    pseudo_label_contrastive_loss,
)
from avvp.methods.base import Batch, Method
from avvp.models.base import ParseOutput
from avvp.registry import register
from avvp.training import distributed
from avvp.training.batches import feature_names
from avvp.training.data import interactive, load_splits
from avvp.training.evaluate_run import load_run
from avvp.training.inference import INFERENCE_BATCH_SIZE, iterate_outputs, score_split
from avvp.training.trainer import resolve_device, timed

if TYPE_CHECKING:
    from avvp.data.annotations import DenseLabels
    from avvp.data.dataset import SplitData
    from avvp.training.trainer import Trainer

# Predicted video labels at inference, the reference evaluation's gate (SPEC section 3).
VIDEO_LABEL_THRESHOLD = 0.5
# Soft pseudo labels count as an event for L_CL and the diagnostics from this value on.
LABEL_THRESHOLD = 0.5


class PseudoLabels(Choice, label="method.pseudo_labels"):
    PROTOTYPE = "prototype"
    NAIVE = "naive"


class LabelType(Choice, label="method.label_type"):
    SOFT = "soft"
    HARD = "hard"


class LabelModel(Choice, label="method.label_model"):
    BEST = "best"
    LATEST = "latest"


class Inference(Choice, label="method.inference"):
    PROTOTYPE = "prototype"
    CLASSIFIER = "classifier"


class MILLoss(Choice, label="method.mil_loss"):
    PAPER = "paper"
    HAN = "han"


class MomentumReading(Choice, label="method.momentum_reading"):
    CONVENTIONAL = "conventional"
    LITERAL = "literal"


class SplitOutputs(NamedTuple):
    """A model's view of every video of a split, on the CPU."""

    features: Tensor  # (V, T, 2, D) segment features, not normalised
    segment_prob: Tensor  # (V, T, 2, C)


@dataclass
class Prototypes:
    """k positive and k negative prototypes per class, padded: (C, k, D) with a (C, k) mask."""

    positive: Tensor
    positive_mask: Tensor
    negative: Tensor
    negative_mask: Tensor

    @classmethod
    def from_sets(
        cls, positive: Sequence[np.ndarray], negative: Sequence[np.ndarray], k: int, dim: int
    ) -> Prototypes:
        """From per-class arrays of at most ``k`` prototypes each (possibly none)."""
        return cls(*_padded(positive, k, dim), *_padded(negative, k, dim))

    def to(self, device: torch.device | str) -> Prototypes:
        return Prototypes(*(value.to(device) for value in dataclasses.astuple(self)))

    def counts(self) -> tuple[Tensor, Tensor]:
        """Prototypes per class: (positive, negative), each (C,)."""
        return self.positive_mask.sum(dim=1), self.negative_mask.sum(dim=1)


def _padded(sets: Sequence[np.ndarray], k: int, dim: int) -> tuple[Tensor, Tensor]:
    values = torch.zeros(len(sets), k, dim)
    mask = torch.zeros(len(sets), k, dtype=torch.bool)
    for c, points in enumerate(sets):
        values[c, : len(points)] = torch.from_numpy(np.asarray(points, dtype=np.float32))
        mask[c, : len(points)] = True
    return values, mask


class Selection(Choice, label="method.selection"):
    JOINT = "joint"
    PER_STREAM = "per_stream"


def select_segments(
    segment_prob: Tensor,
    weak: Tensor,
    gamma: float,
    beta: float,
    false_positive_threshold: float = 0.5,
    selection: Selection = Selection.JOINT,
) -> tuple[Tensor, Tensor]:
    """Positive and negative segments per (video, class), paper Eqs. 5-6; masks (B, T, 2, C).

    With ``p* = max over t, m of p[t, m, c]``: positives where ``w_c = 1`` and ``p >= gamma p*``;
    negatives where ``w_c = 1`` and ``p <= beta p*``, and where ``w_c = 0`` the segments reaching
    ``p*`` if ``p* > false_positive_threshold`` (confident false positives). Per-stream selection
    takes ``p*`` over t within each stream m instead.
    """
    streams = (1,) if selection is Selection.PER_STREAM else (1, 2)
    top = segment_prob.amax(dim=streams, keepdim=True)
    labelled = (weak > 0)[:, None, None, :]
    positive = labelled & (segment_prob >= gamma * top)
    false_positive = (segment_prob == top) & (top > false_positive_threshold)
    negative = (labelled & (segment_prob <= beta * top)) | (~labelled & false_positive)
    return positive, negative


def kmeans_prototypes(
    points: np.ndarray, k: int, seed: int, n_init: int = 1, normalize: bool = True
) -> np.ndarray:
    """At most ``k`` prototypes of ``points`` (N, D): the points themselves when N <= k (none
    when N = 0), else k-means centroids, re-normalised to unit length if ``normalize``."""
    if len(points) <= k:
        return points
    # Imported here: scikit-learn adds ~90 MB to every training process, PPL's or not (the
    # registry imports every method).
    from sklearn.cluster import KMeans

    centroids = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(points).cluster_centers_
    if normalize:
        centroids = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return centroids.astype(points.dtype)


def log_mean_exp_similarity(
    features: Tensor, prototypes: Tensor, mask: Tensor, temperature: float
) -> Tensor:
    """``log mean_{f' in set(c)} exp(f' . f / temperature)`` per class: (..., D) -> (..., C).

    ``prototypes`` (C, K, D) with ``mask`` (C, K); -inf for a class whose set is empty. Log space
    because ``exp(1 / 0.1)`` is fine but smaller temperatures overflow float32.
    """
    logits = torch.einsum("...d,ckd->...ck", features, prototypes.to(features.dtype)) / temperature
    logits = logits.masked_fill(~mask, -torch.inf)
    counts = mask.sum(dim=1).clamp_min(1).to(features.dtype)
    return torch.logsumexp(logits, dim=-1) - counts.log()


def prototype_labels(
    features: Tensor,
    weak: Tensor,
    prototypes: Prototypes,
    label_type: LabelType = LabelType.SOFT,
    temperature: float = 0.1,
) -> Tensor:
    """Pseudo labels (B, T, 2, C) of segment ``features`` (B, T, 2, D) under video labels ``weak``.

    Soft (paper Eq. 10): ``w_c * M_P / (M_P + M_N)`` with ``M_S`` the mean of
    ``exp(f' . f / temperature)`` over the prototypes of set S, i.e. ``w_c * sigmoid(log M_P -
    log M_N)``. Hard (Eq. 9): ``w_c * [M_P > M_N]`` with temperature 1, as the paper writes it.
    Features are L2-normalised here.
    """
    features = F.normalize(features, dim=-1)
    temperature = temperature if label_type is LabelType.SOFT else 1.0
    log_positive = log_mean_exp_similarity(
        features, prototypes.positive, prototypes.positive_mask, temperature
    )
    log_negative = log_mean_exp_similarity(
        features, prototypes.negative, prototypes.negative_mask, temperature
    )
    if label_type is LabelType.SOFT:
        # sigmoid(-inf - -inf) is NaN; an empty positive set labels 0 whatever the negatives.
        score = torch.sigmoid(log_positive - log_negative)
        score = torch.where(torch.isneginf(log_positive), 0.0, score)
    else:
        score = (log_positive > log_negative).to(features.dtype)
    return weak[:, None, None, :].to(features.dtype) * score


def naive_labels(segment_prob: Tensor, weak: Tensor, label_type: LabelType) -> Tensor:
    """The model's own segment probabilities as pseudo labels (paper Table 2, NPL)."""
    if label_type is LabelType.HARD:
        segment_prob = (segment_prob >= LABEL_THRESHOLD).to(segment_prob.dtype)
    return weak[:, None, None, :].to(segment_prob.dtype) * segment_prob


def paper_mil_loss(video_prob: Tensor, weak: Tensor, class_weights: Tensor | None) -> Tensor:
    """Paper 000 Eq. 4 (supplementary Eq. 7): ``CE(w_hat, w)``, the binary cross-entropy of the
    global video probabilities (B, C) against the weak labels, each class weighted by
    ``class_weights`` (C,) (inversely proportional to the event distribution), averaged over
    videos and classes."""
    weight = None if class_weights is None else class_weights.expand_as(weak)
    return clamped_bce(video_prob, weak, weight)


def old_weight(momentum: float, reading: MomentumReading) -> float:
    """The factor on the old momentum weights per update: ``m`` in the conventional reading
    (``theta_E <- m theta_E + (1 - m) theta``), ``1 - eta`` in the literal one (paper 000
    section 4.1 and Algorithm 1 line 13: ``theta_E <- (1 - eta) theta_E + eta theta``)."""
    return momentum if reading is MomentumReading.CONVENTIONAL else 1.0 - momentum


def warmed_up_momentum(momentum: float, step: int) -> float:
    """``min(m, (1 + step) / (10 + step))`` for the 0-based optimiser ``step``: the warm-up of
    TensorFlow's ExponentialMovingAverage (``num_updates``), so a short run's EMA forgets its
    random start (with m = 0.999, 630 steps still leave 0.999^630 = 53 % of it)."""
    return min(momentum, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, momentum: float) -> None:
    """``theta_E <- m theta_E + (1 - m) theta`` for every parameter; buffers are copied."""
    for averaged, current in zip(ema.parameters(), model.parameters(), strict=True):
        averaged.mul_(momentum).add_(current.detach(), alpha=1.0 - momentum)
    for averaged, current in zip(ema.buffers(), model.buffers(), strict=True):
        averaged.copy_(current)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode without gradients: the momentum model."""
    copied = copy.deepcopy(model).eval()
    copied.requires_grad_(False)
    return copied


def binary_quality(predicted: Tensor, truth: Tensor) -> dict[str, float]:
    """Micro precision, recall and F1 of boolean ``predicted`` against ``truth`` (0 when empty)."""
    tp = float((predicted & truth).sum())
    fp = float((predicted & ~truth).sum())
    fn = float((~predicted & truth).sum())
    return {
        "precision": tp / max(tp + fp, 1.0),
        "recall": tp / max(tp + fn, 1.0),
        "f1": 2 * tp / max(2 * tp + fp + fn, 1.0),
    }


@register("method", "ppl")
class PPL(Method):
    OPTIONS: ClassVar[Mapping[str, Rule]] = {
        **Method.OPTIONS,
        "mil_weight": number(0),
        "pl_weight": number(0),
        "cl_weight": number(0),
        "mil_loss": one_of(MILLoss),
        "inverse_frequency": boolean(),
        "cl_temperature": number(0, above=True),
        "momentum": number(0, 1),
        "momentum_reading": one_of(MomentumReading),
        "momentum_warmup": boolean(),
        "gamma": number(0, 1),
        "beta": number(0, 1),
        "false_positive_threshold": number(0, 1),
        "selection": one_of(Selection),
        "k": number(1, integer=True),
        "kmeans_n_init": number(1, integer=True),
        "normalize_prototypes": boolean(),
        "pseudo_labels": one_of(PseudoLabels),
        "label_type": one_of(LabelType),
        "temperature": number(0, above=True),
        "label_model": one_of(LabelModel),
        "warmup_epochs": number(0, integer=True),
        "inference": one_of(Inference),
        "inference_label_type": one_of(LabelType),
    }

    @classmethod
    def config_problems(cls, config: Config, training: bool) -> list[str]:
        options = config["method"]
        weights = [options.get(name) for name in ("mil_weight", "pl_weight", "cl_weight")]
        if weights == [0, 0, 0]:
            return ["method.mil_weight, pl_weight and cl_weight are all 0: no loss to train"]
        if weights[0] == 0 and _is_positive(options.get("warmup_epochs")):
            return ["method.mil_weight=0 leaves nothing to train on during the warm-up"]
        literal = options.get("momentum_reading") == MomentumReading.LITERAL
        if literal and options.get("momentum") == 0:
            return [
                "method.momentum=0 with method.momentum_reading=literal keeps the momentum model "
                "at its random start (eta = 0); the paper's no-momentum ablation is "
                "method.momentum=1 in the literal reading, 0 in the conventional one"
            ]
        return []

    def __init__(self, config: Config, train_data: SplitData | None):
        super().__init__(config, train_data)
        options = self.options
        self.pseudo_labels = PseudoLabels.parse(options["pseudo_labels"])
        self.label_type = LabelType.parse(options["label_type"])
        self.label_model = LabelModel.parse(options["label_model"])
        self.inference = Inference.parse(options["inference"])
        self.inference_label_type = LabelType.parse(options["inference_label_type"])
        self.mil_loss = MILLoss.parse(options["mil_loss"])
        self.momentum_reading = MomentumReading.parse(options["momentum_reading"])
        self.selection = Selection.parse(options["selection"])
        self.class_weights: Tensor | None = None
        if train_data is not None and options["inverse_frequency"]:
            self.class_weights = inverse_frequency_weights(
                torch.from_numpy(np.asarray(train_data.weak, dtype=np.float32))
            )
        self.momentum_model: nn.Module | None = None
        # An evaluation-only method has no trainer to copy a model from; the EMA weights wait
        # here until ``infer`` sees the model they belong to.
        self._pending_momentum_state: dict[str, Tensor] | None = None
        self.prototypes: Prototypes | None = None
        self.labels: Tensor | None = None  # (V, T, 2, C) on the CPU
        self._outputs: SplitOutputs | None = None
        self.label_epoch = 0  # epochs the labelling model had trained for
        self.ema_steps = 0  # optimiser steps the momentum model has followed

    @property
    def labels_needed(self) -> bool:
        return self.options["pl_weight"] > 0 or self.options["cl_weight"] > 0

    @property
    def prototypes_needed(self) -> bool:
        return self.inference is Inference.PROTOTYPE or (
            self.pseudo_labels is PseudoLabels.PROTOTYPE and self.labels_needed
        )

    def setup(self, trainer: Trainer) -> None:
        self.momentum_model = frozen_copy(trainer.model)

    # ---- training
    def training_forward(
        self, model: nn.Module, batch: Batch
    ) -> tuple[dict[str, Tensor], dict[str, float]]:
        options = self.options
        output = model(batch.features)
        losses: dict[str, Tensor] = {}
        if options["mil_weight"] > 0:
            weights = None if self.class_weights is None else self.class_weights.to(batch.weak)
            if self.mil_loss is MILLoss.PAPER:
                mil = paper_mil_loss(output.video_prob, batch.weak, weights)
            else:
                mil = attentive_mil_loss(
                    output, batch.weak, options["visual_label_smoothing"], class_weights=weights
                )
            losses["mil"] = options["mil_weight"] * mil
        if self.labels is not None:
            labels = self.labels[batch.index.cpu()].to(batch.weak.device)
            if options["pl_weight"] > 0:
                losses["pl"] = options["pl_weight"] * clamped_bce(output.segment_prob, labels)
            if options["cl_weight"] > 0:
                losses["cl"] = options["cl_weight"] * pseudo_label_contrastive_loss(
                    output.features.flatten(0, 2),
                    labels.flatten(0, 2) >= LABEL_THRESHOLD,
                    options["cl_temperature"],
                )
        return losses, {}

    def after_optimizer_step(self, trainer: Trainer) -> None:
        momentum = old_weight(self.options["momentum"], self.momentum_reading)
        if self.options["momentum_warmup"]:
            momentum = warmed_up_momentum(momentum, self.ema_steps)
        ema_update(self.momentum_model, trainer.model, momentum)
        self.ema_steps += 1

    # ---- between epochs
    def on_epoch_start(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        outputs, self._outputs = self._outputs, None  # held from the last epoch's end only
        if not self.labels_needed or epoch < self.options["warmup_epochs"]:
            return {}
        report: dict[str, float] = {}
        refresh = (
            self.labels is None
            or self.label_model is LabelModel.LATEST
            or _previous_epoch_was_best(trainer, epoch)
        )
        if refresh:
            trainer.note(
                f"epoch {epoch + 1}: pseudo labels for the {len(self.train_data)} train videos"
            )
            if outputs is None:  # no epoch has ended in this process (warmup_epochs = 0, resume)
                with timed(report, "seconds.pseudo.features"):
                    outputs = self.momentum_outputs(trainer.feature_names, trainer.device)
            if self.pseudo_labels is PseudoLabels.PROTOTYPE and self.prototypes is None:
                # Only with warmup_epochs = 0: no epoch has ended to build them yet.
                with timed(report, "seconds.pseudo.prototypes"):
                    report |= self.build_prototypes(outputs)
            with timed(report, "seconds.pseudo.labels"):
                self.labels = self.compute_labels(outputs, trainer.device)
            self.label_epoch = epoch
        report["pseudo.label_epoch"] = float(self.label_epoch)
        return report | self.label_report(trainer.hidden_train_labels)

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        if not (self.prototypes_needed or self.labels_needed):
            return {}
        # One pass of the momentum model serves this epoch's prototypes and the next epoch's
        # labels: nothing changes the momentum model in between (validation only reads it).
        report: dict[str, float] = {}
        trainer.note(
            f"epoch {epoch + 1}: the momentum model's view of the {len(self.train_data)} train "
            "videos" + (", then k-means prototypes" if self.prototypes_needed else "")
        )
        with timed(report, "seconds.pseudo.features"):
            self._outputs = self.momentum_outputs(trainer.feature_names, trainer.device)
        if self.prototypes_needed:
            with timed(report, "seconds.pseudo.prototypes"):
                report |= self.build_prototypes(self._outputs)
        return report

    @torch.no_grad()
    def momentum_outputs(self, names: list[str], device: torch.device) -> SplitOutputs:
        """The momentum model's segment features and probabilities for the whole train split."""
        features, segment_prob = [], []
        for _, output in iterate_outputs(self.momentum_model, self.train_data, names, device):
            features.append(output.features.float().cpu())
            segment_prob.append(output.segment_prob.float().cpu())
        return SplitOutputs(torch.cat(features), torch.cat(segment_prob))

    @torch.no_grad()
    def build_prototypes(self, outputs: SplitOutputs) -> dict[str, float]:
        """Select segments over the training split from the momentum model's ``outputs``, cluster
        per class."""
        options = self.options
        weak = torch.from_numpy(np.asarray(self.train_data.weak, dtype=np.float32))
        chosen_positive, chosen_negative = select_segments(
            outputs.segment_prob,
            weak,
            options["gamma"],
            options["beta"],
            options["false_positive_threshold"],
            self.selection,
        )
        features = F.normalize(outputs.features, dim=-1)
        classes = weak.shape[1]
        positive_sets = [features[chosen_positive[..., c]].numpy() for c in range(classes)]
        negative_sets = [features[chosen_negative[..., c]].numpy() for c in range(classes)]
        self.prototypes = Prototypes.from_sets(
            [self._cluster(points) for points in positive_sets],
            [self._cluster(points) for points in negative_sets],
            options["k"],
            features.shape[-1],
        )
        positive_counts, negative_counts = self.prototypes.counts()
        return {
            "pseudo.positives": float(sum(len(points) for points in positive_sets)),
            "pseudo.negatives": float(sum(len(points) for points in negative_sets)),
            "pseudo.classes_without_negatives": float((negative_counts == 0).sum()),
            "pseudo.classes_without_positives": float((positive_counts == 0).sum()),
        }

    def _cluster(self, points: np.ndarray) -> np.ndarray:
        options = self.options
        return kmeans_prototypes(
            points,
            options["k"],
            seed=self.config["seed"],
            n_init=options["kmeans_n_init"],
            normalize=options["normalize_prototypes"],
        )

    @torch.no_grad()
    def compute_labels(self, outputs: SplitOutputs, device: torch.device) -> Tensor:
        """Pseudo labels (V, T, 2, C) of the whole training split from the momentum model's
        ``outputs``."""
        weak_all = torch.from_numpy(np.asarray(self.train_data.weak, dtype=np.float32))
        prototypes = None if self.prototypes is None else self.prototypes.to(device)
        parts = []
        for start in range(0, len(weak_all), INFERENCE_BATCH_SIZE):
            videos = slice(start, start + INFERENCE_BATCH_SIZE)
            weak = weak_all[videos].to(device)
            if self.pseudo_labels is PseudoLabels.PROTOTYPE:
                labels = prototype_labels(
                    outputs.features[videos].to(device),
                    weak,
                    prototypes,
                    self.label_type,
                    self.options["temperature"],
                )
            else:
                segment_prob = outputs.segment_prob[videos].to(device)
                labels = naive_labels(segment_prob, weak, self.label_type)
            parts.append(labels.float().cpu())
        return torch.cat(parts)

    def label_report(self, hidden: DenseLabels | None) -> dict[str, float]:
        """Binarised pseudo labels against the hidden segment labels of synthetic data."""
        if hidden is None or self.labels is None:
            return {}
        truth = torch.from_numpy(np.stack((hidden.audio, hidden.visual), axis=2).astype(bool))
        quality = binary_quality(self.labels >= LABEL_THRESHOLD, truth)
        return {f"pseudo.{name}": value for name, value in quality.items()}

    # ---- inference
    @torch.no_grad()
    def infer(self, model: nn.Module, features: dict[str, Tensor]) -> ParseOutput:
        output = model(features)
        if self.inference is Inference.CLASSIFIER:
            return output
        if self.prototypes is None:
            raise RuntimeError(
                "method.inference=prototype but no prototypes exist yet (they are built at the "
                "end of every epoch); use method.inference=classifier"
            )
        network = self._momentum_network(model)
        source = output if network is model else network(features)
        predicted = (output.video_prob >= VIDEO_LABEL_THRESHOLD).to(output.segment_prob.dtype)
        segment_prob = prototype_labels(
            source.features,
            predicted,
            self.prototypes.to(predicted.device),
            self.inference_label_type,
            self.options["temperature"],
        )
        return dataclasses.replace(output, segment_prob=segment_prob)

    def _momentum_network(self, model: nn.Module) -> nn.Module:
        if self.momentum_model is None:
            if self._pending_momentum_state is None:
                raise RuntimeError("no momentum model: neither trained nor loaded from a run")
            self.momentum_model = frozen_copy(model)
            self.momentum_model.load_state_dict(self._pending_momentum_state)
            self._pending_momentum_state = None
        return self.momentum_model

    # ---- state
    def state_dict(self) -> dict[str, Any]:
        momentum = (
            self._pending_momentum_state
            if self.momentum_model is None
            else self.momentum_model.state_dict()
        )
        return {
            "momentum_model": momentum,
            "prototypes": None if self.prototypes is None else dataclasses.asdict(self.prototypes),
            "labels": self.labels,
            "label_epoch": self.label_epoch,
            "ema_steps": self.ema_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.momentum_model is None:
            self._pending_momentum_state = state["momentum_model"]
        else:
            self.momentum_model.load_state_dict(state["momentum_model"])
        prototypes = state["prototypes"]
        self.prototypes = (
            None
            if prototypes is None
            else Prototypes(**{name: value.cpu() for name, value in prototypes.items()})
        )
        self.labels = None if state["labels"] is None else state["labels"].cpu()
        self.label_epoch = state["label_epoch"]
        self.ema_steps = state.get("ema_steps", 0)  # runs saved before the count existed


def _is_positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


def _previous_epoch_was_best(trainer: Trainer, epoch: int) -> bool:
    """Whether the epoch that just ended (1-based ``epoch``) set the best validation score."""
    # Only the main process validates; every process must keep the same labels.
    flag = torch.tensor([int(trainer.best_epoch == epoch)], device=trainer.device)
    if distributed.world_size() > 1:
        torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


def ppl_test_method(
    run_dir: str | Path, device: str = "cpu", overrides: Sequence[str] = ()
) -> tuple[Config, nn.Module, PPL]:
    """PPL_Test (paper Table 3): prototypes from a trained run's own model, no retraining.

    Returns ``(config, model, method)`` for ``avvp.training.inference.score_split`` or
    ``predict_split``: the run's config with the ``ppl`` preset's method section and the hard
    labels of Eq. 9 (``method.inference_label_type=hard``, the rule the paper names for PPL_Test:
    "simply predict the prototype-based pseudo labels (Eq. (9))"), then ``overrides``
    (``key=value``, e.g. ``data.root=...`` or ``method.inference_label_type=soft``); the run's
    best model; a PPL method whose prototypes come from that model's features on the training
    split (so the momentum model is the model itself).
    """
    run_config, model, _ = load_run(run_dir, device)
    config = copy.deepcopy(run_config)
    config["method"] = resolve_config("ppl")["method"]
    config["method"]["inference_label_type"] = LabelType.HARD.value
    config = merge(config, parse_overrides(overrides), "")
    validate_config(config, training=False)
    train = load_splits(config, ("train",), progress=interactive())["train"]
    method = PPL(config, train)
    method.momentum_model = model
    method.build_prototypes(method.momentum_outputs(feature_names(config), resolve_device(device)))
    return config, model, method


def ppl_test(
    run_dir: str | Path, split: str = "test", device: str = "cpu", overrides: Sequence[str] = ()
) -> dict[str, dict[str, float]]:
    """The evaluation metrics of PPL_Test on ``split``, e.g. ``ppl_test("runs/han")``."""
    config, model, method = ppl_test_method(run_dir, device, overrides)
    data = load_splits(config, (split,), progress=interactive())[split]
    return score_split(model, method, data, config, resolve_device(device))
