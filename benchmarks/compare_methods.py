"""Train every method (and its ablations) with several seeds on one dataset; write docs/results.md.

    python benchmarks/compare_methods.py --data DIR [--seeds 1,2,3] [--ablation-seeds 1]
        [--jobs 2] [--out runs/compare] [--only NAME,...] [--doc docs/results.md] [key=value ...]

DIR is normally the calibrated synthetic benchmark (`avvp synth --out DIR --annotations
../shared/llp/annotations`, docs/calibration.md). Each (experiment, seed) is one `avvp train`
process with one intra-op thread, `--jobs` of them at a time: on a 2-core CPU two single-thread
runs train 1.24x faster together than one two-thread run (benchmarks/han_speed.py). A run whose
test_metrics.json exists is kept; a killed one resumes from its last finished epoch, so the
command can be stopped and started again. key=value overrides go to every run (e.g.
optim.epochs=15); without them each method trains with its own preset.

VPLAN trains on visual pseudo labels: `--plg-labels FILE`, or by default PLG labels made from the
simulated CLIP scores of a synthetic dataset (`avvp pseudo-labels simulate-clip` and `clip`); its
PLD row retrains on the PLG + RL run of the same seed, denoised (`avvp pseudo-labels denoise`).

The page holds the method table (mean ± std over seeds) next to the published LLP numbers of SPEC,
one table per ablation group, PPL_Test on the HAN runs, the tau-error curve where PoiBin ran on
synthetic data, VPLAN's label quality on val, the training cost, and the speed tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avvp.evaluation.summary import LEVELS
from avvp.plots import new_figure, save_png
from avvp.registry import available
from avvp.report import metric_cells
from avvp.training.run_info import code_version
from avvp.training.runs import read_history

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPEED_RESULTS = (
    "han_speed",
    "step_bound",
    "peer_speed",
    "denormal_speed",
    "denormal_speed_calibrated",
    "cache_speed",
    "poibin_speed",
    "ppl_cost",
    "eval_speed",
)
Published = tuple[tuple[float, ...], tuple[float, ...]]  # segment, event: A, V, AV, Type, Event
MAIN_GROUP = "Methods"


@dataclass(frozen=True)
class Experiment:
    name: str
    method: str
    overrides: tuple[str, ...] = ()
    group: str = MAIN_GROUP
    published: Published | None = None  # the paper's LLP test numbers for this row
    main_seeds: bool = False  # trained with --seeds even outside the method table
    labels: str | None = None  # visual labels: "plg" (CLIP PLG), "pld" (PLG + RL run, denoised)

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
        "PoiBin: no warm-up",
        "poibin",
        ("method.warmup_epochs=0",),
        "PoiBin losses (paper Table 3)",
    ),
    Experiment(
        "PoiBin: per-stream counting",
        "poibin",
        ("method.counting=per_stream",),
        "PoiBin counting (SPEC section 5 option)",
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
    Experiment(
        "PPL: EMA warm-up (not in the paper)",
        "ppl",
        ("method.momentum_warmup=true",),
        PPL_ABLATIONS,
    ),
    Experiment("PPL: per-stream selection", "ppl", ("method.selection=per_stream",), PPL_ABLATIONS),
    Experiment("PPL: classifier inference", "ppl", ("method.inference=classifier",), PPL_ABLATIONS),
)
# PPL as its paper trains it against today's choices (issue 13): the base network of supplementary
# Table 1 (the preset's model.name=ppl) and "Base", that network with its MIL loss alone (the
# overrides of recipe:ppl_base; paper 000 Table 2 row 1).
PPL_FIDELITY = "PPL: the paper's recipe against our choices (papers 000/001)"
EXPERIMENTS += (
    Experiment(
        "PPL: Base (no pseudo labels)",
        "ppl",
        ("method.pl_weight=0", "method.cl_weight=0", "method.inference=classifier"),
        PPL_FIDELITY,
        ((59.5, 58.7, 54.5, 57.6, 56.5), (51.1, 53.4, 47.4, 50.6, 48.5)),
    ),
    Experiment("PPL on HAN's network", "ppl", ("model.name=han",), PPL_FIDELITY),
    Experiment("PPL: HAN's MIL loss (not Eq. 4)", "ppl", ("method.mil_loss=han",), PPL_FIDELITY),
    Experiment(
        "PPL: literal EMA reading", "ppl", ("method.momentum_reading=literal",), PPL_FIDELITY
    ),
    Experiment(
        "PPL: hard inference labels", "ppl", ("method.inference_label_type=hard",), PPL_FIDELITY
    ),
    Experiment("PPL: constant learning rate", "ppl", ("optim.lr_step=100",), PPL_FIDELITY),
)
PPL_SWEEPS = "PPL hyperparameters (paper 000: tau in its supplementary Table 3, k in its Fig. 5)"
EXPERIMENTS += tuple(
    Experiment(f"PPL: {name} = {value}", "ppl", (f"method.{key}={value}",), PPL_SWEEPS)
    for name, key, values in (("tau", "temperature", (0.05, 0.3)), ("k", "k", (1, 50)))
    for value in values
)
# VPLAN, paper 003 Table III (row 5 is also SPEC's VPLAN result). On synthetic data the CLIP scores
# are simulated (docs/synthetic.md); PLD denoises the PLG + RL run of the same seed.
VPLAN_STEPS = "VPLAN steps (paper 003, Table III; simulated CLIP scores on synthetic data)"
VPLAN_RL = Experiment(
    "VPLAN: PLG + RL",
    "vplan",
    group=VPLAN_STEPS,
    published=((60.5, 64.8, 58.3, 61.2, 59.4), (51.4, 61.5, 51.2, 54.7, 50.8)),
    main_seeds=True,
    labels="plg",
)
EXPERIMENTS += (
    Experiment(
        "VPLAN (PLG + RL + PLD)",
        "vplan",
        published=((61.1, 65.5, 59.3, 62.0, 60.1), (52.1, 62.4, 52.4, 55.6, 51.3)),
        labels="pld",
    ),
    Experiment(
        "VPLAN: PLG",
        "vplan",
        ("method.rl_weight=0",),
        VPLAN_STEPS,
        ((60.0, 63.7, 57.3, 60.3, 58.8), (51.1, 60.3, 50.4, 53.9, 50.2)),
        main_seeds=True,
        labels="plg",
    ),
    Experiment(
        "VPLAN: PLG + segment BCE",
        "vplan",
        ("method.rl_weight=0", "method.segment_bce_weight=0.5"),
        VPLAN_STEPS,
        ((60.2, 64.1, 57.6, 60.6, 59.0), (50.8, 60.5, 50.1, 53.8, 49.8)),
        labels="plg",
    ),
    VPLAN_RL,
)
# Prototype labels from a trained HAN's own features, no retraining (paper 000, Table 3), hard as
# the paper's Eq. 9 (avvp.methods.ppl.ppl_test_method); method.inference_label_type=soft is ours.
PPL_TEST_GROUP = "PPL_Test: PPL's prototype inference on the trained HAN runs (paper 000, Table 3)"
PPL_TEST = Experiment(
    "HAN + PPL_Test",
    "han",
    group=PPL_TEST_GROUP,
    published=((62.5, 55.3, 52.3, 56.0, 58.3), (55.4, 51.1, 46.9, 50.9, 50.6)),
)
# PPL_Test variants: the experiment's key=value overrides reach `avvp evaluate`; one metrics file
# per run.
PPL_TEST_FILES = {
    PPL_TEST: "ppl_test_metrics.json",
    Experiment(
        "HAN + PPL_Test, per-stream selection",
        "han",
        ("method.selection=per_stream",),
        PPL_TEST_GROUP,
    ): "ppl_test_per_stream_metrics.json",
}
PAPER_LABEL_QUALITY = (
    ("weak label alone", ("67.0", "87.9", "-", "-")),
    ("PLG", ("83.8", "81.2", "70.3", "64.7")),
    ("PLD", ("-", "-", "72.5", "68.1")),
)
PLG_VAL_LOCK = threading.Lock()
COLUMNS = ("A", "V", "AV", "Type", "Event")


def train_command(experiment: Experiment, args: argparse.Namespace, seed: int) -> list[str]:
    labels = [] if experiment.labels is None else [f"method.visual_labels={args.plg_labels}"]
    if experiment.labels == "pld":
        labels = [f"method.visual_labels={pld_labels(args, seed)}"]
    return avvp(
        "train",
        "--method", experiment.method,
        "--data", str(args.data),
        "--out", str(args.out / experiment.folder),
        "--seeds", str(seed),
        "--no-progress",
        *experiment.overrides,
        *labels,
        *args.overrides,
    )  # fmt: skip


def run_one(
    experiment: Experiment, args: argparse.Namespace, seed: int, after: Future | None = None
) -> Path:
    """Train one (experiment, seed) unless finished, once the run it depends on (``after``) is."""
    if after is not None:
        after.result()
    run_dir = args.out / experiment.folder / f"seed-{seed}"
    if not (run_dir / "test_metrics.json").is_file():
        if experiment.labels == "pld":
            denoise_one(args, seed)
        run_dir.mkdir(parents=True, exist_ok=True)
        command = train_command(experiment, args, seed)
        run_logged(command, run_dir.parent / f"seed-{seed}.log", f"{experiment.name} seed {seed}")
    return run_dir


def pld_labels(args: argparse.Namespace, seed: int) -> Path:
    return args.out / VPLAN_RL.folder / f"seed-{seed}" / "pld_labels.npz"


def denoise_one(args: argparse.Namespace, seed: int) -> Path:
    """PLD labels of ``seed``: the PLG + RL run of that seed (trained here if missing), denoised."""
    out = pld_labels(args, seed)
    if not out.is_file():
        run_dir = run_one(VPLAN_RL, args, seed)
        command = avvp("pseudo-labels", "denoise", "--run", str(run_dir), "--out", str(out))
        log = run_dir.parent / f"seed-{seed}-pld.log"
        run_logged([*command, "--no-progress"], log, f"PLD seed {seed}")
    return out


def val_label_quality(args: argparse.Namespace, seed: int) -> None:
    """PLG labels of val and their PLD by the PLG + RL run of ``seed``, scored (paper Table II)."""
    plg = args.out / "plg_labels_val.npz"
    with PLG_VAL_LOCK:
        if not plg.is_file():
            command = avvp("pseudo-labels", "clip", "--data", str(args.data), "--simulated")
            run_logged(
                [*command, "--split", "val", "--out", str(plg)], plg.with_suffix(".log"), "PLG val"
            )
        score(args, plg)
    run_dir = args.out / VPLAN_RL.folder / f"seed-{seed}"
    pld = run_dir / "pld_labels_val.npz"
    if not pld.is_file():
        command = avvp("pseudo-labels", "denoise", "--run", str(run_dir), "--out", str(pld))
        command += ["--labels", str(plg), "--split", "val", "--no-progress"]
        run_logged(command, pld.with_suffix(".log"), f"PLD val seed {seed}")
    score(args, pld)


def score(args: argparse.Namespace, labels: Path) -> dict:
    out = labels.with_suffix(".quality.json")
    if not out.is_file():
        command = avvp("pseudo-labels", "score", str(labels), "--data", str(args.data))
        run_logged(
            [*command, "--split", "val", "--json", str(out)],
            out.with_suffix(".log"),
            f"score {labels.name}",
        )
    return json.loads(out.read_text())


def label_quality_section(args: argparse.Namespace) -> list[str]:
    """Video-level precision / recall and visual F-scores of the label files on val."""
    plg = args.out / "plg_labels_val.quality.json"
    if not plg.is_file():
        return []
    seeds = seeds_of(VPLAN_RL, args)
    pld = [args.out / VPLAN_RL.folder / f"seed-{s}" / "pld_labels_val.quality.json" for s in seeds]

    def cells(quality: dict, row: str) -> list[float]:
        visual = quality[row]["visual"]
        video = visual["video"]
        return [video["precision"], video["recall"], visual["segment_f1"], visual["event_f1"]]

    plg_quality = json.loads(plg.read_text())
    rows = [
        ("weak label alone (ours)", cells(plg_quality, "weak")),
        ("PLG (ours)", cells(plg_quality, "labels")),
    ]
    if all(path.is_file() for path in pld):
        values = np.mean([cells(json.loads(path.read_text()), "labels") for path in pld], axis=0)
        rows.append((f"PLD (ours, mean of the {len(seeds)} PLG + RL runs)", list(values)))
    lines = [
        "",
        "## VPLAN: visual label quality on val",
        "",
        "Video-level precision / recall (the paper's Table I, averaged per video) and visual "
        "segment / event F of the label files against the dense val ground truth; paper rows "
        "from paper 003 (Tables I and II) and SPEC, on real LLP with real CLIP.",
        "",
        "| labels | video P | video R | segment F | event F |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + " |" for name, values in rows
    ]
    lines += [
        f"| {name} (paper, LLP) | " + " | ".join(values) + " |"
        for name, values in PAPER_LABEL_QUALITY
    ]
    return lines


def example_video(args: argparse.Namespace) -> str:
    """``--plot-video``, or the first test video whose ground truth holds 3 or more classes."""
    if args.plot_video is not None:
        return args.plot_video
    from avvp.data.annotations import LLPAnnotations

    annotations = LLPAnnotations(args.data, warn=False)
    dense = annotations.dense("test")
    classes = (dense.audio | dense.visual).any(axis=1).sum(axis=1)
    return annotations.weak("test").filenames[int(np.argmax(classes >= 3))]


def parse_figure(args: argparse.Namespace, experiments: list[Experiment]) -> Path | None:
    """One test video parsed by the first seed of every method-table run, stacked."""
    runs = [
        args.out / e.folder / f"seed-{seeds_of(e, args)[0]}"
        for e in experiments
        if e.group == MAIN_GROUP
    ]
    if not runs:
        return None
    out = args.doc.parent / "figures" / "parse_comparison.png"
    video = example_video(args)
    command = avvp("plot", "--run", str(runs[0]), "--video", video, "--out", str(out))
    if runs[1:]:
        command += ["--compare", *map(str, runs[1:])]
    run_logged(command, args.out / "parse_comparison.log", f"parse figure of {video}")
    return out


def plg_labels(args: argparse.Namespace) -> Path:
    """``--plg-labels``, or PLG labels made from the dataset's simulated CLIP scores."""
    if args.plg_labels is not None:
        return args.plg_labels
    out = args.out / "plg_labels.npz"
    if not out.is_file():
        args.out.mkdir(parents=True, exist_ok=True)
        log = args.out / "plg_labels.log"
        if not (args.data / "synthetic_clip_scores.npz").is_file():
            command = avvp("pseudo-labels", "simulate-clip", "--data", str(args.data))
            run_logged(command, log, "simulated CLIP scores")
        command = avvp("pseudo-labels", "clip", "--data", str(args.data), "--simulated")
        run_logged([*command, "--split", "train", "--out", str(out)], log, "PLG labels")
    return out


