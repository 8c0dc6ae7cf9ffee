"""Train every method (and its ablations) with several seeds on one dataset; write docs/results.md.

    python benchmarks/compare_methods.py --data DIR [--seeds 1,2,3] [--ablation-seeds 1]
        [--jobs 2] [--out runs/compare] [--only NAME,...] [--doc docs/results.md] [key=value ...]

DIR is normally the calibrated synthetic benchmark (`avvp synth --out DIR --annotations
../shared/llp/annotations`, docs/calibration.md). Each (experiment, seed) is one `avvp train`
process with one intra-op thread, `--jobs` of them at a time: on a 2-core CPU two single-thread
runs train 1.35x faster together than one two-thread run (benchmarks/han_speed.py). A run whose
test_metrics.json exists is kept; a killed one resumes from its last finished epoch, so the
command can be stopped and started again. key=value overrides go to every run (e.g.
optim.epochs=15); without them each method trains with its own preset.

The page holds the method table (mean ± std over seeds) next to the published LLP numbers of SPEC,
one table per ablation group, the tau-error curve where PoiBin ran on synthetic data, the run
time, and links to the speed benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avvp.evaluation.summary import LEVELS, METRICS, summarize
from avvp.plots import new_figure, save_png
from avvp.registry import available
from avvp.training.run_info import code_version
from avvp.training.runs import read_history

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPEED_RESULTS = ("han_speed", "cache_speed", "poibin_speed", "ppl_cost", "eval_speed")
Published = tuple[tuple[float, ...], tuple[float, ...]]  # segment, event: A, V, AV, Type, Event
MAIN_GROUP = "Methods"


@dataclass(frozen=True)
class Experiment:
    name: str
    method: str
    overrides: tuple[str, ...] = ()
    group: str = MAIN_GROUP
    published: Published | None = None  # the paper's LLP test numbers for this row

    @property
    def folder(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


NO_AUGMENTATION = "method.augmentation=false"
# Published numbers: SPEC sections 4 and 5; ablations from paper 002, Tables 3 and 4, as printed
# (its Table 3 first row has segment Type@AV 56.8 and event Type@AV 56.9).
HAN = Experiment(
    "HAN", "han", published=((60.1, 52.9, 48.9, 54.0, 55.4), (51.3, 48.9, 43.0, 47.7, 48.0))
)
EXPERIMENTS = (
    HAN,
    Experiment(
        "PoiBin",
        "poibin",
        published=((63.1, 63.5, 57.7, 61.4, 60.6), (54.1, 60.3, 51.5, 55.2, 52.3)),
    ),
    Experiment(
        "PoiBin: L_poibin only",
        "poibin",
        ("method.attentive_loss=false", NO_AUGMENTATION),
        "PoiBin losses (paper Table 3)",
        ((61.4, 55.9, 53.1, 56.8, 50.1), (51.9, 52.2, 46.3, 56.9, 48.4)),
    ),
    Experiment(
        "PoiBin: L_att only",
        "poibin",
        ("method.poibin_loss=false", NO_AUGMENTATION),
        "PoiBin losses (paper Table 3)",
        ((60.0, 60.1, 54.7, 58.2, 57.4), (52.9, 56.3, 46.8, 52.6, 50.6)),
    ),
    Experiment(
        "PoiBin: L_poibin + L_att",
        "poibin",
        (NO_AUGMENTATION,),
        "PoiBin losses (paper Table 3)",
        ((61.1, 62.6, 57.7, 60.8, 59.1), (53.3, 58.9, 51.5, 54.6, 51.5)),
    ),
    Experiment(
        "PoiBin: L_poibin + L_aug",
        "poibin",
        ("method.attentive_loss=false",),
        "PoiBin losses (paper Table 3)",
        ((60.6, 58.4, 54.0, 57.6, 54.4), (52.5, 54.6, 46.6, 54.3, 49.7)),
    ),
    Experiment(
        "PoiBin: tau = 1 fixed",
        "poibin",
        ("method.tau=fixed", "method.fixed_tau=1"),
        "PoiBin tau (paper Table 4)",
        ((61.8, 58.2, 53.6, 57.8, 58.4), (54.3, 55.1, 48.3, 52.6, 51.3)),
    ),
    Experiment(
        "PoiBin: tau = 10 fixed",
        "poibin",
        ("method.tau=fixed", "method.fixed_tau=10"),
        "PoiBin tau (paper Table 4)",
        ((55.7, 55.6, 50.2, 53.8, 56.0), (48.1, 51.4, 44.2, 47.6, 47.2)),
    ),
)
PPL_ABLATIONS = "PPL ablations (papers 000/001 report these on LLP; their rows are not transcribed)"
EXPERIMENTS += (
    Experiment(
        "PPL", "ppl", published=((65.9, 66.7, 61.9, 64.8, 63.7), (57.3, 64.3, 54.3, 59.9, 57.9))
    ),
    Experiment("PPL: naive pseudo labels", "ppl", ("method.pseudo_labels=naive",), PPL_ABLATIONS),
    Experiment("PPL: hard pseudo labels", "ppl", ("method.label_type=hard",), PPL_ABLATIONS),
    Experiment("PPL: no contrastive loss", "ppl", ("method.cl_weight=0",), PPL_ABLATIONS),
    Experiment("PPL: no EMA encoder", "ppl", ("method.momentum=0",), PPL_ABLATIONS),
    Experiment("PPL: classifier inference", "ppl", ("method.inference=classifier",), PPL_ABLATIONS),
)
PPL_SWEEPS = "PPL hyperparameters (paper 000: tau in its supplementary Table 3, k in its Fig. 5)"
EXPERIMENTS += tuple(
    Experiment(f"PPL: {name} = {value}", "ppl", (f"method.{key}={value}",), PPL_SWEEPS)
    for name, key, values in (("tau", "temperature", (0.05, 0.3)), ("k", "k", (1, 50)))
    for value in values
)
# Prototype labels from a trained HAN's own features, no retraining (paper 000, Table 3).
PPL_TEST = Experiment(
    "HAN + PPL_Test",
    "han",
    group="PPL_Test: PPL's prototype inference on the trained HAN runs (paper 000, Table 3)",
    published=((62.5, 55.3, 52.3, 56.0, 58.3), (55.4, 51.1, 46.9, 50.9, 50.6)),
)
PPL_TEST_FILE = "ppl_test_metrics.json"
COLUMNS = ("A", "V", "AV", "Type", "Event")


def train_command(experiment: Experiment, args: argparse.Namespace, seed: int) -> list[str]:
    return [
        sys.executable, "-m", "avvp.cli", "train",
        "--method", experiment.method,
        "--data", str(args.data),
        "--out", str(args.out / experiment.folder),
        "--seeds", str(seed),
        "--no-progress",
        *experiment.overrides,
        *args.overrides,
    ]  # fmt: skip


def run_one(experiment: Experiment, args: argparse.Namespace, seed: int) -> Path:
    run_dir = args.out / experiment.folder / f"seed-{seed}"
    if not (run_dir / "test_metrics.json").is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        command = train_command(experiment, args, seed)
        run_logged(command, run_dir.parent / f"seed-{seed}.log", f"{experiment.name} seed {seed}")
    return run_dir


def ppl_test_one(args: argparse.Namespace, seed: int) -> Path:
    """PPL_Test of the HAN run of ``seed``: its test metrics with prototype inference."""
    run_dir = args.out / HAN.folder / f"seed-{seed}"
    out = run_dir / PPL_TEST_FILE
    if not out.is_file():
        command = [
            sys.executable, "-m", "avvp.cli", "evaluate", "--run", str(run_dir),
            "--inference", "prototype", "--json", str(out),
        ]  # fmt: skip
        run_logged(command, run_dir.parent / f"seed-{seed}-ppl-test.log", f"PPL_Test seed {seed}")
    return out


def run_logged(command: list[str], log_path: Path, what: str) -> None:
    """One single-thread ``avvp`` process, its output in ``log_path``."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log_path, "w") as log:
        finished = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, check=False
        )
    if finished.returncode != 0:
        raise RuntimeError(f"{what} failed; see {log_path}")
    print(f"done: {what}", flush=True)


