"""The one training loop every method runs on.

A run folder holds everything needed to understand, resume and evaluate a run:
``config.yaml`` (resolved config), ``meta.json`` (code version, command, environment),
``metrics.csv`` and ``tb/`` (per-epoch losses and validation metrics), ``last.pt`` (full state after
the last finished epoch: a killed run resumes from it with identical results), ``best.pt`` (the
model with the best validation score, used for evaluation and prediction) and, at the end,
``val_metrics.json`` and ``test_metrics.json`` in the evaluation's JSON format.
"""

from __future__ import annotations

import contextlib
import csv
import io
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from avvp.config import Config, with_new_defaults
from avvp.data.annotations import DenseLabels
from avvp.data.dataset import SplitData
from avvp.io_utils import atomic_torch_save, atomic_write_text, write_json
from avvp.methods.base import Method
from avvp.registry import create
from avvp.training import distributed
from avvp.training.batches import feature_names, make_batch
from avvp.training.inference import score_split
from avvp.training.run_info import run_metadata

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
# Settings that may differ between a run and its resumption without changing the results.
RESUMABLE_DIFFERENCES = {("train", "progress"), ("train", "device"), ("train", "num_workers")}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available")
    return device


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


def flatten_metrics(metrics: dict[str, dict[str, float]], prefix: str = "") -> dict[str, float]:
    return {
        f"{prefix}{level}.{name}": value
        for level, values in metrics.items()
        for name, value in values.items()
    }


def metric_value(metrics: dict[str, dict[str, float]], dotted: str) -> float:
    level, name = dotted.split(".")
    try:
        return metrics[level][name]
    except KeyError:
        raise ValueError(
            f"train.select_metric {dotted!r} is not a metric (e.g. segment.type)"
        ) from None


class Trainer:
    """Trains ``config['method']`` on ``data['train']``, validating on ``data['val']``."""

    def __init__(
        self,
        config: Config,
        run_dir: str | Path,
        data: dict[str, SplitData],
        hidden_train_labels: DenseLabels | None = None,
    ):
        self.config = config
        # Diagnostics only (synthetic data): methods may log against them, never train on them.
        self.hidden_train_labels = hidden_train_labels
        self.run_dir = Path(run_dir)
        self.data = data
        self.progress = bool(config["train"]["progress"]) and distributed.is_main_process()
        self.device = distributed.setup(resolve_device(config["train"]["device"]))
        seed_everything(config["seed"])
        self.model = build_model(config).to(self.device)
        self.method: Method = create(
            "method", config["method"]["name"], config=config, train_data=data["train"]
        )
        optim = config["optim"]
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=optim["lr"], weight_decay=optim["weight_decay"]
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=optim["lr_step"], gamma=optim["lr_gamma"]
        )
        self.training_model: nn.Module = self.model
        if distributed.world_size() > 1:
            self.training_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.feature_names = feature_names(config)
        self.epoch = 0  # epochs finished
        self.best_score = -float("inf")
        self.best_epoch = -1
        self.history: list[dict[str, Any]] = []
        self.method.setup(self)

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
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_resumable(state["config"], self.config)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.method.load_state_dict(state["method"])
        self.epoch = state["epoch"]
        self.best_score = state["best_score"]
        self.best_epoch = state["best_epoch"]
        self.history = state["history"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def resume_if_possible(self) -> bool:
        path = self.run_dir / LAST_CHECKPOINT
        if not path.is_file():
            return False
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=False))
        return True

    # ---- loop
    def fit(self) -> dict[str, dict[str, float]]:
        """Train (resuming a killed run where it stopped), then score the best model on test."""
        resumed = self.resume_if_possible()
        if distributed.is_main_process():
            self._write_run_files(resumed)
        writer = self._tensorboard()
        epochs = self.config["optim"]["epochs"]
        if resumed and distributed.is_main_process():
            # Printed even without progress output: a silent resume would hide why a run is short.
            print(f"resuming {self.run_dir} after epoch {self.epoch}/{epochs}")
        try:
            while self.epoch < epochs:
                self._run_epoch(writer)
        finally:
            if writer is not None:
                writer.close()
        return self._finish()

    def _run_epoch(self, writer) -> None:
        epoch = self.epoch
        started = time.perf_counter()
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
                self.save_best(val_metrics)
        logs.update(phases)
        logs["seconds"] = time.perf_counter() - started
        self.epoch = epoch + 1
        self.history.append(logs)
        if distributed.is_main_process():
            atomic_torch_save(self.state_dict(), self.run_dir / LAST_CHECKPOINT)
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
        for start in bar:
            batch = make_batch(train, order[start : start + batch_size], self.feature_names).to(
                self.device
            )
            losses, report = self.method.training_forward(self.training_model, batch)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                values = {name: float(value) for name, value in losses.items()}
                raise FloatingPointError(f"epoch {epoch + 1}: non-finite loss {values}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.method.after_optimizer_step(self)
            values = {f"loss.{name}": value.item() for name, value in losses.items()} | report
            values["loss.total"] = loss.item()
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + value
            bar.set_postfix(loss=f"{values['loss.total']:.4f}")
        return {key: value / max(len(starts), 1) for key, value in totals.items()}

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
        test_metrics: dict[str, dict[str, float]] = {}
        if distributed.is_main_process():
            best = torch.load(
                self.run_dir / BEST_CHECKPOINT, map_location=self.device, weights_only=False
            )
            self.model.load_state_dict(best["model"])
            self.method.load_state_dict(best["method"])
            write_json(self.run_dir / "val_metrics.json", best["val_metrics"])
            if "test" in self.data:
                test_metrics = score_split(
                    self.model, self.method, self.data["test"], self.config, self.device
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
        write_json(meta_path, run_metadata(resumed_from_epoch=self.epoch if resumed else None))

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
        return (
            f"epoch {self.epoch:>3}/{epochs}  loss {logs.get('loss.total', float('nan')):.4f}  "
            f"val {select} {logs.get('val.' + select, float('nan')):.2f}  "
            f"(best {self.best_score:.2f} @ {self.best_epoch})  {logs['seconds']:.1f}s"
        )


@contextlib.contextmanager
def timed(totals: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time of the ``with`` block to ``totals[key]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        totals[key] = totals.get(key, 0.0) + time.perf_counter() - started


def check_resumable(saved: Config, current: Config) -> None:
    """A run resumes only under the config it started with (up to harmless settings); options
    added to avvp since it started count at their defaults."""
    differences = [
        f"{'.'.join(path)}: {old!r} -> {new!r}"
        for path, old, new in _config_differences(with_new_defaults(saved), current)
        if tuple(path) not in RESUMABLE_DIFFERENCES
    ]
    if differences:
        raise ValueError(
            "the run folder holds a run with another config; use a new --out or delete it. "
            "Differences: " + "; ".join(differences)
        )


def _config_differences(old: Any, new: Any, path: tuple[str, ...] = ()):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            yield from _config_differences(old.get(key), new.get(key), (*path, key))
    elif old != new:
        yield path, old, new
