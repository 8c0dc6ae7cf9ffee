"""``avvp import-han``: an avvp run folder from a checkpoint of the official HAN code."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        type=Path,
        metavar="CHECKPOINT.pt",
        help="state dict of MMIL_Net saved by the official main_avvp.py (YapengTian/AVVP-ECCV20)",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="new (or empty) folder for the run: config.yaml, meta.json, best.pt",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="LLP-layout dataset folder recorded as the run's data.root (default: the synthetic "
        "set; evaluate, predict and plot also take --data)",
    )
    parser.add_argument(
        "--annotations",
        default=None,
        help="folder of the AVVP_*.csv files recorded as data.annotations (default: --data)",
    )


def run(args: argparse.Namespace) -> int:
    from avvp.official import import_han

    out = import_han(args.checkpoint, args.out, args.data, args.annotations)
    print(f"wrote {out} (config.yaml, meta.json, best.pt) from {args.checkpoint}")
    if args.data is None:
        print(f"its data.root is the synthetic set: pass --data LLP to `avvp evaluate --run {out}`")
    return 0
