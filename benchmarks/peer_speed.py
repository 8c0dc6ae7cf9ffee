"""Side by side: the official HAN code and avvp's han training on one dataset, 1 thread, CPU.

    nice python benchmarks/peer_speed.py --official DIR [--data LLP_DIR | --videos 700]
        [--epochs 5] [--batch-size 16] [--lr 3e-4] [--repeats 2] [--avvp-precision fp32,bf16]
        [--python PY] [--work DIR] [--out benchmarks/results/peer_speed]

DIR is the user's own checkout of YapengTian/AVVP-ECCV20. Nothing is written there: the files the
training needs (main_avvp.py, dataloader.py, nets/, utils/) are copied to WORK/official and
patched to run on the CPU in one process (:data:`PATCHES`, each must match, else a clear error
names it; the results file lists them). The dataset is --data (an LLP-layout folder) or one made
with ``avvp synth --videos N`` in WORK/data; its annotation CSVs replace the LLP ones in the
copy's data/.

Both sides train with the same epochs, batch size, learning rate and schedule (Adam, StepLR 10 x
0.1), validating after every epoch, with OMP_NUM_THREADS=1 and no loader workers, each run in its
own process through benchmarks/timed_run.py, which times every call of the official ``train`` /
``eval`` and of avvp's ``Trainer.train_one_epoch`` / ``score_split`` (wall and process CPU
time) and reads the process's peak RSS. The runs take turns (official, avvp fp32, avvp bf16,
then again) --repeats times. A run's epoch time is the median of its epochs after the first (the
first warms up); the table gives the median over runs, and the last line the ratio
``train epoch official/avvp: W x wall, C x cpu`` for avvp at fp32. Five epochs by default, so
that the median sets aside one slow epoch: on avvp's synthetic data the second epoch drives
gradients into subnormal floats, which slowed the official code's epoch by a quarter (avvp
flushes them, ``train.flush_denormal``), and a median of two epochs would count that epoch
half.

avvp bf16 passes ``train.precision=bf16``; where this avvp has no such key, the row is skipped
with a line saying so. The official code needs pandas < 3 and numpy; torchvision, which it imports
for ``transforms.Compose`` only, is replaced by a stand-in where it does not import (as in
benchmarks/peer_ma.py, whose helpers this script uses).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_ma import (
    DATA_FILES,
    PatchError,
    check_data,
    check_interpreter,
    feature_flags,
    needs_shim,
    run_step,
    write_shim,
)
from results_file import machine, machine_sentence, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "peer_speed"
TIMER = Path(__file__).resolve().parent / "timed_run.py"
# What the official training imports, relative to the checkout.
OFFICIAL_FILES = ("main_avvp.py", "dataloader.py", "nets", "utils")
OFFICIAL_TIMED = ("train=main_avvp:train", "eval=main_avvp:eval")
AVVP_TIMED = (
    "train=avvp.training.trainer:Trainer.train_one_epoch",
    "eval=avvp.training.trainer:score_split",
)
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Patch:
    """Every occurrence of ``old`` in ``path`` becomes ``new``; ``old`` must occur."""

    path: str
    old: str
    new: str
    why: str


PATCHES = (
    Patch("main_avvp.py", ".to('cuda')", ".to('cpu')", "CPU: the model and every batch"),
    Patch(
        "main_avvp.py",
        "num_workers=12",
        "num_workers=0",
        "one process: the train loader's 12 workers would run outside the timed process",
    ),
    Patch(
        "main_avvp.py",
        "num_workers=1,",
        "num_workers=0,",
        "one process: the validation loader's worker, likewise",
    ),
    Patch(
        "main_avvp.py",
        "pin_memory = True",
        "pin_memory = False",
        "CPU: no device to pin memory for (a warning a batch otherwise)",
    ),
)


def patch_text(text: str, patches: Sequence[Patch], name: str) -> tuple[str, list[str]]:
    """Apply the ``patches`` meant for file ``name`` to its ``text``; (new text, a line each)."""
    done = []
    for patch in patches:
        if patch.path != name:
            continue
        count = text.count(patch.old)
        if count == 0:
            raise PatchError(
                f"{name}: {patch.old!r} not found; the official code differs from the version "
                "benchmarks/peer_speed.py patches (YapengTian/AVVP-ECCV20, main_avvp.py of 2020)"
            )
        text = text.replace(patch.old, patch.new)
        done.append(f"{name}: `{patch.old}` -> `{patch.new}` ({count}x): {patch.why}")
    return text, done


def check_official(official: Path) -> None:
    missing = [name for name in OFFICIAL_FILES if not (official / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"--official {official}: no {', '.join(missing)}; give a checkout of "
            "YapengTian/AVVP-ECCV20"
        )


def prepare_official(official: Path, data: Path, scratch: Path) -> list[str]:
    """Copy what the training needs into ``scratch``, patched, with the dataset's CSVs."""
    if scratch.exists():
        shutil.rmtree(scratch)  # ours: made by an earlier run of this script
    scratch.mkdir(parents=True)
    python_only = shutil.ignore_patterns("*.pt", "__pycache__")
    for name in OFFICIAL_FILES:
        source = official / name
        if source.is_dir():
            shutil.copytree(source, scratch / name, ignore=python_only)
        else:
            shutil.copyfile(source, scratch / name)
    done = []
    for name in sorted({patch.path for patch in PATCHES}):
        text, lines = patch_text((scratch / name).read_text(), PATCHES, name)
        (scratch / name).write_text(text)
        done += lines
    (scratch / "data").mkdir()
    for name in DATA_FILES:
        shutil.copyfile(data / name, scratch / "data" / name)
    (scratch / "models").mkdir()
    return done


