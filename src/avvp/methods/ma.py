"""MA: modality-aware labels by exchanging streams (Wu & Yang, CVPR 2021), as its code runs it.

The authors' code (``Yu-Wu/Modaily-Aware-Audio-Visual-Video-Parsing``) has three steps, and
``avvp train --method ma`` runs all three into one run folder:

1. **Base model** (``step1_train_base_model``), in ``RUN/base/``, a run folder of its own: HAN
   trained on the weak labels with MA's losses (below) [``base: official``], or avvp's HAN preset
   [``base: han``]; ``base_run: PATH`` uses a finished run instead.
2. **Modality exchange** (``step2_find_exchange``): every training video is paired with a
   training video that shares none of its events, drawn uniformly (the official loader redraws a
   random video until the two label sets are disjoint). The base model, in eval mode, sees each
   video as it is, with the partner's visual stream and with the partner's audio stream. Per class
   c, ``scale_v[c]`` is the base model's visual error rate on the training split
   (``1 - mean((P_v > 0.5) == w)``) divided by its largest value over classes, ``scale_a[c]`` the
   same for audio. A weak label c of a video is *not visible* when, with the partner's audio and
   the video's own visual stream, both stream probabilities fall below ``0.5 scale_v[c]``; *not
   audible* when, with the partner's visual stream and the video's own audio, both fall below
   ``0.5 scale_a[c]``. A class without errors (scale 0) and a stream without any (0 / 0) remove
   nothing, as in the code [``exchange_scale: none``: every scale 1, the threshold alone]. The
   labels that remain are written to ``RUN/ma_labels.npz`` (video-level ``audio`` / ``visual``,
   V x 25, the pseudo-label file contract).
3. **Retraining** (``step3_retrain``) from scratch on those labels:
   ``BCE(P_a, y_a) + BCE(P_v, y_v) + BCE(P, y_g) + L_c`` with y_a the audio labels, y_v the visual
   labels smoothed as HAN smooths them (``0.9 w + 0.05``) except that a removed visual label is 0,
   y_g the audio labels (in the official loader the global target is the same array as the audio
   target, so removing an audible label removes it from the global target too) [``global_target:
   weak`` keeps the weak label], and L_c the contrastive alignment below. The official code keeps
   the model after the last epoch [``checkpoint: last``], not the best on val.

The contrastive alignment of steps 1 and 3: each audio segment after the hybrid attention layer,
against the visual segments of the same video before it (the visual stem), cosine similarity over
a temperature of 0.2, is classified as its own time step, cross-entropy with label smoothing 0.1
(the true step gets 0.9, each other step 0.1 / (T - 1)). docs/fidelity.md (section MA) lists each
rule and constant with its place in the official code and where avvp differs.

Resuming: step 1 resumes as any run; step 2 is skipped when ``RUN/ma_labels.npz`` and the record
``RUN/ma_exchange.json`` match the base's ``best.pt`` (sha256) and step 2's settings, and refuses
to replace labels that step 3 has started training on; step 3 resumes from ``RUN/last.pt``, whose
method state holds the labels' digest. The random state is the same after steps 1-2 whether they
ran in this process or an earlier one, so a run killed between steps ends as an uninterrupted one.
``RUN/ma_labels_quality.json`` scores the labels: on synthetic data against the hidden train
labels, and, with the train split's class scales, the same rule on val (``RUN/ma_labels_val.npz``,
which nothing trains on) against its ground truth.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avvp.choices import Choice
from avvp.classes import CLASSES, NUM_CLASSES
from avvp.config import Config, Rule, number, one_of, path_string, resolve_config
from avvp.io_utils import atomic_write, file_sha256, write_json
from avvp.losses import clamped_bce
from avvp.methods.base import Batch, Method
from avvp.methods.ppl import binary_quality
from avvp.models.base import AUDIO
from avvp.pseudo_labels import load_video_labels
from avvp.registry import register
from avvp.training import distributed
from avvp.training.batches import feature_names, make_batch
from avvp.training.data import model_features
from avvp.training.evaluate_run import load_run
from avvp.training.inference import INFERENCE_BATCH_SIZE
from avvp.training.trainer import BEST_CHECKPOINT, LAST_CHECKPOINT, Trainer

if TYPE_CHECKING:
    from avvp.data.annotations import DenseLabels
    from avvp.data.dataset import SplitData

BASE_FOLDER = "base"
LABEL_FILE = "ma_labels.npz"
VAL_LABEL_FILE = "ma_labels_val.npz"  # the same rule on val, to score; no step trains on it
EXCHANGE_RECORD = "ma_exchange.json"
QUALITY_FILE = "ma_labels_quality.json"
# step2_find_exchange/main_avvp.py: a stream "predicts" a class above 0.5 (strictly), which gives
# the class error rates, and an exchanged prediction counts as absent below 0.5 x the class scale.
PREDICTION_THRESHOLD = 0.5
# Options that only steps 2 and 3 read.
LATER_STEP_OPTIONS = ("base", "base_run", "global_target", "exchange_threshold", "exchange_scale")
# Sections of a run's config that the base model shares with it under ``base: han``.
SHARED_SECTIONS = ("seed", "data", "features", "model", "optim", "train", "eval")


class Stage(Choice, label="method.stage"):
    FULL = "full"  # steps 1-3
    BASE = "base"  # step 1 alone: MA's losses on the weak labels


class BaseModel(Choice, label="method.base"):
    OFFICIAL = "official"
    HAN = "han"


class Checkpoint(Choice, label="method.checkpoint"):
    LAST = "last"
    BEST = "best"


class GlobalTarget(Choice, label="method.global_target"):
    AUDIO = "audio"
    WEAK = "weak"


class ExchangeScale(Choice, label="method.exchange_scale"):
    ERROR = "error"  # the official class scales (error rates over their maximum)
    NONE = "none"  # every class scale 1: the threshold alone


# ---- losses


def contrastive_alignment_loss(
    audio: Tensor, visual: Tensor, temperature: float, smoothing: float
) -> Tensor:
    """MA's audio-visual alignment: audio segment t is classified as visual segment t.

    ``audio`` and ``visual`` (B, T, D); logits are the cosine similarities of each audio segment
    with the T visual segments of its video over ``temperature``; the target distribution gives
    ``1 - smoothing`` to the segment's own time step and ``smoothing / (T - 1)`` to each other one
    (the official ``LabelSmoothingLoss``); the mean over the B T audio segments.
    """
    segments = audio.shape[1]
    if segments < 2:
        # One segment has nothing to be told apart from; zero that stays on the graph.
        return (audio.sum() + visual.sum()) * 0.0
    logits = F.normalize(audio, dim=-1) @ F.normalize(visual, dim=-1).transpose(1, 2)
    log_prob = torch.log_softmax(logits / temperature, dim=-1)
    own = log_prob.diagonal(dim1=1, dim2=2)
    others = log_prob.sum(dim=-1) - own
    return -((1 - smoothing) * own + smoothing / (segments - 1) * others).mean()


def ma_targets(
    weak: Tensor,
    audio_labels: Tensor,
    visual_labels: Tensor,
    visual_label_smoothing: float,
    global_target: GlobalTarget = GlobalTarget.AUDIO,
) -> tuple[Tensor, Tensor, Tensor]:
    """(audio, visual, global) targets of step 3 from the weak and the modality-aware labels.

    The visual target is the weak label smoothed, ``(1 - s) w + s / 2``, and 0 where the exchange
    removed the visual label (``step3_retrain/dataloader.py``: ``pv[c] = 0``), which makes a
    removed label a stronger negative than a class the video never had (0.05).
    """
    removed_visual = weak * (1 - visual_labels)
    smoothed = (1 - visual_label_smoothing) * weak + visual_label_smoothing / 2
    visual = smoothed * (1 - removed_visual)
    overall = audio_labels if global_target is GlobalTarget.AUDIO else weak
    return audio_labels, visual, overall


# ---- step 2: the modality exchange


def exchange_partners(weak: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each video, a video of ``weak`` (V, C) sharing no class with it; -1 where none exists.

    As the official loader: draw a video uniformly until its label set is disjoint (so the partner
    is uniform over the disjoint videos). Videos without any disjoint video (the official loop
    would never end) are found first, from the distinct label sets, and get -1.
    """
    weak = np.asarray(weak, dtype=bool)
    rows, inverse = np.unique(weak, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = rows.astype(np.int64)
    disjoint = (counts @ counts.T) == 0  # between the label sets that occur
    possible = disjoint.any(axis=1)
    partners = np.full(len(weak), -1, dtype=np.int64)
    for video in range(len(weak)):
        if not possible[inverse[video]]:
            continue
        while True:
            other = int(rng.integers(len(weak)))
            if not (weak[other] & weak[video]).any():
                partners[video] = other
                break
    return partners


class ExchangeProbabilities(NamedTuple):
    """Video-level stream probabilities (V, C) of the base model with and without an exchange.

    ``other_audio_*``: the partner's audio with the video's own visual stream (official ``a_a``,
    ``v_a``); ``other_visual_*``: the video's own audio with the partner's visual stream
    (``a_v``, ``v_v``).
    """

    audio: Tensor
    visual: Tensor
    other_audio_audio: Tensor
    other_audio_visual: Tensor
    other_visual_audio: Tensor
    other_visual_visual: Tensor


def class_error_scales(prob: Tensor, weak: Tensor) -> Tensor:
    """Per class, the error rate of ``prob > 0.5`` against ``weak`` over the videos, divided by
    its largest value over classes (NaN everywhere when no class has an error, as officially)."""
    error = 1 - ((prob > PREDICTION_THRESHOLD) == (weak > 0)).float().mean(dim=0)
    return error / error.max()


def modality_removals(
    weak: Tensor,
    probabilities: ExchangeProbabilities,
    audio_scale: Tensor,
    visual_scale: Tensor,
    threshold: float = PREDICTION_THRESHOLD,
) -> tuple[Tensor, Tensor]:
    """(not audible, not visible), each (V, C) bool: weak labels the exchange removes.

    Divisions as in the official code: a class scale of 0 (or NaN) removes nothing.
    """
    labelled = weak > 0
    p = probabilities
    not_visible = (
        labelled
        & (p.other_audio_visual / visual_scale < threshold)
        & (p.other_audio_audio / visual_scale < threshold)
    )
    not_audible = (
        labelled
        & (p.other_visual_audio / audio_scale < threshold)
        & (p.other_visual_visual / audio_scale < threshold)
    )
    return not_audible, not_visible


@torch.no_grad()
def exchange_probabilities(
    model: nn.Module,
    data: SplitData,
    partners: np.ndarray,
    config: Config,
    device: torch.device,
    batch_size: int = INFERENCE_BATCH_SIZE,
) -> ExchangeProbabilities:
    """The base model on every video of ``data``: as it is and with a stream of its partner.

    A video without a partner (-1) is paired with itself; its labels are kept anyway.
    """
    model.eval()
    names = feature_names(config)
    audio_names = set(config["features"]["audio"])
    parts: list[list[Tensor]] = [[] for _ in ExchangeProbabilities._fields]
    for start in range(0, len(data), batch_size):
        own_rows = np.arange(start, min(start + batch_size, len(data)))
        other_rows = np.where(partners[own_rows] >= 0, partners[own_rows], own_rows)
        own = make_batch(data, own_rows, names).to(device).features
        other = make_batch(data, other_rows, names).to(device).features
        other_audio = {name: (other if name in audio_names else own)[name] for name in names}
        other_visual = {name: (own if name in audio_names else other)[name] for name in names}
        outputs = [model(own), model(other_audio), model(other_visual)]
        values = [
            prob
            for output in outputs
            for prob in (output.video_prob_audio, output.video_prob_visual)
        ]
        for part, value in zip(parts, values, strict=True):
            part.append(value.float().cpu())
    return ExchangeProbabilities(*(torch.cat(part) for part in parts))


@dataclass(frozen=True)
class ExchangeResult:
    """What step 2 decided for one split, (V, C) arrays in split order."""

    weak: np.ndarray  # bool
    audio: np.ndarray  # bool: the modality-aware audio labels
    visual: np.ndarray  # bool
    partners: np.ndarray  # (V,) int, -1: no video shares no event with it
    audio_scale: np.ndarray  # (C,) float
    visual_scale: np.ndarray


def modality_exchange(
    model: nn.Module,
    data: SplitData,
    config: Config,
    rng: np.random.Generator,
    device: torch.device,
    scales: tuple[np.ndarray, np.ndarray] | None = None,
    threshold: float = PREDICTION_THRESHOLD,
) -> ExchangeResult:
    """Step 2 on ``data``; class ``scales`` (audio, visual) default to the split's own."""
    weak = np.asarray(data.weak) > 0
    partners = exchange_partners(weak, rng)
    probabilities = exchange_probabilities(model, data, partners, config, device)
    weak_tensor = torch.from_numpy(weak)
    if scales is None:
        scales = (
            class_error_scales(probabilities.audio, weak_tensor).numpy(),
            class_error_scales(probabilities.visual, weak_tensor).numpy(),
        )
    not_audible, not_visible = modality_removals(
        weak_tensor,
        probabilities,
        torch.from_numpy(scales[0]),
        torch.from_numpy(scales[1]),
        threshold,
    )
    # A video without a partner was never exchanged: its labels stay as they are.
    exchanged = torch.from_numpy(partners >= 0)[:, None]
    return ExchangeResult(
        weak,
        weak & ~(not_audible & exchanged).numpy(),
        weak & ~(not_visible & exchanged).numpy(),
        partners,
        scales[0],
        scales[1],
    )


# ---- the label file and its quality


def write_labels(
    path: Path, video_ids: Sequence[str], audio: np.ndarray, visual: np.ndarray
) -> Path:
    """A video-level label file (``avvp.pseudo_labels``' format, which reads it back) with the
    labels as float32, as MA's files promise; the shared writer would store 0/1 labels as bool."""
    arrays = {
        "video_ids": np.array(video_ids),
        "classes": np.array(CLASSES),
        "audio": np.asarray(audio, dtype=np.float32),
        "visual": np.asarray(visual, dtype=np.float32),
    }
    return atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))


