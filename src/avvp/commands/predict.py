"""``avvp predict``: a run's parse of a split, or of unlabelled videos, as TSVs and probabilities.

``--data DIR`` holding ``videos.csv`` (as ``avvp extract`` writes it) and no ``--split``: the
videos listed there, which need no labels and no ground-truth files and may last any number of
seconds. Otherwise the ``--split`` of an LLP-layout folder (its split CSV; the dense ground truth
is not read).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from avvp.commands.common import add_overrides, check_output_folder
from avvp.data.annotations import SPLIT_FILES, SPLITS

OUTPUTS = ("pred_audio.tsv", "pred_visual.tsv", "probabilities.npz")
DEFAULT_SPLIT = "test"


def add_window_argument(parser: argparse.ArgumentParser) -> None:
    """``--window N``, shared with ``avvp parse``."""
    parser.add_argument(
        "--window",
        default=None,
        type=int,
        metavar="SECONDS",
        help="parse a video longer than this in consecutive windows of at most this many "
        "seconds, each as a clip of its own (e.g. 10, the length of LLP's training clips); "
        "default: the whole video in one pass",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", required=True, type=Path, help="run folder written by `avvp train`"
    )
    parser.add_argument(
        "--data",
        default=None,
        help="dataset folder (default: the run's data.root); a folder holding videos.csv, as "
        "`avvp extract` writes, is read without labels unless --split is given",
    )
    parser.add_argument(
        "--annotations",
        default=None,
        help="folder of the AVVP_*.csv files (default: the run's data.annotations)",
    )
    parser.add_argument(
        "--split",
        default=None,
        choices=SPLITS,
        help=f"split to predict (default: {DEFAULT_SPLIT}, unless --data holds videos.csv)",
    )
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
    add_window_argument(parser)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    add_overrides(parser)


def unlabelled_folder(args: argparse.Namespace) -> Path | None:
    """The ``--data`` folder if it is to be read as videos without labels, else None."""
    from avvp.data.dataset import VIDEO_LIST

    if args.split is not None or args.data is None:
        return None
    folder = Path(args.data)
    return folder if (folder / VIDEO_LIST).is_file() else None


def run(args: argparse.Namespace) -> int:
    check_output_folder(args.out, "--out")
    folder = unlabelled_folder(args)
    split = args.split or DEFAULT_SPLIT
    if folder is None and args.data is not None and args.annotations is None:
        _check_split_file(Path(args.data), split)

    from avvp.data.dataset import VIDEO_LIST
    from avvp.extraction.pipeline import warn_if_random_features
    from avvp.training.batches import feature_names
    from avvp.training.data import interactive, load_splits, load_unlabelled
    from avvp.training.evaluate_run import load_run, run_overrides
    from avvp.training.trainer import resolve_device
    from avvp.training.unlabelled import parse_videos, windows

    windows(1, args.window)  # a bad --window fails before the model loads
    config, model, method = load_run(args.run, args.device, run_overrides(args))
    names = feature_names(config)
    if folder is not None:
        warn_if_random_features(folder)
        videos = load_unlabelled(config, folder)
        filenames, features = videos.filenames, videos.features
        what = f"{folder / VIDEO_LIST} (no labels)"
    else:
        data = load_splits(config, (split,), progress=interactive(), dense=False)[split]
        filenames = data.filenames
        features = [{name: data.features[name][row] for name in names} for row in range(len(data))]
        what = split
    parses = parse_videos(
        model,
        method,
        features,
        filenames,
        names,
        config["eval"],
        resolve_device(args.device),
        args.window,
    )
    write_parses(args.out, parses)
    count = f"{len(parses)} video" + ("" if len(parses) == 1 else "s")
    print(f"wrote {count} of {what} to {args.out}")
    return 0


def _check_split_file(folder: Path, split: str) -> None:
    """A --data folder with neither a video list nor the split's CSV: say what it needs."""
    from avvp.data.dataset import VIDEO_LIST

    if folder.is_dir() and not (folder / SPLIT_FILES[split]).is_file():
        raise FileNotFoundError(
            f"--data {folder} holds neither {SPLIT_FILES[split]} (the {split} split) nor "
            f"{VIDEO_LIST} (videos without labels, as `avvp extract --out {folder}` writes it)"
        )


def write_parses(out: Path, parses: Sequence) -> list[Path]:
    """``OUTPUTS`` in ``out`` for :class:`avvp.training.unlabelled.VideoParse` s of any lengths.

    The probability arrays are (V, T, C) with T the longest video's, NaN past each video's end;
    ``segments`` (V,) holds each video's length (all 10 for LLP clips, nothing padded).
    """
    import numpy as np

    from avvp.evaluation.io import write_predictions
    from avvp.io_utils import atomic_write

    lengths = np.array([parse.segments for parse in parses], dtype=np.int64)
    longest = int(lengths.max())

    def padded(key: str, fill: float | bool) -> np.ndarray:
        first = getattr(parses[0], key)
        array = np.full((len(parses), longest, *first.shape[1:]), fill, dtype=first.dtype)
        for row, parse in enumerate(parses):
            array[row, : parse.segments] = getattr(parse, key)
        return array

    filenames = [parse.filename for parse in parses]
    out.mkdir(parents=True, exist_ok=True)
    written = [
        write_predictions(out / "pred_audio.tsv", filenames, padded("pred_audio", False)),
        write_predictions(out / "pred_visual.tsv", filenames, padded("pred_visual", False)),
    ]
    segment_prob = padded("segment_prob", np.nan)
    arrays = {
        "filenames": np.array(filenames),
        "segments": lengths,
        "segment_prob_audio": segment_prob[:, :, 0],
        "segment_prob_visual": segment_prob[:, :, 1],
        **{
            key: np.stack([getattr(parse, key) for parse in parses])
            for key in ("video_prob", "video_prob_audio", "video_prob_visual")
        },
    }
    written.append(
        atomic_write(
            out / "probabilities.npz", lambda handle: np.savez_compressed(handle, **arrays)
        )
    )
    return written
