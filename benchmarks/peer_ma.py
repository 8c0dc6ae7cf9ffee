"""Side by side: the authors' MA code and avvp's ``ma`` on one synthetic dataset, same schedule.

    nice python benchmarks/peer_ma.py --official DIR --data SYNTH_DIR [--seeds 1,2]
        [--epochs 12] [--batch-size 16] [--lr 3e-4] [--workers 1] [--python PY]
        [--work runs/peer_ma] [--out benchmarks/results/peer_ma] [--no-avvp] [key=value ...]

DIR is a checkout of Yu-Wu/Modaily-Aware-Audio-Visual-Video-Parsing (steps 1-3 as folders). For
each seed the three step folders are copied to WORK/official/seed-S and patched to run on the CPU
(:data:`PATCHES`, every change is listed in the results file); the dataset's annotation CSVs replace
the LLP ones in each step's ``data/`` (the features are already in the LLP layout: ``feats/vggish``,
``feats/res152``, ``feats/r2plus1d_18``, one ``<id>.npy`` a video). The steps then run as the
authors' run.sh does, with the same batch size, learning rate and epochs as avvp gets:

1. ``step1_train_base_model``: ``--mode train`` (MIL + contrastive), ``--seed S``, saves the
   last epoch's model;
2. ``step2_find_exchange``: ``--mode estimate_labels`` on that model, ``--seed S+1`` (run.sh
   leaves the defaults, seed 1 for steps 1 and 3 and seed 2 for step 2: seed 1 here is run.sh),
   writes ``need_to_change.pkl`` (per class, the train videos whose audio / visual label goes);
3. ``step3_retrain``: ``--mode retrain`` from scratch on those labels, prints the last epoch's
   test metrics.

The printed test metrics are parsed; the official evaluation gates each stream's segments by its
own video probability (``eval.gate=modality`` in avvp) where avvp's reference rule gates both by
the global one, so the retrained model (kept by one added line in step 3) is imported into avvp
(``avvp import-han``, after dropping the MA-only modules its forward never calls) and scored by
avvp's evaluation under both gates. Then ``avvp train --method ma`` runs with the same settings
(skipped with a line when the method is not registered; ``--no-avvp`` skips it), scored the same
way, and its ``ma_labels.npz`` is compared with ``need_to_change.pkl``: per stream, over the
weakly labelled (video, class) pairs (the only ones either side can change), the fraction whose
keep/drop decision agrees and Cohen's kappa, next to the same agreement between two seeds of one
side (the seed noise), and each side's label precision/recall against the hidden train labels.

Every step leaves its output in WORK, so a stopped comparison resumes where it stopped (a step
the official code was running when killed starts again: it has no resume of its own). key=value
arguments go to avvp's run only (e.g. its method.* settings). The official code needs pandas < 3
(its dataloader reads rows by position, ``row[0]``); torchvision, which it imports for
``transforms.Compose`` only, is replaced by a stand-in where it does not import (PyPI's build does
not load beside the CPU torch build).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import machine, machine_sentence, write_results

from avvp.cli import main as avvp_main
from avvp.data.annotations import read_weak_labels
from avvp.data.synthetic import load_hidden_train_labels
from avvp.evaluation.summary import LEVELS, METRICS
from avvp.report import metric_cells

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "peer_ma"
STEPS = ("step1_train_base_model", "step2_find_exchange", "step3_retrain")
STEP1, STEP2, STEP3 = STEPS
# The annotation files the official scripts read from data/ (eval audio/visual paths are fixed
# in their code); the dataset's own files replace the LLP ones there.
DATA_FILES = (
    "AVVP_train.csv",
    "AVVP_val_pd.csv",
    "AVVP_test_pd.csv",
    "AVVP_eval_audio.csv",
    "AVVP_eval_visual.csv",
    "AVVP_dataset_full.csv",
)
FEATURES = {"audio_dir": "vggish", "video_dir": "res152", "st_dir": "r2plus1d_18"}
CHANGES = "need_to_change.pkl"  # step 2 writes it into its folder, step 3 reads it from its own
RETRAINED = "retrained.pt"  # written by the line PATCHES adds to step 3
AVVP_LABELS = "ma_labels.npz"  # the labels of avvp's step 2 in its run folder
TEST_MARKER = "Test the latest model:"
# Modules MA's MMIL_Net builds (nets/net_audiovisual.py) but its forward never calls; the unused
# modules it shares with HAN's MMIL_Net are dropped by avvp.official itself.
MA_ONLY = re.compile(r"(t_att|t_att2|fc1|fc2)\..+")
GATES = ("global", "modality")
STREAMS = ("audio", "visual")


@dataclass(frozen=True)
class Patch:
    """One textual change to the official code: every occurrence of ``old`` in ``path`` of each
    of ``steps`` becomes ``new`` (``{workers}`` stands for --workers); each must occur."""

    path: str
    old: str
    new: str
    why: str
    steps: tuple[str, ...] = STEPS


PATCHES = (
    Patch("main_avvp.py", ".to('cuda')", ".to('cpu')", "CPU: model and batches on the CPU"),
    Patch("nets/net_audiovisual.py", "mask.cuda()", "mask.cpu()", "CPU: the contrastive targets"),
    Patch(
        "main_avvp.py",
        "dtype=np.int)",
        "dtype=int)",
        "numpy >= 1.24 removed np.int, an alias of int (the evaluation's GT_aa / GT_vv arrays)",
        steps=(STEP1, STEP3),
    ),
    Patch(
        "main_avvp.py",
        "num_workers=12",
        "num_workers={workers}",
        "CPU budget: train loader worker processes (each worker's `random` is still seeded from "
        "torch's seed, so a run repeats; the partner draws depend on the worker count)",
    ),
    Patch(
        "main_avvp.py",
        f'        print("{TEST_MARKER}")\n        F=eval(model, test_loader, args.label_test)\n',
        f'        print("{TEST_MARKER}")\n        F=eval(model, test_loader, args.label_test)\n'
        f'        torch.save(model.state_dict(), "{RETRAINED}")\n',
        "output only: keep the retrained model (step 3 saves none) so avvp can re-score it",
        steps=(STEP3,),
    ),
)
# torchvision stand-in: the official dataloaders use transforms.Compose and import utils.
SHIM = {
    "__init__.py": '"""Stand-in for torchvision (benchmarks/peer_ma.py): Compose only."""\n',
    "utils.py": "",
    "transforms.py": (
        "class Compose:\n"
        "    def __init__(self, transforms):\n"
        "        self.transforms = list(transforms)\n\n"
        "    def __call__(self, sample):\n"
        "        for transform in self.transforms:\n"
        "            sample = transform(sample)\n"
        "        return sample\n"
    ),
}


class PatchError(ValueError):
    """The official code does not contain what a patch changes (another version of it?)."""


# --- the official side ------------------------------------------------------------------------


def check_official(official: Path) -> None:
    missing = [step for step in STEPS if not (official / step / "main_avvp.py").is_file()]
    if missing:
        raise FileNotFoundError(
            f"--official {official}: no {', '.join(f'{step}/main_avvp.py' for step in missing)}; "
            "give a checkout of Yu-Wu/Modaily-Aware-Audio-Visual-Video-Parsing"
        )


def official_digest(official: Path) -> str:
    """sha256 over the official Python files of the three steps: which code was compared."""
    digest = hashlib.sha256()
    for step in STEPS:
        for path in sorted((official / step).rglob("*.py")):
            digest.update(str(path.relative_to(official)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def patch_tree(root: Path, workers: int) -> list[str]:
    """Apply :data:`PATCHES` to the step folders under ``root`` in place; a line per patch."""
    done = []
    for patch in PATCHES:
        new = patch.new.replace("{workers}", str(workers))
        counts = []
        for step in patch.steps:
            path = root / step / patch.path
            text = path.read_text() if path.is_file() else ""
            count = text.count(patch.old)
            if count == 0:
                raise PatchError(
                    f"{path}: {patch.old.strip()!r} not found; the official code differs from "
                    "the version benchmarks/peer_ma.py patches (Yu-Wu/Modaily-Aware-Audio-Visual-"
                    "Video-Parsing, commit 46c6fe2)"
                )
            path.write_text(text.replace(patch.old, new))
            counts.append(f"{step} {count}x")
        if new.startswith(patch.old):  # an added line: show it alone
            added, after = (
                new.removeprefix(patch.old).strip(),
                patch.old.strip().splitlines()[-1].strip(),
            )
            change = f"adds `{added}` after `{after}`"
        else:
            change = f"`{patch.old}` -> `{new}`"
        done.append(f"{patch.path}: {change} ({', '.join(counts)}): {patch.why}")
    return done


def check_data(data: Path) -> None:
    """What the official scripts read from the dataset, checked before anything runs."""
    for name in DATA_FILES:
        if not (data / name).is_file():
            raise FileNotFoundError(f"--data {data}: no {name}; give an LLP-layout dataset folder")
    for name in FEATURES.values():
        if not (data / "feats" / name).is_dir():
            raise FileNotFoundError(f"--data {data}: no feats/{name}/; the official code reads it")


def prepare_data(step_dir: Path, data: Path) -> None:
    """The dataset's annotation CSVs in place of the LLP ones in ``step_dir/data``."""
    (step_dir / "data").mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        shutil.copyfile(data / name, step_dir / "data" / name)


