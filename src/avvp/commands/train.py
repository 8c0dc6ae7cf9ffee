"""``avvp train``: train a method, one run per seed, and print the test metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from avvp.io_utils import write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method", default="han", help="registered method name (see --list-methods)"
    )
    parser.add_argument(
        "--data", default=None, help="LLP-layout folder, or 'synthetic' (default from config)"
    )
    parser.add_argument(
        "--annotations", default=None, help="folder of the AVVP_*.csv files (default: --data)"
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="run folder (resumed if it holds a killed run)"
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML file layered over the method preset"
    )
    parser.add_argument(
        "--seeds", default=None, help="comma-separated seeds: one run each in OUT/seed-S"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars or per-epoch lines"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.epochs=5"
    )


def run(args: argparse.Namespace) -> int:
    from avvp.config import resolve_config
    from avvp.evaluation.metrics import format_table
    from avvp.evaluation.summary import format_summary_table, summarize
    from avvp.training import distributed
    from avvp.training.data import load_hidden_train_labels, load_splits
    from avvp.training.trainer import Trainer

    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"data.root={args.data}")
    if args.annotations is not None:
        overrides.append(f"data.annotations={args.annotations}")
    if args.no_progress:
        overrides.append("train.progress=false")
    base = resolve_config(args.method, args.config, overrides)
    seeds = [int(seed) for seed in args.seeds.split(",")] if args.seeds else [base["seed"]]
    data = load_splits(base, progress=base["train"]["progress"])
    hidden = load_hidden_train_labels(base)
    results = []
    for seed in seeds:
        config = {**base, "seed": seed}
        run_dir = args.out / f"seed-{seed}" if args.seeds else args.out
        results.append(Trainer(config, run_dir, data, hidden).fit())
        if distributed.is_main_process():
            print(f"\n{config['method']['name']} seed {seed}: test metrics ({run_dir})")
            print(format_table(results[-1]))
    if distributed.is_main_process() and len(seeds) > 1:
        summary = summarize(results)
        write_json(args.out / "summary.json", {"seeds": seeds, "runs": results, **summary})
        print(f"\n{base['method']['name']}: test metrics over seeds {seeds}")
        print(format_summary_table(summary, len(seeds)))
    distributed.cleanup()
    return 0