def load_metrics(run_dir: Path) -> dict[str, dict[str, float]]:
    return json.loads((run_dir / "test_metrics.json").read_text())


def table_rows(experiment: Experiment, runs: list[dict[str, dict[str, float]]]) -> list[str]:
    summary = summarize(runs)
    cells = [
        f"{summary['mean'][level][name]:.1f}"
        + (f" ± {summary['std'][level][name]:.1f}" if len(runs) > 1 else "")
        for level in LEVELS
        for name in METRICS
    ]
    seeds = f"{len(runs)} seed" + ("s" if len(runs) > 1 else "")
    rows = [f"| {experiment.name} (ours, {seeds}) | " + " | ".join(cells) + " |"]
    if experiment.published is not None:
        paper = [f"{value:.1f}" for values in experiment.published for value in values]
        rows.append(f"| {experiment.name} (paper, LLP) | " + " | ".join(paper) + " |")
    return rows


def tau_error_figure(histories: dict[str, list[dict[str, np.ndarray]]], out: Path) -> bool:
    """Mean |true count - tau| over positive (video, class) pairs per epoch, one line a run."""
    curves = {
        name: [history["tau.error_abs"] for history in seeds]
        for name, seeds in histories.items()
        if all("tau.error_abs" in history for history in seeds)
    }
    if not curves:
        return False
    figure = new_figure(6, 3.5)
    axis = figure.subplots()
    for name, seeds in curves.items():
        length = min(map(len, seeds))
        values = np.array([curve[:length] for curve in seeds])
        epochs = np.arange(1, length + 1)
        axis.plot(epochs, values.mean(axis=0), marker="o", label=name)
        axis.fill_between(epochs, values.min(axis=0), values.max(axis=0), alpha=0.2)
    axis.set_xlabel("epoch (tau re-estimated after each)")
    axis.set_ylabel("mean |true count - tau|")
    axis.set_title("PoiBin: tau error on synthetic train data (band: seed range)")
    axis.legend(fontsize=8)
    save_png(figure, out)
    return True


