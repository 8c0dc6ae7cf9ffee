"""The plug-in interface between a training method and the one trainer.

The trainer owns the loop, the optimiser, checkpoints, validation and logging. A method says what
one training step computes (``training_forward`` returns named losses that the trainer sums, and a
report of floats to log), what happens between epochs (pseudo-label refresh, EM steps), after each
optimiser step (EMA updates), and how to infer. Methods keep per-video state (e.g. PoiBin's tau)
indexed by the position of the video in the training split; ``state_dict`` makes it survive resume.

Video-level label files (``data.video_labels``, :mod:`avvp.pseudo_labels`): the base method
trains on a file's per-stream labels in place of the weak labels, keeping the structure of HAN's
attentive MIL loss (:func:`avvp.losses.attentive_mil_loss`), which on weak labels ``w`` is
``BCE(P, w) + BCE(P_a, w) + BCE(P_v, smooth(w))``: with the file's audio labels ``y_a`` and visual
labels ``y_v`` it is ``BCE(P, y_a OR y_v) + BCE(P_a, y_a) + BCE(P_v, smooth(y_v))``. The global
probability P says whether the class is in the video at all, so its target is the union (the
element-wise max, for soft labels) of the two streams; ``smooth`` is the same
``visual_label_smoothing`` as on weak labels. A stream the file lacks falls back to the weak
labels, and a file equal to the weak labels trains exactly as no file. Subclasses compute their
own losses and read the file only if they set ``TRAINS_ON_VIDEO_LABELS`` (using
:meth:`Method.mil_targets`); for the others ``data.video_labels`` is a config error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from avvp.config import Config, Rule, method_problems, number, raise_problems
from avvp.losses import attentive_mil_loss
from avvp.models.base import ParseOutput
from avvp.pseudo_labels import load_video_labels

if TYPE_CHECKING:
    from avvp.data.dataset import SplitData
    from avvp.training.trainer import Trainer


@dataclass
class Batch:
    """Videos: features by set name (B, T, D), weak labels (B, C), positions in the split (B,)."""

    features: dict[str, Tensor]
    weak: Tensor
    index: Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(
            {name: value.to(device, non_blocking=True) for name, value in self.features.items()},
            self.weak.to(device, non_blocking=True),
            self.index.to(device, non_blocking=True),
        )


@dataclass(frozen=True)
class VideoLabelTargets:
    """A video-level label file's streams aligned to the train split, (V, C) float32 on the CPU."""

    source: Path
    audio: Tensor | None
    visual: Tensor | None
    digest: str  # a fingerprint, so a resumed run can tell that its file changed

    @classmethod
    def load(cls, path: Path, video_ids: Sequence[str]) -> VideoLabelTargets:
        """The labels of ``video_ids`` (the train split's); errors name the file, and the ids it
        lacks."""
        try:
            labels = load_video_labels(path).aligned(video_ids, "train videos")
        except ValueError as error:
            raise ValueError(f"data.video_labels: {error}; label every train video") from None
        digest = hashlib.sha256()
        for name in ("audio", "visual"):
            array = getattr(labels, name)
            digest.update(b"none" if array is None else np.ascontiguousarray(array).tobytes())

        def tensor(array: np.ndarray | None) -> Tensor | None:
            return None if array is None else torch.from_numpy(np.ascontiguousarray(array))

        return cls(path, tensor(labels.audio), tensor(labels.visual), digest.hexdigest())

    def gather(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """(global, audio, visual) targets of the videos of ``batch``; a stream the file lacks
        is the weak label, the global target the union of the two."""
        rows = batch.index.cpu()

        def stream(labels: Tensor | None) -> Tensor:
            return batch.weak if labels is None else labels[rows].to(batch.weak)

        audio, visual = stream(self.audio), stream(self.visual)
        return torch.maximum(audio, visual), audio, visual


class Method:
    """Plain HAN training: the attentive MIL loss on weak labels. Other methods subclass this."""

    # What each option of the method's preset accepts; ``avvp.config.validate_config`` checks
    # them before a run reads any data. Subclasses extend it with their own options.
    OPTIONS: ClassVar[Mapping[str, Rule]] = {"visual_label_smoothing": number(0, 1)}
    # Whether training reads data.video_labels (see the module's docstring). Not inherited: a
    # subclass computes its own losses, so it says so itself.
    TRAINS_ON_VIDEO_LABELS: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.TRAINS_ON_VIDEO_LABELS = bool(vars(cls).get("TRAINS_ON_VIDEO_LABELS", False))

    @classmethod
    def checkpoint_rule(cls, config: Config) -> str:
        """Which epoch's model becomes best.pt, in words (the heading of a run's test table)."""
        from avvp.training.trainer import metric_label  # the trainer imports this module

        return f"the epoch with the best val {metric_label(config['train']['select_metric'])}"

    @classmethod
    def config_problems(cls, config: Config, training: bool) -> list[str]:
        """What is wrong with a combination of options (one option alone: ``OPTIONS``);
        ``training``: the config is about to train, not only to evaluate."""
        return []

    def __init__(self, config: Config, train_data: SplitData | None):
        raise_problems(method_problems(type(self), config, training=train_data is not None))
        self.config = config
        self.options: dict[str, Any] = config["method"]
        self.train_data = train_data  # None when a run is only evaluated
        path = config["data"].get("video_labels")
        self.video_labels: VideoLabelTargets | None = None
        if train_data is not None and path is not None and self.TRAINS_ON_VIDEO_LABELS:
            self.video_labels = VideoLabelTargets.load(Path(path), train_data.video_ids)

    def setup(self, trainer: Trainer) -> None:
        """Called once the model, optimiser and device exist, before any resume."""

    def mil_targets(self, batch: Batch) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(global, audio, visual) targets of the attentive MIL loss for ``batch``: the weak
        labels (None: the weak label) or those of ``data.video_labels``."""
        if self.video_labels is None:
            return batch.weak, None, None
        return self.video_labels.gather(batch)

    def training_forward(
        self, model: nn.Module, batch: Batch
    ) -> tuple[dict[str, Tensor], dict[str, float]]:
        output = model(batch.features)
        target, audio, visual = self.mil_targets(batch)
        loss = attentive_mil_loss(
            output,
            target,
            self.options.get("visual_label_smoothing", 0.1),
            audio_target=audio,
            visual_target=visual,
        )
        return {"mil": loss}, {}

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        return {}

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        return {}

    def optimizer_restart_lr(self, epoch: int) -> float | None:
        """The lr of a fresh optimiser (and schedule) the trainer builds before (0-based)
        ``epoch``, or None to keep the current one. A resumed run restores the optimiser it saved
        after that epoch, so the restart happens once per run."""
        return None

    def after_optimizer_step(self, trainer: Trainer) -> None:
        """Called after every optimiser step (e.g. to update an EMA model)."""

    def selectable(self, epoch: int) -> bool:
        """Whether the model after (1-based) ``epoch`` may become ``best.pt``.

        A method that pre-trains with another loss first (PoiBin's warm-up) excludes those epochs,
        so that its result is a model its own losses trained.
        """
        return True

    @torch.no_grad()
    def infer(self, model: nn.Module, features: dict[str, Tensor]) -> ParseOutput:
        """The inference rule; the default is the model's own output."""
        return model(features)

    def state_dict(self) -> dict[str, Any]:
        if self.video_labels is None:
            return {}
        return {"video_labels_digest": self.video_labels.digest}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        # Only a training run has labels to compare; evaluation reads no label file.
        labels = self.video_labels
        if labels is not None and state.get("video_labels_digest") != labels.digest:
            raise ValueError(
                f"data.video_labels {labels.source} changed since this run started; resume with "
                "the file it started with, or train into a new --out"
            )
