"""The plug-in interface between a training method and the one trainer.

The trainer owns the loop, the optimiser, checkpoints, validation and logging. A method says what
one training step computes (``training_forward`` returns named losses that the trainer sums, and a
report of floats to log), what happens between epochs (pseudo-label refresh, EM steps), after each
optimiser step (EMA updates), and how to infer. Methods keep per-video state (e.g. PoiBin's tau)
indexed by the position of the video in the training split; ``state_dict`` makes it survive resume.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from avvp.config import Config, Rule, method_problems, number, raise_problems
from avvp.losses import attentive_mil_loss
from avvp.models.base import ParseOutput

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


class Method:
    """Plain HAN training: the attentive MIL loss on weak labels. Other methods subclass this."""

    # What each option of the method's preset accepts; ``avvp.config.validate_config`` checks
    # them before a run reads any data. Subclasses extend it with their own options.
    OPTIONS: ClassVar[Mapping[str, Rule]] = {"visual_label_smoothing": number(0, 1)}

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

    def setup(self, trainer: Trainer) -> None:
        """Called once the model, optimiser and device exist, before any resume."""

    def training_forward(
        self, model: nn.Module, batch: Batch
    ) -> tuple[dict[str, Tensor], dict[str, float]]:
        output = model(batch.features)
        loss = attentive_mil_loss(
            output, batch.weak, self.options.get("visual_label_smoothing", 0.1)
        )
        return {"mil": loss}, {}

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        return {}

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        return {}

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
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