def seeds_of(experiment: Experiment, args: argparse.Namespace) -> list[int]:
    """The method rows get ``--seeds``; ablation and sweep rows ``--ablation-seeds``."""
    chosen = args.seeds if experiment.group == MAIN_GROUP else args.ablation_seeds
    return [int(seed) for seed in chosen.split(",")]


def write_page(args: argparse.Namespace, experiments: list[Experiment]) -> str:
    header = "| run | " + " | ".join(f"seg {c}" for c in COLUMNS)
    header += " | " + " | ".join(f"event {c}" for c in COLUMNS) + " |"
    separator = "| --- " * (1 + 2 * len(COLUMNS)) + "|"
    groups: dict[str, list[str]] = {}
    histories: dict[str, list[dict[str, np.ndarray]]] = {}
    for experiment in experiments:
        run_dirs = [
            args.out / experiment.folder / f"seed-{seed}" for seed in seeds_of(experiment, args)
        ]
        groups.setdefault(experiment.group, []).extend(
            table_rows(experiment, [load_metrics(run_dir) for run_dir in run_dirs])
        )
        histories[experiment.name] = [read_history(run_dir) for run_dir in run_dirs]
        if experiment is HAN:
            ppl_test = [json.loads((d / PPL_TEST_FILE).read_text()) for d in run_dirs]
            groups.setdefault(PPL_TEST.group, []).extend(table_rows(PPL_TEST, ppl_test))
    version = code_version()
    training = sum(float(np.nansum(h["seconds"])) for seeds in histories.values() for h in seeds)
    lines = [
        "# Results on the calibrated synthetic benchmark",
        "",
        f"Generated by `python benchmarks/compare_methods.py --data {args.data} "
        f"--seeds {args.seeds} --ablation-seeds {args.ablation_seeds}"
        + "".join(f" {override}" for override in args.overrides)
        + f"` at commit {version.get('git_commit')}. Training took {training / 60:.0f} min in "
        f"all (the runs' summed epoch times, {args.jobs} single-thread runs at a time on "
        f"{os.cpu_count()} CPU cores). Test split; ours are mean ± "
        "std over seeds, the paper rows are the published numbers on real LLP (SPEC), for the "
        "ordering, not for equality: synthetic features are not LLP features.",
        *scale_note(args.overrides),
    ]
    for group, rows in groups.items():
        lines += ["", f"## {group}", "", header, separator, *rows]
    figure = args.doc.parent / "figures" / "poibin_tau_error.png"
    if tau_error_figure(histories, figure):
        relative = figure.relative_to(args.doc.parent)
        lines += [
            "",
            "## PoiBin: tau against the hidden true counts",
            "",
            f"![tau error]({relative})",
        ]
    lines += cost_section(histories)
    lines += speed_section(args.doc)
    page = "\n".join(lines) + "\n"
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(page)
    return page


