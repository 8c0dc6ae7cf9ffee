"""``avvp extract``: video files -> feature files in the LLP layout, a video list and a record.

Exit status 0 when every video is extracted (or was already), 1 when some failed (the summary
names them and why), 2 for a usage error found before any video is read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_FEATURES = "vggish,res152,r2plus1d_18"
SOME_FAILED = 1


def add_weight_arguments(parser: argparse.ArgumentParser) -> None:
    """``--weights``, ``--random-weights`` and ``--device``, shared with ``avvp parse``."""
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--weights",
        default=None,
        type=Path,
        help="folder holding the pretrained weight files (each extractor names the files it "
        "needs and where to get them); required unless --random-weights",
    )
    weights.add_argument(
        "--random-weights",
        action="store_true",
        help="untrained networks, for plumbing tests only: recorded in the outputs so that "
        "nothing made with them passes for real",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (the GPU when there is one), cpu, cuda, cuda:N",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--videos",
        required=True,
        type=Path,
        help="a folder (every video file in it: .mp4, .mkv, .webm, ...) or a .txt list of video "
        "paths, one a line, relative to the list's folder",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="dataset folder to write feats/<name>/<id>.npy, videos.csv and extraction.json "
        "in: new, empty, or one that extract wrote (it resumes)",
    )
    parser.add_argument(
        "--features",
        default=DEFAULT_FEATURES,
        help="comma-separated feature sets to extract (also clip, clap)",
    )
    add_weight_arguments(parser)
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="a keyword option of one extractor, e.g. res152.batch_size=16 (repeatable; see "
        "docs/extraction.md for each extractor's options)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: shown)"
    )


def extractor_options(items: list[str]) -> dict:
    """``["res152.batch_size=16"]`` -> ``{"res152": {"batch_size": 16}}`` (YAML values)."""
    from avvp.config import parse_overrides

    for item in items:
        if "." not in item.split("=", 1)[0]:
            raise ValueError(f"--option {item!r} is not NAME.KEY=VALUE, e.g. res152.batch_size=16")
    return parse_overrides(items)


def run(args: argparse.Namespace) -> int:
    from avvp.extraction.pipeline import extract

    summary = extract(
        args.videos,
        args.out,
        features=args.features,
        weights=args.weights,
        random_weights=args.random_weights,
        device=args.device,
        progress=not args.no_progress,
        options=extractor_options(args.option),
    )
    print(summary)
    if not summary.ok:
        print(
            f"avvp extract: {len(summary.failed)} videos failed (listed above and in "
            f"{args.out / 'extraction.json'}); the others are in {args.out / 'videos.csv'}",
            file=sys.stderr,
        )
        return SOME_FAILED
    return 0
