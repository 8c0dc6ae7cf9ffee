"""The benchmark suite: methods x datasets x seeds, resumable, with paired statistics against HAN.

    python benchmarks/suite.py --suite benchmarks/suites/default.yaml --data-dir DATA --out RUNS
        [--jobs 2] [--only dataset=A,B,method=han,ppl,seed=1] [--extras] [--dry-run]
        [--results benchmarks/results/suite] [--doc docs/results.md]

The suite file (YAML, docs/benchmark_suite.md) names the datasets (an `avvp synth` recipe each,
plus run overrides such as data.train_videos=3000), the methods (a method name, a recipe, key=value
overrides, and for VPLAN which pseudo labels it trains on), the seeds, the schedule every run
shares, and optionally finished runs elsewhere to reuse. Datasets are generated once into DATA
(one folder per distinct synth recipe, so train sizes share their data); each (dataset, method,
seed) trains with `avvp train` into RUNS/<dataset>/<method>/seed-S, one single-thread process
per run, `--jobs` at a time. A run with test_metrics.json is reused (its saved config must be the
one the suite would train with), a killed one resumes from its last epoch, so the command can be
stopped and started again. At the end it writes the tables (benchmarks/results/suite.md and
.json): mean +- std over seeds, and each method's paired difference to the baseline with a t
interval over seeds and a bootstrap interval over test videos.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from compare_methods import SUITE_END, SUITE_START, avvp, run_logged
from results_file import write_results

from avvp.config import resolve_config, resolve_paths, validate_config, with_new_defaults
from avvp.data.synthetic import GeneratorConfig, dataset_settings, read_manifest, with_label_model
from avvp.evaluation.per_video import PER_VIDEO_FILE, read_per_video
from avvp.evaluation.stats import RESAMPLES, compare, mean_std
from avvp.io_utils import file_sha256
from avvp.training.trainer import (
    LAST_CHECKPOINT,
    RESUMABLE_DIFFERENCES,
    differing_entries,
    metric_label,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "suite"
FINISHED = "test_metrics.json"
DEFAULT_METRICS = ("segment.type",)
LABEL_KINDS = ("plg", "pld")
MARK = "*"
# The block of docs/results.md that insert_suite_table replaces.


# ---- the suite file ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Synth:
    """One `avvp synth` recipe: annotation-driven when ``annotations`` is given."""

    seed: int = 0
    videos: int | None = None
    annotations: str | None = None
    difficulty: float = GeneratorConfig().difficulty
    label_model: str | None = None  # built-in sets: per_class (synth's default) or global

    @property
    def key(self) -> str:
        """The data folder's name: one folder per distinct recipe."""
        mode = "builtin" if self.annotations is None else "llp"
        size = "" if self.videos is None else f"-v{self.videos}"
        model = "" if self.label_model is None else f"-{self.label_model}"
        return f"{mode}{size}{model}-d{self.difficulty:g}-g{self.seed}"

    def settings(self) -> dict[str, Any]:
        """The settings `avvp synth` records in synthetic.json for this recipe."""
        config = GeneratorConfig(difficulty=self.difficulty)
        return dataset_settings(self.annotations, self.videos, self.seed, config, self.label_model)

    def arguments(self, out: Path) -> list[str]:
        arguments = ["synth", "--out", str(out), "--seed", str(self.seed), "--no-progress"]
        arguments += ["--difficulty", str(self.difficulty)]
        if self.videos is not None:
            arguments += ["--videos", str(self.videos)]
        if self.annotations is not None:
            arguments += ["--annotations", self.annotations]
        if self.label_model is not None:
            arguments += ["--label-model", self.label_model]
        return arguments


@dataclass(frozen=True)
class Dataset:
    name: str
    synth: Synth
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class MethodEntry:
    name: str
    method: str
    config: str | None = None
    overrides: tuple[str, ...] = ()
    labels: str | None = None  # "plg" (simulated CLIP PLG) or "pld" (PLD of pld_from's run)
    pld_from: str | None = None
    optional: bool = False


