"""``avvp plot``: one video's parse by a trained run (or several) as a timeline PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from avvp.data.annotations import EVAL_SPLITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", required=True, type=Path, help="run folder written by `avvp train`"
    )
    parser.add_argument(
        "--video",
        required=True,
        help="YouTube id (first 11 characters of a filename in the split CSV) or full filename",
    )
    parser.add_argument("--split", default="test", choices=EVAL_SPLITS)
    parser.add_argument(
        "--data", default=None, help="dataset folder (default: each run's data.root)"
    )
    parser.add_argument("--annotations", default=None, help="folder of the AVVP_*.csv files")
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument(
        "--compare",
        nargs="+",
        default=[],
        type=Path,
        metavar="RUN",
        help="more run folders whose parses of the video are drawn below the first",
    )
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from avvp.classes import CLASSES
    from avvp.plots import TimelinePanel, save_png, timeline_figure
    from avvp.training.evaluate_run import run_overrides
    from avvp.training.runs import parse_run

    overrides = run_overrides(args)
    parses = [
        parse_run(run_dir, args.split, overrides, args.device, video=args.video)
        for run_dir in [args.run, *args.compare]
    ]
    panels = [
        TimelinePanel(
            title=parse.title,
            gt=np.stack([parse.gt.audio[0], parse.gt.visual[0]]),
            prob=np.moveaxis(parse.probabilities.segment_prob[0], 1, 0),
            pred=np.stack([parse.pred_audio[0], parse.pred_visual[0]]),
        )
        for parse in parses
    ]
    thresholds = {parse.config["eval"]["threshold"] for parse in parses}
    title = f"{args.split} video {parses[0].data.filenames[0]}"
    threshold = thresholds.pop() if len(thresholds) == 1 else None
    figure = timeline_figure(panels, CLASSES, title=title, threshold=threshold)
    save_png(figure, args.out)
    print(f"wrote {args.out}")
    return 0