def ppl_test_one(args: argparse.Namespace, seed: int, variant: Experiment) -> Path:
    """PPL_Test of the HAN run of ``seed``: its test metrics with prototype inference."""
    run_dir = args.out / HAN.folder / f"seed-{seed}"
    out = run_dir / PPL_TEST_FILES[variant]
    if not out.is_file():
        command = avvp(
            "evaluate", "--run", str(run_dir), "--inference", "prototype", "--json", str(out)
        )
        command += list(variant.overrides)
        log = run_dir.parent / f"seed-{seed}-{variant.folder}.log"
        run_logged(command, log, f"{variant.name} seed {seed}")
    return out


def avvp(*arguments: str) -> list[str]:
    """An ``avvp`` command line run with this interpreter."""
    return [sys.executable, "-m", "avvp.cli", *arguments]


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
    by_level = metric_cells(runs, digits=1)
    cells = [cell for level in LEVELS for cell in by_level[level]]
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
    figure = new_figure(8.5, 3.5)
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
    # Outside the axes: curves cross the whole plot, any corner hides one.
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    save_png(figure, out)
    return True


def seeds_of(experiment: Experiment, args: argparse.Namespace) -> list[int]:
    """The method rows get ``--seeds``; ablation and sweep rows ``--ablation-seeds``."""
    main = experiment.group == MAIN_GROUP or experiment.main_seeds
    chosen = args.seeds if main else args.ablation_seeds
    return [int(seed) for seed in chosen.split(",")]