@dataclass(frozen=True)
class Suite:
    datasets: dict[str, Dataset]
    methods: dict[str, MethodEntry]
    seeds: tuple[int, ...]
    schedule: tuple[str, ...] = ()
    baseline: str = "han"
    metrics: tuple[str, ...] = DEFAULT_METRICS
    resamples: int = RESAMPLES
    bootstrap_seed: int = 0
    runs: dict[str, dict[str, str]] = field(default_factory=dict)  # dataset -> method -> folder


SUITE_KEYS = {
    "datasets",
    "methods",
    "seeds",
    "schedule",
    "baseline",
    "metrics",
    "bootstrap",
    "runs",
}


def load_suite(path: str | Path) -> Suite:
    """The suite file at ``path``; an error naming the file and key for anything malformed."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}

    def problem(key: str, message: str) -> ValueError:
        return ValueError(f"{path}: {key}: {message}")

    if not isinstance(raw, dict):
        raise problem("(top level)", "must be a mapping")
    unknown = sorted(set(raw) - SUITE_KEYS)
    if unknown:
        raise problem(", ".join(unknown), f"unknown key; known: {', '.join(sorted(SUITE_KEYS))}")
    for key in ("datasets", "methods", "seeds"):
        if not raw.get(key):
            raise problem(key, "required and non-empty")
    datasets = {}
    for name, spec in raw["datasets"].items():
        spec = spec or {}
        extra = sorted(set(spec) - {"synth", "overrides"})
        if extra or not isinstance(spec.get("synth"), dict):
            raise problem(f"datasets.{name}", "give synth: {...} and optionally overrides: [...]")
        try:
            synth = Synth(**spec["synth"])
        except TypeError as error:
            raise problem(f"datasets.{name}.synth", str(error)) from None
        if synth.annotations is None and synth.videos is None:
            raise problem(f"datasets.{name}.synth", "a built-in set needs videos: N")
        datasets[str(name)] = Dataset(str(name), synth, tuple(spec.get("overrides") or ()))
    methods = {}
    for name, spec in raw["methods"].items():
        spec = dict(spec or {})
        spec.setdefault("method", name)
        spec["overrides"] = tuple(spec.get("overrides") or ())
        try:
            entry = MethodEntry(name=str(name), **spec)
        except TypeError as error:
            raise problem(f"methods.{name}", str(error)) from None
        if entry.labels not in (None, *LABEL_KINDS):
            raise problem(f"methods.{name}.labels", f"one of {', '.join(LABEL_KINDS)}")
        if (entry.labels == "pld") != (entry.pld_from is not None):
            raise problem(f"methods.{name}", "labels: pld goes with pld_from: METHOD, and only it")
        methods[entry.name] = entry
    for entry in methods.values():
        source = methods.get(entry.pld_from) if entry.pld_from else None
        if entry.pld_from and (source is None or source.labels == "pld"):
            raise problem(f"methods.{entry.name}.pld_from", "name a method of the suite not on PLD")
    bootstrap = raw.get("bootstrap") or {}
    suite = Suite(
        datasets=datasets,
        methods=methods,
        seeds=tuple(int(seed) for seed in raw["seeds"]),
        schedule=tuple(raw.get("schedule") or ()),
        baseline=raw.get("baseline", "han"),
        metrics=tuple(raw.get("metrics") or DEFAULT_METRICS),
        resamples=int(bootstrap.get("resamples", RESAMPLES)),
        bootstrap_seed=int(bootstrap.get("seed", 0)),
        runs={
            str(d): {str(m): str(p) for m, p in v.items()}
            for d, v in (raw.get("runs") or {}).items()
        },
    )
    if suite.baseline not in methods:
        raise problem("baseline", f"{suite.baseline!r} is not one of the methods")
    bad = [m for m in suite.metrics if m.partition(".")[0] not in ("segment", "event")]
    if bad:
        raise problem("metrics", f"{bad}: give LEVEL.NAME, e.g. segment.type")
    for dataset, mapping in suite.runs.items():
        if dataset not in datasets or not set(mapping) <= set(methods):
            raise problem(f"runs.{dataset}", "name a dataset and methods of the suite")
    return suite


# ---- the plan ---------------------------------------------------------------------------------


@dataclass
class Job:
    """One (dataset, method, seed) run."""

    dataset: Dataset
    method: MethodEntry
    seed: int
    run_dir: Path  # where its results are (a mapped run elsewhere, or OUT/...)
    arguments: list[str]  # the `avvp train` arguments that train it into OUT
    config: dict[str, Any]  # the config it trains with
    status: str = "train"  # finished (reused) | resume | train

    @property
    def name(self) -> str:
        return f"{self.dataset.name}/{self.method.name}/seed-{self.seed}"


def data_folder(data_dir: Path, dataset: Dataset) -> Path:
    return data_dir / dataset.synth.key


def label_file(out: Path, data_dir: Path, job: Job) -> Path | None:
    """The pseudo-label file ``job`` trains on (None: it trains on none)."""
    if job.method.labels == "plg":
        return out / "labels" / f"{job.dataset.synth.key}-plg.npz"
    if job.method.labels == "pld":
        return out / job.dataset.name / job.method.name / f"seed-{job.seed}.pld_labels.npz"
    return None


def make_job(
    suite: Suite, dataset: Dataset, method: MethodEntry, seed: int, out: Path, data_dir: Path
) -> Job:
    run_dir = out / dataset.name / method.name / f"seed-{seed}"
    job = Job(dataset, method, seed, run_dir, [], {})
    overrides = [*suite.schedule, *dataset.overrides, *method.overrides]
    labels = label_file(out, data_dir, job)
    if labels is not None:
        overrides.append(f"method.visual_labels={labels}")
    overrides += [f"data.root={data_folder(data_dir, dataset)}", f"seed={seed}"]
    job.config = resolve_paths(resolve_config(method.method, method.config, overrides))
    job.arguments = ["train", "--method", method.method, "--out", str(run_dir), "--no-progress"]
    if method.config is not None:
        job.arguments += ["--config", method.config]
    job.arguments += overrides
    return job


def config_differences(run_dir: Path, job: Job) -> list[str]:
    """How the config saved in ``run_dir`` differs from ``job``'s (empty: the same run).

    Paths are compared by what they hold: the dataset folder by its `avvp synth` settings, a
    file (a label file) by its content; so a run trained on the same data elsewhere is recognised.
    """
    saved = resolve_paths(with_new_defaults(yaml.safe_load((run_dir / "config.yaml").read_text())))
    differences = []
    for path, old, new in differing_entries(saved, job.config):
        if tuple(path) in RESUMABLE_DIFFERENCES or tuple(path) == ("data", "root"):
            continue
        if isinstance(old, str) and isinstance(new, str) and same_file(Path(old), Path(new)):
            continue
        differences.append(f"{'.'.join(path)}: {old!r} (run) vs {new!r} (suite)")
    manifest = read_manifest(saved["data"]["root"])
    if manifest is None or with_label_model(manifest["settings"]) != job.dataset.synth.settings():
        differences.append(
            f"data.root: {saved['data']['root']} is not the dataset {job.dataset.name} "
            f"(`avvp {' '.join(job.dataset.synth.arguments(Path('DIR')))}`)"
        )
    return differences


def same_file(old: Path, new: Path) -> bool:
    return old.is_file() and new.is_file() and file_sha256(old) == file_sha256(new)


def plan(
    suite: Suite, out: Path, data_dir: Path, only: dict[str, set[str]], extras: bool
) -> list[Job]:
    """Every job the suite names that ``only`` and ``extras`` select, with its status; a run
    whose PLD labels come from another run brings that run along."""
    selected: set[tuple[str, str, int]] = set()
    for dataset in suite.datasets.values():
        for method in suite.methods.values():
            for seed in suite.seeds:
                chosen = {"dataset": dataset.name, "method": method.name, "seed": str(seed)}
                if any(key in only and value not in only[key] for key, value in chosen.items()):
                    continue
                if method.optional and not extras and method.name not in only.get("method", ()):
                    continue
                selected.add((dataset.name, method.name, seed))
                if method.pld_from is not None:
                    selected.add((dataset.name, method.pld_from, seed))
    jobs = [
        make_job(suite, dataset, method, seed, out, data_dir)
        for dataset in suite.datasets.values()
        for method in suite.methods.values()
        for seed in suite.seeds
        if (dataset.name, method.name, seed) in selected
    ]
    for job in jobs:
        mapped = suite.runs.get(job.dataset.name, {}).get(job.method.name)
        candidates = [job.run_dir]
        if mapped is not None:
            candidates.insert(0, Path(mapped) / f"seed-{job.seed}")
        for candidate in candidates:
            if (candidate / FINISHED).is_file():
                differences = config_differences(candidate, job)
                if differences:
                    raise ValueError(
                        f"{candidate} is a finished run of another config than the suite's "
                        f"{job.name}: {'; '.join(differences)}. Delete it, fix the suite file, or "
                        "choose another --out"
                    )
                job.run_dir, job.status = candidate, "finished"
                break
        else:
            job.status = "resume" if (job.run_dir / LAST_CHECKPOINT).is_file() else "train"
    return jobs


# ---- running ----------------------------------------------------------------------------------


def generate(dataset: Dataset, data_dir: Path, dry_run: bool) -> str | None:
    """Generate the dataset's data folder unless done; returns what was (or would be) done."""
    folder = data_folder(data_dir, dataset)
    manifest = read_manifest(folder)
    if manifest is not None:
        if with_label_model(manifest["settings"]) != dataset.synth.settings():
            raise ValueError(f"{folder} was generated with other settings than {dataset.name}'s")
        return None
    command = avvp(*dataset.synth.arguments(folder))
    if not dry_run:
        data_dir.mkdir(parents=True, exist_ok=True)
        run_logged(command, data_dir / f"{dataset.synth.key}.log", f"generate {folder}")
    return f"generate {folder}: {' '.join(command[2:])}"


