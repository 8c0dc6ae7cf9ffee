"""JoMoLD: joint-modal label denoising (Cheng et al., ECCV 2022; SPEC section 10).

A weak label names an event of the video, which may be audible only or visible only: in the
other stream the label is noise. ``avvp train --method jomold`` runs the three steps of the
authors' code (``MCG-NJU/JoMoLD``, ``main.py`` modes; docs/fidelity.md has file and line of each
rule and constant) on the one trainer, keeping each step's output in the run folder:

1. **Noise estimator** (``RUN/estimator``, a run folder of its own; ``method.estimator_run`` reuses
   a finished one): HAN without cross-modal attention, so that each stream's prediction is its
   own, trained on the weak labels with HAN's loss plus the audio-visual segment contrast
   (:func:`contrastive_loss`) and dropout on the visual features before the classifier.
2. **Noise ratios** (``RUN/noise_ratios.npz``, ``.json``; :func:`noise_ratios`): per class and
   stream, the share of weak positives whose estimator video probability (times the target),
   over the class's mean probability, is below a threshold (0.6 audio, 1.8 visual).
3. **Training with label denoising**: a fresh model with cross-modal attention. In every batch,
   a forward pass without cross-modal attention (no gradients) gives each stream's BCE per label;
   for each class, of the ``int(ratio x positives)`` labels, the stream's label is dropped (set
   to 0) where it is among the largest losses of its own stream *and* among the smallest of the
   other (:func:`noisy_labels`). The ratios ramp up over a warm-up as the code computes them
   (:func:`warm_up_step`). The loss weighs the streams 2 (audio), 1 (visual), 1 (video),
   1 (contrast).

At the end, the labels of the last epoch (weak labels with the drops, binary, V x 25 per stream)
are written to ``RUN/jomold_labels.npz`` in the per-stream video-level label format (keys
``video_ids``, ``classes``, ``audio``, ``visual``), and on synthetic data their video-level
precision and recall against the hidden train labels to ``RUN/jomold_labels_quality.json``.

A killed run resumes where it stopped: the estimator run resumes itself, step 2 is skipped when
its file exists (and refused when it came from another estimator or other thresholds), and the
main training resumes from its ``last.pt``; the random state is the same whichever steps ran in
this process, so a resumed run ends as an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from avvp.choices import Choice
from avvp.classes import CLASSES, NUM_CLASSES
from avvp.config import Config, Rule, number, one_of, path_string
from avvp.io_utils import atomic_write, write_json
from avvp.losses import PROBABILITY_EPSILON, clamped_bce
from avvp.methods.base import Batch, Method
from avvp.models.base import ParseOutput
from avvp.models.han import HAN, HybridAttentionLayer
from avvp.pseudo_labels import save_video_labels, video_precision_recall
from avvp.registry import register
from avvp.training import distributed

if TYPE_CHECKING:
    from avvp.data.annotations import DenseLabels
    from avvp.data.dataset import SplitData
    from avvp.training.trainer import Trainer

ESTIMATOR_FOLDER = "estimator"
NOISE_RATIO_FILE = "noise_ratios.npz"
LABEL_FILE = "jomold_labels.npz"
QUALITY_FILE = "jomold_labels_quality.json"
STREAMS = ("audio", "visual")
# The estimator's contrast smoothing is a constant in the authors' code (main.py:66); step 3
# reads --nce_smooth (method.nce_smoothing).
ESTIMATOR_NCE_SMOOTHING = 0.1
POSITIVE = 0.5  # a target above this is a positive label (the code's ``Pv > 0.5``)


class Stage(Choice, label="method.stage"):
    DENOISE = "denoise"
    ESTIMATOR = "estimator"


# ---- the model as the authors' code runs it


def _attention_layer(layer: HybridAttentionLayer, query: Tensor, other: Tensor, cross: bool):
    """One hybrid attention layer; without ``cross`` the cross-modal term is left out (the
    code's ``with_ca=False``: ``q = LN(q + drop(self(q, q, q)))``, then the feed-forward)."""
    if cross:
        return layer(query, other)
    itself = layer.self_attention(query, query, query, need_weights=False)[0]
    query = layer.norm1(query + layer.dropout_self(itself))
    hidden = layer.linear2(layer.dropout_ff(F.relu(layer.linear1(query))))
    return layer.norm2(query + layer.dropout_out(hidden))


def jomold_forward(
    model: nn.Module,
    features: Mapping[str, Tensor],
    *,
    cross_attention: bool,
    classifier_dropout: float,
) -> tuple[ParseOutput, Tensor]:
    """(output, encoded) of HAN as the authors' ``MMIL_Net`` computes it.

    ``encoded`` (B, T, 2, D): the segment features after the attention layers, which the
    contrast reads; the visual ones then pass a dropout (``classifier_dropout``, training mode
    only) before the pooling classifies them.
    """
    if not isinstance(model, HAN):
        raise TypeError(f"method jomold needs the HAN model, got {type(model).__name__}")
    model.check_features(features)
    audio, visual = model.audio_stem(features), model.visual_stem(features)
    for layer in model.layers:
        audio, visual = (
            _attention_layer(layer, audio, visual, cross_attention),
            _attention_layer(layer, visual, audio, cross_attention),
        )
    encoded = torch.stack((audio, visual), dim=2)
    visual = F.dropout(visual, classifier_dropout, training=model.training)
    return model.pooling(torch.stack((audio, visual), dim=2)), encoded


def contrastive_loss(audio: Tensor, visual: Tensor, temperature: float, smoothing: float) -> Tensor:
    """The audio-visual segment contrast of the code (``LabelSmoothingNCELoss``).

    ``audio``, ``visual`` (B, T, D): for each audio segment, the softmax over the T visual
    segments of the video of their cosine similarity / ``temperature``; the target puts
    ``1 - smoothing`` on the same segment and ``smoothing / (T - 1)`` on each other one; the loss
    is ``-mean log(sum(target * softmax))``.
    """
    similarity = F.normalize(audio, dim=-1) @ F.normalize(visual, dim=-1).transpose(1, 2)
    segments = similarity.shape[-1]
    prob = (similarity / temperature).reshape(-1, segments).softmax(dim=-1)
    target = torch.full_like(prob, smoothing / (segments - 1))
    target.view(-1, segments, segments).diagonal(dim1=1, dim2=2).fill_(1 - smoothing)
    return -torch.log((target * prob).sum(dim=-1)).mean()


# ---- step 2: noise ratios


def noise_ratios(
    prob_audio: np.ndarray,
    prob_visual: np.ndarray,
    weak: np.ndarray,
    audio_threshold: float,
    visual_threshold: float,
    visual_label_smoothing: float,
) -> dict[str, np.ndarray]:
    """Per-class noise ratios of each stream from the estimator's video probabilities.

    ``prob_*`` (V, C) on the train split, ``weak`` (V, C). A weak positive is noisy in a stream
    when ``prob x target / mean_c < threshold``, ``mean_c`` the class's mean probability over all
    V videos and the target the stream's training target of a positive (1 for audio, ``1 - s/2``
    for visual). Returns ``audio``, ``visual`` (C,) float64: noisy positives / positives of the
    class (0 for a class without positives), and the counts ``noisy_audio``, ``noisy_visual``,
    ``positives`` (C,) int.
    """
    positive = np.asarray(weak) > 0
    positives = positive.sum(axis=0)
    targets = {"audio": 1.0, "visual": 1 - visual_label_smoothing / 2}
    thresholds = {"audio": audio_threshold, "visual": visual_threshold}
    result: dict[str, np.ndarray] = {"positives": positives}
    for stream, prob in (("audio", prob_audio), ("visual", prob_visual)):
        prob = np.asarray(prob, dtype=np.float64)
        relative = prob * targets[stream] / prob.mean(axis=0)
        noisy = (positive & (relative < thresholds[stream])).sum(axis=0)
        result[f"noisy_{stream}"] = noisy
        result[stream] = np.divide(
            noisy, positives, out=np.zeros(len(positives)), where=positives > 0
        )
    return result


# ---- step 3: denoising


def warm_up_step(
    ratios: Tensor, epoch: int, batch: int, batches_per_epoch: int, warmup_epochs: float
) -> Tensor:
    """The running ratios after (0-based) ``batch`` of (0-based) ``epoch``, from those before it.

    The code restarts from the estimated ratios each epoch and, at every batch b, replaces the
    running ratios r by ``min(r, r x (epoch x n + b) / (warmup x n))``, n batches per epoch: a
    running product, not the linear ramp it seems to intend. With warm-up 0.9 the factor of the
    first batch is 0, so nothing is dropped in epoch 1, and every later epoch starts above 1 and
    keeps the full ratios.
    """
    factor = (epoch * batches_per_epoch + batch) / (warmup_epochs * batches_per_epoch)
    return torch.minimum(ratios, ratios * factor)


def _selected(loss: Tensor, positive: Tensor, count: Tensor, largest: bool) -> Tensor:
    """(B, C) bool: per class, the ``count[c]`` positives with the largest (or smallest) loss,
    ranked by an ascending stable sort as the code slices its ascending sort."""
    order = torch.sort(loss, dim=0, stable=True).indices
    ranked = positive.gather(0, order)
    rank = ranked.cumsum(dim=0)  # 1-based rank among the positives, ascending loss
    # The last ``count`` of the ascending order, or the first.
    limit = positive.sum(dim=0) - count if largest else count
    chosen = ranked & ((rank > limit) if largest else (rank <= limit))
    return torch.zeros_like(positive).scatter(0, order, chosen)


def noisy_labels(own_loss: Tensor, other_loss: Tensor, positive: Tensor, ratio: Tensor) -> Tensor:
    """(B, C) bool: the labels of one stream that the code drops in a batch.

    For class c with P positive labels (``positive``) in the stream, k = int(ratio[c] x P): a
    label is dropped when it is among the k positives with the largest ``own_loss`` (the
    stream's BCE) and among the k positives with the smallest ``other_loss`` (the other stream's
    BCE on the same video and class).
    """
    count = (ratio.double() * positive.sum(dim=0).double()).floor().long()
    return _selected(own_loss, positive, count, largest=True) & _selected(
        other_loss, positive, count, largest=False
    )


def denoised_targets(
    prob: dict[str, Tensor], target: dict[str, Tensor], ratios: dict[str, Tensor]
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(targets, dropped) per stream: the targets with the noisy labels set to 0, and which.

    ``prob`` (B, C) are the video probabilities of the forward pass without cross-modal
    attention, ``target`` the streams' training targets, ``ratios`` (C,) per stream.
    """
    loss = {
        stream: F.binary_cross_entropy(
            prob[stream].clamp(PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON),
            target[stream],
            reduction="none",
        )
        for stream in STREAMS
    }
    dropped, targets = {}, {}
    for stream, other in zip(STREAMS, reversed(STREAMS), strict=True):
        positive = target[stream] > POSITIVE
        dropped[stream] = noisy_labels(loss[stream], loss[other], positive, ratios[stream])
        targets[stream] = target[stream].masked_fill(dropped[stream], 0.0)
    return targets, dropped


# ---- the method


def _estimator_problems(path: Path, features: Mapping[str, Any]) -> list[str]:
    """Why the run at ``path`` cannot serve as this run's noise estimator (its saved config)."""
    way_out = "give a finished jomold noise estimator run, or leave it null to train one"
    if not (path / "best.pt").is_file():
        return [f"method.estimator_run: {path / 'best.pt'} not found; {way_out}"]
    try:
        saved = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
        method = saved["method"]
        name, stage, saved_features = method["name"], method.get("stage"), saved["features"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        return [f"method.estimator_run: {path / 'config.yaml'} is unreadable ({error}); {way_out}"]
    if (name, stage) != ("jomold", Stage.ESTIMATOR.value):
        return [
            f"method.estimator_run: {path} is a {name} run (method.stage {stage}), not a jomold "
            f"noise estimator (method.stage=estimator); {way_out}"
        ]
    if saved_features != features:
        return [
            f"method.estimator_run: {path} reads other features ({saved_features}) than this "
            f"run ({dict(features)}); {way_out} on this run's features"
        ]
    return []


@register("method", "jomold")
class JoMoLD(Method):
    OPTIONS: ClassVar[Mapping[str, Rule]] = {
        **Method.OPTIONS,
        "stage": one_of(Stage),
        "estimator_run": path_string(nullable=True),
        "audio_threshold": number(0),
        "visual_threshold": number(0),
        "warmup_epochs": number(0, above=True, nullable=True),
        "classifier_dropout": number(0, 1),
        "audio_weight": number(0),
        "visual_weight": number(0),
        "video_weight": number(0),
        "nce_weight": number(0),
        "nce_temperature": number(0, above=True),
        "nce_smoothing": number(0, 1),
    }

    @classmethod
    def config_problems(cls, config: Config, training: bool) -> list[str]:
        problems = []
        if config["model"]["name"] != "han":
            problems.append(
                f"method jomold runs HAN with and without cross-modal attention; model.name "
                f"must be han, got {config['model']['name']!r}"
            )
        estimator = config["method"].get("estimator_run")
        if training and isinstance(estimator, str) and estimator:
            problems += _estimator_problems(Path(estimator), config["features"])
        return problems

    def __init__(self, config: Config, train_data: SplitData | None):
        super().__init__(config, train_data)
        self.stage = Stage.parse(self.options["stage"])
        self.ratios: dict[str, Tensor] | None = None  # (C,) float64 per stream, from step 2
        self._current: dict[str, Tensor] = {}
        self._epoch = self._batch = self._batches = 0
        self._labels: dict[str, np.ndarray] = {}

    # ---- steps 1 and 2
    def setup(self, trainer: Trainer) -> None:
        if self.stage is Stage.ESTIMATOR:
            return
        if distributed.world_size() > 1:
            raise ValueError(
                "method jomold trains in one process (its forward passes without cross-modal "
                "attention bypass DistributedDataParallel); run it without torchrun"
            )
        from avvp.training.run_folder import claim_run_folder
        from avvp.training.trainer import RUN_FILES

        state = _random_state()
        # Held from here, so the estimator folder never makes RUN look like a foreign folder.
        with claim_run_folder(trainer.run_dir, RUN_FILES):
            self.ratios = self._noise_ratios(trainer)
        # The main model trains from the same random state however many steps ran here.
        _set_random_state(state)
        trainer.note(
            f"jomold step 3 of 3: training with label denoising in {trainer.run_dir} (noise "
            f"ratios of {trainer.run_dir / NOISE_RATIO_FILE})"
        )

    def _estimator_source(self) -> str:
        """How RUN/noise_ratios.npz names its estimator: the in-run folder, or the reused run."""
        given = self.options.get("estimator_run")
        return ESTIMATOR_FOLDER if given is None else str(Path(given).resolve())

    def _noise_ratios(self, trainer: Trainer) -> dict[str, Tensor]:
        path = trainer.run_dir / NOISE_RATIO_FILE
        if path.is_file():
            stored = self._stored_ratios(path)
            print(f"jomold steps 1-2 done before: noise ratios from {path}", flush=True)
            return stored
        estimator = self._estimator(trainer)
        trainer.note(
            f"jomold step 2 of 3: noise ratios of the {len(trainer.data['train'])} train videos "
            f"from {estimator}"
        )
        from avvp.training.evaluate_run import load_run
        from avvp.training.inference import predict_split

        # config_problems checked that a given estimator is one, on this run's features.
        _, model, method = load_run(estimator, str(trainer.device))
        train = trainer.data["train"]
        options = self.options
        try:
            probabilities = predict_split(
                model, method, train, trainer.feature_names, trainer.device
            )
            result = noise_ratios(
                probabilities.video_prob_audio,
                probabilities.video_prob_visual,
                train.weak,
                options["audio_threshold"],
                options["visual_threshold"],
                options["visual_label_smoothing"],
            )
            self._write_ratios(path, result, trainer.hidden_train_labels, train.weak)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"jomold step 2 of 3, the noise ratios from {estimator}; rerun the same command "
                "to compute them (the estimator is kept)"
            ) from None
        return {stream: torch.from_numpy(result[stream]) for stream in STREAMS}

    def _estimator(self, trainer: Trainer) -> Path:
        """Step 1: the estimator run to read, trained in RUN/estimator unless one is given."""
        given = self.options.get("estimator_run")
        if given is not None:
            print(f"jomold step 1 of 3: reusing the noise estimator {given}", flush=True)
            return Path(given)
        from avvp.training.trainer import Trainer

        folder = trainer.run_dir / ESTIMATOR_FOLDER
        trainer.note(
            f"jomold step 1 of 3: training the noise estimator (HAN without cross-modal "
            f"attention) in {folder}"
        )
        config = copy.deepcopy(trainer.config)
        config["method"]["stage"] = Stage.ESTIMATOR.value
        # --init-from starts step 3's model; the estimator trains from scratch (official).
        config["train"]["init_from"] = None
        estimator = Trainer(
            config,
            folder,
            trainer.data,
            trainer.hidden_train_labels,
            data_fingerprint=trainer.data_fingerprint,
            resume_on_changed_data=trainer.resume_on_changed_data,
        )
        try:
            estimator.fit()
        except KeyboardInterrupt as interrupt:
            # The estimator's own message says where it stopped and how to go on.
            raise KeyboardInterrupt(
                f"jomold step 1 of 3, noise estimator {folder}: {interrupt}"
            ) from None
        return folder

    def _provenance(self) -> dict[str, Any]:
        options = self.options
        return {
            "estimator": self._estimator_source(),
            "audio_threshold": float(options["audio_threshold"]),
            "visual_threshold": float(options["visual_threshold"]),
            "visual_label_smoothing": float(options["visual_label_smoothing"]),
        }

    def _write_ratios(
        self,
        path: Path,
        result: dict[str, np.ndarray],
        hidden: DenseLabels | None,
        weak: np.ndarray,
    ) -> None:
        provenance = self._provenance()
        arrays = {
            "audio": result["audio"],
            "visual": result["visual"],
            "classes": np.array(CLASSES),
            **{key: np.array(value) for key, value in provenance.items()},
        }
        report: dict[str, Any] = {**provenance, "classes": {}}
        truth = None if hidden is None else _true_noise_ratios(hidden, weak)
        for number_, name in enumerate(CLASSES):
            row: dict[str, Any] = {"positives": int(result["positives"][number_])}
            for stream in STREAMS:
                row[stream] = float(result[stream][number_])
                row[f"noisy_{stream}"] = int(result[f"noisy_{stream}"][number_])
                if truth is not None:
                    row[f"true_{stream}"] = float(truth[stream][number_])
            report["classes"][name] = row
        if truth is not None:
            report["note"] = (
                "true_*: the share of weak positives absent from the stream in the hidden "
                "train labels (synthetic data only; never read in training)"
            )
        write_json(path.with_suffix(".json"), report)
        # The .npz last: its presence marks step 2 done.
        atomic_write(path, lambda handle: np.savez(handle, **arrays))

    def _stored_ratios(self, path: Path) -> dict[str, Tensor]:
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {key: stored[key] for key in stored.files}
        except (OSError, ValueError, EOFError) as error:
            raise ValueError(
                f"{path} is not a readable noise-ratio file ({error}); delete it to compute "
                "the ratios again"
            ) from None
        expected = self._provenance()
        found = {key: arrays[key].item() for key in expected if key in arrays}
        if found != expected or any(
            arrays.get(s, np.empty(0)).shape != (NUM_CLASSES,) for s in STREAMS
        ):
            raise ValueError(
                f"{path} was computed with {found}, not this run's {expected}; delete it (and "
                "the run's last.pt) to compute it again, or train into a new --out"
            )
        return {stream: torch.from_numpy(arrays[stream].astype(np.float64)) for stream in STREAMS}

    # ---- step 3 (and the estimator's training)
    def on_epoch_start(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        self._epoch, self._batch = epoch, 0
        self._batches = math.ceil(
            len(trainer.data["train"]) / trainer.config["optim"]["batch_size"]
        )
        if self.stage is Stage.DENOISE and self.ratios is not None:
            self._current = {stream: ratio.clone() for stream, ratio in self.ratios.items()}
            weak = np.asarray(trainer.data["train"].weak, dtype=np.float32)
            self._labels = {stream: weak.copy() for stream in STREAMS}
        return {}

    def _targets(self, weak: Tensor) -> dict[str, Tensor]:
        smoothing = self.options["visual_label_smoothing"]
        return {"audio": weak, "visual": (1 - smoothing) * weak + smoothing / 2}

    def training_forward(
        self, model: nn.Module, batch: Batch
    ) -> tuple[dict[str, Tensor], dict[str, float]]:
        weak = batch.weak.float()
        targets = self._targets(weak)
        dropout = self.options["classifier_dropout"]
        if self.stage is Stage.ESTIMATOR:
            output, encoded = jomold_forward(
                model, batch.features, cross_attention=False, classifier_dropout=dropout
            )
            losses = self._losses(output, encoded, weak, targets, ESTIMATOR_NCE_SMOOTHING)
            return losses, {}
        if self.ratios is None:
            raise RuntimeError("JoMoLD.setup must run before training (it computes the ratios)")
        warmup = self.options["warmup_epochs"]
        if warmup is not None:
            self._current = {
                stream: warm_up_step(ratio, self._epoch, self._batch, self._batches, warmup)
                for stream, ratio in self._current.items()
            }
        self._batch += 1
        with torch.no_grad():
            probe, _ = jomold_forward(
                model, batch.features, cross_attention=False, classifier_dropout=dropout
            )
            ratios = {stream: ratio.to(weak.device) for stream, ratio in self._current.items()}
            prob = {"audio": probe.video_prob_audio, "visual": probe.video_prob_visual}
            targets, dropped = denoised_targets(prob, targets, ratios)
        rows = batch.index.cpu().numpy()
        for stream in STREAMS:
            self._labels[stream][rows] = (
                batch.weak.cpu().numpy() * ~dropped[stream].cpu().numpy()
            ).astype(np.float32)
        output, encoded = jomold_forward(
            model, batch.features, cross_attention=True, classifier_dropout=dropout
        )
        losses = self._losses(output, encoded, weak, targets, self.options["nce_smoothing"])
        report = {f"dropped.{stream}": float(dropped[stream].sum()) for stream in STREAMS}
        return losses, report

    def _losses(
        self,
        output: ParseOutput,
        encoded: Tensor,
        weak: Tensor,
        targets: dict[str, Tensor],
        nce_smoothing: float,
    ) -> dict[str, Tensor]:
        estimator = self.stage is Stage.ESTIMATOR
        options = self.options

        def weight(name: str) -> float:
            return 1.0 if estimator else options[f"{name}_weight"]

        nce = contrastive_loss(
            encoded[:, :, 0], encoded[:, :, 1], options["nce_temperature"], nce_smoothing
        )
        return {
            "audio": weight("audio") * clamped_bce(output.video_prob_audio, targets["audio"]),
            "visual": weight("visual") * clamped_bce(output.video_prob_visual, targets["visual"]),
            "video": weight("video") * clamped_bce(output.video_prob, weak),
            "nce": weight("nce") * nce,
        }

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        if self.stage is Stage.ESTIMATOR or epoch + 1 < trainer.config["optim"]["epochs"]:
            return {}
        train = trainer.data["train"]
        path = trainer.run_dir / LABEL_FILE
        save_video_labels(path, train.video_ids, **self._labels)
        trainer.note(f"jomold: the labels of the last epoch written to {path}")
        hidden = trainer.hidden_train_labels
        if hidden is not None:
            quality = label_quality(self._labels, np.asarray(train.weak), hidden)
            write_json(trainer.run_dir / QUALITY_FILE, {"epoch": epoch + 1, **quality})
        return {}

    @torch.no_grad()
    def infer(self, model: nn.Module, features: dict[str, Tensor]) -> ParseOutput:
        if self.stage is Stage.ESTIMATOR:
            return jomold_forward(
                model,
                features,
                cross_attention=False,
                classifier_dropout=self.options["classifier_dropout"],
            )[0]
        return model(features)

    def state_dict(self) -> dict[str, Any]:
        if self.ratios is None:
            return {}
        return {"noise_ratios": {stream: ratio.tolist() for stream, ratio in self.ratios.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("noise_ratios")
        if saved is None:
            return
        saved = {
            stream: torch.tensor(values, dtype=torch.float64) for stream, values in saved.items()
        }
        if self.ratios is None:  # a run loaded for evaluation
            self.ratios = saved
        elif any(not torch.equal(saved[s], self.ratios[s]) for s in STREAMS):
            raise ValueError(
                f"{NOISE_RATIO_FILE} of this run changed since it started training; restore "
                "it, or train into a new --out"
            )


def _true_noise_ratios(hidden: DenseLabels, weak: np.ndarray) -> dict[str, np.ndarray]:
    """Per class, the share of weak positives absent from each stream of the hidden labels."""
    positive = np.asarray(weak) > 0
    positives = positive.sum(axis=0)
    result = {}
    for stream in STREAMS:
        present = getattr(hidden, stream).any(axis=1)
        absent = (positive & ~present).sum(axis=0)
        result[stream] = np.divide(
            absent, positives, out=np.zeros(len(positives)), where=positives > 0
        )
    return result


def label_quality(
    labels: Mapping[str, np.ndarray], weak: np.ndarray, hidden: DenseLabels
) -> dict[str, Any]:
    """Video-level precision/recall (:func:`avvp.pseudo_labels.video_precision_recall`) of
    per-stream labels (V, C) against the hidden train labels, beside the weak labels' own, and
    how many labels were dropped and how many of those the stream truly lacks."""
    positive = np.asarray(weak) > 0
    result: dict[str, Any] = {"videos": len(positive), "labels": {}, "weak": {}, "dropped": {}}
    for stream in STREAMS:
        truth = getattr(hidden, stream).any(axis=1)
        kept = np.asarray(labels[stream]) >= POSITIVE
        result["labels"][stream] = video_precision_recall(kept, truth)
        result["weak"][stream] = video_precision_recall(positive, truth)
        dropped = positive & ~kept
        result["dropped"][stream] = {
            "labels": int(dropped.sum()),
            "truly_absent": int((dropped & ~truth).sum()),
        }
    return result


def _random_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])
