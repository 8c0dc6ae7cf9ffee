"""``avvp plot``: one video's parse by a trained run (or several) as a timeline PNG."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from avvp.commands.common import add_overrides, check_output_file, check_output_folder
from avvp.data.annotations import EVAL_SPLITS

# A config override (``eval.threshold=0.3``), as opposed to a run folder, among --compare's values.
OVERRIDE = re.compile(r"[A-Za-z_][\w.]*=.*")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", required=True, type=Path, help="run folder written by `avvp train`"
    )
    parser.add_argument(
        "--video",
        required=True,
        help="YouTube id (first 11 characters of a filename in the split CSV) or full filename",
    )
    parser.add_argument(
        "--split", default="test", choices=EVAL_SPLITS, help="split the video is in"
    )
    parser.add_argument(
        "--data", default=None, help="dataset folder (default: each run's data.root)"
    )
    parser.add_argument(
        "--annotations",
        default=None,
        help="folder of the AVVP_*.csv files (default: each run's data.annotations)",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="PNG file to write, or a folder (existing, or ending in /) to write VIDEO.png in",
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        default=[],
        type=Path,
        metavar="RUN",
        help="more run folders whose parses of the video are drawn below the first (key=value "
        "after them is still a config override)",
    )
    parser.add_argument(
        "--threshold",
        default=None,
        type=float,
        help="segment probability threshold (default: each run's eval.threshold)",
    )
    parser.add_argument(
        "--gate",
        default=None,
        choices=("global", "modality", "none"),
        help="which video-level probability gates the segments (default: each run's eval.gate)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    # key=value right after --compare RUN ... lands among the runs; it is meant as an override.
    args.overrides += [str(path) for path in args.compare if OVERRIDE.fullmatch(str(path))]
    args.compare = [path for path in args.compare if not OVERRIDE.fullmatch(str(path))]
    into_folder = args.out.endswith(("/", os.sep)) or Path(args.out).is_dir()
    if into_folder:
        check_output_folder(Path(args.out), "--out")
    else:
        check_output_file(Path(args.out), "--out", ".png")

    from avvp.classes import CLASSES
    from avvp.plots import run_name, save_png, timeline_figure
    from avvp.training.evaluate_run import run_overrides
    from avvp.training.runs import parse_run

    overrides = run_overrides(args)
    parses = [
        parse_run(run_dir, args.split, overrides, args.device, video=args.video)
        for run_dir in [args.run, *args.compare]
    ]
    panels = [_panel(parse, run_name(parse.run_dir)) for parse in parses]
    thresholds = {parse.config["eval"]["threshold"] for parse in parses}
    filename = parses[0].data.filenames[0]
    title = f"{args.split} video {filename}"
    threshold = thresholds.pop() if len(thresholds) == 1 else None
    figure = timeline_figure(panels, CLASSES, title=title, threshold=threshold)
    out = save_png(figure, Path(args.out) / f"{filename}.png" if into_folder else args.out)
    print(f"wrote {out}")
    return 0


def _panel(parse, name: str):
    """The timeline panel of a one-video :class:`avvp.training.runs.RunParse`.

    Beside the parse it carries the video-level probability that gates each stream (the global
    one for both under the reference gate) and the segments that gate suppressed.
    """
    import numpy as np

    from avvp.evaluation.metrics import VIDEO_THRESHOLD, Gate
    from avvp.plots import TimelinePanel

    rule = parse.config["eval"]
    gate = Gate.parse(rule["gate"])
    probabilities = parse.probabilities
    prob = np.moveaxis(probabilities.segment_prob[0], 1, 0)
    pred = np.stack([parse.pred_audio[0], parse.pred_visual[0]])
    if gate is Gate.GLOBAL:
        video_prob = np.stack([probabilities.video_prob[0]] * 2)
    else:
        video_prob = np.stack(
            [probabilities.video_prob_audio[0], probabilities.video_prob_visual[0]]
        )
    return TimelinePanel(
        title=f"{parse.config['method']['name']}: {name} "
        f"(threshold {rule['threshold']}, gate {gate.value})",
        gt=np.stack([parse.gt.audio[0], parse.gt.visual[0]]),
        prob=prob,
        pred=pred,
        video_prob=video_prob,
        video_threshold=None if gate is Gate.NONE else VIDEO_THRESHOLD,
        suppressed=(prob >= rule["threshold"]) & ~pred,
    )