# benchmarks/suite.py puts its table between these markers at the top of the page; a rewrite of
# the page keeps it (the suite's runs are not this script's).
SUITE_START, SUITE_END = "<!-- suite table: benchmarks/suite.py -->", "<!-- end of suite table -->"


def kept_suite_table(doc: Path) -> list[str]:
    """The suite table block of ``doc`` as it stands, markers included, or nothing."""
    text = doc.read_text() if doc.is_file() else ""
    if SUITE_START not in text or SUITE_END not in text:
        return []
    block = text.split(SUITE_START, 1)[1].split(SUITE_END, 1)[0]
    return ["", f"{SUITE_START}{block}{SUITE_END}"]


def write_page(
    args: argparse.Namespace, experiments: list[Experiment], parse_png: Path | None = None
) -> str:
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
            for variant, filename in PPL_TEST_FILES.items():
                ppl_test = [json.loads((d / filename).read_text()) for d in run_dirs]
                groups.setdefault(variant.group, []).extend(table_rows(variant, ppl_test))
    version = code_version()
    training = sum(float(np.nansum(h["seconds"])) for seeds in histories.values() for h in seeds)
    lines = [
        "# Results on the calibrated synthetic benchmark",
        *kept_suite_table(args.doc),
        "",
        f"Generated by `python benchmarks/compare_methods.py --data {args.data} "
        f"--seeds {args.seeds} --ablation-seeds {args.ablation_seeds}"
        + (f' --only "{args.only}"' if args.only else "")
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
            "Mean |true count - tau| over positive (video, class) pairs after each epoch's E-step. "
            "Rows with a warm-up (`method.warmup_epochs`, 5 in the preset) train L_att alone "
            "until then, so their curves coincide; L_poibin and L_aug join after it, and best.pt "
            "is chosen among the later epochs. Per-stream counting compares each stream's tau with "
            "that stream's count (at most T = 10; joint counting: at most 2T = 20).",
            "",
            f"![tau error]({relative})",
        ]
    if parse_png is not None:
        lines += [
            "",
            "## One test video, parsed by each method (seed 1)",
            "",
            "Ground truth above each prediction track, audio and visual columns, shading = segment "
            "probability, outlines = the binarised events (`avvp plot --compare`).",
            "",
            f"![parses]({os.path.relpath(parse_png, args.doc.parent)})",
        ]
    lines += label_quality_section(args)
    lines += label_denoising_section(args.doc)
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
        "in these runs: single-thread processes sharing the CPU with each other and with "
        "whatever else ran, so rows trained at different times (a different machine load) do "
        "not compare; each run's metrics.csv splits its epochs into train, method and "
        "validation seconds.",
        "",
        "| run | epoch s | x HAN |",
        "| --- | --- | --- |",
    ]
    for name, seconds in epoch_seconds.items():
        ratio = f"{seconds / reference:.2f}" if reference else "-"
        lines.append(f"| {name} | {seconds:.1f} | {ratio} |")
    return lines