def has_precision_key() -> bool:
    """Whether this avvp has ``train.precision`` (the bf16 row needs it)."""
    from avvp.config import resolve_config

    try:
        config = resolve_config("han")
    except Exception:
        return False
    return "precision" in config.get("train", {})


def official_command(python: str, data: Path, settings: Mapping, times: Path) -> list[str]:
    schedule = [
        "--batch-size",
        str(settings["batch_size"]),
        "--epochs",
        str(settings["epochs"]),
        "--lr",
        str(settings["lr"]),
    ]
    timed = [part for spec in OFFICIAL_TIMED for part in ("--time", spec)]
    return [
        python,
        "-W",
        "ignore",
        str(TIMER),
        "--out",
        str(times),
        "--path",
        ".",
        *timed,
        "main_avvp:main",
        "--",
        "--mode",
        "train",
        *feature_flags(data),
        *schedule,
        "--seed",
        "1",
        "--log-interval",
        "1000000",
    ]


def avvp_command(
    data: Path, out: Path, settings: Mapping, precision: str, times: Path
) -> list[str]:
    overrides = [
        "seed=1",
        f"optim.epochs={settings['epochs']}",
        f"optim.batch_size={settings['batch_size']}",
        f"optim.lr={settings['lr']}",
        "optim.lr_step=10",
        "optim.lr_gamma=0.1",
        "train.device=cpu",
        "train.num_workers=0",
    ]
    if precision != "fp32":
        overrides.append(f"train.precision={precision}")
    timed = [part for spec in AVVP_TIMED for part in ("--time", spec)]
    arguments = ["train", "--method", "han", "--data", str(data), "--out", str(out)]
    return [
        sys.executable,
        str(TIMER),
        "--out",
        str(times),
        *timed,
        "avvp.cli:main",
        "--",
        *arguments,
        "--no-progress",
        *overrides,
    ]


def summarize(times: Mapping, epochs: int) -> dict[str, float]:
    """One run: median train-epoch wall/CPU and validation wall/CPU seconds, peak RSS."""
    # First epoch warms up (allocator, caches); with one epoch there is nothing else.
    skip = 1 if epochs > 1 else 0
    train = times["calls"]["train"][skip:epochs]
    # avvp may score the test split after training too: only the per-epoch validations.
    validation = times["calls"]["eval"][skip:epochs]
    if not train or not validation:
        raise RuntimeError("a run recorded no train or validation call; see its log")
    return {
        "train_wall_s": statistics.median(call[0] for call in train),
        "train_cpu_s": statistics.median(call[1] for call in train),
        "val_wall_s": statistics.median(call[0] for call in validation),
        "val_cpu_s": statistics.median(call[1] for call in validation),
        "peak_rss_mib": times["peak_rss_mib"],
    }


def make_data(work: Path, videos: int) -> Path:
    from avvp.cli import main as avvp_main

    data = work / "data"
    if avvp_main(["synth", "--out", str(data), "--videos", str(videos), "--no-progress"]):
        raise RuntimeError("avvp synth failed")
    return data


def count_rows(path: Path) -> int:
    return max(sum(1 for line in path.read_text().splitlines() if line.strip()) - 1, 0)


