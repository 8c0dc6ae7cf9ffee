"""Rebuilding a trained run from its best checkpoint alone, and scoring or predicting with it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from avvp.config import (
    SYNTHETIC,
    Config,
    merge,
    parse_overrides,
    validate_config,
    with_new_defaults,
)
from avvp.io_utils import write_json
from avvp.methods.base import Method
from avvp.registry import create
from avvp.training.trainer import (
    BEST_CHECKPOINT,
    BEST_KEYS,
    BEST_WAY_OUT,
    build_model,
    load_checkpoint,
    resolve_device,
)

# Data paths a run's saved config holds, and the flag that overrides each.
DATA_PATH_FLAGS = {"root": "--data", "annotations": "--annotations"}


def load_run(
    run_dir: str | Path, device: str = "cpu", overrides: list[str] = (), check_data: bool = True
) -> tuple[Config, nn.Module, Method]:
    """(config, model, method) of a run's best checkpoint; ``overrides`` adjust data or eval.

    ``check_data=False`` for callers that bring their own features (the Python API): then the
    data folder the run was trained on need not exist here."""
    return _rebuild(_best_checkpoint(run_dir, device), device, overrides, run_dir, check_data)


def _best_checkpoint(run_dir: str | Path, device: str) -> dict:
    path = Path(run_dir) / BEST_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: is {run_dir} a finished or running `avvp train` run?"
        )
    return load_checkpoint(path, resolve_device(device), BEST_KEYS, BEST_WAY_OUT)


def check_saved_data_paths(saved: Config, config: Config, run_dir: str | Path) -> None:
    """A data folder that the run's saved config names but that is gone (moved, or saved
    relative to another directory) is an error naming the config and the override."""
    for key, flag in DATA_PATH_FLAGS.items():
        value = config["data"][key]
        if value in (None, SYNTHETIC) or value != saved["data"].get(key) or Path(value).exists():
            continue
        raise FileNotFoundError(
            f"{Path(run_dir) / 'config.yaml'} has data.{key}={value}, which does not exist; "
            f"pass data.{key}=DIR (or {flag} DIR) to point to it"
        )


def _rebuild(
    checkpoint: dict,
    device: str,
    overrides: list[str],
    run_dir: str | Path,
    check_data: bool = True,
) -> tuple[Config, nn.Module, Method]:
    saved = with_new_defaults(checkpoint["config"])
    config = merge(saved, parse_overrides(overrides), "")
    validate_config(config, training=False)
    if check_data:
        check_saved_data_paths(saved, config, run_dir)
    model = build_model(config)
    model.load_state_dict(checkpoint["model"])
    model.to(resolve_device(device)).eval()
    method: Method = create("method", config["method"]["name"], config=config, train_data=None)
    method.load_state_dict(checkpoint["method"])
    return config, model, method


def load_run_for_inference(
    run_dir: str | Path, device: str, overrides: list[str], inference: str | None
) -> tuple[Config, nn.Module, Method]:
    """:func:`load_run` with the inference rule ``prototype`` or ``classifier`` (None: the run's).

    ``prototype`` on a run of another method is PPL_Test (papers 000/001, Table 3): prototypes
    from the run's own model on the training split, no retraining; ``overrides`` may then set
    PPL's options (``method.selection=per_stream``). ``classifier`` is the model's segment
    probabilities, which every method but PPL infers with already.
    """
    checkpoint = _best_checkpoint(run_dir, device)
    is_ppl = checkpoint["config"]["method"]["name"] == "ppl"
    if is_ppl and inference is not None:
        return _rebuild(checkpoint, device, [*overrides, f"method.inference={inference}"], run_dir)
    if inference == "prototype":
        from avvp.methods.ppl import ppl_test_method

        return ppl_test_method(run_dir, device, overrides)
    return _rebuild(checkpoint, device, overrides, run_dir)


def run_overrides(args: argparse.Namespace) -> list[str]:
    """Config overrides from the evaluate/predict command-line flags that were given."""
    flags = {
        "data": "data.root",
        "annotations": "data.annotations",
        "audio_gt": "data.audio_gt",
        "iou": "eval.iou",
        "gate": "eval.gate",
        "threshold": "eval.threshold",
    }
    given = [
        f"{key}={getattr(args, flag)}"
        for flag, key in flags.items()
        if getattr(args, flag, None) is not None
    ]
    return [*given, *(getattr(args, "set", None) or []), *getattr(args, "overrides", [])]


def score_run(
    run_dir: str | Path,
    split: str,
    overrides: Sequence[str] = (),
    device: str = "cpu",
    inference: str | None = None,
) -> tuple[Config, dict[str, dict[str, float]]]:
    """A run's best.pt on ``split``: model -> predictions -> metrics; (its config, metrics)."""
    from avvp.training.data import interactive, load_splits
    from avvp.training.inference import score_split

    config, model, method = load_run_for_inference(run_dir, device, list(overrides), inference)
    data = load_splits(config, (split,), progress=interactive())[split]
    metrics = score_split(model, method, data, config, resolve_device(device), warn_empty=True)
    return config, metrics


def evaluate_run_command(args: argparse.Namespace) -> int:
    """``avvp evaluate --run RUN --split test``: model -> predictions -> metrics."""
    from avvp.evaluation.metrics import format_table

    device = getattr(args, "device", None) or "cpu"
    config, metrics = score_run(
        args.run, args.split, run_overrides(args), device, getattr(args, "inference", None)
    )
    method_name, audio_gt = config["method"]["name"], config["data"]["audio_gt"]
    print(f"{args.run} on {args.split} ({method_name}, audio GT {audio_gt})")
    print(format_table(metrics))
    if getattr(args, "json", None):
        write_json(args.json, metrics)
    return 0
