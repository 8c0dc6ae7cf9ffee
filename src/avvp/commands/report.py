"""``avvp report``: an HTML and a markdown report of trained runs, side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from avvp.commands.common import check_output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN",
        help="run folders written by `avvp train --out` (with or without --seeds)",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="folder for index.html, report.md and the PNGs"
    )
    parser.add_argument(
        "--data", default=None, help="dataset folder (default: each run's data.root)"
    )
    parser.add_argument(
        "--annotations",
        default=None,
        help="folder of the AVVP_*.csv files (default: each run's data.annotations)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")


def run(args: argparse.Namespace) -> int:
    check_output_folder(args.out, "--out")

    from avvp.report import write_report
    from avvp.training.evaluate_run import run_overrides

    html_path, markdown_path = write_report(args.runs, args.out, run_overrides(args), args.device)
    print(f"wrote {html_path} and {markdown_path}")
    return 0
