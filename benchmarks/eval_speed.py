"""Evaluation speed: the naive per-video reference against the vectorised protocol.

    python benchmarks/eval_speed.py [--videos 1200] [--repeats 20] [--seed 0]

Both score the same random parse of a split the size of the real LLP test split (1,200 videos,
T = 10, C = 25), after checking that they agree. Prints a table and writes
benchmarks/results/eval_speed.{md,json}. The naive reference is ``tests/naive_eval.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from avvp.classes import NUM_CLASSES, NUM_SEGMENTS
from avvp.evaluation.metrics import evaluate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))
from naive_eval import naive_evaluate  # noqa: E402  (a test helper, not part of the package)
from results_file import write_results  # noqa: E402  (beside this script)


def random_parse(rng: np.random.Generator, videos: int) -> np.ndarray:
    """(V, T, C) bool with LLP-like sparsity: about 2.5 active classes a video, runs of ~5 s."""
    active = rng.random((videos, 1, NUM_CLASSES)) < 0.1
    parse = np.empty((videos, NUM_SEGMENTS, NUM_CLASSES), dtype=bool)
    parse[:, 0] = rng.random((videos, NUM_CLASSES)) < 0.6
    for t in range(1, NUM_SEGMENTS):
        parse[:, t] = parse[:, t - 1] ^ (rng.random((videos, NUM_CLASSES)) < 0.2)
    return parse & active


def seconds(function, repeats: int) -> float:
    """Median wall time of ``repeats`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=20, help="vectorised timing repeats")
    parser.add_argument("--naive-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "eval_speed")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    # Predictions copy the ground truth for 70 % of (video, class) pairs and are independent
    # elsewhere, so events overlap, match and miss as a trained model's do.
    gt_audio, gt_visual = random_parse(rng, args.videos), random_parse(rng, args.videos)
    inputs = [
        np.where(
            rng.random((args.videos, 1, NUM_CLASSES)) < 0.7, gt, random_parse(rng, args.videos)
        )
        for gt in (gt_audio, gt_visual)
    ] + [gt_audio, gt_visual]
    naive_metrics = naive_evaluate(*inputs)
    fast_metrics = evaluate(*inputs)
    difference = max(
        abs(naive_metrics[level][name] - fast_metrics[level][name])
        for level in naive_metrics
        for name in naive_metrics[level]
    )
    if difference > 1e-9:
        raise SystemExit(f"naive and vectorised disagree by {difference}")
    naive = seconds(lambda: naive_evaluate(*inputs), args.naive_repeats)
    fast = seconds(lambda: evaluate(*inputs), args.repeats)
    row = {
        "videos": args.videos,
        "naive_s": naive,
        "vectorised_s": fast,
        "ratio": naive / fast,
        "max_abs_difference": difference,
    }
    table = "\n".join(
        [
            "| videos | naive s | vectorised s | ratio |",
            "| --- | --- | --- | --- |",
            f"| {args.videos} | {naive:.3f} | {fast:.4f} | {naive / fast:.0f}x |",
        ]
    )
    print(table)
    meta = {
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "seed": args.seed,
        "repeats": {"naive": args.naive_repeats, "vectorised": args.repeats},
        "segment_type_av": fast_metrics["segment"]["type"],
    }
    note = (
        "Median wall time of one call over the whole split (both levels, all ten numbers; the "
        f"vectorised call also returns per-video scores and per-class F1), {args.naive_repeats} "
        f"naive and {args.repeats} vectorised repeats, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.2f} at the end). The two "
        f"results agree to {difference:.1e}."
    )
    write_results(args.out, "Evaluation speed", table, note, {"meta": meta, **row})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
