"""``avvp parse``: video files -> a trained run's parse of each: events as TSV and JSON, a timeline.

For every video it extracts the feature sets the run's model reads (``features.audio`` and
``features.visual`` of its config), parses them (the whole video, or ``--window`` windows) and
writes ``OUT/<video>/``: ``pred_audio.tsv`` and ``pred_visual.tsv`` (the evaluation format, as
``avvp predict`` writes them), ``probabilities.npz``, ``events.json`` and ``timeline.png`` (the
figure of ``avvp plot``, without ground truth). Exit status 0 when every video is parsed, 1 when
some failed (each named with the reason), 2 for a usage error found before any video is read.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from avvp.commands.common import check_output_folder
from avvp.commands.extract import SOME_FAILED, add_weight_arguments, extractor_options
from avvp.commands.predict import add_window_argument

# A config override (``eval.threshold=0.3``), as opposed to a video path, among the positionals.
OVERRIDE = re.compile(r"[A-Za-z_][\w.]*=.*")
DEFAULT_OUT = Path("parsed")
FILES = (
    "pred_audio.tsv",
    "pred_visual.tsv",
    "probabilities.npz",
    "events.json",
    "timeline.png",
)
PROBABILITY_DIGITS = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "videos",
        nargs="+",
        metavar="VIDEO",
        help="video files to parse (any length; key=value among them is a config override, "
        "e.g. eval.threshold=0.4)",
    )
    parser.add_argument(
        "--run", required=True, type=Path, help="run folder written by `avvp train`"
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        type=Path,
        help=f"folder to write OUT/<video>/ in, with {', '.join(FILES)} (created if missing; "
        "those files are replaced)",
    )
    add_weight_arguments(parser)
    parser.add_argument(
        "--threshold",
        default=None,
        type=float,
        help="segment probability threshold (default: the run's eval.threshold)",
    )
    parser.add_argument(
        "--gate",
        default=None,
        choices=("global", "modality", "none"),
        help="which video-level probability gates the segments (default: the run's eval.gate)",
    )
    add_window_argument(parser)
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="a keyword option of one extractor, as in `avvp extract` (repeatable)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: shown)"
    )


def split_positionals(items: list[str]) -> tuple[list[Path], list[str]]:
    """(videos, config overrides): ``key=value`` is an override unless a file has that name."""
    videos, overrides = [], []
    for item in items:
        if OVERRIDE.fullmatch(item) and not Path(item).exists():
            overrides.append(item)
        else:
            videos.append(Path(item))
    return videos, overrides


def run(args: argparse.Namespace) -> int:
    videos, overrides = split_positionals(args.videos)
    args.overrides = overrides
    if not videos:
        raise ValueError("no VIDEO to parse: give one or more video files")
    check_output_folder(args.out, "--out")

    from tqdm.auto import tqdm

    from avvp.extraction.base import VideoError
    from avvp.extraction.pipeline import (
        RANDOM_WARNING,
        build_extractors,
        collect_videos,
        describe,
        extract_video,
        resolve_device,
        segment_features,
    )
    from avvp.training.batches import feature_names
    from avvp.training.data import model_features
    from avvp.training.evaluate_run import load_run, run_overrides
    from avvp.training.runs import seed_runs
    from avvp.training.unlabelled import parse_videos, windows

    inputs = collect_videos(videos)
    windows(1, args.window)  # a bad --window fails before anything loads
    run_dir = _one_run(args.run, seed_runs(args.run))
    device = resolve_device(args.device)
    config, model, method = load_run(run_dir, str(device), run_overrides(args))
    names = feature_names(config)
    dims, frames = model_features(config)
    options = extractor_options(args.option)
    extractors = build_extractors(names, args.weights, args.random_weights, device, options)
    _check_matches_run(extractors, dims, frames, run_dir)
    provenance = {ex.name: describe(ex, options.get(ex.name, {})) for ex in extractors}
    context = {
        "run": str(run_dir),
        "method": config["method"]["name"],
        "threshold": config["eval"]["threshold"],
        "gate": config["eval"]["gate"],
        "window": args.window,
        "random_weights": args.random_weights,
        **({"warning": RANDOM_WARNING} if args.random_weights else {}),
        "features": provenance,
    }
    failed: dict[Path, str] = {}
    for video in tqdm(inputs, desc="parse", unit="video", disable=args.no_progress):
        try:
            raw = extract_video(video.path, extractors)
        except VideoError as error:
            failed[video.path] = str(error)
            continue
        segments = {name: segment_features(raw[name], frames[name]) for name in names}
        (parse,) = parse_videos(
            model, method, [segments], [video.filename], names, config["eval"], device, args.window
        )
        folder = args.out / video.filename
        written = _write(folder, video.path, parse, context, config)
        print(f"{video.path}: {len(parse.events())} events; wrote " + ", ".join(map(str, written)))
    if args.random_weights:
        print(f"avvp parse: warning: {RANDOM_WARNING}", file=sys.stderr)
    for reason in failed.values():
        print(f"avvp parse: failed: {reason}", file=sys.stderr)
    return SOME_FAILED if failed else 0


def _one_run(given: Path, runs: list[Path]) -> Path:
    if len(runs) > 1:
        names = ", ".join(str(path) for path in runs)
        raise ValueError(f"{given} holds one run per seed; pass one of them: {names}")
    return runs[0]


def _check_matches_run(extractors, dims: dict[str, int], frames: dict[str, int], run: Path):
    """An extractor whose rows the run's model cannot read (another dim, frames a second)."""
    for extractor in extractors:
        made = (extractor.dim, extractor.frames)
        wanted = (dims[extractor.name], frames[extractor.name])
        if made != wanted:
            raise ValueError(
                f"{run} reads {extractor.name} features of dim {wanted[0]}, {wanted[1]} rows a "
                f"second (features.dims / features.frames of its config.yaml), but the "
                f"{extractor.name} extractor gives dim {made[0]}, {made[1]} rows a second; "
                "use the weights or options the run's features were made with"
            )