def make_labels(
    job: Job, out: Path, data_dir: Path, source: Job | None, dry_run: bool
) -> str | None:
    labels = label_file(out, data_dir, job)
    if labels is None or labels.is_file():
        return None
    data = data_folder(data_dir, job.dataset)
    if job.method.labels == "plg":
        steps = [["pseudo-labels", "clip", "--data", str(data), "--simulated", "--split", "train",
                  "--out", str(labels)]]  # fmt: skip
        if dry_run or not (data / "synthetic_clip_scores.npz").is_file():
            steps.insert(0, ["pseudo-labels", "simulate-clip", "--data", str(data)])
    else:
        steps = [["pseudo-labels", "denoise", "--run", str(source.run_dir), "--out", str(labels),
                  "--no-progress"]]  # fmt: skip
    if not dry_run:
        labels.parent.mkdir(parents=True, exist_ok=True)
        for step in steps:
            run_logged(avvp(*step), labels.with_suffix(".log"), f"{step[1]} for {job.name}")
    return "; ".join(f"avvp {' '.join(step)}" for step in steps)


def execute(jobs: list[Job], all_jobs: list[Job], out: Path, data_dir: Path, workers: int) -> None:
    """Train the unfinished jobs, ``workers`` single-thread processes at a time; a PLD job waits
    for the run its labels come from (submitted first, so a waiting job never blocks it)."""
    by_name = {job.name: job for job in all_jobs}
    futures: dict[str, Future] = {}
    plg_done: set[str] = set()

    def run_one(job: Job, after: Future | None) -> None:
        if after is not None:
            after.result()
        make_labels(job, out, data_dir, source_of(job, by_name), dry_run=False)
        job.run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_logged(avvp(*job.arguments), job.run_dir.with_suffix(".log"), f"train {job.name}")

    order = sorted(jobs, key=lambda job: job.method.labels == "pld")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for job in order:
            if job.status == "finished":
                continue
            if job.method.labels == "plg" and job.dataset.synth.key not in plg_done:
                # One PLG file per data folder, made before the runs that share it.
                make_labels(job, out, data_dir, None, dry_run=False)
                plg_done.add(job.dataset.synth.key)
            source = source_of(job, by_name)
            after = None if source is None else futures.get(source.name)
            futures[job.name] = pool.submit(run_one, job, after)
        for future in futures.values():
            future.result()
    for job in jobs:
        job.status = "finished"


