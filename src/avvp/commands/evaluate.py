"""``avvp evaluate``: score prediction files, or a trained run, with the exact protocol.

File mode scores any tool's parse: ``--pred-audio`` and ``--pred-visual`` in the dense evaluation
format (see ``avvp.evaluation.io``) against the split's ground truth. Run mode (``--run``)
rebuilds a trained model and scores its predictions (``avvp.training.evaluate_run``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avvp.commands.common import add_overrides, check_output_file
from avvp.data.annotations import EVAL_SPLITS, AudioGroundTruth
from avvp.evaluation.metrics import Gate, IoUMode

RUN_ONLY = ("gate", "threshold", "device", "inference", "set")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", type=Path, default=None, help="run folder written by `avvp train` (run mode)"
    )
    parser.add_argument(
        "--pred-audio", type=Path, default=None, help="audio predictions (TSV, file mode)"
    )
    parser.add_argument(
        "--pred-visual", type=Path, default=None, help="visual predictions (TSV, file mode)"
    )
    parser.add_argument(
        "--annotations", default=None, help="folder of the AVVP_*.csv files (default: --data)"
    )
    parser.add_argument(
        "--data",
        default=None,
        help="dataset folder; in file mode it stands for --annotations (the CSVs live there); "
        "default in run mode: the run's data.root",
    )
    parser.add_argument(
        "--split", default="test", choices=EVAL_SPLITS, help="split to score against"
    )
    parser.add_argument(
        "--audio-gt",
        default=None,
        choices=[member.value for member in AudioGroundTruth],
        help="audio ground truth: 2024 (fixed) or pre2024 (what published papers used); "
        "default 2024, or the run's config in run mode",
    )
    parser.add_argument(
        "--iou",
        default=None,
        choices=[member.value for member in IoUMode],
        help="inclusive: event IoU >= 0.5 matches (SPEC, HAN code); exclusive: intersection / "
        "(union + 1e-12) >= 0.5, so IoU = 0.5 misses; default inclusive, or the run's config in "
        "run mode",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the metrics to this .json file"
    )
    run_only = parser.add_argument_group("run mode only")
    run_only.add_argument(
        "--gate",
        default=None,
        choices=[member.value for member in Gate],
        help="which video-level probability gates the segments: global (the reference rule), "
        "modality (each stream its own) or none (default: the run's eval.gate)",
    )
    run_only.add_argument(
        "--threshold",
        default=None,
        type=float,
        help="segment probability threshold (default: the run's eval.threshold)",
    )
    run_only.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default cpu)")
    run_only.add_argument(
        "--inference",
        default=None,
        choices=["prototype", "classifier"],
        help="inference rule (default: the run's own). prototype on a non-PPL run is PPL_Test: "
        "PPL's prototype labels from the run's model, no retraining",
    )
    add_overrides(run_only, "method.selection=per_stream with --inference prototype")


def run(args: argparse.Namespace) -> int:
    if args.json is not None:
        check_output_file(args.json, "--json", ".json")
    if args.run is not None:
        if args.pred_audio is not None or args.pred_visual is not None:
            raise ValueError("give either --run or --pred-audio/--pred-visual, not both")
        from avvp.training.evaluate_run import evaluate_run_command

        return evaluate_run_command(args)
    return _evaluate_files(args)


def _evaluate_files(args: argparse.Namespace) -> int:
    """Score two prediction files against the split's dense ground truth."""
    from avvp.data.annotations import LLPAnnotations
    from avvp.evaluation.checks import warn_if_empty, warn_if_rows_missing
    from avvp.evaluation.io import read_predictions
    from avvp.evaluation.metrics import evaluate, format_table

    if args.pred_audio is None or args.pred_visual is None:
        raise ValueError("file mode needs both --pred-audio and --pred-visual (or give --run)")
    given = [f"--{name}" for name in RUN_ONLY if getattr(args, name) is not None]
    given += ["key=value overrides"] if args.overrides else []
    if given:
        raise ValueError(f"{', '.join(given)} only apply with --run; prediction files are binary")
    root = args.annotations or args.data
    if root is None:
        raise ValueError("file mode needs --annotations DIR (or --data DIR) holding AVVP_*.csv")
    annotations = LLPAnnotations(root, args.audio_gt or AudioGroundTruth.V2024)
    iou = IoUMode.parse(args.iou or IoUMode.INCLUSIVE)
    filenames = annotations.weak(args.split).filenames
    truth = annotations.dense(args.split)
    pred = {}
    for stream, path in (("audio", args.pred_audio), ("visual", args.pred_visual)):
        pred[stream] = read_predictions(path, filenames)
        warn_if_rows_missing(pred[stream], path, args.split)
    warn_if_empty(pred["audio"], pred["visual"], args.split)
    metrics = evaluate(pred["audio"], pred["visual"], truth.audio, truth.visual, iou=iou)
    print(
        f"{args.pred_audio} + {args.pred_visual} on {args.split} ({len(filenames)} videos, "
        f"audio GT {annotations.audio_gt.value}, IoU {iou.value})"
    )
    print(format_table(metrics))
    if args.json is not None:
        from avvp.io_utils import write_json

        write_json(args.json, metrics)
    return 0