def prepare_official(official: Path, data: Path, scratch: Path, workers: int) -> list[str]:
    """Copy, patch and fill the three step folders into ``scratch``; the list of changes.

    A scratch folder prepared before is kept as it is (it holds the finished steps' outputs).
    """
    marker = scratch / "prepared.json"
    if marker.is_file():
        return json.loads(marker.read_text())["patches"]
    if scratch.exists():
        shutil.rmtree(scratch)  # a copy that stopped half way: ours, made by this script
    scratch.mkdir(parents=True)
    for step in STEPS:
        # The authors' need_to_change.pkl (their LLP labels) must not stand in for step 2's.
        shutil.copytree(official / step, scratch / step, ignore=shutil.ignore_patterns(CHANGES))
        prepare_data(scratch / step, data)
    (scratch / STEP1 / "models").mkdir(exist_ok=True)
    patches = patch_tree(scratch, workers)
    marker.write_text(json.dumps({"patches": patches}, indent=2) + "\n")
    return patches


def feature_flags(data: Path) -> list[str]:
    return [
        part for flag, name in FEATURES.items() for part in (f"--{flag}", f"{data}/feats/{name}/")
    ]


def step_commands(python: str, data: Path, seed: int, settings: Mapping) -> dict[str, list[str]]:
    """The command line of each step (run in its folder), run.sh's plus the schedule."""
    base = [python, "-W", "ignore::FutureWarning", "main_avvp.py", *feature_flags(data)]
    batch = ["--batch-size", str(settings["batch_size"])]
    schedule = [*batch, "--epochs", str(settings["epochs"]), "--lr", str(settings["lr"])]
    return {
        STEP1: [*base, "--mode", "train", *schedule, "--seed", str(seed)],
        STEP2: [
            *base,
            "--mode",
            "estimate_labels",
            "--model_save_dir",
            f"../{STEP1}/models/",
            *batch,
            "--seed",
            str(seed + 1),
        ],
        STEP3: [*base, "--mode", "retrain", *schedule, "--seed", str(seed)],
    }