def source_of(job: Job, by_name: dict[str, Job]) -> Job | None:
    """The run whose PLD labels ``job`` trains on."""
    if job.method.pld_from is None:
        return None
    return by_name[f"{job.dataset.name}/{job.method.pld_from}/seed-{job.seed}"]  # see plan


# ---- statistics and tables --------------------------------------------------------------------


def per_video_scores(job: Job, out: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """A finished run's per-video test scores: its test_per_video.npz, or (runs trained before
    it existed) recomputed once from best.pt and kept beside the suite's run folder."""
    saved = job.run_dir / PER_VIDEO_FILE
    if saved.is_file():
        return read_per_video(saved)
    cache = out / job.dataset.name / job.method.name / f"seed-{job.seed}.{PER_VIDEO_FILE}"
    if not cache.is_file():
        from avvp.evaluation.per_video import write_per_video
        from avvp.training.data import load_splits
        from avvp.training.evaluate_run import load_run
        from avvp.training.inference import evaluate_split
        from avvp.training.trainer import resolve_device

        config, model, method = load_run(job.run_dir)
        test = load_splits(config, ("test",), progress=False)["test"]
        evaluation = evaluate_split(model, method, test, config, resolve_device("cpu"))
        write_per_video(cache, evaluation, test.filenames)
    videos, scores = read_per_video(cache)
    metrics = json.loads((job.run_dir / FINISHED).read_text())
    for dotted, values in scores.items():
        level, name = dotted.split(".")
        if abs(values.mean() - metrics[level][name]) > 1e-6:
            raise ValueError(
                f"{job.run_dir}: its best.pt rescored gives {dotted} {values.mean():.4f}, its "
                f"{FINISHED} {metrics[level][name]:.4f}; has its data changed? Delete {cache}"
            )
    return videos, scores


def statistics(suite: Suite, jobs: list[Job], out: Path) -> list[dict[str, Any]]:
    """One row per (dataset, method) with finished runs: per metric mean, std, and the paired
    comparison with the baseline over the seeds both have."""
    finished = {
        (job.dataset.name, job.method.name, job.seed): job
        for job in jobs
        if job.status == "finished"
    }
    scores = {key: per_video_scores(job, out) for key, job in finished.items()}
    rows = []
    for dataset in suite.datasets:
        for method in suite.methods:
            seeds = [seed for seed in suite.seeds if (dataset, method, seed) in finished]
            if not seeds:
                continue
            row: dict[str, Any] = {"dataset": dataset, "method": method, "seeds": seeds}
            row["runs"] = [str(finished[(dataset, method, s)].run_dir) for s in seeds]
            values = np.array([[scores[(dataset, method, s)][1][m].mean() for m in suite.metrics]
                               for s in seeds])  # fmt: skip
            mean, std = mean_std(values)
            row["metrics"] = {
                m: {"values": values[:, i].tolist(), "mean": float(mean[i]), "std": float(std[i])}
                for i, m in enumerate(suite.metrics)
            }
            paired = [s for s in seeds if (dataset, suite.baseline, s) in finished]
            if method != suite.baseline and paired:
                row["paired_seeds"] = paired
                comparison = compare(
                    paired_scores(scores, dataset, method, paired, suite.metrics),
                    paired_scores(scores, dataset, suite.baseline, paired, suite.metrics),
                    suite.resamples,
                    suite.bootstrap_seed,
                )
                for i, m in enumerate(suite.metrics):
                    row["metrics"][m]["vs_baseline"] = {
                        "difference": float(comparison.difference[i]),
                        "seed_ci": [float(comparison.seed_low[i]), float(comparison.seed_high[i])],
                        "video_ci": [
                            float(comparison.video_low[i]),
                            float(comparison.video_high[i]),
                        ],
                        "significant": bool(comparison.significant[i]),
                    }
            rows.append(row)
    return rows


def paired_scores(scores, dataset: str, method: str, seeds: list[int], metrics) -> np.ndarray:
    """(seeds, videos, metrics) per-video scores, videos in the first run's order."""
    reference = scores[(dataset, method, seeds[0])][0]
    stacked = []
    for seed in seeds:
        videos, values = scores[(dataset, method, seed)]
        if sorted(videos) != sorted(reference):
            raise ValueError(f"{dataset}: the runs of {method} were tested on other videos")
        order = np.argsort(videos)
        stacked.append(np.stack([values[m][order] for m in metrics], axis=-1))
    return np.stack(stacked)


def format_tables(suite: Suite, rows: list[dict[str, Any]]) -> str:
    """One markdown table per metric, then the per-method ordering lines."""
    lines = []
    for metric in suite.metrics:
        label = metric_label(metric)
        lines += [
            f"### {label} (test, %)",
            "",
            f"| dataset | method | seeds | {label} | - {suite.baseline} | 95 % CI over seeds "
            "| 95 % CI over test videos |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in rows:
            cell = row["metrics"][metric]
            versus = cell.get("vs_baseline")
            if versus is None:
                difference = seed_ci = video_ci = ""
            else:
                mark = MARK if versus["significant"] else ""
                difference = f"{versus['difference']:+.1f}{mark}"
                seed_ci, video_ci = (interval(versus[key]) for key in ("seed_ci", "video_ci"))
            lines.append(
                f"| {row['dataset']} | {row['method']} | {len(row['seeds'])} | "
                f"{cell['mean']:.1f} ± {cell['std']:.1f} | {difference} | {seed_ci} | {video_ci} |"
            )
        lines.append("")
    lines += ordering_lines(suite, rows)
    lines += [
        "",
        f"Mean ± std (sample, ddof 1) over the seeds. The difference is method - {suite.baseline} "
        "in points over the seeds both have, paired by seed; its first interval is a Student t "
        "interval over the per-seed differences (n/a for one seed), its second a paired "
        f"percentile bootstrap over the shared test videos ({suite.resamples} resamples, seed "
        f"{suite.bootstrap_seed}) of the seed-averaged per-video difference. {MARK} marks a "
        "difference whose two intervals both exclude 0: the gain (or loss) holds both for "
        "another set of seeds and for another test split of the same kind.",
    ]
    return "\n".join(lines)


def interval(bounds: list[float]) -> str:
    low, high = bounds
    return "n/a" if np.isnan(low) else f"[{low:+.1f}, {high:+.1f}]"


def ordering_lines(suite: Suite, rows: list[dict[str, Any]]) -> list[str]:
    """Per method: on which datasets its paper's ordering (method > baseline) holds."""
    metric = suite.metrics[0]
    lines = []
    for method in suite.methods:
        if method == suite.baseline:
            continue
        verdicts: dict[str, list[str]] = {"holds": [], "reversed": [], "not resolved": []}
        for row in rows:
            versus = row["metrics"][metric].get("vs_baseline")
            if row["method"] != method or versus is None:
                continue
            if not versus["significant"]:
                verdicts["not resolved"].append(row["dataset"])
            else:
                verdicts["holds" if versus["difference"] > 0 else "reversed"].append(row["dataset"])
        if not any(verdicts.values()):
            continue
        parts = [f"{key} on {', '.join(names)}" for key, names in verdicts.items() if names]
        lines.append(
            f"- paper ordering ({method} > {suite.baseline}, {metric_label(metric)}): "
            f"{'; '.join(parts)}."
        )
    return lines


def insert_suite_table(doc: Path, markdown: str, command: str) -> None:
    """Put the suite table at the top of ``doc`` (after its title), replacing an earlier one."""
    text = doc.read_text()
    block = f"{SUITE_START}\n## Benchmark suite\n\n`{command}`\n\n{markdown}\n{SUITE_END}\n"
    if SUITE_START in text and SUITE_END in text:
        before, rest = text.split(SUITE_START, 1)
        after = rest.split(SUITE_END, 1)[1].lstrip("\n")
        doc.write_text(f"{before}{block}\n{after}")
        return
    title, _, body = text.partition("\n")
    doc.write_text(f"{title}\n\n{block}\n{body.lstrip(chr(10))}")


# ---- command line -----------------------------------------------------------------------------


def parse_only(texts: list[str]) -> dict[str, set[str]]:
    """``dataset=a,b,method=han`` -> {"dataset": {"a", "b"}, "method": {"han"}}."""
    only: dict[str, set[str]] = {}
    key = None
    for text in texts:
        for part in text.split(","):
            if "=" in part:
                key, part = part.split("=", 1)
                if key not in ("dataset", "method", "seed"):
                    raise ValueError(f"--only {text!r}: keys are dataset, method, seed")
            if key is None:
                raise ValueError(f"--only {text!r}: give key=value, e.g. dataset=builtin")
            only.setdefault(key, set()).add(part)
    return only


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=ROOT / "benchmarks/suites/default.yaml")
    parser.add_argument("--data-dir", type=Path, required=True, help="generated datasets live here")
    parser.add_argument("--out", type=Path, required=True, help="runs: OUT/dataset/method/seed-S")
    parser.add_argument("--jobs", type=int, default=1, help="single-thread runs at a time")
    parser.add_argument("--only", action="append", default=[], metavar="KEY=V,...")
    parser.add_argument("--extras", action="store_true", help="also the methods marked optional")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument("--results", type=Path, default=RESULTS, help="OUT.md and OUT.json")
    parser.add_argument("--doc", type=Path, default=None, help="put the table on top of this page")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    suite = load_suite(args.suite)
    only = parse_only(args.only)
    for key, values in only.items():
        known = {"dataset": suite.datasets, "method": suite.methods,
                 "seed": {str(s) for s in suite.seeds}}[key]  # fmt: skip
        if not values <= set(known):
            parser.error(f"--only {key}: {sorted(values - set(known))} not in the suite")
    jobs = plan(suite, args.out, args.data_dir, only, args.extras)
    for job in jobs:
        if job.status != "finished" and (job.method.labels is None or job.run_dir.is_dir()):
            validate_config(job.config)
    datasets = {job.dataset.synth.key: job.dataset for job in jobs if job.status != "finished"}
    steps = [generate(d, args.data_dir, args.dry_run) for d in datasets.values()]
    if args.dry_run:
        by_name = {job.name: job for job in jobs}
        for step in steps:
            if step:
                print(step)
        for job in jobs:
            where = "reuse" if job.status == "finished" else job.status
            print(f"{where} {job.name}: {job.run_dir}")
            if job.status != "finished":
                labels = make_labels(job, args.out, args.data_dir, source_of(job, by_name), True)
                if labels:
                    print(f"  labels: {labels}")
                print(f"  avvp {' '.join(job.arguments)}")
        return 0
    execute(jobs, jobs, args.out, args.data_dir, args.jobs)
    rows = statistics(suite, jobs, args.out)
    table = format_tables(suite, rows)
    command = "python benchmarks/suite.py " + " ".join(sys.argv[1:] if argv is None else argv)
    payload = {"suite": str(args.suite), "command": command, "rows": rows}
    write_results(args.results, "Benchmark suite", table, f"Made by `{command}`.", payload)
    if args.doc is not None:
        insert_suite_table(args.doc, table, command)
    print(table)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, RuntimeError) as error:
        # A bad suite file, a run of another config, a failed step (its log named): one line.
        sys.exit(f"suite: error: {error}")
