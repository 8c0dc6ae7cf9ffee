"""Training with and without flushing subnormal floats to zero (``train.flush_denormal``).

    nice python benchmarks/denormal_speed.py [--data LLP_DIR | --videos 700] [--epochs 10]
        [--repeats 2] [--work DIR] [--out benchmarks/results/denormal_speed] [--label NAME]
        [key=value ...]

Trains avvp's han twice per repeat on one dataset (``--data``, or one made with ``avvp synth
--videos N`` in WORK/data), same seed and schedule, once with ``train.flush_denormal=false`` and
once with ``true``, the two taking turns (each first in every other repeat), each in its own
single-thread process. Every epoch's
training time is the run's own ``seconds.train`` (metrics.csv). The table gives, per epoch, the
median over repeats of each mode and their ratio; below it, whether the two modes' final weights
are bit-identical (else the largest difference) and their test segment Type@AV, since flushing
changes values below 1.2e-38 only. Extra ``key=value`` arguments go to both trainings.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from peer_speed import count_rows, make_data
from results_file import machine, machine_sentence, write_results

RESULT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "denormal_speed"
MODES = {"off": "false", "on": "true"}


def train(data: Path, out: Path, epochs: int, flush: str, overrides: list[str]) -> None:
    command = [
        sys.executable,
        "-m",
        "avvp.cli",
        "train",
        "--method",
        "han",
        "--data",
        str(data),
        "--out",
        str(out),
        "--no-progress",
        "seed=1",
        f"optim.epochs={epochs}",
        "train.num_workers=0",
        f"train.flush_denormal={flush}",
        *overrides,
    ]
    log = out.with_suffix(".log")
    with log.open("w") as handle:
        single_thread = os.environ | {"OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=single_thread)
    if done.returncode:
        raise RuntimeError(f"training failed ({' '.join(command)}); see {log}")


def epoch_seconds(run: Path) -> list[float]:
    with (run / "metrics.csv").open() as handle:
        return [float(row["seconds.train"]) for row in csv.DictReader(handle)]


def compare_weights(first: Path, second: Path) -> tuple[bool, float]:
    """(bit-identical, largest absolute difference) of two runs' last.pt model weights."""
    weights = [torch.load(run / "last.pt", weights_only=False)["model"] for run in (first, second)]
    identical = all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    largest = max(float((weights[0][key] - weights[1][key]).abs().max()) for key in weights[0])
    return identical, largest


def type_at_av(run: Path) -> float:
    return json.loads((run / "test_metrics.json").read_text())["segment"]["type"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="an LLP-layout folder (default: synthesize)")
    parser.add_argument("--videos", type=int, default=700, help="videos to synthesize")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--label", help="the dataset's name in the title (default: its folder)")
    parser.add_argument("overrides", nargs="*", help="config key=value for both trainings")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="denormal-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    data = args.data or make_data(work, args.videos)
    seconds: dict[str, list[list[float]]] = {mode: [] for mode in MODES}
    runs: dict[str, list[Path]] = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        # Either mode goes first in every other repeat, so neither gains from running second.
        order = list(MODES.items()) if repeat % 2 == 0 else list(MODES.items())[::-1]
        for mode, flush in order:
            out = work / f"{mode}-{repeat}"
            if out.exists():
                shutil.rmtree(out)  # ours: a run folder of an earlier call with this --work
            train(data, out, args.epochs, flush, args.overrides)
            seconds[mode].append(epoch_seconds(out))
            runs[mode].append(out)
            print(f"repeat {repeat + 1}, flush {mode}: {sum(seconds[mode][-1]):.1f} s", flush=True)
    medians = {
        mode: [statistics.median(column) for column in zip(*seconds[mode], strict=True)]
        for mode in MODES
    }
    rows = [
        "| epoch | train s, no flushing | train s, flushing | no flushing / flushing |",
        "| --- | --- | --- | --- |",
    ]
    for epoch, (off, on) in enumerate(zip(medians["off"], medians["on"], strict=True), 1):
        rows.append(f"| {epoch} | {off:.2f} | {on:.2f} | {off / on:.2f}x |")
    total_off, total_on = sum(medians["off"]), sum(medians["on"])
    rows.append(f"| all | {total_off:.2f} | {total_on:.2f} | {total_off / total_on:.2f}x |")
    identical, largest = compare_weights(runs["off"][0], runs["on"][0])
    scores = {mode: type_at_av(runs[mode][0]) for mode in MODES}
    facts = machine() | {"load_average_1_5_15": os.getloadavg()}
    train_videos = count_rows(data / "AVVP_train.csv")
    subset = [
        item.split("=", 1)[1] for item in args.overrides if item.startswith("data.train_videos=")
    ]
    if subset and subset[-1] not in ("null", "None"):
        train_videos = min(train_videos, int(subset[-1]))
    weights = "bit-identical" if identical else f"differ by at most {largest:.3g}"
    note = (
        f"avvp han, {train_videos} train videos ({data.name}), {args.epochs} epochs, seed 1, one "
        f"thread, {args.repeats} repeat(s) taking turns; extra settings: "
        f"{' '.join(args.overrides) or 'none'}. Train seconds: each run's metrics.csv "
        f"seconds.train, median over repeats. Final weights of the two modes (repeat 1): "
        f"{weights}; test segment Type@AV {scores['off']:.2f} without flushing, "
        f"{scores['on']:.2f} with. {machine_sentence(facts)}"
    )
    payload = {
        "epochs": args.epochs,
        "repeats": args.repeats,
        "train_videos": train_videos,
        "overrides": args.overrides,
        "seconds": seconds,
        "median_seconds": medians,
        "weights_identical": identical,
        "largest_weight_difference": largest,
        "test_segment_type": scores,
        "machine": facts,
    }
    table = "\n".join(rows)
    title = f"Training with and without flushing denormals: {args.label or data.name}"
    write_results(args.out, title, table, note, payload)
    print(table + "\n\n" + note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