def label_denoising_section(doc: Path) -> list[str]:
    """benchmarks/label_denoising.py's tables and note (its own runs and command), if it ran."""
    path = RESULTS / "label_denoising.md"
    if not path.is_file():
        return []
    title, *body = path.read_text().rstrip("\n").splitlines()
    link = os.path.relpath(path, doc.parent)
    return ["", f"## {title.lstrip('# ')}", "", f"From [{path.name}]({link}):", *body]


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
    parser.add_argument(
        "--plot-video",
        default=None,
        help="test video drawn by every method (default: the first with 3 or more classes)",
    )
    parser.add_argument(
        "--plg-labels",
        type=Path,
        default=None,
        help="VPLAN's visual label file (`avvp pseudo-labels clip`); default: PLG labels from "
        "the simulated CLIP scores of a synthetic dataset",
    )
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
    args.simulated_clip = args.plg_labels is None
    if any(e.labels is not None for e in experiments):
        args.plg_labels = plg_labels(args)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        # Method rows first, so a stopped comparison has its main table before any ablation;
        # PLD runs after the PLG + RL runs they denoise.
        ordered = sorted(
            experiments,
            key=lambda e: (not (e.group == MAIN_GROUP or e.main_seeds), e.labels == "pld"),
        )
        jobs: dict[tuple[str, int], Future] = {}
        for experiment in ordered:
            for seed in seeds_of(experiment, args):
                after = jobs.get((VPLAN_RL.name, seed)) if experiment.labels == "pld" else None
                jobs[experiment.name, seed] = pool.submit(run_one, experiment, args, seed, after)
        for job in jobs.values():
            job.result()
        if VPLAN_RL in experiments and args.simulated_clip:
            for job in [
                pool.submit(val_label_quality, args, seed) for seed in seeds_of(VPLAN_RL, args)
            ]:
                job.result()
        if HAN in experiments:
            seeds = seeds_of(HAN, args)
            variants = [(seed, variant) for seed in seeds for variant in PPL_TEST_FILES]
            for job in [pool.submit(ppl_test_one, args, *pair) for pair in variants]:
                job.result()
    figure = parse_figure(args, experiments)
    print(write_page(args, experiments, figure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