def scale_note(overrides: list[str]) -> list[str]:
    subset = [o.split("=", 1)[1] for o in overrides if o.startswith("data.train_videos=")]
    if not subset:
        return []
    return [
        "",
        f"Scale: every run trains on the same fixed random subset of {subset[-1]} train videos "
        "(`data.train_videos`), so that the whole comparison fits on a 2-core CPU; validation and "
        "test are complete. Absolute numbers are lower than with the full train split "
        "(docs/calibration.md); compare rows with each other.",
    ]


def cost_section(histories: dict[str, list[dict[str, np.ndarray]]]) -> list[str]:
    """Mean epoch wall time of each experiment (training + between-epoch work + validation)."""
    epoch_seconds = {
        name: float(np.mean(np.concatenate([h["seconds"] for h in seeds])))
        for name, seeds in histories.items()
    }
    reference = epoch_seconds.get(HAN.name)
    lines = [
        "",
        "## Training cost",
        "",
        "Mean wall time of an epoch (training, the method's between-epoch work, validation) "
        "in these runs, single-thread processes sharing the CPU, so compare ratios.",
        "",
        "| run | epoch s | x HAN |",
        "| --- | --- | --- |",
    ]
    for name, seconds in epoch_seconds.items():
        ratio = f"{seconds / reference:.2f}" if reference else "-"
        lines.append(f"| {name} | {seconds:.1f} | {ratio} |")
    return lines


def speed_section(doc: Path) -> list[str]:
    """The speed benchmarks' tables, copied from benchmarks/results/*.md with a link to each."""
    lines = ["", "## Speed"]
    for name in SPEED_RESULTS:
        path = RESULTS / f"{name}.md"
        if not path.is_file():
            continue
        text = path.read_text().splitlines()
        title = text[0].lstrip("# ")
        link = os.path.relpath(path, doc.parent)
        lines += ["", f"### {title}", "", f"From [{path.name}]({link}):"]
        for previous, line in zip(["", *text], text, strict=False):
            if line.startswith("|"):
                # a blank line before each table keeps consecutive tables apart
                lines += [line] if previous.startswith("|") else ["", line]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="LLP-layout dataset folder")
    parser.add_argument("--seeds", default="1,2,3", help="seeds of the method rows")
    parser.add_argument(
        "--ablation-seeds", default=None, help="seeds of ablation and sweep rows (default --seeds)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="training processes at a time")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "compare")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--only", default=None, help="comma-separated experiment names")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    args.ablation_seeds = args.ablation_seeds or args.seeds
    methods = set(available("method"))
    experiments = [e for e in EXPERIMENTS if e.method in methods]
    if args.only is not None:
        wanted = [name.strip() for name in args.only.split(",")]
        unknown = sorted(set(wanted) - {e.name for e in experiments})
        if unknown:
            known = ", ".join(e.name for e in experiments)
            parser.error(f"unknown experiment(s) {unknown}; known: {known}")
        experiments = [e for e in experiments if e.name in wanted]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        # Method rows first, so a stopped comparison has its main table before any ablation.
        ordered = sorted(experiments, key=lambda e: e.group != MAIN_GROUP)
        jobs = [pool.submit(run_one, e, args, seed) for e in ordered for seed in seeds_of(e, args)]
        for job in jobs:
            job.result()
        if HAN in experiments:
            seeds = seeds_of(HAN, args)
            for job in [pool.submit(ppl_test_one, args, seed) for seed in seeds]:
                job.result()
    print(write_page(args, experiments))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
