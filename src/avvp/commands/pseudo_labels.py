"""``avvp pseudo-labels``: make, simulate and score segment-level pseudo-label files.

* ``simulate-clip``: simulated CLIP scores for every split of a synthetic dataset
  (``synthetic_clip_scores.npz``), also for datasets made before the simulation existed.
* ``clip``: VPLAN's PLG (SPEC section 7): CLIP scores of one frame a segment, thresholded and
  ANDed with the weak labels, written as a visual pseudo-label file. Scores come from a local CLIP
  checkpoint (``avvp.clip_labels``) or, on synthetic data, from the simulated ones.
* ``score``: how close a label file, segment- or video-level, comes to the dense ground truth
  (the VPLAN paper's Tables I and II), with the weak label alone as the reference row.
* ``denoise``: VPLAN's PLD: a trained ``vplan`` run flips the labels of its visual label file
  where its own loss is high; train again with the refined file.

Each action is an entry of :data:`ACTIONS`: a function adding its arguments and one running it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from avvp.clip_labels import DEFAULT_PROMPT
from avvp.commands.common import check_output_file
from avvp.data.annotations import EVAL_SPLITS, SPLIT_FILES, SPLITS, LLPAnnotations

if TYPE_CHECKING:
    from avvp.pseudo_labels import PseudoLabels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, (help_text, add, _) in ACTIONS.items():
        add(actions.add_parser(name, help=help_text, description=help_text))


def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.action][2](args)


# ---- simulate-clip ---------------------------------------------------------------------------


def _add_simulate_clip(parser: argparse.ArgumentParser) -> None:
    from avvp.data.synthetic import DEFAULT_CLIP_QUALITY

    parser.add_argument("--data", required=True, type=Path, help="synthetic dataset folder")
    parser.add_argument(
        "--quality",
        type=float,
        default=DEFAULT_CLIP_QUALITY,
        help="higher = cleaner scores; 0 = CLIP sees nothing of the events (default "
        f"{DEFAULT_CLIP_QUALITY}, calibrated on the paper's PLG precision and recall: "
        "docs/synthetic.md)",
    )
    parser.add_argument("--seed", type=int, default=None, help="default: the dataset's seed")


def _run_simulate_clip(args: argparse.Namespace) -> int:
    from avvp.data.synthetic import write_clip_scores

    path = write_clip_scores(args.data, args.quality, args.seed)
    print(f"wrote simulated CLIP scores (quality {args.quality}) to {path}")
    return 0


# ---- clip (PLG) ------------------------------------------------------------------------------


def _add_clip(parser: argparse.ArgumentParser) -> None:
    from avvp.pseudo_labels import PLG_THRESHOLD

    parser.add_argument("--data", required=True, type=Path, help="dataset folder")
    parser.add_argument(
        "--annotations", type=Path, default=None, help="folder of the split CSVs (default: --data)"
    )
    parser.add_argument(
        "--split", default="train", choices=SPLITS, help="split whose videos get labels"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--frames", type=Path, default=None, help="videos or frame folders (avvp.clip_labels)"
    )
    source.add_argument(
        "--frame-features",
        type=Path,
        default=None,
        help="precomputed CLIP image embeddings of one frame a segment (avvp.clip_labels)",
    )
    source.add_argument(
        "--simulated",
        action="store_true",
        help="the simulated CLIP scores of a synthetic dataset (avvp pseudo-labels simulate-clip)",
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="local CLIP checkpoint (not --simulated)"
    )
    parser.add_argument(
        "--prompt",
        default=DEFAULT_PROMPT,
        help=f"{{}} is the class name (default {DEFAULT_PROMPT!r})",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=PLG_THRESHOLD,
        help=f"a segment's class is a pseudo label if its score >= this (default {PLG_THRESHOLD})",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    parser.add_argument("--out", required=True, type=Path, help="pseudo-label file to write")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_clip(args: argparse.Namespace) -> int:
    check_output_file(args.out, "--out", ".npz")

    import numpy as np

    from avvp.pseudo_labels import plg_labels, save_pseudo_labels

    weak = LLPAnnotations(args.annotations or args.data).weak(args.split)
    video_ids = list(weak.video_ids)
    if args.simulated:
        if args.checkpoint is not None:
            raise ValueError("--checkpoint is for real CLIP; --simulated reads stored scores")
        from avvp.data.synthetic import CLIP_SCORES, load_clip_scores

        stored_ids, stored = load_clip_scores(args.data, args.split)
        if list(stored_ids) != video_ids:
            raise ValueError(
                f"{args.data / CLIP_SCORES} does not hold the videos of split {args.split!r} in "
                f"{weak.path} order; run `avvp pseudo-labels simulate-clip --data {args.data}`"
            )
        scores = stored
        source = f"simulated CLIP ({args.data / CLIP_SCORES})"
    else:
        if args.checkpoint is None:
            raise ValueError("--frames and --frame-features need --checkpoint (a local CLIP)")
        from avvp.clip_labels import clip_visual_scores

        scores = clip_visual_scores(
            video_ids,
            checkpoint=args.checkpoint,
            frames=args.frames,
            frame_features=args.frame_features,
            prompt=args.prompt,
            device=args.device,
            progress=not args.no_progress,
        )
        source = f"CLIP {args.checkpoint}"
    visual = plg_labels(scores, weak.labels, args.threshold)
    path = save_pseudo_labels(args.out, video_ids, visual=visual)
    covered = int(visual.any(axis=1).sum())
    print(
        f"wrote PLG visual pseudo labels of {len(video_ids)} {args.split} videos to {path} "
        f"(scores from {source}, threshold {args.threshold}): {covered} video-level labels "
        f"of {int(np.sum(weak.labels))} weak ones kept"
    )
    return 0


# ---- score -----------------------------------------------------------------------------------


def _add_score(parser: argparse.ArgumentParser) -> None:
    from avvp.data.annotations import AudioGroundTruth

    parser.add_argument("labels", type=Path, help="pseudo-label file (.npz)")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder")
    parser.add_argument(
        "--annotations", type=Path, default=None, help="folder of the AVVP_*.csv (default: --data)"
    )
    parser.add_argument(
        "--split",
        default=None,
        choices=[*EVAL_SPLITS, "train"],
        help="val or test: the dense ground truth; train: the hidden labels of a synthetic set "
        "(default: the split whose videos the file holds)",
    )
    parser.add_argument(
        "--audio-gt",
        default="2024",
        choices=[member.value for member in AudioGroundTruth],
        help="audio ground truth: 2024 (fixed) or pre2024 (what published papers used)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")


def _run_score(args: argparse.Namespace) -> int:
    if args.json is not None:
        check_output_file(args.json, "--json", ".json")

    from avvp.pseudo_labels import (
        VideoLabels,
        label_quality,
        load_label_file,
        video_label_quality,
    )

    # The ignored annotation rows are `avvp evaluate`'s (and `avvp check`'s) to report.
    annotations = LLPAnnotations(args.annotations or args.data, args.audio_gt, warn=False)
    stored = load_label_file(args.labels)
    held = _splits_held(stored.video_ids, annotations)
    split = args.split or (held[0] if held else None)
    if split is None or split not in held:
        raise ValueError(_split_mismatch(args.labels, stored, split, annotations, held))
    weak = annotations.weak(split)
    if split == "train":
        from avvp.data.synthetic import load_hidden_train_labels

        truth = load_hidden_train_labels(args.data)
        if truth is None:
            raise ValueError(
                f"{args.data} has no hidden train labels (real LLP train has no segment labels): "
                f"make labels of val or test (`avvp pseudo-labels clip --split val ...`) and "
                "score those"
            )
    else:
        truth = annotations.dense(split)
    labels = stored.aligned(weak.video_ids)
    video = isinstance(labels, VideoLabels)
    score = video_label_quality if video else label_quality
    quality = score(labels, weak.labels, truth.audio, truth.visual)
    level = "video" if video else "segment"
    print(
        f"{args.labels} on {split} ({len(weak)} videos, audio GT {args.audio_gt}, "
        f"{level}-level labels)"
    )
    print(format_quality(quality, video))
    if args.json is not None:
        from avvp.io_utils import write_json

        write_json(
            args.json,
            {
                "file": str(args.labels),
                "level": level,
                "split": split,
                "videos": len(weak),
                **quality,
            },
        )
    return 0


def _splits_held(video_ids: Sequence[str], annotations: LLPAnnotations) -> list[str]:
    """The splits of the dataset (val and test first) whose every video the label file covers."""
    ids = set(video_ids)
    return [
        split
        for split in (*EVAL_SPLITS, "train")
        if (annotations.root / SPLIT_FILES[split]).is_file()
        and set(annotations.weak(split).video_ids) <= ids
    ]


def _split_mismatch(
    path: Path,
    labels: PseudoLabels,
    split: str | None,
    annotations: LLPAnnotations,
    held: list[str],
) -> str:
    """Why ``path`` cannot be scored on ``split`` (None: on any split), and what to pass."""
    if split is None:
        return (
            f"{path} holds labels of {len(labels)} videos, which cover none of the splits of "
            f"{annotations.root}; make them with `avvp pseudo-labels clip --split SPLIT` on this "
            "dataset"
        )
    weak = annotations.weak(split)
    missing = len(set(weak.video_ids) - set(labels.video_ids))
    way_out = (
        f"pass --split {held[0]} (the split the file holds), or make labels of {split} with "
        f"`avvp pseudo-labels clip --split {split}`"
        if held
        else f"make labels of {split} with `avvp pseudo-labels clip --split {split}`"
    )
    return f"{path} has no labels for {missing} of the {len(weak)} {split} videos; {way_out}"


def format_quality(quality: dict, video_level: bool = False) -> str:
    """The table ``score`` prints: one row per (labels or weak, stream); ``video_level``: the
    labels are video-level ones, scored on every segment of their video."""
    header = (
        f"{'':<16}{'video P':>10}{'video R':>10}{'pooled P':>10}{'pooled R':>10}"
        f"{'pooled F1':>11}{'segment F':>11}{'event F':>10}"
    )
    lines = [
        "video-level precision / recall: per-video mean (VPLAN Table I), pooled over (video, "
        "class) pairs"
    ]
    if video_level:
        lines.append(
            "segment F, event F: each video-level label on all 10 segments of its video, as the "
            "weak label is scored"
        )
    lines.append(header)
    for row, streams in quality.items():
        for stream, numbers in streams.items():
            if stream == "audio_visual":
                continue
            video = numbers["video"]
            lines.append(
                f"{row + ' ' + stream:<16}{video['precision']:>10.2f}{video['recall']:>10.2f}"
                f"{video['pooled_precision']:>10.2f}{video['pooled_recall']:>10.2f}"
                f"{video['pooled_f1']:>11.2f}{numbers['segment_f1']:>11.2f}{numbers['event_f1']:>10.2f}"
            )
    return "\n".join(lines)


# ---- denoise (PLD) ---------------------------------------------------------------------------


def _add_denoise(parser: argparse.ArgumentParser) -> None:
    from avvp.methods.vplan import PLD_ALPHA, PLD_K

    parser.add_argument("--run", required=True, type=Path, help="a trained `vplan` run folder")
    parser.add_argument("--out", required=True, type=Path, help="refined label file (.npz)")
    parser.add_argument(
        "--k",
        type=int,
        default=PLD_K,
        help="per video and class, the threshold is built from the mean of the k smallest "
        "segment losses (1..10)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=PLD_ALPHA,
        help="a label flips where its segment's loss exceeds alpha times that mean",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="visual label file to denoise (default: the one the run trained on)",
    )
    parser.add_argument(
        "--split",
        default="train",
        choices=SPLITS,
        help="split of --labels (e.g. val PLG labels, then `score` them as the paper's Table II)",
    )
    parser.add_argument(
        "--guard",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="flip only labels the model contradicts (default: the run's method.pld_guard; "
        "the paper flips every label above the threshold)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_denoise(args: argparse.Namespace) -> int:
    check_output_file(args.out, "--out", ".npz")

    from avvp.methods.vplan import denoise_run, denoising_statistics

    where = {"split": args.split, "labels": args.labels}
    progress = not args.no_progress
    refined = denoise_run(
        args.run, args.out, k=args.k, alpha=args.alpha, progress=progress, guard=args.guard, **where
    )
    print(denoising_statistics(args.run, refined, **where).format())
    print(f"wrote {refined}; retrain with method.visual_labels={refined}")
    return 0


ACTIONS: dict[
    str,
    tuple[
        str,
        Callable[[argparse.ArgumentParser], None],
        Callable[[argparse.Namespace], int],
    ],
] = {
    "simulate-clip": (
        "write simulated CLIP scores for a synthetic dataset",
        _add_simulate_clip,
        _run_simulate_clip,
    ),
    "clip": ("PLG: visual pseudo labels from CLIP scores and weak labels", _add_clip, _run_clip),
    "score": ("score a pseudo-label file against the dense ground truth", _add_score, _run_score),
    "denoise": ("PLD: refine a vplan run's visual label file", _add_denoise, _run_denoise),
}
