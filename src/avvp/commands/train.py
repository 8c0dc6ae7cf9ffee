"""``avvp train``: train a method, one run per seed, and print the test metrics.

Everything that can be checked without the data is checked first (flags, config values, the run
folder and its lock), so a mistake costs seconds, not a data load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from avvp.config import LARGEST_SEED, method_presets
from avvp.io_utils import write_json

SUMMARY_FILE = "summary.json"
SUMMARY_LOCK = "summary.json.lock"
# How a run was executed, not what it trained: seed runs that differ only here are summarised
# together (each seed has its own init_from run; processes may run on other devices).
EXECUTION_KEYS = ("seed", "train.device", "train.num_workers", "train.progress", "train.init_from")


def finished_seed_runs(out: Path, config: Mapping[str, Any]) -> tuple[list[int], list[dict]]:
    """(seeds, test metrics) of every finished ``out/seed-S`` run whose config is ``config`` but
    for :data:`EXECUTION_KEYS`, by seed: the runs a summary of ``out`` averages."""
    import json

    import yaml

    from avvp.config import with_new_defaults
    from avvp.training.runs import SEED_FOLDER
    from avvp.training.trainer import differing_entries

    ignored = {tuple(key.split(".")) for key in EXECUTION_KEYS}
    found = []
    for folder in out.iterdir():
        match = SEED_FOLDER.fullmatch(folder.name)
        metrics = folder / "test_metrics.json"
        if match is None or not metrics.is_file() or not (folder / "config.yaml").is_file():
            continue
        saved = with_new_defaults(yaml.safe_load((folder / "config.yaml").read_text()))
        if all(path in ignored for path, _, _ in differing_entries(saved, config)):
            found.append((int(match.group(1)), json.loads(metrics.read_text())))
    found.sort(key=lambda pair: pair[0])
    return [seed for seed, _ in found], [metrics for _, metrics in found]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method",
        default="han",
        help=f"method to train: {', '.join(method_presets())} (default: han)",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="dataset: an LLP-layout folder, or 'synthetic' for the built-in synthetic set "
        "(default: the config's data.root, which is 'synthetic')",
    )
    parser.add_argument(
        "--annotations",
        default=None,
        help="folder of the AVVP_*.csv files (default: the --data folder)",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="run folder (required); rerunning into it resumes a killed run",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="YAML file layered over the method preset, or recipe:NAME for a packaged one "
        "(e.g. recipe:poibin_refine) (default: none)",
    )
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma-separated distinct seeds, one run each in OUT/seed-S (default: one run of "
        "the config's seed, 1, in OUT)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars, per-epoch lines or notes on long steps (default: shown)",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        metavar="RUN",
        help="start the model from RUN's best.pt weights (fresh optimiser and schedule; RUN's "
        "model config must match); with --seeds, a folder of seed-S runs gives each seed its "
        "own. Recorded as train.init_from (default: random initialisation)",
    )
    parser.add_argument(
        "--resume-on-changed-data",
        action="store_true",
        help="resume a killed run although its data changed since it started (default: refuse)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. optim.epochs=5 (default: none)",
    )


def parse_seeds(text: str) -> list[int]:
    """``--seeds 1,2,3`` -> [1, 2, 3]; an error naming the flag unless distinct valid seeds."""
    example = "e.g. --seeds 1,2,3"
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--seeds {text!r}: give comma-separated whole numbers, {example}"
        ) from None
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ValueError(
            f"--seeds {text!r} repeats {', '.join(map(str, repeated))}: each seed is one run "
            f"folder, give distinct seeds, {example}"
        )
    outside = [seed for seed in seeds if not 0 <= seed <= LARGEST_SEED]
    if outside:
        raise ValueError(f"--seeds {text!r}: seeds must be in [0, {LARGEST_SEED}], got {outside}")
    return seeds


def init_sources(run: Path, seeds: list[int] | None) -> list[Path]:
    """What each run starts from with ``--init-from RUN``: RUN itself, or with --seeds and no
    RUN/best.pt, RUN/seed-S for each seed S (all of them, or it is an error)."""
    from avvp.training.trainer import BEST_CHECKPOINT, init_checkpoint

    if seeds is None or init_checkpoint(run).is_file():
        return [run] * (1 if seeds is None else len(seeds))
    per_seed = [run / f"seed-{seed}" for seed in seeds]
    missing = [str(path) for path in per_seed if not (path / BEST_CHECKPOINT).is_file()]
    if len(missing) == len(per_seed):
        return [run] * len(seeds)  # no seed folders either: checking RUN says what is missing
    if missing:
        raise FileNotFoundError(
            f"--init-from {run}: no {BEST_CHECKPOINT} in {', '.join(missing)}; train those seeds "
            "first, or give --seeds only the seeds RUN has"
        )
    return per_seed


def run(args: argparse.Namespace) -> int:
    from avvp.config import SYNTHETIC, resolve_config, resolve_paths, validate_config
    from avvp.evaluation.metrics import format_table
    from avvp.evaluation.summary import format_summary_table, summarize
    from avvp.registry import get
    from avvp.training import distributed
    from avvp.training.data import (
        data_announcement,
        data_fingerprint,
        data_label,
        describe_data,
        load_hidden_train_labels,
        load_splits,
    )
    from avvp.training.run_folder import claim_run_folder, refuse_foreign_folder
    from avvp.training.trainer import (
        BEST_CHECKPOINT,
        LAST_CHECKPOINT,
        RUN_FILES,
        Trainer,
        init_checkpoint,
        load_init_weights,
        resolve_device,
    )

    seeds = None if args.seeds is None else parse_seeds(args.seeds)
    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"data.root={args.data}")
    if args.annotations is not None:
        overrides.append(f"data.annotations={args.annotations}")
    if args.no_progress:
        overrides.append("train.progress=false")
    base = resolve_paths(resolve_config(args.method, args.config, overrides))
    configs = [base] if seeds is None else [{**base, "seed": seed} for seed in seeds]
    run_dirs = [args.out] if seeds is None else [args.out / f"seed-{seed}" for seed in seeds]
    if args.init_from is not None:
        sources = init_sources(args.init_from, seeds)
        configs = [
            {**config, "train": {**config["train"], "init_from": str(source)}}
            for config, source in zip(configs, sources, strict=True)
        ]
        configs = [resolve_paths(config) for config in configs]
    for config in configs:
        validate_config(config)
    if base["data"]["root"] != SYNTHETIC:
        from avvp.extraction.pipeline import warn_if_random_features

        warn_if_random_features(Path(base["data"]["root"]))
    resolve_device(base["train"]["device"])  # no GPU is an error now, not after the data load
    for config, run_dir in zip(configs, run_dirs, strict=True):
        source = config["train"]["init_from"]
        if source is None:
            continue
        if init_checkpoint(source).resolve() == (run_dir / BEST_CHECKPOINT).resolve():
            raise ValueError(
                f"--init-from (train.init_from) {source} is this run's own folder; give another "
                "run, or another --out"
            )
        # A run that will resume continues from its own last.pt and reads no init weights.
        if not (run_dir / LAST_CHECKPOINT).is_file():
            load_init_weights(config)
    # Before torchrun's process group exists, the rank comes from its environment.
    main = os.environ.get("RANK", "0") == "0"
    method = base["method"]["name"]
    rule = get("method", method).checkpoint_rule(base)
    numbers = f"F1 in % (higher is better) of {BEST_CHECKPOINT}, {rule}"
    if seeds is not None:
        refuse_foreign_folder(args.out, (SUMMARY_FILE, "seed-*"))
    with contextlib.ExitStack() as held:
        # Every run folder is held from the start, so a clash shows before the data load; other
        # processes may train other seeds of the same --out meanwhile.
        for run_dir in run_dirs:
            held.enter_context(claim_run_folder(run_dir, RUN_FILES))
        announcement = data_announcement(base)
        if main and announcement:
            print(announcement, flush=True)
        data = load_splits(base, progress=base["train"]["progress"])
        hidden = load_hidden_train_labels(base)
        fingerprint = data_fingerprint(base)
        if main:
            print(describe_data(base, data), flush=True)
        results = []
        for config, run_dir in zip(configs, run_dirs, strict=True):
            trainer = Trainer(
                config,
                run_dir,
                data,
                hidden,
                data_fingerprint=fingerprint,
                resume_on_changed_data=args.resume_on_changed_data,
            )
            results.append(trainer.fit())
            if distributed.is_main_process():
                epochs = config["optim"]["epochs"]
                print(
                    f"\n{method} seed {config['seed']}, test split of {data_label(config)} "
                    f"({run_dir})\n{numbers} (epoch {trainer.best_epoch} of {epochs}):"
                )
                print(format_table(results[-1]))
        if distributed.is_main_process() and seeds is not None:
            # Other processes may train other seeds into the same --out: the summary covers
            # every finished seed run of this config, written under a lock by whoever finishes
            # last with all of them in view.
            with FileLock(args.out / SUMMARY_LOCK):
                found, results = finished_seed_runs(args.out, base)
                if len(found) > 1:
                    summary = summarize(results)
                    write_json(
                        args.out / SUMMARY_FILE, {"seeds": found, "runs": results, **summary}
                    )
            if len(found) > 1:
                print(
                    f"\n{method} over seeds {', '.join(map(str, found))}, test split of "
                    f"{data_label(base)} ({args.out})\n{numbers}, mean ± std over the "
                    f"{len(found)} runs:"
                )
                print(format_summary_table(summary, len(found)))
    distributed.cleanup()
    return 0