def needs_shim(python: str) -> bool:
    probe = [python, "-c", "import torchvision.transforms"]
    return subprocess.run(probe, capture_output=True, check=False).returncode != 0


def write_shim(folder: Path) -> Path:
    package = folder / "torchvision"
    package.mkdir(parents=True, exist_ok=True)
    for name, text in SHIM.items():
        (package / name).write_text(text)
    return folder


def check_interpreter(python: str) -> None:
    """The official scripts import pandas and read rows by position, gone in pandas 3."""
    probe = [python, "-c", "import numpy, torch, pandas; print(pandas.__version__)"]
    try:
        found = subprocess.run(probe, capture_output=True, text=True, check=False)
    except OSError as error:
        raise OSError(
            f"--python {python}: cannot run it ({error.strerror}); give the path of a Python "
            "interpreter with numpy, torch and pandas < 3"
        ) from None
    if found.returncode != 0:
        reason = (found.stderr.strip().splitlines() or ["failed"])[-1]
        raise OSError(
            f"--python {python}: cannot import numpy, torch and pandas ({reason}); give an "
            "interpreter that has them (pandas < 3)"
        )
    if int(found.stdout.strip().split(".")[0]) >= 3:
        raise OSError(
            f"--python {python} has pandas {found.stdout.strip()}: the official dataloader reads "
            "rows by position (row[0]), which pandas 3 removed; install pandas < 3 there"
        )


def run_step(
    what: str, command: list[str], cwd: Path, log: Path, environment: Mapping[str, str]
) -> float:
    """Run one step (``what`` names it), its output in ``log``; the seconds it took."""
    start = time.perf_counter()
    with open(log, "w") as output:
        finished = subprocess.run(
            command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, env=dict(environment)
        )
    if finished.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {finished.returncode}); see {log}")
    return time.perf_counter() - start


