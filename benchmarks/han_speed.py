"""HAN speed: training throughput, peak memory and inference latency, on CPU (and CUDA if present).

    python benchmarks/han_speed.py [--steps 60] [--devices cpu,cuda] [--processes 2] [--no-loaded]
                                   [--precision fp32|bf16]

Prints a table and writes benchmarks/results/han_speed.{md,json}. Inputs are random features of
the official dimensions held in memory, so the numbers measure the model and the training step,
not the disk (see cache_speed.py for data loading). The CPU is measured with all its threads, with
one thread, and as --processes single-thread processes training at once (their summed
throughput): on a small CPU, independent runs (seeds, ablations) go faster that way. The
"loaded" rows run one training process in each thread layout (1 thread, torch's default, the
default with OMP_WAIT_POLICY=PASSIVE) alone and next to a competing busy-loop process, in
interleaved repetitions: the layout avvp trains with (one thread unless OMP_NUM_THREADS is set)
must not collapse on a shared machine. ``--precision bf16`` runs the training forward passes as
``train.precision=bf16`` does (the trainer's own autocast context).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from results_file import write_results

from avvp.config import resolve_config
from avvp.losses import attentive_mil_loss
from avvp.training.trainer import build_model, build_optimizer, forward_precision

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
    optimizer = build_optimizer(model, config)
    inputs = features(config, batch, device)
    weak = (torch.rand(batch, 25, device=device) < 0.08).float()

    def step():
        with forward_precision(config["train"]["precision"], device):
            output = model(inputs)
        loss = attentive_mil_loss(output, weak)
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


def han_config(precision: str) -> dict:
    return resolve_config("han", overrides=[f"train.precision={precision}"])


def single_thread_throughput(steps_batch_precision: tuple[int, int, str]) -> float:
    torch.set_num_threads(1)
    steps, batch, precision = steps_batch_precision
    return train_throughput(han_config(precision), torch.device("cpu"), steps, batch)


def parallel_throughput(processes: int, steps: int, batch: int, precision: str) -> float:
    """Summed videos/s of ``processes`` single-thread training processes running at once."""
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        work = [(steps, batch, precision)] * processes
        return sum(pool.map(single_thread_throughput, work))


# (row label, torch threads or 0 for torch's default, extra environment)
LAYOUTS = (
    ("1 thread (avvp's training default)", 1, {}),
    ("torch default threads", 0, {}),
    ("torch default threads, OMP_WAIT_POLICY=PASSIVE", 0, {"OMP_WAIT_POLICY": "PASSIVE"}),
)


def layout_throughput(
    threads: int, environment: dict[str, str], busy: bool, steps: int, precision: str
) -> float:
    """Videos/s of a fresh training process (threads, environment set before torch loads),
    next to a busy-loop process if ``busy``."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    env.update(environment)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, __file__, "--measure-one", str(steps), "--precision", precision]
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    return float(result.stdout.split()[-1])


def loaded_rows(steps: int, batch: int, repeats: int, precision: str) -> list[dict]:
    """Each thread layout alone and next to a busy process, interleaved, medians."""
    samples: dict[tuple[str, bool], list[float]] = {}
    for _ in range(repeats):
        for label, threads, environment in LAYOUTS:
            for busy in (False, True):
                rate = layout_throughput(threads, environment, busy, steps, precision)
                samples.setdefault((label, busy), []).append(rate)
    return [
        {
            "device": f"cpu, {label}, {'next to a busy process' if busy else 'alone'}",
            "train_videos_per_s": statistics.median(rates),
            "samples": rates,
        }
        for (label, busy), rates in samples.items()
    ]


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
    parser.add_argument("--loaded-steps", type=int, default=8, help="steps a loaded-row run")
    parser.add_argument("--loaded-repeats", type=int, default=2)
    parser.add_argument("--no-loaded", action="store_true", help="skip the loaded rows")
    parser.add_argument("--measure-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--out", type=Path, default=RESULTS / "han_speed")
    args = parser.parse_args(argv)
    config = han_config(args.precision)
    torch.manual_seed(0)
    if args.measure_one:  # one loaded-row run, in its own process
        print(train_throughput(config, torch.device("cpu"), args.measure_one, args.batch_size))
        return 0
    load_before = os.getloadavg()[0]
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
                    args.processes, args.steps, args.batch_size, args.precision
                ),
            }
        )
    if "cpu" in args.devices.split(",") and not args.no_loaded:
        rows += loaded_rows(args.loaded_steps, args.batch_size, args.loaded_repeats, args.precision)
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
        "precision": args.precision,
        "loaded_steps": args.loaded_steps,
        "loaded_repeats": args.loaded_repeats,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }
    note = (
        "Peak memory on CPU is the process's peak resident set; on CUDA, torch's peak allocation. "
        "The paper reports HAN inference at 2.9 ms a video (PPL) / 5.9 ms (PoiBin) on its GPU. "
        f"Machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, load average "
        f"{load_before:.2f} before the run and {meta['load_average_after']:.2f} after; absolute "
        "times on a shared machine are noisy, the ratios between rows of one run are the result. "
        "Loaded rows: medians of interleaved fresh processes, alone and next to a busy loop."
    )
    write_results(args.out, "HAN speed", table, note, {"meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