def table(rows: Mapping[str, Mapping[str, float]]) -> str:
    lines = [
        "| side | train epoch wall s | train epoch CPU s | validation wall s "
        "| validation CPU s | peak RSS MiB | runs |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for side, row in rows.items():
        lines.append(
            f"| {side} | {row['train_wall_s']:.2f} | {row['train_cpu_s']:.2f} "
            f"| {row['val_wall_s']:.2f} | {row['val_cpu_s']:.2f} | {row['peak_rss_mib']:.0f} "
            f"| {row['runs']} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="YapengTian/AVVP-ECCV20")
    parser.add_argument("--data", type=Path, help="LLP-layout dataset (default: avvp synth)")
    parser.add_argument("--videos", type=int, default=700, help="avvp synth --videos (70% train)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--repeats", type=int, default=2, help="runs a side, taking turns")
    parser.add_argument("--avvp-precision", default="fp32,bf16", help="fp32 and/or bf16")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the official")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    args.precisions = [p for p in args.avvp_precision.split(",") if p]
    unknown = [p for p in args.precisions if p not in PRECISIONS]
    if unknown or "fp32" not in args.precisions:
        parser.error(f"--avvp-precision: fp32 and optionally bf16, got {args.avvp_precision!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_official(args.official)
    check_interpreter(args.python)
    with tempfile.TemporaryDirectory(prefix="peer_speed-") as temporary:
        work = args.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        data = args.data or make_data(work, args.videos)
        check_data(data)
        patches = prepare_official(args.official, data, work / "official")
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        if needs_shim(args.python):
            shim = write_shim(work / "shim")
            environment["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(shim), environment.get("PYTHONPATH")])
            )
        sides = {"official HAN": ("official", "fp32")}
        skipped = []
        for precision in args.precisions:
            if precision == "bf16" and not has_precision_key():
                skipped.append("avvp bf16: skipped, this avvp has no train.precision key")
                print(skipped[-1], flush=True)
                continue
            sides[f"avvp {precision}"] = ("avvp", precision)
        settings = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        for repeat in range(args.repeats):
            for side, (kind, precision) in sides.items():
                tag = f"{kind}-{precision}-{repeat}"
                times = work / f"{tag}.json"
                if kind == "official":
                    command = official_command(args.python, data, settings, times)
                    cwd = work / "official"
                else:
                    if (work / tag).exists():
                        # ours, from an earlier call with this --work: a finished run would
                        # train nothing
                        shutil.rmtree(work / tag)
                    command = avvp_command(data, work / tag, settings, precision, times)
                    cwd = ROOT
                print(f"{side}, run {repeat + 1} of {args.repeats} ...", flush=True)
                run_step(side, command, cwd, work / f"{tag}.log", environment)
                runs[side].append(summarize(json.loads(times.read_text()), args.epochs))
        rows = {
            side: {
                **{key: statistics.median(run[key] for run in found) for key in found[0]},
                "runs": len(found),
            }
            for side, found in runs.items()
        }
        videos = {
            "train": count_rows(data / "AVVP_train.csv"),
            "val": count_rows(data / "AVVP_val_pd.csv"),
        }
    official, ours = rows["official HAN"], rows["avvp fp32"]
    wall_ratio = official["train_wall_s"] / ours["train_wall_s"]
    cpu_ratio = official["train_cpu_s"] / ours["train_cpu_s"]
    text = table(rows)
    summary = f"train epoch official/avvp: {wall_ratio:.2f} x wall, {cpu_ratio:.2f} x cpu"
    print(text)
    for line in skipped:
        print(line)
    facts = machine()
    note = "\n".join(
        [
            f"{videos['train']} train / {videos['val']} val videos "
            f"({'--data ' + str(args.data) if args.data else f'avvp synth --videos {args.videos}'}"
            f"), {args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g}, 1 thread, no "
            f"loader workers, {args.repeats} run(s) a side taking turns. Epoch and validation "
            "times: median over a run's epochs after the first, then over runs; CPU is the "
            "process's CPU time during the call. Peak RSS: the whole training process's. "
            + machine_sentence(facts),
            "",
            *[f"- {line}" for line in skipped],
            "Changes to the official code (in a copy):",
            *[f"- {line}" for line in patches],
            "",
            summary,
        ]
    )
    write_results(
        args.out,
        "Official HAN vs avvp: training speed",
        text,
        note,
        {"rows": rows, "runs": runs, "patches": patches, "machine": facts, "summary": summary},
    )
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