def _write(folder: Path, video: Path, parse, context: dict[str, Any], config) -> list[Path]:
    from avvp.commands.predict import write_parses
    from avvp.io_utils import write_json
    from avvp.plots import save_png

    written = write_parses(folder, [parse])
    written.append(write_json(folder / "events.json", _events_json(video, parse, context)))
    figure = _timeline(parse, context, config)
    written.append(save_png(figure, folder / "timeline.png"))
    return written


def _rounded(array) -> list:
    import numpy as np

    return np.round(np.asarray(array, dtype=float), PROBABILITY_DIGITS).tolist()


def _events_json(video: Path, parse, context: dict[str, Any]) -> dict[str, Any]:
    from avvp.classes import CLASSES

    def by_class(values) -> dict[str, float]:
        return dict(zip(CLASSES, _rounded(values), strict=True))

    return {
        "video": str(video),
        "filename": parse.filename,
        "seconds": parse.segments,
        **context,
        "windows": [list(window) for window in parse.windows],
        "events": parse.events(),
        "video_probabilities": {
            "global": by_class(parse.video_prob),
            "audio": by_class(parse.video_prob_audio),
            "visual": by_class(parse.video_prob_visual),
        },
        "segment_probabilities": {
            "classes": list(CLASSES),
            "audio": _rounded(parse.segment_prob[:, 0]),
            "visual": _rounded(parse.segment_prob[:, 1]),
        },
    }


def _timeline(parse, context: dict[str, Any], config):
    """The ``avvp plot`` figure of one parse, without ground truth; random weights watermarked."""
    import numpy as np

    from avvp.classes import CLASSES
    from avvp.evaluation.metrics import VIDEO_THRESHOLD, Gate
    from avvp.plots import TimelinePanel, run_name, timeline_figure

    rule = config["eval"]
    gate = Gate.parse(rule["gate"])
    prob = np.moveaxis(parse.segment_prob, 1, 0)
    pred = np.stack([parse.pred_audio, parse.pred_visual])
    if gate is Gate.GLOBAL:
        video_prob = np.stack([parse.video_prob] * 2)
    else:
        video_prob = np.stack([parse.video_prob_audio, parse.video_prob_visual])
    window = f", windows of {context['window']} s" if len(parse.windows) > 1 else ""
    panel = TimelinePanel(
        title=f"{context['method']}: {run_name(context['run'])} (threshold {rule['threshold']}, "
        f"gate {gate.value}{window})",
        gt=None,
        prob=prob,
        pred=pred,
        video_prob=video_prob,
        video_threshold=None if gate is Gate.NONE else VIDEO_THRESHOLD,
        suppressed=(prob >= rule["threshold"]) & ~pred,
    )
    title = f"{parse.filename} ({parse.segments} s, no ground truth)"
    if context["random_weights"]:
        title += "\nRANDOM WEIGHTS (plumbing only): NOT A REAL PARSE"
    figure = timeline_figure([panel], CLASSES, title=title, threshold=rule["threshold"])
    if context["random_weights"]:
        figure.text(
            0.5,
            0.5,
            "RANDOM WEIGHTS",
            color="red",
            alpha=0.2,
            fontsize=60,
            rotation=20,
            ha="center",
            va="center",
        )
    return figure