def run_official(
    scratch: Path, commands: Mapping[str, list[str]], environment: Mapping[str, str]
) -> dict[str, float]:
    """Steps 1-3 in ``scratch``, each skipped when its ``.done`` file says it finished."""
    seconds = {}
    for step in STEPS:
        done = scratch / f"{step}.done"
        if done.is_file():
            seconds[step] = json.loads(done.read_text())["seconds"]
            continue
        if step == STEP3:
            shutil.copyfile(scratch / STEP2 / CHANGES, scratch / STEP3 / CHANGES)
        what = f"official {scratch.name}: {step}"
        print(f"{what} ...", flush=True)
        log = scratch / f"{step}.log"
        seconds[step] = run_step(what, commands[step], scratch / step, log, environment)
        done.write_text(json.dumps({"seconds": seconds[step], "command": commands[step]}) + "\n")
    return seconds


OFFICIAL_LINES = {
    # printed line -> (level, metric) of its numbers; the stream rows hold segment and event.
    "Audio": (("segment", "audio"), ("event", "audio")),
    "Visual": (("segment", "visual"), ("event", "visual")),
    "AudVis": (("segment", "audio_visual"), ("event", "audio_visual")),
    "Segment-levelType@Avg. F1:": (("segment", "type"),),
    "Segment-level Event@Avg. F1:": (("segment", "event"),),
    "Event-level Type@Avg. F1:": (("event", "type"),),
    "Event-level Event@Avg. F1:": (("event", "event"),),
}


def parse_official_metrics(text: str) -> dict[str, dict[str, float]]:
    """The ten test numbers step 3 prints after ``Test the latest model:`` (one decimal)."""
    if TEST_MARKER not in text:
        raise ValueError(f"no {TEST_MARKER!r} in the step 3 output: it did not finish")
    block = text.rsplit(TEST_MARKER, 1)[1]
    metrics: dict[str, dict[str, float]] = {level: {} for level in LEVELS}
    for line in block.splitlines():
        for start, keys in OFFICIAL_LINES.items():
            if line.startswith(start) and (start.endswith(":") or line[len(start)] in " \t"):
                values = [float(value) for value in line[len(start) :].split()]
                if len(values) != len(keys):
                    raise ValueError(f"step 3 output: cannot read {line!r}")
                for (level, name), value in zip(keys, values, strict=True):
                    metrics[level][name] = value
    missing = [
        f"{level}.{name}" for level in LEVELS for name in METRICS if name not in metrics[level]
    ]
    if missing:
        raise ValueError(f"step 3 output after {TEST_MARKER!r} lacks {', '.join(missing)}")
    return metrics


def read_changes(path: Path) -> tuple[list[list[int]], list[list[int]]]:
    """need_to_change.pkl: (visual, audio) lists of train-row indices, one list per class.

    It is a pickle of 0-d tensors written by our own run of the official step 2.
    """
    with open(path, "rb") as stream:
        visual, audio = pickle.load(stream)
    return [[int(i) for i in row] for row in visual], [[int(i) for i in row] for row in audio]


def official_labels(changes: Path, train_csv: Path) -> dict[str, np.ndarray]:
    """The per-stream video-level labels step 3 trains on, as 0/1 (V, C) arrays in CSV order:
    the weak labels less the (video, class) pairs step 2 listed for that stream."""
    weak = read_weak_labels(train_csv).labels.astype(bool)
    visual_rows, audio_rows = read_changes(changes)
    labels = {"audio": weak.copy(), "visual": weak.copy()}
    for stream, rows in (("audio", audio_rows), ("visual", visual_rows)):
        for c, indices in enumerate(rows):
            labels[stream][indices, c] = False
    return labels


# --- the avvp side ----------------------------------------------------------------------------


def avvp_available() -> bool:
    from avvp.registry import available

    return "ma" in available("method")


def avvp_train_command(
    data: Path, out: Path, seed: int | str, settings: Mapping, overrides: Sequence[str] = ()
) -> list[str]:
    """``avvp train --method ma`` with the official schedule (StepLR 10 x 0.1 as main_avvp.py);
    ``overrides`` come last, so they win."""
    schedule = [
        f"seed={seed}",
        f"optim.epochs={settings['epochs']}",
        f"optim.batch_size={settings['batch_size']}",
        f"optim.lr={settings['lr']}",
        "optim.lr_step=10",
        "optim.lr_gamma=0.1",
    ]
    arguments = ["train", "--method", "ma", "--data", str(data), "--out", str(out)]
    return [sys.executable, "-m", "avvp.cli", *arguments, "--no-progress", *schedule, *overrides]