def stream_shares(audio: np.ndarray, visual: np.ndarray, weak: np.ndarray) -> dict[str, float]:
    """Shares of the weakly labelled (video, class) pairs that are audio-only, visual-only, both
    or neither in ``audio`` / ``visual`` (V, C) bool."""
    pairs = max(int(weak.sum()), 1)
    return {
        "audio_only": float((weak & audio & ~visual).sum()) / pairs,
        "visual_only": float((weak & ~audio & visual).sum()) / pairs,
        "both": float((weak & audio & visual).sum()) / pairs,
        "neither": float((weak & ~audio & ~visual).sum()) / pairs,
    }


def label_quality(result: ExchangeResult, truth: DenseLabels | None) -> dict[str, Any]:
    """Counts of what step 2 removed and, given segment truth, video-level precision / recall /
    F1 per stream of the labels and of the weak labels taken for both streams."""
    weak = result.weak
    quality: dict[str, Any] = {
        "videos": len(weak),
        "weak_labels": int(weak.sum()),
        "videos_without_partner": int((result.partners < 0).sum()),
        "removed_audio": int((weak & ~result.audio).sum()),
        "removed_visual": int((weak & ~result.visual).sum()),
        "removed_both": int((weak & ~result.audio & ~result.visual).sum()),
        "label_shares": stream_shares(result.audio, result.visual, weak),
    }
    if truth is None:
        return quality
    true_audio, true_visual = truth.audio.any(axis=1), truth.visual.any(axis=1)
    quality["true_shares"] = stream_shares(true_audio, true_visual, weak)
    for stream, labels, true in (
        ("audio", result.audio, true_audio),
        ("visual", result.visual, true_visual),
    ):
        quality[stream] = binary_quality(torch.from_numpy(labels), torch.from_numpy(true))
        quality[f"weak_as_{stream}"] = binary_quality(
            torch.from_numpy(weak), torch.from_numpy(true)
        )
    return quality


