"""The one training loop every method runs on.

A run folder holds everything needed to understand, resume and evaluate a run:
``config.yaml`` (resolved config), ``meta.json`` (code version, command, environment),
``metrics.csv`` and ``tb/`` (per-epoch losses and validation metrics), ``last.pt`` (full state after
the last finished epoch: a killed run resumes from it with identical results), ``best.pt`` (the
model with the best validation score, used for evaluation and prediction) and, at the end,
``val_metrics.json`` and ``test_metrics.json`` in the evaluation's JSON format.

A run may start from another run's weights (``train.init_from``, ``avvp train --init-from RUN``):
its ``best.pt`` model, with a fresh optimiser, schedule and method state; the two models must be
configured alike (``model.*`` and the feature sets the model reads). Only a run's start reads it:
a resumed run continues from its own ``last.pt``.

One process at a time trains in a run folder (:mod:`avvp.training.run_folder`). A resume checks
that the config and the data (a fingerprint of its files) are the ones the run started with; a
failure says which file and how to go on (a damaged checkpoint, a full disk, Ctrl-C, a batch
whose model outputs are not finite).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from avvp.config import Config, resolve_paths, validate_config, with_new_defaults
from avvp.data.annotations import DenseLabels
from avvp.data.dataset import SplitData
from avvp.evaluation.per_video import PER_VIDEO_FILE, write_per_video
from avvp.evaluation.summary import HEADERS, METRICS
from avvp.io_utils import atomic_torch_save, atomic_write_text, write_json
from avvp.methods.base import Batch, Method
from avvp.registry import create
from avvp.training import distributed
from avvp.training.batches import feature_names, make_batch
from avvp.training.inference import evaluate_split, score_split
from avvp.training.run_folder import SAVED_EPOCH_FILE, claim_run_folder
from avvp.training.run_info import run_metadata

LAST_CHECKPOINT = SAVED_EPOCH_FILE
BEST_CHECKPOINT = "best.pt"
# Every file the trainer writes (atomically) into a run folder, besides tb/.
RUN_FILES = (
    LAST_CHECKPOINT,
    BEST_CHECKPOINT,
    "config.yaml",
    "meta.json",
    "metrics.csv",
    "val_metrics.json",
    "test_metrics.json",
    PER_VIDEO_FILE,
)
LAST_KEYS = ("config", "epoch", "model", "optimizer", "scheduler", "method", "history", "rng")
BEST_KEYS = ("config", "epoch", "model", "method", "val_metrics")
LAST_WAY_OUT = "delete it to restart the run from epoch 1, or restore it"
BEST_WAY_OUT = "restore it, or train the run again into a new --out"
# Settings that may differ between a run and its resumption without changing the results.
RESUMABLE_DIFFERENCES = {("train", "progress"), ("train", "device"), ("train", "num_workers")}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read; the message names it and the way out."""


def load_checkpoint(
    path: str | Path, device: torch.device | str, required: Sequence[str], way_out: str
) -> dict[str, Any]:
    """The checkpoint at ``path``; a damaged or foreign file is a :class:`CheckpointError`
    naming it and ``way_out``."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=False)
    except FileNotFoundError:
        raise
    # Unpickling a damaged file fails with almost any exception type (RuntimeError from the zip
    # reader, UnpicklingError, EOFError, UnicodeDecodeError, ...).
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        message = f"{path} is not a readable checkpoint ({reason}); {way_out}"
        raise CheckpointError(message) from error
    missing = [key for key in required if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"{path} is not an avvp checkpoint (it lacks {', '.join(missing)}); {way_out}"
        )
    return checkpoint


def init_checkpoint(source: str | Path) -> Path:
    """The checkpoint ``train.init_from`` names: a run folder's best.pt, or a checkpoint file."""
    path = Path(source)
    return path / BEST_CHECKPOINT if path.is_dir() else path


def model_config(config: Config) -> Config:
    """What decides a model's weights: ``model.*`` and the feature sets it reads (their names,
    dimensions and frames); feature sets the model does not read do not count."""
    from avvp.training.data import model_features

    dims, frames = model_features(config)
    features = config["features"]
    return {
        "model": config["model"],
        "features": {
            "audio": features["audio"],
            "visual": features["visual"],
            "dims": dims,
            "frames": frames,
        },
    }


