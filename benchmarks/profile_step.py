"""Where one HAN training step's CPU time goes: torch.profiler, top operators by self CPU time.

    python benchmarks/profile_step.py [--label after] [--batch-size 16] [--steps 20]

Profiles ``--steps`` full training steps (forward under the configured precision, the HAN loss,
backward, the trainer's optimiser) at batch 16 on random features of the official dimensions,
one thread, and prints the top 10 operators by self CPU time. Each run stores its table under
``--label`` in benchmarks/results/profile_step.{md,json}, keeping the other labels' sections, so
that the profile of the code before a change ("before", run on that checkout with PYTHONPATH) and
after it sit side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import torch
from results_file import machine, machine_sentence
from torch.profiler import ProfilerActivity, profile

import avvp
from avvp.config import resolve_config
from avvp.losses import attentive_mil_loss
from avvp.training import trainer

RESULTS = Path(__file__).resolve().parent / "results"


def code_version() -> str:
    """The commit of the avvp being profiled (the checkout PYTHONPATH points at)."""
    folder = Path(avvp.__file__).resolve().parent
    try:
        return subprocess.run(
            ["git", "-C", str(folder), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def step_function(config, batch: int):
    """One training step as the trainer takes it, on fixed random inputs."""
    torch.manual_seed(0)
    model = trainer.build_model(config).train()
    inputs = {name: torch.randn(batch, 10, dim) for name, dim in config["features"]["dims"].items()}
    weak = (torch.rand(batch, 25) < 0.08).float()
    # Code before build_optimizer / forward_precision existed (the "before" profile) built a
    # plain Adam and ran in fp32.
    if hasattr(trainer, "build_optimizer"):
        optimizer = trainer.build_optimizer(model, config)
        precision, device = config["train"]["precision"], torch.device("cpu")
        trainer.check_precision(precision, device)

        def forward() -> contextlib.AbstractContextManager:
            return trainer.forward_precision(precision, device)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config["optim"]["lr"])
        forward = contextlib.nullcontext

    def step() -> None:
        with forward():
            loss = attentive_mil_loss(model(inputs), weak)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after", help="section name, e.g. before / after")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("overrides", nargs="*", help="config key=value, e.g. train.precision=bf16")
    parser.add_argument("--out", type=Path, default=RESULTS / "profile_step")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = resolve_config("han", overrides=args.overrides)
    step = step_function(config, args.batch_size)
    for _ in range(5):
        step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - started) / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(args.steps):
            step()
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(event.self_cpu_time_total for event in events)
    rows = [
        {
            "operator": event.key,
            "self_cpu_ms_per_step": event.self_cpu_time_total / 1000 / args.steps,
            "share": event.self_cpu_time_total / total,
            "calls_per_step": event.count / args.steps,
        }
        for event in events[: args.rows]
    ]
    facts = machine() | {"load_average_1_5_15": os.getloadavg()}
    section = {
        "code": code_version(),
        "overrides": args.overrides,
        "batch_size": args.batch_size,
        "step_ms_unprofiled": seconds * 1000,
        "profiled_self_cpu_ms_per_step": total / 1000 / args.steps,
        "operators_per_step": sum(event.count for event in events) / args.steps,
        "top": rows,
        "machine": facts,
    }
    table = "\n".join(
        [
            "| operator | self CPU ms / step | share | calls / step |",
            "| --- | --- | --- | --- |",
            *(
                f"| {r['operator']} | {r['self_cpu_ms_per_step']:.2f} | {r['share']:.1%} | "
                f"{r['calls_per_step']:.0f} |"
                for r in rows
            ),
        ]
    )
    heading = (
        f"## {args.label}: {section['code']}\n\n"
        f"Step {section['step_ms_unprofiled']:.1f} ms unprofiled (batch {args.batch_size}, "
        f"1 thread{', ' + ' '.join(args.overrides) if args.overrides else ''}); "
        f"{section['operators_per_step']:.0f} operator calls a step; "
        f"load average {facts['load_average_1_5_15'][0]:.2f}.\n\n"
    )
    print(heading + table)
    json_path = args.out.with_suffix(".json")
    sections = json.loads(json_path.read_text()) if json_path.is_file() else {}
    sections[args.label] = section | {"markdown": heading + table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(sections, indent=2) + "\n")
    body = "\n\n".join(s["markdown"] for s in sections.values())
    args.out.with_suffix(".md").write_text(
        "# One HAN training step, profiled (torch.profiler, top operators by self CPU time)\n\n"
        "`python benchmarks/profile_step.py --label LABEL [key=value ...]`\n\n"
        f"{body}\n\n{machine_sentence(facts)} Timings on a shared 2-core machine are noisy; the "
        "operator shares within one section are the result.\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