def json_numbers(values: np.ndarray) -> list[float | None]:
    """``values`` as a JSON list, NaN as null (strict JSON has no NaN)."""
    return [float(value) if np.isfinite(value) else None for value in values]


@contextlib.contextmanager
def preserved_random_state() -> Iterator[None]:
    """Restore the global random generators after the block: steps 1-2 seed and draw, and step
    3 must start from the same state whether they ran now or in an earlier process."""
    states = (
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
        torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    )
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])


def base_config(config: Config) -> Config:
    """The config of the base model (step 1) of an MA run's config.

    ``base: official``: the run's config at ``stage: base``, the options that only steps 2-3 read
    at their preset values, so that changing one of them does not make step 1 a different run.
    """
    options = config["method"]
    if BaseModel.parse(options["base"]) is BaseModel.HAN:
        base = resolve_config("han")
        for section in SHARED_SECTIONS:
            base[section] = copy.deepcopy(config[section])
    else:
        base = copy.deepcopy(config)
        preset = resolve_config("ma")["method"]
        base["method"].update({option: preset[option] for option in LATER_STEP_OPTIONS})
        base["method"]["stage"] = Stage.BASE.value
    # --init-from starts step 3's model; the base trains from scratch, as the official step 1.
    base["train"]["init_from"] = None
    return base