def load_init_weights(config: Config, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The model weights ``train.init_from`` names, for a run configured by ``config``.

    Errors (before any data is read, when called early) name the source: no or an unreadable
    best.pt, or a model configured otherwise than ``config``'s, with each difference.
    """
    source = config["train"]["init_from"]
    path = init_checkpoint(source)
    flag = "--init-from (train.init_from)"
    if not path.is_file():
        raise FileNotFoundError(
            f"{flag} {source}: no {BEST_CHECKPOINT} there (the run has not finished an epoch that "
            "may be chosen, or the path is wrong); give a trained run folder or its checkpoint"
        )
    way_out = f"give {flag} a trained run whose {BEST_CHECKPOINT} is readable"
    try:
        checkpoint = load_checkpoint(path, device, BEST_KEYS, way_out)
    except CheckpointError as error:
        raise CheckpointError(f"{flag}: {error}") from None
    differences = [
        f"{'.'.join(key)}: {old!r} -> {new!r}"
        for key, old, new in differing_entries(
            model_config(with_new_defaults(checkpoint["config"])), model_config(config)
        )
    ]
    if differences:
        raise ValueError(
            f"{flag} {source}: its model is configured otherwise than this run's "
            f"({path} -> this run): {'; '.join(differences)}. Train with the same model.* and "
            "features, or start from a run of this model"
        )
    return checkpoint["model"]


def metric_label(dotted: str) -> str:
    """``segment.type`` -> ``segment Type@AV``, the metric as the results table names it."""
    level, _, name = dotted.partition(".")
    return f"{level} {dict(zip(METRICS, HEADERS, strict=True)).get(name, name)}"


def clock(seconds: float) -> str:
    """``h:mm:ss`` (``m:ss`` under an hour)."""
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02}:{second:02}" if hours else f"{minute}:{second:02}"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available")
    return device


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), oneDNN's test; elsewhere
    bf16 is emulated, slower than fp32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_precision(precision: str, device: torch.device) -> None:
    """A ValueError naming train.precision when ``device`` cannot compute in it."""
    if precision != "bf16":
        return
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported(including_emulation=False)
        where = torch.cuda.get_device_name(device)
    else:
        supported = device.type == "cpu" and cpu_has_bf16()
        where = "this CPU" if device.type == "cpu" else f"device {device}"
    if not supported:
        raise ValueError(
            f"train.precision=bf16 but {where} has no native bf16 arithmetic; use "
            "train.precision=fp32"
        )


def forward_precision(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a training forward pass runs in: bf16 autocast (matmuls in bf16, the
    pooling and the losses back in fp32, see HAN.forward and avvp.losses) or nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def denormals_flushed() -> bool:
    """Whether this thread flushes subnormal floats to zero: a subnormal times one is then 0."""
    return torch.tensor(1e-40).mul(1.0).item() == 0.0


@contextlib.contextmanager
def flushing_denormals(enabled: bool) -> Iterator[None]:
    """Subnormal floats flushed to zero (torch.set_flush_denormal: x86 FTZ/DAZ, ARM FZ) in this
    thread while the block runs, the earlier mode restored after; nothing when not ``enabled``.

    Why: a confident pooling can drive probabilities and their gradients below 1.2e-38, and
    every matmul of the backward pass that reads such a value runs many times slower (an epoch
    1.29x as long, benchmarks/results/denormal_speed.md). Flushing changes only values below
    that size. The mode is per thread: torch's intra-op threads started before the block keep
    theirs (one training thread is the default, README "Threads")."""
    if not enabled:
        yield
        return
    before = denormals_flushed()
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(before)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(config: Config) -> nn.Module:
    """The model named by ``config['model']``, fed the configured feature sets."""
    options = {key: value for key, value in config["model"].items() if key != "name"}
    features = config["features"]
    return create(
        "model",
        config["model"]["name"],
        feature_dims=features["dims"],
        audio_features=features["audio"],
        visual_features=features["visual"],
        **options,
    )


def build_optimizer(model: nn.Module, config: Config, lr: float | None = None) -> torch.optim.Adam:
    """The run's Adam, fused: one vectorised kernel a step in place of a dozen elementwise
    operations per parameter (a tenth of a CPU step at batch 16). It computes the same update as
    the per-parameter loop to float rounding (tests/test_speed_paths.py); a resumed run keeps the
    implementation its checkpoint was saved with (load_state_dict restores the group settings).
    ``lr`` defaults to ``optim.lr``; a method's restart (PoiBin's refinement) passes its own.
    """
    optim = config["optim"]
    lr = optim["lr"] if lr is None else lr
    return torch.optim.Adam(
        model.parameters(), lr=lr, weight_decay=optim["weight_decay"], fused=True
    )


def flatten_metrics(metrics: dict[str, dict[str, float]], prefix: str = "") -> dict[str, float]:
    return {
        f"{prefix}{level}.{name}": value
        for level, values in metrics.items()
        for name, value in values.items()
    }


def metric_value(metrics: dict[str, dict[str, float]], dotted: str) -> float:
    level, name = dotted.split(".")
    return metrics[level][name]  # validate_config checked train.select_metric


class Trainer:
    """Trains ``config['method']`` on ``data['train']``, validating on ``data['val']``.

    ``data_fingerprint`` (:func:`avvp.training.data.data_fingerprint`) is saved in the
    checkpoints; a resume refuses a run saved with another one unless ``resume_on_changed_data``.
    """

    def __init__(
        self,
        config: Config,
        run_dir: str | Path,
        data: dict[str, SplitData],
        hidden_train_labels: DenseLabels | None = None,
        *,
        data_fingerprint: str | None = None,
        resume_on_changed_data: bool = False,
    ):
        config = resolve_paths(config)
        validate_config(config)
        self.config = config
        self.data_fingerprint = data_fingerprint
        self.resume_on_changed_data = resume_on_changed_data
        # Diagnostics only (synthetic data): methods may log against them, never train on them.
        self.hidden_train_labels = hidden_train_labels
        self.run_dir = Path(run_dir)
        self.data = data
        self.progress = bool(config["train"]["progress"]) and distributed.is_main_process()
        self.device = distributed.setup(resolve_device(config["train"]["device"]))
        check_precision(config["train"]["precision"], self.device)
        seed_everything(config["seed"])
        self.model = build_model(config).to(self.device)
        # Before the method exists, which may copy the model (PPL's momentum model); a run that
        # will resume continues from its own last.pt instead.
        if config["train"]["init_from"] is not None and not self.resumable():
            self.model.load_state_dict(load_init_weights(config, self.device))
            self.note(f"model initialised from {init_checkpoint(config['train']['init_from'])}")
        self.method: Method = create(
            "method", config["method"]["name"], config=config, train_data=data["train"]
        )
        self._new_optimizer(config["optim"]["lr"])
        self.training_model: nn.Module = self.model
        if distributed.world_size() > 1:
            self.training_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.feature_names = feature_names(config)
        self.epoch = 0  # epochs finished
        self.saved_epoch = 0  # epochs finished that last.pt holds
        self.best_score = -float("inf")
        self.best_epoch = -1
        self.history: list[dict[str, Any]] = []
        # (time, epochs finished) when this process started training: the epoch lines' ETA.
        self._started = (time.perf_counter(), 0)
        self.method.setup(self)

    def _new_optimizer(self, lr: float) -> None:
        """A fresh optimiser at ``lr`` and its own schedule from step 0."""
        optim = self.config["optim"]
        self.optimizer = build_optimizer(self.model, self.config, lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=optim["lr_step"], gamma=optim["lr_gamma"]
        )

    # ---- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "method": self.method.state_dict(),
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "data_fingerprint": self.data_fingerprint,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_resumable(state["config"], self.config)
        self._check_data(state.get("data_fingerprint"), state["epoch"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.method.load_state_dict(state["method"])
        self.epoch = self.saved_epoch = state["epoch"]
        self.best_score = state["best_score"]
        self.best_epoch = state["best_epoch"]
        self.history = state["history"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def _check_data(self, saved: str | None, epoch: int) -> None:
        """Refuse to resume on data other than the run's (runs saved before fingerprints
        existed, and trainers given none, resume as they are)."""
        if saved is None or self.data_fingerprint is None or saved == self.data_fingerprint:
            return
        where = f"the data under data.root={self.config['data']['root']}"
        if self.resume_on_changed_data:
            print(f"resuming {self.run_dir} although {where} changed since epoch {epoch}")
            return
        raise ValueError(
            f"{self.run_dir / LAST_CHECKPOINT} was saved (epoch {epoch}) while training on other "
            f"data: feature files or annotations of {where} changed since. Rerun with "
            "--resume-on-changed-data to resume on the data as it is now, or train into a new "
            "--out"
        )

    def resumable(self) -> bool:
        """Whether the run folder holds a run to resume."""
        return (self.run_dir / LAST_CHECKPOINT).is_file()

    def resume_if_possible(self) -> bool:
        path = self.run_dir / LAST_CHECKPOINT
        if not self.resumable():
            return False
        self.load_state_dict(load_checkpoint(path, self.device, LAST_KEYS, LAST_WAY_OUT))
        return True

    # ---- loop
    def fit(self) -> dict[str, dict[str, float]]:
        """Train (resuming a killed run where it stopped), then score the best model on test.

        Holds the run folder (:func:`~avvp.training.run_folder.claim_run_folder`) throughout,
        and trains with :func:`training_threads`.
        """
        with claim_run_folder(self.run_dir, RUN_FILES), training_threads():
            return self._fit()

    def _fit(self) -> dict[str, dict[str, float]]:
        resumed = self.resume_if_possible()
        epochs = self.config["optim"]["epochs"]
        finished = resumed and self.epoch >= epochs
        if distributed.is_main_process():
            # Printed even without progress output: a silent resume would hide why a run is short.
            if finished:
                print(
                    f"{self.run_dir} is finished ({epochs} epochs): nothing trained; its test "
                    f"scores come from {BEST_CHECKPOINT} (epoch {self.best_epoch})"
                )
            else:
                with self._saving():
                    self._write_run_files(resumed)
                if resumed:
                    print(f"resuming {self.run_dir} after epoch {self.epoch}/{epochs}")
        writer = None if finished else self._tensorboard()
        self._started = (time.perf_counter(), self.epoch)
        try:
            while self.epoch < epochs:
                self._run_epoch(writer)
        except KeyboardInterrupt:
            message = f"{self._stopped()}; rerun the same command to {self._next()}"
            raise KeyboardInterrupt(message) from None
        finally:
            if writer is not None:
                writer.close()
        try:
            return self._finish()
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"after all {epochs} epochs, while scoring the test split; rerun the same "
                "command to score it"
            ) from None

    def _stopped(self) -> str:
        epochs = self.config["optim"]["epochs"]
        if self.saved_epoch == 0:
            return f"before epoch 1 of {epochs} finished"
        return f"after epoch {self.saved_epoch} of {epochs}"

    def _next(self) -> str:
        """What rerunning the same command does now."""
        if self.saved_epoch == 0:
            return "start the run again"
        return f"resume from epoch {self.saved_epoch + 1}"

    @contextlib.contextmanager
    def _saving(self) -> Iterator[None]:
        """Writes into the run folder: a failure (a full disk) says how the run goes on."""
        try:
            yield
        except OSError as error:
            hinted = type(error)(
                f"{error}; free space (or make {self.run_dir} writable) and rerun the same "
                f"command to {self._next()}"
            )
            hinted.errno = error.errno
            raise hinted from error

    def note(self, message: str) -> None:
        """One line about long work outside the batch loop (pseudo labels, an E-step, test
        scoring); shown only with progress output."""
        if self.progress:
            print(message, flush=True)

    def _run_epoch(self, writer) -> None:
        epoch = self.epoch
        started = time.perf_counter()
        # A method that pre-trains in-run restarts the optimiser as a run refining another would.
        restart_lr = self.method.optimizer_restart_lr(epoch)
        if restart_lr is not None:
            self._new_optimizer(restart_lr)
        logs: dict[str, float] = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
        # Per-phase wall time, so a method's between-epoch work (pseudo labels, EM) shows its cost.
        phases = {"seconds.method": 0.0, "seconds.train": 0.0, "seconds.val": 0.0}
        with timed(phases, "seconds.method"):
            logs.update(self.method.on_epoch_start(self, epoch))
        with timed(phases, "seconds.train"):
            logs.update(self.train_one_epoch(epoch))
        with timed(phases, "seconds.method"):
            logs.update(self.method.on_epoch_end(self, epoch))
        self.scheduler.step()
        if distributed.is_main_process():
            with timed(phases, "seconds.val"):
                val_metrics = score_split(
                    self.model, self.method, self.data["val"], self.config, self.device
                )
            logs.update(flatten_metrics(val_metrics, "val."))
            score = metric_value(val_metrics, self.config["train"]["select_metric"])
            if self.method.selectable(epoch + 1) and score > self.best_score:
                self.best_score, self.best_epoch = score, epoch + 1
                with self._saving():
                    self.save_best(val_metrics)
        logs.update(phases)
        logs["seconds"] = time.perf_counter() - started
        self.epoch = epoch + 1
        self.history.append(logs)
        if distributed.is_main_process():
            with self._saving():
                atomic_torch_save(self.state_dict(), self.run_dir / LAST_CHECKPOINT)
                self.saved_epoch = self.epoch
                self._write_metrics_csv()
            if writer is not None:
                for key, value in logs.items():
                    if key != "epoch":
                        writer.add_scalar(key.replace(".", "/"), value, epoch + 1)
                writer.flush()
            if self.progress:
                print(self._epoch_line(logs))
        distributed.barrier()

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        train = self.data["train"]
        sampler = DistributedSampler(
            range(len(train)),
            num_replicas=distributed.world_size(),
            rank=distributed.rank(),
            shuffle=True,
            seed=self.config["seed"],
        )
        sampler.set_epoch(epoch)
        order = np.fromiter(sampler, dtype=np.int64)
        batch_size = self.config["optim"]["batch_size"]
        starts = range(0, len(order), batch_size)
        totals: dict[str, float] = {}
        bar = tqdm(
            starts, desc=f"epoch {epoch + 1}", leave=False, disable=not self.progress, unit="batch"
        )
        with flushing_denormals(self.config["train"]["flush_denormal"]):
            for number, start in enumerate(bar, 1):
                batch = make_batch(train, order[start : start + batch_size], self.feature_names)
                values = self._train_step(
                    batch.to(self.device), f"epoch {epoch + 1}, batch {number} of {len(starts)}"
                )
                for key, value in values.items():
                    totals[key] = totals.get(key, 0.0) + value
                bar.set_postfix(loss=f"{values['loss.total']:.4f}")
        return {key: value / max(len(starts), 1) for key, value in totals.items()}

    def _train_step(self, batch: Batch, where: str) -> dict[str, float]:
        """One optimiser step on ``batch``; its losses and the method's report. ``where`` names
        the batch in the error a non-finite output or loss raises."""
        try:
            with forward_precision(self.config["train"]["precision"], self.device):
                losses, report = self.method.training_forward(self.training_model, batch)
        except RuntimeError as error:
            # torch's BCE rejects NaN probabilities before any loss exists.
            rows = self._non_finite_rows(batch)
            if not rows:
                raise
            raise FloatingPointError(
                self._non_finite_message(where, "the model's outputs are", batch, rows)
            ) from error
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            values = {name: float(value) for name, value in losses.items()}
            rows = self._non_finite_rows(batch) or list(range(len(batch.index)))
            raise FloatingPointError(
                self._non_finite_message(where, f"the loss {values} is", batch, rows)
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.method.after_optimizer_step(self)
        values = {f"loss.{name}": value.item() for name, value in losses.items()} | report
        values["loss.total"] = loss.item()
        return values

    @torch.no_grad()
    def _non_finite_rows(self, batch: Batch) -> list[int]:
        """Rows of ``batch`` whose model outputs hold NaN or inf."""
        output = self.model(batch.features)
        finite = torch.isfinite(output.segment_prob.flatten(1)).all(dim=1)
        finite &= torch.isfinite(output.video_prob).all(dim=1)
        return torch.nonzero(~finite).flatten().tolist()

    def _non_finite_message(self, where: str, what: str, batch: Batch, rows: list[int]) -> str:
        train = self.data["train"]
        videos = []
        for row in rows:
            index = int(batch.index[row])
            largest, name = max(
                (float(np.abs(train.features[name][index]).max()), name)
                for name in self.feature_names
            )
            videos.append(f"{train.video_ids[index]} (largest |feature| {largest:.3g}, {name})")
        return (
            f"{where}: {what} not finite (NaN or inf) for {len(rows)} of the batch's "
            f"{len(batch.index)} videos: {', '.join(videos)}. Check their feature files (finite "
            "but huge values pass the data checks); if every video of the batch is affected, "
            "lower optim.lr"
        )

    def save_best(self, val_metrics: dict[str, dict[str, float]]) -> None:
        checkpoint = {
            "config": self.config,
            "epoch": self.epoch + 1,
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "val_metrics": val_metrics,
        }
        atomic_torch_save(checkpoint, self.run_dir / BEST_CHECKPOINT)

    def _finish(self) -> dict[str, dict[str, float]]:
        # Training is over and last.pt holds its state: Adam's moments and the last gradients
        # (three copies of the weights) would otherwise be the peak memory of test scoring.
        self.optimizer.state.clear()
        self.optimizer.zero_grad(set_to_none=True)
        test_metrics: dict[str, dict[str, float]] = {}
        if distributed.is_main_process():
            path = self.run_dir / BEST_CHECKPOINT
            if not path.is_file():
                select = metric_label(self.config["train"]["select_metric"])
                raise FileNotFoundError(
                    f"{path} was never written: no epoch that may be chosen had a val {select} "
                    f"score (metrics.csv in {self.run_dir} shows them)"
                )
            best = load_checkpoint(path, self.device, BEST_KEYS, BEST_WAY_OUT)
            self.model.load_state_dict(best["model"])
            self.method.load_state_dict(best["method"])
            with self._saving():
                write_json(self.run_dir / "val_metrics.json", best["val_metrics"])
            if "test" in self.data:
                self.note(
                    f"scoring {path} (epoch {best['epoch']}) on the test split "
                    f"({len(self.data['test'])} videos)"
                )
                test = evaluate_split(
                    self.model,
                    self.method,
                    self.data["test"],
                    self.config,
                    self.device,
                    warn_empty=True,
                )
                test_metrics = test.metrics
                with self._saving():
                    # Before test_metrics.json, which marks a finished run: a finished run has
                    # both (the benchmark suite's bootstrap resamples these per-video scores).
                    write_per_video(
                        self.run_dir / PER_VIDEO_FILE, test, self.data["test"].filenames
                    )
                    write_json(self.run_dir / "test_metrics.json", test_metrics)
        distributed.barrier()
        return test_metrics

    # ---- run files
    def _write_run_files(self, resumed: bool) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            self.run_dir / "config.yaml", yaml.safe_dump(self.config, sort_keys=False)
        )
        meta_path = self.run_dir / "meta.json"
        meta = run_metadata(resumed_from_epoch=self.epoch if resumed else None)
        if resumed and meta_path.is_file():
            # The sessions before this one, the first with the run's original start and code.
            earlier = json.loads(meta_path.read_text(encoding="utf-8"))
            meta["earlier_sessions"] = [*earlier.pop("earlier_sessions", []), earlier]
        write_json(meta_path, meta)

    def _tensorboard(self):
        if not distributed.is_main_process():
            return None
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run logged after its last checkpoint.
        return SummaryWriter(str(self.run_dir / "tb"), purge_step=self.epoch + 1)

    def _write_metrics_csv(self) -> None:
        columns = list(dict.fromkeys(key for row in self.history for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(self.run_dir / "metrics.csv", buffer.getvalue())

    def _epoch_line(self, logs: dict[str, float]) -> str:
        epochs = self.config["optim"]["epochs"]
        select = self.config["train"]["select_metric"]
        started, first_epoch = self._started
        elapsed = time.perf_counter() - started
        remaining = elapsed / (self.epoch - first_epoch) * (epochs - self.epoch)
        return (
            f"epoch {self.epoch:>3}/{epochs}  seed {self.config['seed']}  "
            f"loss {logs.get('loss.total', float('nan')):.4f}  "
            f"val {metric_label(select)} {logs.get('val.' + select, float('nan')):.2f}  "
            f"(best {self.best_score:.2f} @ {self.best_epoch})  {logs['seconds']:.1f}s  "
            f"elapsed {clock(elapsed)}  ETA {clock(remaining)}"
        )


@contextlib.contextmanager
def timed(totals: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time of the ``with`` block to ``totals[key]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        totals[key] = totals.get(key, 0.0) + time.perf_counter() - started


@contextlib.contextmanager
def training_threads() -> Iterator[None]:
    """One CPU thread for the ``with`` block unless OMP_NUM_THREADS says otherwise.

    HAN's matmuls (160 rows at batch 16) gain little from a second thread, and torch's OpenMP
    threads spin while they wait: next to any other busy process, two threads ran a training
    step up to ten times slower than one (README, "Threads"). Several runs at once, one thread
    each, use several cores well.
    """
    if "OMP_NUM_THREADS" in os.environ:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check_resumable(saved: Config, current: Config) -> None:
    """A run resumes only under the config it started with (up to harmless settings); options
    added to avvp since it started count at their defaults."""
    differences = [
        f"{'.'.join(path)}: {old!r} -> {new!r}"
        # Paths resolved: runs saved before avvp resolved them hold them as typed.
        for path, old, new in differing_entries(
            resolve_paths(with_new_defaults(saved)), resolve_paths(current)
        )
        if tuple(path) not in RESUMABLE_DIFFERENCES
    ]
    if differences:
        raise ValueError(
            "the run folder holds a run with another config; use a new --out or delete it. "
            "Differences: " + "; ".join(differences)
        )


def differing_entries(
    old: Any, new: Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """(key path, old value, new value) of every leaf where two nested configs differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            yield from differing_entries(old.get(key), new.get(key), (*path, key))
    elif old != new:
        yield path, old, new
