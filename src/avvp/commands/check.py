"""``avvp check``: validate a whole LLP-layout dataset and say what to fix before training.

It runs the data layer's own checks (the ones ``avvp train`` would stop at) over every split,
feature set, feature file and annotation row, but goes on past the first problem: malformed
split or ground-truth files (the first bad row of each), videos in two splits, missing feature
folders and files, and feature files of the wrong shape, dtype or with NaN/inf. It lists in full
the annotation rows that the reference evaluation ignores, which are notes, not problems.
Exit code 0 when nothing needs fixing, 1 when something does (2: the command itself failed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avvp.data.annotations import AudioGroundTruth

# Problems printed per group (a split, the leaks); the rest are counted.
SHOWN = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, type=Path, help="LLP-layout dataset folder to check (required)"
    )
    parser.add_argument(
        "--annotations",
        type=Path,
        default=None,
        help="folder of the AVVP_*.csv files (default: --data)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="config file whose `features` section names the feature sets to check "
        "(default: none: the base config's feature sets)",
    )
    parser.add_argument(
        "--audio-gt",
        default=AudioGroundTruth.V2024.value,
        choices=[member.value for member in AudioGroundTruth],
        help="audio ground truth file whose rows are checked (default: %(default)s)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: shown)"
    )


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from avvp.config import resolve_config
    from avvp.data.annotations import (
        EVAL_SPLITS,
        SPLITS,
        AnnotationError,
        LLPAnnotations,
        WeakLabels,
        split_leaks,
    )
    from avvp.data.dataset import feature_file_problems, missing_feature_folders

    features = resolve_config("han", args.config, [])["features"]
    dims, frames = features["dims"], features["frames"]
    annotation_root = args.data if args.annotations is None else args.annotations
    missing_folders = missing_feature_folders(args.data, feature_dims=dims, feature_frames=frames)
    annotations = LLPAnnotations(annotation_root, args.audio_gt, warn=False, allow_leakage=True)
    present = {name: dim for name, dim in dims.items() if name not in missing_folders}
    present_frames = {name: value for name, value in frames.items() if name in present}

    print(
        f"avvp check: {args.data} (annotations in {annotation_root}, audio ground truth "
        f"{args.audio_gt}, feature sets {', '.join(dims)})"
    )
    total = 0
    for problem in missing_folders.values():
        print(f"  {problem}")
        total += 1

    weak: dict[str, WeakLabels] = {}
    problems: dict[str, list[str]] = {}
    for split in SPLITS:
        try:
            weak[split] = annotations.weak(split)
            problems[split] = []
        except (AnnotationError, FileNotFoundError) as error:
            problems[split] = [str(error)]
    # The dense files are read against every split's videos: only once all split files read.
    ignored: dict[str, None] = {}
    if len(weak) == len(SPLITS):
        for split in EVAL_SPLITS:
            try:
                ignored.update(dict.fromkeys(annotations.dense(split).ignored_rows))
            except (AnnotationError, FileNotFoundError) as error:
                # Both splits read the same ground-truth files: report a bad one once.
                if not any(str(error) in found for found in problems.values()):
                    problems[split].append(str(error))

    files = sum(len(labels) for labels in weak.values()) * len(present)
    with tqdm(total=files, desc="check", unit="file", disable=args.no_progress) as bar:
        for split, labels in weak.items():
            if present:
                problems[split] += feature_file_problems(
                    args.data,
                    split,
                    labels,
                    feature_dims=present,
                    feature_frames=present_frames,
                    advance=bar.update,
                )
    for split in SPLITS:
        found = problems[split]
        videos = f"{len(weak[split])} videos, " if split in weak else ""
        checked = f"{len(present)} feature sets checked, " if split in weak else ""
        verdict = _count(len(found), "problem") if found else "no problems"
        print(f"  {split}: {videos}{checked}{verdict}")
        _print_some(found)
        total += len(found)

    leaks = split_leaks(weak)
    if leaks:
        print(f"  {_count(len(leaks), 'video')} in two splits (a video may be in one split only):")
        _print_some(leaks)
        total += len(leaks)
    if ignored:
        print(
            f"  {_count(len(ignored), 'annotation row')} ignored by the reference evaluation "
            "(notes, not problems: the scores skip them as the reference does):"
        )
        for row in ignored:
            print(f"    {row}")

    if total:
        print(f"{_count(total, 'problem')}: fix them and rerun avvp check")
        return 1
    where = f"--data {args.data}"
    if args.annotations is not None:
        where += f" --annotations {args.annotations}"
    print(f"OK: {args.data} is ready for `avvp train {where}`")
    return 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _print_some(lines: list[str]) -> None:
    for line in lines[:SHOWN]:
        print(f"    {line}")
    if len(lines) > SHOWN:
        print(f"    ... and {len(lines) - SHOWN} more like these")
