"""``avvp cache``: build (or check) the consolidated memory-mapped feature cache of a dataset.

Training builds the cache on first use anyway; this verb does it ahead of time (e.g. once before
launching several runs or ranks) and reports its size. Feature sets, dimensions and frames per
segment come from the config (``features.dims`` and ``features.frames``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avvp.data.annotations import SPLITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, type=Path, help="LLP-layout dataset folder (required)"
    )
    parser.add_argument(
        "--annotations", default=None, help="folder of the AVVP_*.csv files (default: --data)"
    )
    parser.add_argument(
        "--splits",
        default=",".join(SPLITS),
        help="comma-separated splits to cache (default: %(default)s)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="config file whose `features` section names the sets (default: none: the base "
        "config's feature sets)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: shown)"
    )


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # pragma: no cover


def run(args: argparse.Namespace) -> int:
    from avvp.config import resolve_config
    from avvp.data.dataset import CacheWriteError, build_cache, cache_dir

    splits = [split.strip() for split in args.splits.split(",") if split.strip()]
    unknown = [split for split in splits if split not in SPLITS]
    if not splits or unknown:
        raise ValueError(f"--splits {args.splits!r}: expected a comma-separated subset of {SPLITS}")
    features = resolve_config("han", args.config, [])["features"]
    try:
        infos = build_cache(
            args.data,
            splits,
            feature_dims=features["dims"],
            feature_frames=features["frames"],
            annotations=args.annotations,
            progress=not args.no_progress,
        )
    except CacheWriteError as error:
        print(f"avvp cache: error: {error}", file=sys.stderr)
        return 2
    print(f"feature cache in {cache_dir(args.data)} ({', '.join(features['dims'])})")
    for info in infos:
        state = f"built {', '.join(info.built)}" if info.built else "up to date"
        print(f"  {info.split}: {info.videos} videos, {_size(info.nbytes)} ({state})")
    total = sum(info.nbytes for info in infos)
    print(f"  total: {_size(total)}")
    return 0
