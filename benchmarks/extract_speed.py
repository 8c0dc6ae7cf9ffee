"""Extraction speed: videos per second per extractor, on the CPU (1 thread, all threads) or a GPU.

    python benchmarks/extract_speed.py [--video PATH] [--repeats 3]
                                       [--features vggish,res152,r2plus1d_18,clip,clap]
                                       [--device cpu|cuda]

Each extractor is built with random weights (the speed does not depend on the values; but the
random ``clip`` and ``clap`` networks are small stand-ins, not ViT-B/32 or HTSAT, so their rows
time the decoding and plumbing, not the real checkpoints) and run
``--repeats`` times on the same video (default: LLP's sample video, 10 s) after one warm-up run;
a row is the median time of a run and the videos per second it makes. Two rows measure decoding
alone (PyAV: the audio at 16 kHz, the frames at 8 a second), the part every extractor pays, and
one row all the extractors together on one video (``extract_video``, what ``avvp extract`` and
``avvp parse`` do per video). Feature sets with no registered extractor are listed as skipped.
Prints a table and writes benchmarks/results/extract_speed.{md,json} (``extract_speed_cuda`` with
``--device cuda``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from results_file import machine, machine_sentence, write_results

from avvp.extraction import extract_video
from avvp.extraction.base import segment_count
from avvp.extraction.media import probe, read_audio, read_frames
from avvp.registry import available, create

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "llp" / "sample_video" / "BjCEufrlXm4.mp4"
FEATURES = "vggish,res152,r2plus1d_18,clip,clap"


def timed(run: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median seconds of ``run`` over ``repeats`` calls after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(video: Path, names: list[str], repeats: int, device: torch.device) -> list[dict]:
    """One row per decoding step, extractor, and all extractors together."""
    seconds = segment_count(probe(video).duration, video)
    steps: list[tuple[str, Callable[[], object]]] = [
        ("decode: audio, 16 kHz mono", lambda: read_audio(video, 16000, seconds)),
        (
            "decode: frames, 8 a second",
            lambda: read_frames(video, (np.arange(8 * seconds) + 0.5) / 8),
        ),
    ]
    extractors = [create("extractor", name, device=device, random_weights=True) for name in names]
    steps += [
        (name, lambda extractor=extractor: extractor.extract(video, seconds))
        for name, extractor in zip(names, extractors, strict=True)
    ]
    if len(extractors) > 1:
        steps.append(("all of them (extract_video)", lambda: extract_video(video, extractors)))
    rows = []
    for step, run in steps:
        median = timed(run, repeats, device)
        rows.append({"step": step, "seconds_per_video": median, "videos_per_s": 1 / median})
        print(f"{step}: {median:.3f} s a video")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--video", type=Path, default=SAMPLE, help=f"video to extract (default: {SAMPLE})"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs a row, after a warm-up (default: 3)"
    )
    parser.add_argument(
        "--features", default=FEATURES, help=f"comma-separated extractors (default: {FEATURES})"
    )
    parser.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"), help="where to run (default: cpu)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file stem (default: benchmarks/results/extract_speed[_cuda])",
    )
    args = parser.parse_args(argv)
    if not args.video.is_file():
        parser.error(f"{args.video} not found; pass --video PATH")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    wanted = [name.strip() for name in args.features.split(",") if name.strip()]
    registered = set(available("extractor"))
    names = [name for name in wanted if name in registered]
    skipped = [name for name in wanted if name not in registered]
    device = torch.device(args.device)
    seconds = segment_count(probe(args.video).duration, args.video)
    columns: dict[str, list[dict]] = {}
    if device.type == "cuda":
        columns[torch.cuda.get_device_name(device)] = measure(
            args.video, names, args.repeats, device
        )
    else:
        threads = torch.get_num_threads()
        for count in dict.fromkeys((1, threads)):
            torch.set_num_threads(count)
            label = f"cpu, {count} thread" + ("s" if count > 1 else "")
            columns[label] = measure(args.video, names, args.repeats, device)
        torch.set_num_threads(threads)
    labels = list(columns)
    lines = [
        "| step | " + " | ".join(f"{label}: videos/s (s a video)" for label in labels) + " |",
        "| --- |" + " --- |" * len(labels),
    ]
    for index, row in enumerate(columns[labels[0]]):
        cells = [columns[label][index] for label in labels]
        lines.append(
            f"| {row['step']} | "
            + " | ".join(f"{c['videos_per_s']:.2f} ({c['seconds_per_video']:.2f})" for c in cells)
            + " |"
        )
    table = "\n".join(lines)
    print(table)
    facts = machine()
    missing = (
        f" Not measured (no extractor registered under the name in this checkout): "
        f"{', '.join(skipped)}."
        if skipped
        else ""
    )
    note = (
        f"One video: {args.video.name}, {seconds} s; median of {args.repeats} runs after a "
        f"warm-up; random weights (speed does not depend on them; the random clip and clap "
        "networks are small stand-ins, so their rows time decoding and plumbing, not the real "
        f"checkpoints).{missing} "
        f"{machine_sentence(facts)}"
    )
    out = args.out or RESULTS / ("extract_speed_cuda" if device.type == "cuda" else "extract_speed")
    payload = {"video": str(args.video), "seconds": seconds, "skipped": skipped, "machine": facts}
    write_results(out, "Extraction speed", table, note, {**payload, "rows": columns})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
