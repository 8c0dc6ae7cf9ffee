"""PoiBin pooling speed: the O(N^2) recursion against the paper's DFT form, on CPU (and CUDA).

    python benchmarks/poibin_speed.py [--sizes 10,20,50,100,200,500] [--devices cpu,cuda]
        [--threads 1]

Times one PoiBin pooling call, P(z >= tau) = poisson_binomial_tail (the pmf plus the tail sum),
for a batch of 16 videos x 25 classes of float32 segment probabilities with a random tau per
(video, class): forward (with the autograd graph recorded, as in training) and forward +
backward. Checks first that both methods agree. Prints a table next to the paper's runtimes and
writes benchmarks/results/poibin_speed.{md,json}.

CPU rows use one intra-op thread by default: the ops are small, and on a 2-core machine shared
with other jobs, two threads made cells wait for a free core (10x swings between runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from results_file import write_results

from avvp.poisson_binomial import poisson_binomial_tail

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("recursion", "dft")
# Paper 002, Table 2 (ms, pooling only, hardware and batch not stated); SPEC section 5 quotes
# N = 10, 200 and 500.
PAPER_MS = {10: 0.2, 20: 0.21, 50: 0.21, 80: 0.21, 100: 0.22, 200: 0.33, 300: 0.59, 500: 2.0}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(
    function: Callable[[], object], device: torch.device, repeats: int, budget_s: float
) -> tuple[float, int]:
    """Median milliseconds of up to ``repeats`` calls after one warm-up call.

    Stops early (after at least 3 calls) once ``budget_s`` is spent, so the slow cells (DFT at
    N = 500 on CPU) do not dominate the run. Returns the median and the number of calls timed.
    """
    function()
    synchronize(device)
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats and (len(times) < 3 or spent < budget_s):
        started = time.perf_counter()
        function()
        synchronize(device)
        elapsed = time.perf_counter() - started
        times.append(elapsed * 1000)
        spent += elapsed
    return statistics.median(times), len(times)


def measure(
    device: torch.device, n: int, args: argparse.Namespace, generator: torch.Generator
) -> dict[str, object]:
    """One table row: forward and forward + backward for both methods at N = n."""
    shape = (args.videos, args.classes)
    probs = torch.rand(*shape, n, generator=generator).to(device).requires_grad_()
    tau = torch.randint(0, n + 2, shape, generator=generator).to(device)
    results = {m: poisson_binomial_tail(probs, tau, m).detach() for m in METHODS}
    row: dict[str, object] = {
        "device": device_name(device),
        "n": n,
        "max_abs_difference": float((results["recursion"] - results["dft"]).abs().max()),
    }
    for method in METHODS:

        def forward(method: str = method) -> torch.Tensor:
            return poisson_binomial_tail(probs, tau, method)

        def forward_backward(method: str = method) -> None:
            probs.grad = None
            poisson_binomial_tail(probs, tau, method).sum().backward()

        row[f"{method}_ms"], row[f"{method}_calls"] = median_ms(
            forward, device, args.repeats, args.budget
        )
        row[f"{method}_fwd_bwd_ms"], row[f"{method}_fwd_bwd_calls"] = median_ms(
            forward_backward, device, args.repeats, args.budget
        )
    row["dft_over_recursion"] = row["dft_ms"] / row["recursion_ms"]
    row["dft_over_recursion_fwd_bwd"] = row["dft_fwd_bwd_ms"] / row["recursion_fwd_bwd_ms"]
    row["paper_ms"] = PAPER_MS.get(n)
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
        "| device | N | recursion ms | dft ms | dft / recursion | recursion fwd+bwd ms "
        "| dft fwd+bwd ms | dft / recursion (fwd+bwd) | paper ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        paper = "-" if r["paper_ms"] is None else f"{r['paper_ms']}"
        lines.append(
            f"| {r['device']} | {r['n']} | {r['recursion_ms']:.3f} | {r['dft_ms']:.3f} "
            f"| {r['dft_over_recursion']:.2f} | {r['recursion_fwd_bwd_ms']:.3f} "
            f"| {r['dft_fwd_bwd_ms']:.3f} | {r['dft_over_recursion_fwd_bwd']:.2f} | {paper} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,20,50,100,200,500", help="N values, comma-separated")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--classes", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=30, help="most calls timed per cell")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per cell, soft")
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads; 0: torch's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "poibin_speed")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    rows = []
    for name in args.devices.split(","):
        if name == "cuda" and not torch.cuda.is_available():
            continue
        device = torch.device(name)
        rows += [measure(device, n, args, generator) for n in sizes]
    worst = max(float(r["max_abs_difference"]) for r in rows)
    if worst > 1e-6:
        raise SystemExit(f"recursion and dft disagree by {worst}")
    text = table(rows)
    print(text)
    total_s = time.perf_counter() - started
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "seed": args.seed,
        "batch": {"videos": args.videos, "classes": args.classes, "dtype": "float32"},
        "repeats": args.repeats,
        "budget_s_per_cell": args.budget,
        "total_s": total_s,
        "paper_ms_source": "paper 002 Table 2 (SPEC section 5 quotes N = 10, 200, 500)",
    }
    note = (
        f"Median milliseconds of one `poisson_binomial_tail` call (pmf + tail sum) on a "
        f"{args.videos} x {args.classes} batch of float32 probabilities with random tau; "
        "the plain columns are the forward call with the autograd graph recorded, as in "
        "training; 'fwd+bwd' adds `.sum().backward()`. "
        f"Up to {args.repeats} calls a cell after a warm-up, fewer (at least 3) once a cell has "
        f"spent {args.budget:g} s. Both methods compute in float64 / complex128; they agree to "
        f"{worst:.1e} here. torch {torch.__version__}, {platform.platform()}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch thread(s) (load average "
        f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after; other jobs on the machine "
        "slow the CPU rows), "
        f"{total_s:.0f} s in all. The paper's column is its Table 2 (pooling only, GPU and batch "
        "not stated), so compare its trend with N, not its absolute values, with CPU rows."
    )
    write_results(args.out, "PoiBin pooling speed", text, note, {"meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
