"""PoiBin pooling speed: the default recursion against the paper's DFT form, on CPU (and CUDA).

    python benchmarks/poibin_speed.py [--sizes 10,20,40,50,100,200,500] [--devices cpu,cuda]
        [--threads 1] [--repeats 60] [--out benchmarks/results/poibin_speed]

Times one PoiBin pooling call, P(z >= tau) = poisson_binomial_tail (the pmf plus the tail sum),
for a batch of 16 videos x 25 classes of float32 segment probabilities with a random tau per
(video, class): forward (with the autograd graph recorded, as in training) and forward +
backward, for three ways to get the pmf:

``recursion``
    the default: with a gradient wanted and N <= FAST_MAX_N, the recursion inside a custom
    autograd function with a hand-written backward (avvp.poisson_binomial's docstring);
``loop``
    the same recursion differentiated by autograd step by step (the default before the custom
    function, still what runs above FAST_MAX_N), timed with FAST_MAX_N set to 0;
``dft``
    the paper's Eq. 3.

The methods take turns call by call (each repetition times one call of each, in order), so a
change in the machine's load hits them alike; the cells are medians of the repetitions, both wall
time and the calling thread's CPU time. Prints the ratio table (dft / recursion at each N, and
loop / recursion) and writes benchmarks/results/poibin_speed.{md,json} with the load averages
before and after. The ratios are what to compare between runs on a shared machine.

CPU rows use one intra-op thread by default: the ops are small, and on a 2-core machine shared
with other jobs, two threads made cells wait for a free core (10x swings between runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import machine, machine_sentence, write_results

import avvp.poisson_binomial as poisson_binomial
from avvp.poisson_binomial import poisson_binomial_tail

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("recursion", "loop", "dft")
MODES = ("fwd", "fwd_bwd")
# Paper 002, Table 2 (ms, pooling only, hardware and batch not stated); SPEC section 5 quotes
# N = 10, 200 and 500.
PAPER_MS = {10: 0.2, 20: 0.21, 50: 0.21, 80: 0.21, 100: 0.22, 200: 0.33, 300: 0.59, 500: 2.0}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tail_call(method: str, probs: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """One pooling call by ``method`` (``loop``: the recursion with the fast path off)."""
    if method != "loop":
        return poisson_binomial_tail(probs, tau, method)
    fast_max_n = poisson_binomial.FAST_MAX_N
    poisson_binomial.FAST_MAX_N = 0
    try:
        return poisson_binomial_tail(probs, tau, "recursion")
    finally:
        poisson_binomial.FAST_MAX_N = fast_max_n


def interleaved_medians(
    calls: dict[str, Callable[[], object]],
    device: torch.device,
    repeats: int,
    budget_s: float,
) -> dict[str, dict[str, float]]:
    """Median wall and thread-CPU milliseconds of each call, the calls taking turns.

    One warm-up round, then up to ``repeats`` rounds; stops early (after at least 3) once the
    rounds have spent ``budget_s``, so the slow cells (DFT at N = 500) do not dominate the run.
    """
    for call in calls.values():
        call()
    synchronize(device)
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    spent = 0.0
    rounds = 0
    while rounds < repeats and (rounds < 3 or spent < budget_s):
        for name, call in calls.items():
            started, started_cpu = time.perf_counter(), time.thread_time()
            call()
            synchronize(device)
            elapsed = time.perf_counter() - started
            wall[name].append(elapsed * 1000)
            cpu[name].append((time.thread_time() - started_cpu) * 1000)
            spent += elapsed
        rounds += 1
    return {
        name: {
            "wall_ms": statistics.median(wall[name]),
            "cpu_ms": statistics.median(cpu[name]),
            "rounds": rounds,
        }
        for name in calls
    }


def measure(
    device: torch.device, n: int, args: argparse.Namespace, generator: torch.Generator
) -> dict[str, object]:
    """One table row: forward and forward + backward of every method at N = n."""
    shape = (args.videos, args.classes)
    probs = torch.rand(*shape, n, generator=generator).to(device).requires_grad_()
    tau = torch.randint(0, n + 2, shape, generator=generator).to(device)
    results = {m: tail_call(m, probs, tau).detach().double() for m in METHODS}
    row: dict[str, object] = {
        "device": device_name(device),
        "n": n,
        "max_abs_difference": max(
            float((results[m] - results["recursion"]).abs().max()) for m in METHODS
        ),
        "paper_ms": PAPER_MS.get(n),
    }

    def forward(method: str) -> Callable[[], object]:
        return lambda: tail_call(method, probs, tau)

    def forward_backward(method: str) -> Callable[[], object]:
        def call() -> None:
            probs.grad = None
            tail_call(method, probs, tau).sum().backward()

        return call

    for mode, make in (("fwd", forward), ("fwd_bwd", forward_backward)):
        timings = interleaved_medians(
            {m: make(m) for m in METHODS}, device, args.repeats, args.budget
        )
        for method, timing in timings.items():
            for key, value in timing.items():
                row[f"{method}_{mode}_{key}"] = value
        for clock in ("wall", "cpu"):
            base = timings["recursion"][f"{clock}_ms"]
            row[f"dft_over_recursion_{mode}_{clock}"] = timings["dft"][f"{clock}_ms"] / base
            row[f"loop_over_recursion_{mode}_{clock}"] = timings["loop"][f"{clock}_ms"] / base
    if device.type == "cuda":
        row["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    return row


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| device | N | recursion fwd+bwd ms | loop fwd+bwd ms | dft fwd+bwd ms "
        "| **dft / recursion fwd+bwd** (wall, cpu) | loop / recursion fwd+bwd (wall, cpu) "
        "| recursion fwd ms | dft fwd ms | dft / recursion fwd (wall) | paper ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        paper = "-" if r["paper_ms"] is None else f"{r['paper_ms']}"
        lines.append(
            f"| {r['device']} | {r['n']} | {r['recursion_fwd_bwd_wall_ms']:.3f} "
            f"| {r['loop_fwd_bwd_wall_ms']:.3f} | {r['dft_fwd_bwd_wall_ms']:.3f} "
            f"| **{r['dft_over_recursion_fwd_bwd_wall']:.2f}x**, "
            f"{r['dft_over_recursion_fwd_bwd_cpu']:.2f}x "
            f"| {r['loop_over_recursion_fwd_bwd_wall']:.2f}x, "
            f"{r['loop_over_recursion_fwd_bwd_cpu']:.2f}x "
            f"| {r['recursion_fwd_wall_ms']:.3f} | {r['dft_fwd_wall_ms']:.3f} "
            f"| {r['dft_over_recursion_fwd_wall']:.2f}x | {paper} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,20,40,50,100,200,500", help="N, comma-separated")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--classes", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=60, help="most rounds timed per cell")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per cell, soft")
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads; 0: torch's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "poibin_speed")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = []
    for name in args.devices.split(","):
        if name == "cuda" and not torch.cuda.is_available():
            continue
        device = torch.device(name)
        rows += [measure(device, n, args, generator) for n in sizes]
    worst = max(float(r["max_abs_difference"]) for r in rows)
    if worst > 1e-6:
        raise SystemExit(f"the methods disagree by {worst}")
    text = table(rows)
    print(text)
    total_s = time.perf_counter() - started
    load_after = os.getloadavg()
    facts = machine()
    meta = {
        **facts,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "seed": args.seed,
        "batch": {"videos": args.videos, "classes": args.classes, "dtype": "float32"},
        "repeats": args.repeats,
        "budget_s_per_cell": args.budget,
        "fast_max_n": poisson_binomial.FAST_MAX_N,
        "total_s": total_s,
        "paper_ms_source": "paper 002 Table 2 (SPEC section 5 quotes N = 10, 200, 500)",
    }
    loads = ", ".join(f"{x:.2f}" for x in load_before)
    note = (
        f"Median milliseconds of one `poisson_binomial_tail` call (pmf + tail sum) on a "
        f"{args.videos} x {args.classes} batch of float32 probabilities with random tau; "
        "'fwd' is the call with the autograd graph recorded, as in training, 'fwd+bwd' adds "
        "`.sum().backward()`. `recursion` is the default (a custom autograd function up to "
        f"N = {poisson_binomial.FAST_MAX_N}), `loop` the same recursion differentiated by "
        "autograd step by step (the default before), `dft` the paper's Eq. 3. The methods take "
        f"turns call by call, up to {args.repeats} rounds a cell after a warm-up (fewer, at "
        f"least 3, once a cell has spent {args.budget:g} s); ratios are of medians, wall and "
        f"thread CPU time. All agree to {worst:.1e}. Load average (1, 5, 15 min) {loads} "
        f"before, {load_after[0]:.2f} after: other jobs on the machine slow the CPU rows, so "
        f"compare ratios. {total_s:.0f} s in all. {machine_sentence(facts)} The paper's column "
        "is its Table 2 (pooling only, GPU and batch not stated): compare its trend with N, not "
        "its absolute values, with CPU rows."
    )
    write_results(args.out, "PoiBin pooling speed", text, note, {"meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