def avvp_labels(path: Path, video_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """A run's ma_labels.npz as 0/1 (V, C) arrays in ``video_ids`` order (>= 0.5 is kept)."""
    with np.load(path) as stored:
        ids = [str(name) for name in stored["video_ids"]]
        where = {name: i for i, name in enumerate(ids)}
        missing = [name for name in video_ids if name not in where]
        if missing:
            raise ValueError(
                f"{path}: no labels for {len(missing)} train videos, e.g. {missing[0]}"
            )
        order = [where[name] for name in video_ids]
        return {stream: np.asarray(stored[stream])[order] >= 0.5 for stream in STREAMS}


# --- scoring ----------------------------------------------------------------------------------


def rescore(checkpoint: Path, run_dir: Path, data: Path) -> dict[str, dict]:
    """avvp's test metrics of an official MA checkpoint under each gate, cached in ``run_dir``."""
    scores = {gate: run_dir.parent / f"{run_dir.name}-{gate}.json" for gate in GATES}
    if not (run_dir / "best.pt").is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        han = {key: value for key, value in state.items() if not MA_ONLY.fullmatch(key)}
        cleaned = run_dir.parent / f"{run_dir.name}-han.pt"
        torch.save(han, cleaned)
        if run_dir.exists():
            shutil.rmtree(run_dir)  # an import that stopped half way: ours
        if avvp_main(["import-han", str(cleaned), "--out", str(run_dir), "--data", str(data)]):
            raise RuntimeError(f"avvp import-han {cleaned} failed")
    return evaluate_gates(run_dir, scores)


def evaluate_gates(run_dir: Path, scores: Mapping[str, Path]) -> dict[str, dict]:
    for gate, path in scores.items():
        if not path.is_file():
            argv = ["evaluate", "--run", str(run_dir), "--split", "test", "--gate", gate]
            if avvp_main([*argv, "--json", str(path)]):
                raise RuntimeError(f"avvp evaluate --run {run_dir} --gate {gate} failed")
    return {gate: json.loads(path.read_text()) for gate, path in scores.items()}


def cohen_kappa(first: np.ndarray, second: np.ndarray) -> float:
    """Cohen's kappa of two 0/1 decision vectors; NaN when chance agreement is total."""
    first, second = np.asarray(first, bool), np.asarray(second, bool)
    observed = float(np.mean(first == second))
    p1, p2 = first.mean(), second.mean()
    chance = float(p1 * p2 + (1 - p1) * (1 - p2))
    return float("nan") if chance == 1.0 else (observed - chance) / (1.0 - chance)


def agreement(
    first: Mapping[str, np.ndarray], second: Mapping[str, np.ndarray], weak: np.ndarray
) -> dict[str, dict[str, float]]:
    """Per stream, over the weakly labelled pairs: how many each side drops, the share of pairs
    whose keep/drop decision agrees, and Cohen's kappa."""
    positive = weak.astype(bool)
    result = {}
    for stream in STREAMS:
        a = np.asarray(first[stream], bool)[positive]
        b = np.asarray(second[stream], bool)[positive]
        result[stream] = {
            "pairs": int(positive.sum()),
            "dropped_first": int((~a).sum()),
            "dropped_second": int((~b).sum()),
            "agreement": float(np.mean(a == b)),
            "kappa": cohen_kappa(a, b),
        }
    return result


def label_quality(labels: Mapping[str, np.ndarray], truth: Any) -> dict[str, dict[str, float]]:
    """Video-level precision/recall of each stream's labels against the hidden segment labels."""
    result = {}
    for stream in STREAMS:
        present = getattr(truth, stream).any(axis=1)
        kept = labels[stream].astype(bool)
        hits = float((kept & present).sum())
        result[stream] = {
            "precision": hits / max(float(kept.sum()), 1.0),
            "recall": hits / max(float(present.sum()), 1.0),
        }
    return result


# --- the report -------------------------------------------------------------------------------

SHORT = ("A", "V", "AV", "Type", "Event")


def metrics_table(sides: Mapping[str, Mapping[int, dict]]) -> str:
    """Per side a row per seed and, over two or more seeds, a mean ± std row of the ten numbers."""
    header = ["run", *(f"seg {h}" for h in SHORT), *(f"event {h}" for h in SHORT)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, runs in sides.items():
        rows = [(f"{name}, seed {seed}", [metrics]) for seed, metrics in sorted(runs.items())]
        if len(runs) > 1:
            rows.append((f"**{name}, mean ± std**", list(runs.values())))
        for label, metrics in rows:
            cells = metric_cells(metrics, digits=1)
            lines.append(f"| {label} | " + " | ".join(cells["segment"] + cells["event"]) + " |")
    return "\n".join(lines)


def _percent(value: float) -> str:
    return "-" if np.isnan(value) else f"{100 * value:.1f}"


def agreement_table(comparisons: Mapping[str, dict]) -> str:
    lines = [
        "| compared | stream | weak pairs | dropped (first) | dropped (second) | agree % | kappa |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, streams in comparisons.items():
        for stream, cell in streams.items():
            kappa = "-" if np.isnan(cell["kappa"]) else f"{cell['kappa']:.3f}"
            lines.append(
                f"| {name} | {stream} | {cell['pairs']} | {cell['dropped_first']} | "
                f"{cell['dropped_second']} | {_percent(cell['agreement'])} | {kappa} |"
            )
    return "\n".join(lines)


def quality_table(quality: Mapping[str, dict]) -> str:
    lines = [
        "| labels | audio precision | audio recall | visual precision | visual recall |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, streams in quality.items():
        cells = [_percent(streams[s][k]) for s in STREAMS for k in ("precision", "recall")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def max_difference(first: dict, second: dict) -> float:
    return max(
        abs(first[level][name] - second[level][name]) for level in LEVELS for name in METRICS
    )


def rescoring_check(printed: Mapping[int, dict], modality: Mapping[int, dict]) -> str:
    """Does avvp's evaluation with the official gate reproduce what step 3 printed?"""
    worst = max(max_difference(printed[seed], modality[seed]) for seed in printed)
    verdict = (
        "the same numbers up to the print's rounding"
        if worst <= 0.05 + 1e-9
        else "**more than the print's rounding (0.05): the two evaluations differ, look into it**"
    )
    return (
        f"Check of the re-scoring: what step 3 printed (one decimal) and avvp's evaluation of the "
        f"same model with gate `modality` differ by at most {worst:.2f}: {verdict}."
    )


def label_sections(
    labels: Mapping[str, Mapping[int, dict]], weak: np.ndarray, truth: Any
) -> tuple[list[str], dict]:
    """The agreement and label-quality tables, and their numbers."""
    comparisons: dict[str, dict] = {}
    for seed, official in sorted(labels["official"].items()):
        if seed in labels["avvp"]:
            comparisons[f"official vs avvp, seed {seed}"] = agreement(
                official, labels["avvp"][seed], weak
            )
    for side in ("official", "avvp"):
        for first, second in itertools.pairwise(sorted(labels[side])):
            comparisons[f"{side}, seed {first} vs {second}"] = agreement(
                labels[side][first], labels[side][second], weak
            )
    sections = []
    if comparisons:
        sections.append(
            "### Refined labels: agreement\n\nPer stream, over the weakly labelled (video, class) "
            "pairs of the train split (the only ones MA can drop): how many each side drops, the "
            "share whose keep/drop decision agrees, Cohen's kappa. Two seeds of one side show the "
            "seed noise.\n\n" + agreement_table(comparisons)
        )
    quality: dict[str, dict] = {}
    if truth is not None:
        weak_both = {stream: weak.astype(bool) for stream in STREAMS}
        quality["weak labels, both streams"] = label_quality(weak_both, truth)
        for side in ("official", "avvp"):
            for seed, stream_labels in sorted(labels[side].items()):
                quality[f"{side}, seed {seed}"] = label_quality(stream_labels, truth)
        sections.append(
            "### Refined labels against the hidden train labels\n\nVideo level: a (video, class) "
            "is audible / visible when any segment of it is in the hidden labels.\n\n"
            + quality_table(quality)
        )
    return sections, {"agreement": comparisons, "label_quality": quality}


def timing_sentence(seconds: Mapping[str, Mapping[int, Any]]) -> str:
    parts = []
    for seed, steps in sorted(seconds["official"].items()):
        each = ", ".join(f"{step.split('_')[0]} {value:.0f} s" for step, value in steps.items())
        parts.append(f"official seed {seed}: {each}")
    for seed, value in sorted(seconds["avvp"].items()):
        parts.append(f"avvp seed {seed}: " + ("-" if value is None else f"{value:.0f} s"))
    return "Timings (wall clock, one thread, one process at a time): " + "; ".join(parts) + "."


def changes_list(patches: Sequence[str], shimmed: bool) -> list[str]:
    stand_in = (
        "replaced by a stand-in giving transforms.Compose (PyPI's build does not import beside "
        "this CPU torch build)"
        if shimmed
        else "the interpreter's own"
    )
    return [
        *(f"- {line}" for line in patches),
        "- data: the dataset's AVVP_*.csv replace the LLP ones in each step's data/; the "
        "authors' step3_retrain/need_to_change.pkl (their LLP labels) is left out and step 2's "
        "output copied there",
        f"- torchvision: {stand_in}",
        "- run as `python -W ignore::FutureWarning main_avvp.py ...` (pandas 2 warns on row[0])",
    ]


def command_line(args: argparse.Namespace) -> str:
    flags = [
        f"--data {args.data}",
        f"--seeds {args.seeds}",
        f"--epochs {args.epochs}",
        f"--batch-size {args.batch_size}",
        f"--lr {args.lr}",
        f"--workers {args.workers}",
        *(["--no-avvp"] if args.no_avvp else []),
        *args.overrides,
    ]
    return "python benchmarks/peer_ma.py --official DIR " + " ".join(flags)


@dataclass
class Collected:
    """What the runs gave, side by side; filled seed by seed."""

    official: dict[str, dict[int, dict]]  # "printed" and each gate -> seed -> metrics
    avvp: dict[str, dict[int, dict]]  # gate -> seed -> metrics
    labels: dict[str, dict[int, dict[str, np.ndarray]]]  # side -> seed -> stream -> (V, C)
    seconds: dict[str, dict[int, Any]]
    patches: list[str]
    avvp_note: str = ""

    @classmethod
    def empty(cls) -> Collected:
        return cls(
            official={"printed": {}, **{gate: {} for gate in GATES}},
            avvp={gate: {} for gate in GATES},
            labels={"official": {}, "avvp": {}},
            seconds={"official": {}, "avvp": {}},
            patches=[],
        )


def write_report(
    args: argparse.Namespace,
    settings: Mapping,
    found: Collected,
    weak: np.ndarray,
    truth: Any,
    shimmed: bool,
) -> None:
    sections = []
    for gate, rule in (
        ("modality", "each stream gated by its own video probability (the official MA eval)"),
        ("global", "both streams gated by the global video probability (HAN's reference rule)"),
    ):
        sides = {"official MA": found.official[gate], "avvp ma": found.avvp[gate]}
        sections.append(f"### Test metrics, gate `{gate}`: {rule}\n\n{metrics_table(sides)}")
    sections.append(rescoring_check(found.official["printed"], found.official["modality"]))
    label_parts, label_numbers = label_sections(found.labels, weak, truth)
    sections += label_parts
    facts = machine()
    note = "\n".join(
        [
            f"Command: `{command_line(args)}` (DIR: a checkout of Yu-Wu/Modaily-Aware-Audio-"
            f"Visual-Video-Parsing; sha256 of its step scripts "
            f"{settings['official_digest'][:12]}). {found.avvp_note}",
            "",
            "Same schedule on both sides: the batch size, learning rate and epochs above, the "
            "learning rate x0.1 every 10 epochs; the official steps 1 and 3 keep the last "
            "epoch's model, avvp's ma whichever its method.checkpoint says (preset: last).",
            "",
            "Changes to the official code, all of them:",
            "",
            *changes_list(found.patches, shimmed),
            "",
            timing_sentence(found.seconds),
            "",
            "Machine: " + machine_sentence(facts),
        ]
    )
    payload = {
        "settings": dict(settings),
        "official_printed": found.official["printed"],
        "official": {gate: found.official[gate] for gate in GATES},
        "avvp": found.avvp,
        **label_numbers,
        "seconds": found.seconds,
        "patches": found.patches,
        "torchvision_stand_in": shimmed,
        "machine": facts,
    }
    title = "MA: the authors' code and avvp's, side by side"
    write_results(args.out, title, "\n\n".join(sections), note, payload)


# --- driver -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of the MA code")
    parser.add_argument("--data", type=Path, required=True, help="LLP-layout (synthetic) dataset")
    parser.add_argument("--seeds", default="1,2", help="comma-separated seeds (default: 1,2)")
    parser.add_argument(
        "--epochs", type=int, default=12, help="epochs of steps 1 and 3 (default: run.sh's 12)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="(default: run.sh's 16)")
    parser.add_argument("--lr", type=float, default=3e-4, help="(default: run.sh's 3e-4)")
    parser.add_argument(
        "--workers", type=int, default=1, help="official train loader workers (run.sh: 12)"
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter for the official code, with numpy, torch and pandas < 3 (default: "
        "this one)",
    )
    parser.add_argument(
        "--work", type=Path, default=ROOT / "runs" / "peer_ma", help="folder of every run"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULT, help="results file, without suffix (.md and .json)"
    )
    parser.add_argument("--no-avvp", action="store_true", help="run the official side only")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="for avvp's runs only")
    args = parser.parse_args(argv)
    try:
        args.seed_list = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give comma-separated whole numbers, e.g. 1,2")
    if len(set(args.seed_list)) != len(args.seed_list):
        parser.error(f"--seeds {args.seeds!r}: give distinct seeds, e.g. 1,2")
    if args.epochs < 1 or args.batch_size < 1 or args.workers < 0 or not args.lr > 0:
        parser.error("--epochs and --batch-size must be >= 1, --workers >= 0, --lr > 0")
    return args


def check_settings(folder: Path, settings: Mapping, way_out: str) -> None:
    """A folder of runs holds one schedule: other settings would mix runs of two schedules."""
    path = folder / "settings.json"
    if path.is_file():
        before = json.loads(path.read_text())
        changed = sorted(key for key in settings if before.get(key) != settings[key])
        if changed:
            raise ValueError(
                f"{path}: its runs were made with other {', '.join(changed)}; {way_out}"
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(settings), indent=2) + "\n")


def run_official_seeds(
    args: argparse.Namespace,
    settings: Mapping,
    environment: Mapping[str, str],
    train_csv: Path,
    found: Collected,
    echo: Callable[[str], None],
) -> None:
    official, data = args.official.resolve(), args.data.resolve()
    for seed in args.seed_list:
        scratch = args.work.resolve() / "official" / f"seed-{seed}"
        found.patches = prepare_official(official, data, scratch, args.workers)
        commands = step_commands(args.python, data, seed, settings)
        found.seconds["official"][seed] = run_official(scratch, commands, environment)
        printed = parse_official_metrics((scratch / f"{STEP3}.log").read_text())
        found.official["printed"][seed] = printed
        rescored = rescore(scratch / STEP3 / RETRAINED, scratch / "avvp-import", data)
        for gate in GATES:
            found.official[gate][seed] = rescored[gate]
        found.labels["official"][seed] = official_labels(scratch / STEP2 / CHANGES, train_csv)
        echo(f"official seed {seed}: done")


def run_avvp_seeds(
    args: argparse.Namespace,
    settings: Mapping,
    environment: Mapping[str, str],
    video_ids: Sequence[str],
    found: Collected,
    echo: Callable[[str], None],
) -> None:
    if args.no_avvp:
        found.avvp_note = "avvp's side: not run (--no-avvp)."
        return
    if not avvp_available():
        found.avvp_note = "avvp's side: skipped, the `ma` method is not registered in this avvp."
        echo(found.avvp_note)
        return
    folder, data = args.work.resolve() / "avvp", args.data.resolve()
    check_settings(
        folder,
        {**settings, "avvp_overrides": list(args.overrides)},
        "give another --work, or the same key=value arguments to resume them",
    )
    shown = avvp_train_command(data, folder / "seed-S", "S", settings, args.overrides)[3:]
    found.avvp_note = f"avvp's side, per seed S: `avvp {' '.join(shown)}`."
    for seed in args.seed_list:
        run_dir = folder / f"seed-{seed}"
        timing = folder / f"seed-{seed}.seconds"
        if not (run_dir / "test_metrics.json").is_file():
            command = avvp_train_command(data, run_dir, seed, settings, args.overrides)
            log = folder / f"seed-{seed}.log"
            took = run_step(f"avvp {run_dir.name}", command, ROOT, log, environment)
            timing.write_text(f"{took:.1f}\n")
        found.seconds["avvp"][seed] = float(timing.read_text()) if timing.is_file() else None
        scores = {gate: folder / f"seed-{seed}-{gate}.json" for gate in GATES}
        for gate, metrics in evaluate_gates(run_dir, scores).items():
            found.avvp[gate][seed] = metrics
        if (run_dir / AVVP_LABELS).is_file():
            found.labels["avvp"][seed] = avvp_labels(run_dir / AVVP_LABELS, video_ids)
        echo(f"avvp seed {seed}: done")


def main(argv: Sequence[str] | None = None, echo: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    official, data = args.official.resolve(), args.data.resolve()
    check_official(official)
    check_data(data)
    train_csv = data / "AVVP_train.csv"
    train = read_weak_labels(train_csv)
    settings = {
        "official_digest": official_digest(official),
        "data": str(data),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "workers": args.workers,
    }
    check_settings(
        args.work.resolve(), settings, "give another --work, or the same settings to resume them"
    )
    check_interpreter(args.python)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    shimmed = needs_shim(args.python)
    if shimmed:
        shim = str(write_shim(args.work.resolve() / "shim"))
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [shim, environment.get("PYTHONPATH")])
        )
    found = Collected.empty()
    run_official_seeds(args, settings, environment, train_csv, found, echo)
    run_avvp_seeds(args, settings, environment, train.video_ids, found, echo)
    write_report(args, settings, found, train.labels, load_hidden_train_labels(data), shimmed)
    echo(f"wrote {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
