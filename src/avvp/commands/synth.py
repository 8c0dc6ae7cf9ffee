"""``avvp synth``: write a synthetic dataset in the official LLP layout."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from avvp.data.synthetic import (
        DEFAULT_CLIP_QUALITY,
        DEFAULT_LABEL_MODEL,
        LABEL_MODELS,
        GeneratorConfig,
    )

    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="dataset folder to write: new, empty, or one that synth made (required)",
    )
    parser.add_argument(
        "--annotations",
        type=Path,
        default=None,
        help="real LLP annotation folder: val/test are the real videos and labels, train the "
        "real weak labels (annotation-driven mode); never written to (default: none, labels "
        "follow the LLP statistics)",
    )
    parser.add_argument(
        "--videos",
        type=int,
        default=None,
        help="number of videos, at least 3 (built-in mode: required; annotation-driven: a random "
        "subset in LLP split proportions) (default: all videos of --annotations)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="fixes every random draw: labels, video ids, features (default: %(default)s)",
    )
    parser.add_argument(
        "--label-model",
        choices=LABEL_MODELS,
        default=None,
        help="built-in mode: how labels are drawn; per_class: each class's frequency and "
        "audible-only / visible-only / both shares from real LLP; global: one modality mix for "
        "every class and a geometric ladder of class frequencies (the built-in labels before "
        f"per_class existed; a folder made then is a global one) (default: {DEFAULT_LABEL_MODEL})",
    )
    parser.add_argument(
        "--difficulty",
        type=float,
        default=None,
        help="scales noise, per-video nuisance and scene strength; 0 = clean features "
        f"(default: {GeneratorConfig().difficulty}, calibrated against HAN on LLP: "
        "docs/calibration.md)",
    )
    parser.add_argument(
        "--clip-quality",
        type=float,
        default=DEFAULT_CLIP_QUALITY,
        help="quality of the simulated CLIP scores written beside the dataset (higher = cleaner); "
        "not part of the dataset's settings, so an existing dataset accepts any value and only "
        f"its scores are rewritten (default: {DEFAULT_CLIP_QUALITY}, calibrated on VPLAN's PLG "
        "precision and recall: docs/synthetic.md)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: shown)"
    )


def run(args: argparse.Namespace) -> int:
    from avvp.data.synthetic import GeneratorConfig, generate, read_manifest, with_label_model

    if args.videos is not None and args.videos < 3:
        raise ValueError(f"--videos must be at least 3, got {args.videos}")
    if args.difficulty is not None and args.difficulty < 0:
        raise ValueError(f"--difficulty must be >= 0, got {args.difficulty}")
    config = GeneratorConfig() if args.difficulty is None else GeneratorConfig(args.difficulty)
    root = generate(
        args.out,
        annotations=args.annotations,
        videos=args.videos,
        seed=args.seed,
        config=config,
        progress=not args.no_progress,
        clip_quality=args.clip_quality,
        label_model=args.label_model,
    )
    manifest = read_manifest(root)
    settings = with_label_model(manifest["settings"])
    counts = ", ".join(f"{split} {count}" for split, count in manifest["videos"].items())
    kind = settings["mode"]
    if "label_model" in settings:
        kind += f" ({settings['label_model']} label model)"
    print(f"wrote {kind} synthetic LLP to {root}: {counts}")
    return 0