@register("method", "ma")
class MA(Method):
    OPTIONS: ClassVar[Mapping[str, Rule]] = {
        **Method.OPTIONS,
        "stage": one_of(Stage),
        "base": one_of(BaseModel),
        "base_run": path_string(nullable=True),
        "checkpoint": one_of(Checkpoint),
        "global_target": one_of(GlobalTarget),
        "exchange_threshold": number(0, above=True),
        "exchange_scale": one_of(ExchangeScale),
        "contrastive_weight": number(0),
        "contrastive_temperature": number(0, above=True),
        "contrastive_smoothing": number(0, 1),
    }

    @classmethod
    def config_problems(cls, config: Config, training: bool) -> list[str]:
        options = config["method"]
        base_run = options.get("base_run")
        if not training or options.get("stage") != Stage.FULL or not isinstance(base_run, str):
            return []
        if not (Path(base_run) / BEST_CHECKPOINT).is_file():
            return [
                f"method.base_run: {Path(base_run) / BEST_CHECKPOINT} not found; give a finished "
                "`avvp train` run folder, or leave method.base_run null to train the base model"
            ]
        return []

    def __init__(self, config: Config, train_data: SplitData | None):
        super().__init__(config, train_data)
        self.stage = Stage.parse(self.options["stage"])
        self.checkpoint = Checkpoint.parse(self.options["checkpoint"])
        self.global_target = GlobalTarget.parse(self.options["global_target"])
        # Step 3's labels aligned to the train split, (V, C) each, on the CPU (set by setup).
        self.audio_labels: Tensor | None = None
        self.visual_labels: Tensor | None = None
        self.label_digest: str | None = None

    # ---- steps 1 and 2, before the trainer resumes or starts step 3
    def setup(self, trainer: Trainer) -> None:
        if self.stage is Stage.BASE:
            return
        if distributed.world_size() > 1:
            raise ValueError(
                "method ma runs its base model and exchange in one process: train it without "
                "torchrun (or train the base alone and pass method.base_run)"
            )
        with preserved_random_state():
            base_dir = self._base_model(trainer)
            path = self._exchange(trainer, base_dir)
        labels = load_video_labels(path).aligned(trainer.data["train"].video_ids, "train videos")
        audio, visual = (stream.astype(np.float32) for stream in (labels.audio, labels.visual))
        self.audio_labels, self.visual_labels = torch.from_numpy(audio), torch.from_numpy(visual)
        self.label_digest = hashlib.sha256(audio.tobytes() + visual.tobytes()).hexdigest()
        weak = np.asarray(trainer.data["train"].weak) > 0
        print(
            f"MA step 3/3: training on the modality-aware labels of {path} "
            f"({int((weak & (audio < 0.5)).sum())} audio and {int((weak & (visual < 0.5)).sum())} "
            f"visual of {int(weak.sum())} weak labels removed)",
            flush=True,
        )

    def _base_model(self, trainer: Trainer) -> Path:
        """Step 1: the folder of the base run, trained (or resumed) here unless given."""
        given = self.options["base_run"]
        if given is not None:
            print(f"MA step 1/3: the base model is {Path(given) / BEST_CHECKPOINT}", flush=True)
            return Path(given)
        folder = trainer.run_dir / BASE_FOLDER
        print(f"MA step 1/3: base model ({self.options['base']}) in {folder}", flush=True)
        Trainer(
            base_config(self.config),
            folder,
            trainer.data,
            trainer.hidden_train_labels,
            data_fingerprint=trainer.data_fingerprint,
            resume_on_changed_data=trainer.resume_on_changed_data,
        ).fit()
        return folder

    def _exchange(self, trainer: Trainer, base_dir: Path) -> Path:
        """Step 2: ``RUN/ma_labels.npz`` from the base model, unless it is up to date."""
        path, record_path = trainer.run_dir / LABEL_FILE, trainer.run_dir / EXCHANGE_RECORD
        checkpoint = base_dir / BEST_CHECKPOINT
        train = trainer.data["train"]
        # What the labels depend on besides the base model.
        settings = {
            "seed": self.config["seed"],
            "threshold": self.options["exchange_threshold"],
            "exchange_scale": self.options["exchange_scale"],
            "train_videos_sha256": hashlib.sha256("\n".join(train.video_ids).encode()).hexdigest(),
        }
        base_digest = file_sha256(checkpoint)
        record = _read_record(record_path)
        if path.is_file():
            if (
                record.get("base_sha256") == base_digest
                and record.get("settings") == settings
                and record.get("labels_sha256") == file_sha256(path)
            ):
                print(f"MA step 2/3: {path} is up to date with {checkpoint}", flush=True)
                return path
            if (trainer.run_dir / LAST_CHECKPOINT).is_file():
                raise ValueError(
                    f"{path} was made by another base model than {checkpoint} is now, or with "
                    f"other step-2 settings (see {record_path}), and step 3 has trained on it "
                    f"({trainer.run_dir / LAST_CHECKPOINT}); train into a new --out, or restore "
                    "the base model and the settings"
                )
        print(
            f"MA step 2/3: modality exchange of the {len(train)} training videos with "
            f"{checkpoint} -> {path}",
            flush=True,
        )
        config, model, _ = load_run(base_dir, str(trainer.device))
        if read_features(config) != read_features(self.config):
            raise ValueError(
                f"{checkpoint} reads the features {read_features(config)}, this run "
                f"{read_features(self.config)}; the base model (method.base_run) must read this "
                "run's features"
            )
        seed, threshold = settings["seed"], settings["threshold"]
        unscaled = ExchangeScale.parse(self.options["exchange_scale"]) is ExchangeScale.NONE
        ones = np.ones(NUM_CLASSES, dtype=np.float32)
        result = modality_exchange(
            model,
            train,
            config,
            np.random.default_rng([seed, 0]),
            trainer.device,
            (ones, ones) if unscaled else None,
            threshold,
        )
        for stream, scale in (("audio", result.audio_scale), ("visual", result.visual_scale)):
            if not np.isfinite(scale).any():
                # Error rates all 0: the official division 0 / 0 removes nothing.
                print(
                    f"MA step 2/3: the base model makes no {stream} error on the training split, "
                    f"so no {stream} label is removed (as in the official code; "
                    "method.exchange_scale=none uses the threshold alone)",
                    flush=True,
                )
        quality = {"train": label_quality(result, trainer.hidden_train_labels)}
        quality["train"]["class_scales"] = {
            "audio": json_numbers(result.audio_scale),
            "visual": json_numbers(result.visual_scale),
        }
        if "val" in trainer.data and trainer.data["val"].dense is not None:
            # The same rule on val, with the train split's class scales: labels scored against
            # val's ground truth, which no training reads.
            val = modality_exchange(
                model,
                trainer.data["val"],
                config,
                np.random.default_rng([seed, 1]),
                trainer.device,
                (result.audio_scale, result.visual_scale),
                threshold,
            )
            quality["val"] = label_quality(val, trainer.data["val"].dense)
            write_labels(
                trainer.run_dir / VAL_LABEL_FILE,
                trainer.data["val"].video_ids,
                val.audio,
                val.visual,
            )
        write_labels(path, train.video_ids, result.audio, result.visual)
        write_json(trainer.run_dir / QUALITY_FILE, quality)
        write_json(
            record_path,
            {
                "base_checkpoint": str(checkpoint.resolve()),
                "base_sha256": base_digest,
                "labels_sha256": file_sha256(path),
                "settings": settings,
                "audio_scale": json_numbers(result.audio_scale),
                "visual_scale": json_numbers(result.visual_scale),
                "partners": [
                    train.video_ids[int(other)] if other >= 0 else None for other in result.partners
                ],
            },
        )
        return path

    # ---- training (steps 1 and 3)
    def training_forward(
        self, model: nn.Module, batch: Batch
    ) -> tuple[dict[str, Tensor], dict[str, float]]:
        output = model(batch.features)
        weak = batch.weak
        smoothing = self.options["visual_label_smoothing"]
        if self.audio_labels is None or self.visual_labels is None:
            # Step 1 (stage base): MA's losses on the weak labels, HAN's smoothed visual target.
            audio, visual, overall = weak, (1 - smoothing) * weak + smoothing / 2, weak
        else:
            rows = batch.index.cpu()
            audio, visual, overall = ma_targets(
                weak,
                self.audio_labels[rows].to(weak.device),
                self.visual_labels[rows].to(weak.device),
                smoothing,
                self.global_target,
            )
        losses = {
            "audio": clamped_bce(output.video_prob_audio, audio),
            "visual": clamped_bce(output.video_prob_visual, visual),
            "global": clamped_bce(output.video_prob, overall),
        }
        weight = self.options["contrastive_weight"]
        if weight > 0:
            losses["contrastive"] = weight * contrastive_alignment_loss(
                output.features[:, :, AUDIO],
                visual_stem(model)(batch.features),
                self.options["contrastive_temperature"],
                self.options["contrastive_smoothing"],
            )
        return losses, {}

    @classmethod
    def checkpoint_rule(cls, config: Config) -> str:
        if Checkpoint.parse(config["method"]["checkpoint"]) is Checkpoint.LAST:
            return "the model after the last epoch (the official rule)"
        return super().checkpoint_rule(config)

    def selectable(self, epoch: int) -> bool:
        # The official steps 1 and 3 keep the model after the last epoch.
        return self.checkpoint is Checkpoint.BEST or epoch == self.config["optim"]["epochs"]

    def state_dict(self) -> dict[str, Any]:
        return {"label_digest": self.label_digest}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Only a training run of step 3 has labels to compare; evaluation reads none.
        if self.label_digest is not None and state.get("label_digest") != self.label_digest:
            raise ValueError(
                f"the labels of {LABEL_FILE} differ from those this run trained on; train into "
                "a new --out"
            )


def read_features(config: Config) -> dict[str, Any]:
    """The feature sets a config's model reads, by stream, with their dimensions and frames."""
    dims, frames = model_features(config)
    streams = {stream: list(config["features"][stream]) for stream in ("audio", "visual")}
    return {**streams, "dims": dims, "frames": frames}


def visual_stem(model: nn.Module) -> nn.Module:
    """The model's visual projection before the attention layers (HAN's ``visual_stem``)."""
    core = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    stem = getattr(core, "visual_stem", None)
    if stem is None:
        raise ValueError(
            f"method ma's contrastive loss needs the visual stem of a HAN-like model, which "
            f"{type(core).__name__} lacks; set method.contrastive_weight=0"
        )
    return stem


def _read_record(path: Path) -> dict[str, Any]:
    """Step 2's record, or {} when it is missing or unreadable (step 2 then runs again)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
