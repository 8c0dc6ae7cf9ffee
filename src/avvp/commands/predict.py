"""``avvp predict``: a run's parse of a split as evaluation-format TSVs and probabilities."""

from __future__ import annotations

import argparse
from pathlib import Path

from avvp.commands.common import add_overrides, check_output_folder
from avvp.data.annotations import SPLITS

OUTPUTS = ("pred_audio.tsv", "pred_visual.tsv", "probabilities.npz")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", required=True, type=Path, help="run folder written by `avvp train`"
    )
    parser.add_argument(
        "--data", default=None, help="dataset folder (default: the run's data.root)"
    )
    parser.add_argument(
        "--annotations",
        default=None,
        help="folder of the AVVP_*.csv files (default: the run's data.annotations)",
    )
    parser.add_argument("--split", default="test", choices=SPLITS, help="split to predict")
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help=f"folder for {', '.join(OUTPUTS)} (created if missing; those files are replaced)",
    )
    parser.add_argument(
        "--gate",
        default=None,
        choices=("global", "modality", "none"),
        help="which video-level probability gates the segments (default: the run's eval.gate)",
    )
    parser.add_argument(
        "--threshold",
        default=None,
        type=float,
        help="segment probability threshold (default: the run's eval.threshold)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    check_output_folder(args.out, "--out")

    import numpy as np

    from avvp.evaluation.io import write_predictions
    from avvp.io_utils import atomic_write
    from avvp.training.batches import feature_names
    from avvp.training.data import load_splits
    from avvp.training.evaluate_run import load_run, run_overrides
    from avvp.training.inference import predict_split
    from avvp.training.trainer import resolve_device

    config, model, method = load_run(args.run, args.device, run_overrides(args))
    data = load_splits(config, (args.split,), progress=False)[args.split]
    probabilities = predict_split(
        model, method, data, feature_names(config), resolve_device(args.device)
    )
    pred_audio, pred_visual = probabilities.binarize(config["eval"])
    args.out.mkdir(parents=True, exist_ok=True)
    write_predictions(args.out / "pred_audio.tsv", data.filenames, pred_audio)
    write_predictions(args.out / "pred_visual.tsv", data.filenames, pred_visual)
    arrays = {
        "filenames": np.array(data.filenames),
        "segment_prob_audio": probabilities.segment_prob[:, :, 0],
        "segment_prob_visual": probabilities.segment_prob[:, :, 1],
        "video_prob": probabilities.video_prob,
        "video_prob_audio": probabilities.video_prob_audio,
        "video_prob_visual": probabilities.video_prob_visual,
    }
    atomic_write(
        args.out / "probabilities.npz", lambda handle: np.savez_compressed(handle, **arrays)
    )
    print(f"wrote {len(data)} videos of {args.split} to {args.out}")
    return 0
