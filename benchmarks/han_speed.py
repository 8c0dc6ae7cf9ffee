"""HAN speed: training throughput, peak memory and inference latency, on CPU (and CUDA if present).

    python benchmarks/han_speed.py [--steps 60] [--devices cpu,cuda] [--processes 2]

Prints a table and writes benchmarks/results/han_speed.{md,json}. Inputs are random features of
the official dimensions held in memory, so the numbers measure the model and the training step,
not the disk (see cache_speed.py for data loading). The CPU is measured with all its threads, with
one thread, and as --processes single-thread processes training at once (their summed
throughput): on a small CPU, independent runs (seeds, ablations) go faster that way.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import torch
from results_file import write_results

from avvp.config import resolve_config
from avvp.losses import attentive_mil_loss
from avvp.training.trainer import build_model

RESULTS = Path(__file__).resolve().parent / "results"


def features(config, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    dims = config["features"]["dims"]
    return {name: torch.randn(batch, 10, dim, device=device) for name, dim in dims.items()}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_throughput(config, device: torch.device, steps: int, batch: int) -> float:
    """Videos per second of full training steps (forward, loss, backward, Adam)."""
    model = build_model(config).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    inputs = features(config, batch, device)
    weak = (torch.rand(batch, 25, device=device) < 0.08).float()

    def step():
        loss = attentive_mil_loss(model(inputs), weak)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * batch / (time.perf_counter() - started)


@torch.no_grad()
def inference_latency_ms(config, device: torch.device, repeats: int) -> float:
    """Median milliseconds to parse one video (batch of one), the number papers report."""
    model = build_model(config).to(device).eval()
    inputs = features(config, 1, device)
    for _ in range(5):
        model(inputs)
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        model(inputs)
        synchronize(device)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def single_thread_throughput(steps_and_batch: tuple[int, int]) -> float:
    torch.set_num_threads(1)
    steps, batch = steps_and_batch
    return train_throughput(resolve_config("han"), torch.device("cpu"), steps, batch)


def parallel_throughput(processes: int, steps: int, batch: int) -> float:
    """Summed videos/s of ``processes`` single-thread training processes running at once."""
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return sum(pool.map(single_thread_throughput, [(steps, batch)] * processes))


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(config, device: torch.device, label: str, args: argparse.Namespace) -> dict:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return {
        "device": label,
        "train_videos_per_s": train_throughput(config, device, args.steps, args.batch_size),
        "inference_ms_per_video": inference_latency_ms(config, device, args.repeats),
        "peak_memory_mb": peak_memory_mb(device),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--processes", type=int, default=2, help="parallel single-thread runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "han_speed")
    args = parser.parse_args(argv)
    config = resolve_config("han")
    torch.manual_seed(0)
    rows = []
    for name in args.devices.split(","):
        if name == "cuda" and not torch.cuda.is_available():
            continue
        device = torch.device(name)
        if device.type == "cuda":
            rows.append(measure(config, device, torch.cuda.get_device_name(device), args))
            continue
        threads = torch.get_num_threads()
        rows.append(measure(config, device, f"cpu, 1 process x {threads} threads", args))
        if threads > 1:
            torch.set_num_threads(1)
            rows.append(measure(config, device, "cpu, 1 process x 1 thread", args))
            torch.set_num_threads(threads)
        rows.append(
            {
                "device": f"cpu, {args.processes} processes x 1 thread (summed)",
                "train_videos_per_s": parallel_throughput(
                    args.processes, args.steps, args.batch_size
                ),
            }
        )
    header = (
        f"| device | train videos/s (batch {args.batch_size}) | inference ms/video "
        "| peak memory MiB |"
    )
    lines = [header, "| --- | --- | --- | --- |"]
    lines += [
        f"| {r['device']} | {r['train_videos_per_s']:.0f} | "
        + " | ".join(
            f"{r[key]:{spec}}" if key in r else "-"
            for key, spec in (("inference_ms_per_video", ".2f"), ("peak_memory_mb", ".0f"))
        )
        + " |"
        for r in rows
    ]
    table = "\n".join(lines)
    print(table)
    meta = {
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "steps": args.steps,
    }
    note = (
        "Peak memory on CPU is the process's peak resident set; on CUDA, torch's peak allocation. "
        "The paper reports HAN inference at 2.9 ms a video (PPL) / 5.9 ms (PoiBin) on its GPU. "
        f"Machine: {os.cpu_count()} CPU cores, torch {torch.__version__}; absolute times on a "
        "shared machine are noisy, the ratios between rows of one run are the result."
    )
    write_results(args.out, "HAN speed", table, note, {"meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
