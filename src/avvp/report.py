"""A report of trained runs: test tables, per-class F1, training curves, as HTML and markdown.

``index.html`` embeds every figure as a base64 PNG data URI, so the one file can be mailed or
opened offline; ``report.md`` holds the same tables and links the PNG files written beside it.
A run folder with ``seed-S`` sub-runs (``avvp train --seeds``) is reported as mean ± std over
its seeds.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from avvp.classes import CLASSES
from avvp.config import Config
from avvp.evaluation.metrics import evaluate_detailed
from avvp.evaluation.summary import HEADERS, LEVELS, METRICS, summarize
from avvp.plots import class_f1_figure, curves_figure, has_values, png_bytes, run_name
from avvp.training.evaluate_run import score_run
from avvp.training.runs import best_epoch, parse_run, read_history, seed_runs

STREAMS = ("audio", "visual")
# Columns of metrics.csv drawn as method diagnostics, one subplot each, when a method logs them.
DIAGNOSTIC_PREFIXES = ("tau.", "pseudo.")
REPORT_SPLIT = "test"


@dataclass(frozen=True)
class Diagnostic:
    """How a diagnostics subplot reads: its title, y-axis label with the unit, and y scale.

    ``integer``: a count or an epoch number, drawn with integer ticks. ``min_span``: the smallest
    y range, so that what the quantity cannot resolve (0.623 against 0.625 of a precision) does
    not fill the subplot's height.
    """

    title: str
    ylabel: str
    integer: bool = False
    min_span: float = 0.0


# The diagnostics the registered methods log (PoiBin: tau.*, PPL: pseudo.*); a column not listed
# is drawn under its own name.
DIAGNOSTICS = {
    "tau.mean": Diagnostic("tau: mean over positive (video, class)", "positive segments", False, 1),
    "tau.max": Diagnostic("tau: largest", "positive segments", True, 2),
    "tau.error_mean": Diagnostic("true count - tau: mean (hidden labels)", "segments", False, 1),
    "tau.error_abs": Diagnostic("|true count - tau|: mean (hidden labels)", "segments", False, 1),
    "tau.exact": Diagnostic(
        "tau = true count (hidden labels)", "fraction of positive pairs", False, 0.1
    ),
    "pseudo.positives": Diagnostic(
        "features selected as positives", "features (train split)", True
    ),
    "pseudo.negatives": Diagnostic(
        "features selected as negatives", "features (train split)", True
    ),
    "pseudo.classes_without_positives": Diagnostic(
        "classes without positive features", "classes", True, 2
    ),
    "pseudo.classes_without_negatives": Diagnostic(
        "classes without negative features", "classes", True, 2
    ),
    "pseudo.label_epoch": Diagnostic(
        "epochs behind the pseudo labels in use", "epochs trained", True, 2
    ),
    "pseudo.precision": Diagnostic(
        "pseudo-label precision (hidden labels)", "precision (0-1)", False, 0.1
    ),
    "pseudo.recall": Diagnostic("pseudo-label recall (hidden labels)", "recall (0-1)", False, 0.1),
    "pseudo.f1": Diagnostic("pseudo-label F1 (hidden labels)", "F1 (0-1)", False, 0.1),
}


def diagnostic(column: str) -> Diagnostic:
    """How to draw a diagnostics column; an unknown one is titled and labelled by its name."""
    return DIAGNOSTICS.get(column) or Diagnostic(column.replace("_", " "), column)


def class_f1_per_stream(
    pred_audio: np.ndarray, pred_visual: np.ndarray, gt_audio: np.ndarray, gt_visual: np.ndarray
) -> dict[str, np.ndarray]:
    """Segment-level F1 (%) of each class over a split, per stream: ``{"audio": (C,), ...}``.

    A class's TP, FP and FN are summed over all videos before the F1; NaN marks a class neither
    present nor predicted. Inputs are (V, T, C) binary arrays.
    """
    per_class = evaluate_detailed(pred_audio, pred_visual, gt_audio, gt_visual).class_f1
    return {stream: per_class["segment"][stream] for stream in STREAMS}


@dataclass(frozen=True)
class Experiment:
    """A run folder as given on the command line, with its seed runs' files read."""

    path: Path
    runs: list[Path]  # [path] or path/seed-S, in seed order
    config: Config  # of the first seed run
    test_metrics: list[dict[str, dict[str, float]]]  # one per seed run
    histories: list[dict[str, np.ndarray]]  # metrics.csv, one per seed run

    @property
    def method(self) -> str:
        return str(self.config["method"]["name"])

    @property
    def title(self) -> str:
        """'method: folder', the folder by its name only: a report is shared, a path is not."""
        return f"{self.method}: {run_name(self.path)}"

    @property
    def short_title(self) -> str:
        """The method, with the run folder's name when it says more (an ablation, a variant)."""
        name = run_name(self.path)
        return self.method if name == self.method else f"{self.method} ({name})"

    def best_epochs(self) -> list[int | None]:
        select = self.config["train"]["select_metric"]
        return [best_epoch(history, select) for history in self.histories]


def converted(run_dir: Path) -> bool:
    """Whether ``run_dir`` was converted from another code's checkpoint (``avvp import-han``):
    weights without a training history or test scores of their own."""
    meta = run_dir / "meta.json"
    return meta.is_file() and "converted_from" in json.loads(meta.read_text(encoding="utf-8"))


def load_experiment(
    path: str | Path, overrides: Sequence[str] = (), device: str = "cpu"
) -> Experiment:
    """The runs of ``path`` with their test scores and training histories. A converted run is
    scored on its test split here (``overrides``, e.g. data.root=..., as for ``avvp evaluate``)
    and has an empty history."""
    path = Path(path)
    runs = seed_runs(path)
    test_metrics, histories = [], []
    for run_dir in runs:
        file = run_dir / "test_metrics.json"
        if converted(run_dir) and not file.is_file():
            test_metrics.append(score_run(run_dir, "test", overrides, device)[1])
            histories.append({})
            continue
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found: has training of {run_dir} finished?")
        test_metrics.append(json.loads(file.read_text(encoding="utf-8")))
        histories.append(read_history(run_dir))
    config = yaml.safe_load((runs[0] / "config.yaml").read_text(encoding="utf-8"))
    return Experiment(path, runs, config, test_metrics, histories)


def metric_cells(
    test_metrics: Sequence[dict[str, dict[str, float]]], digits: int = 2
) -> dict[str, list[str]]:
    """Level -> the five numbers as table cells: '63.03', or '63.03 ± 1.20' over seeds."""
    if len(test_metrics) == 1:
        (only,) = test_metrics
        return {level: [f"{only[level][name]:.{digits}f}" for name in METRICS] for level in LEVELS}
    summary = summarize(list(test_metrics))
    return {
        level: [
            f"{summary['mean'][level][name]:.{digits}f} ± {summary['std'][level][name]:.{digits}f}"
            for name in METRICS
        ]
        for level in LEVELS
    }


# --- figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFigure:
    caption: str
    filename: str
    png: bytes


def experiment_figures(
    experiment: Experiment,
    stem: str,
    overrides: Sequence[str] = (),
    device: str = "cpu",
) -> list[ReportFigure]:
    """Per-class test F1 (from the runs' predictions), training curves and method diagnostics."""
    per_seed = []
    videos = 0
    for run_dir in experiment.runs:
        parse = parse_run(run_dir, REPORT_SPLIT, overrides, device)
        videos = len(parse.data)
        per_seed.append(
            class_f1_per_stream(
                parse.pred_audio, parse.pred_visual, parse.gt.audio, parse.gt.visual
            )
        )
    f1 = {stream: np.stack([seed[stream] for seed in per_seed]) for stream in STREAMS}
    seeds = f", mean ± std over {len(per_seed)} seeds" if len(per_seed) > 1 else ""
    f1_caption = f"Segment-level F1 per class on {REPORT_SPLIT} ({videos} videos{seeds})"
    figures = [
        ReportFigure(
            f1_caption,
            f"{stem}-class-f1.png",
            png_bytes(
                class_f1_figure(f1, CLASSES, title=f"{experiment.short_title}: {f1_caption}")
            ),
        )
    ]
    columns = list(dict.fromkeys(key for history in experiment.histories for key in history))
    groups = {
        "training losses": [c for c in columns if c.startswith("loss.")],
        "validation, segment level": [c for c in columns if c.startswith("val.segment.")],
        "validation, event level": [c for c in columns if c.startswith("val.event.")],
    }
    groups = {name: group for name, group in groups.items() if group}
    best = experiment.best_epochs()
    seed_names = [run.name for run in experiment.runs]
    if groups:
        ylabels = {name: "F1 (%)" for name in groups if name.startswith("validation")}
        figure = curves_figure(
            experiment.histories,
            groups,
            ylabels={"training losses": "loss (mean over the epoch)", **ylabels},
            labels={
                f"val.{level}.{name}": header
                for level in LEVELS
                for name, header in zip(METRICS, HEADERS, strict=True)
            },
            dashed={"loss.total"},
            best_epochs=best,
            title=f"{experiment.short_title}: training curves",
            seed_names=seed_names,
            min_spans={name: 1.0 for name in ylabels},  # F1 points
        )
        figures.append(ReportFigure("Training curves", f"{stem}-curves.png", png_bytes(figure)))
    diagnostics = [c for c in columns if c.startswith(DIAGNOSTIC_PREFIXES)]
    drawn = [c for c in diagnostics if has_values(experiment.histories, c)]
    if drawn:
        specs = {column: diagnostic(column) for column in drawn}
        skipped = [diagnostic(c).title for c in diagnostics if c not in drawn]
        figure = curves_figure(
            experiment.histories,
            {spec.title: [column] for column, spec in specs.items()},
            ylabels={spec.title: spec.ylabel for spec in specs.values()},
            best_epochs=best,
            title=f"{experiment.short_title}: method diagnostics",
            columns_per_row=4,
            seed_names=seed_names,
            integer={spec.title for spec in specs.values() if spec.integer},
            min_spans={spec.title: spec.min_span for spec in specs.values()},
        )
        caption = "Method diagnostics (" + ", ".join(_prefixes(drawn)) + " columns)"
        if skipped:
            caption += "; 0 or blank in every epoch, not drawn: " + ", ".join(skipped)
        figures.append(ReportFigure(caption, f"{stem}-diagnostics.png", png_bytes(figure)))
    return figures


def _prefixes(columns: Sequence[str]) -> list[str]:
    return [
        prefix + "*" for prefix in DIAGNOSTIC_PREFIXES if any(c.startswith(prefix) for c in columns)
    ]


# --- the documents ------------------------------------------------------------------------------


def write_report(
    paths: Sequence[str | Path],
    out: str | Path,
    overrides: Sequence[str] = (),
    device: str = "cpu",
) -> tuple[Path, Path]:
    """Write ``out/index.html``, ``out/report.md`` and the PNGs; returns the two documents."""
    if not paths:
        raise ValueError("no runs to report")
    out = Path(out)
    experiments = [load_experiment(path, overrides, device) for path in paths]
    sections = []
    for index, experiment in enumerate(experiments, start=1):
        stem = f"{index}-{_slug(experiment.path)}"
        sections.append((experiment, experiment_figures(experiment, stem, overrides, device)))
    # Plain writes, not io_utils' atomic ones: those create files readable by their owner only,
    # and a report is made to be shared or served.
    out.mkdir(parents=True, exist_ok=True)
    for _, figures in sections:
        for figure in figures:
            (out / figure.filename).write_bytes(figure.png)
    html_path, markdown_path = out / "index.html", out / "report.md"
    html_path.write_text(render_html(sections), encoding="utf-8")
    markdown_path.write_text(render_markdown(sections), encoding="utf-8")
    return html_path, markdown_path


def _slug(path: Path) -> str:
    name = path.resolve().name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"


def _details(experiment: Experiment) -> list[tuple[str, str]]:
    config = experiment.config
    rule = config["eval"]
    best = experiment.best_epochs()
    seeds = ", ".join(str(run.name) for run in experiment.runs)
    return [
        ("method", experiment.method),
        ("runs", seeds if len(experiment.runs) > 1 else "single run"),
        (
            "epochs",
            ", ".join(
                str(len(h["epoch"])) if h else "none (converted weights)"
                for h in experiment.histories
            ),
        ),
        (
            f"best epoch (val {config['train']['select_metric']})",
            ", ".join("?" if b is None else str(b) for b in best),
        ),
        ("binarization", f"threshold {rule['threshold']}, gate {rule['gate']}"),
        ("event IoU", str(rule["iou"])),
        ("audio ground truth", str(config["data"]["audio_gt"])),
        ("data", str(config["data"]["root"])),
    ]


def _comparison_rows(experiments: Sequence[Experiment]) -> list[list[str]]:
    rows = []
    for experiment in experiments:
        cells = metric_cells(experiment.test_metrics)
        rows.append([experiment.title, *cells["segment"], *cells["event"]])
    return rows


def _level_rows(experiment: Experiment) -> list[list[str]]:
    cells = metric_cells(experiment.test_metrics)
    return [[f"{level}-level", *cells[level]] for level in LEVELS]


Sections = Sequence[tuple[Experiment, Sequence[ReportFigure]]]


def render_html(sections: Sections) -> str:
    experiments = [experiment for experiment, _ in sections]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>avvp report</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>avvp report</h1>",
        f"<p>Test metrics (%) on the {REPORT_SPLIT} split, read from each run's "
        "<code>test_metrics.json</code>; mean ± sample std where a folder holds several seeds.</p>",
    ]
    if len(experiments) > 1:
        parts.append("<h2>Comparison</h2>")
        parts.append(_html_comparison(experiments))
    for index, (experiment, figures) in enumerate(sections, start=1):
        parts.append(f'<h2 id="run-{index}">{_e(experiment.title)}</h2>')
        parts.append("<table class='details'>")
        parts.extend(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in _details(experiment))
        parts.append("</table>")
        parts.append(_html_table(["", *HEADERS], _level_rows(experiment)))
        for figure in figures:
            data = base64.b64encode(figure.png).decode("ascii")
            parts.append(
                f"<figure><img alt='{_e(figure.caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{_e(figure.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render_markdown(sections: Sections) -> str:
    experiments = [experiment for experiment, _ in sections]
    lines = [
        "# avvp report",
        "",
        f"Test metrics (%) on the {REPORT_SPLIT} split, read from each run's `test_metrics.json`; "
        "mean ± sample std where a folder holds several seeds.",
        "",
    ]
    if len(experiments) > 1:
        header = ["run", *(f"{level} {name}" for level in LEVELS for name in HEADERS)]
        lines += ["## Comparison", "", *_md_table(header, _comparison_rows(experiments)), ""]
    for experiment, figures in sections:
        lines += [f"## {experiment.title}", ""]
        lines += [f"- {key}: {value}" for key, value in _details(experiment)]
        lines += ["", *_md_table(["", *HEADERS], _level_rows(experiment)), ""]
        for figure in figures:
            caption = figure.caption.replace("*", "\\*")
            lines += [f"![{caption}]({figure.filename})", "", f"*{caption}*", ""]
    return "\n".join(lines)


def _html_comparison(experiments: Sequence[Experiment]) -> str:
    span = len(HEADERS)
    top = "".join(f"<th colspan='{span}'>{level}-level</th>" for level in LEVELS)
    second = "".join(f"<th>{_e(name)}</th>" for _ in LEVELS for name in HEADERS)
    body = "".join(
        f"<tr><td><a href='#run-{index}'>{_e(row[0])}</a></td>"
        + "".join(f"<td>{_e(cell)}</td>" for cell in row[1:])
        + "</tr>"
        for index, row in enumerate(_comparison_rows(experiments), start=1)
    )
    return (
        f"<table><thead><tr><th rowspan='2'>run</th>{top}</tr><tr>{second}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:.8em 0}th,td{border:1px solid #ccc;"
    "padding:4px 9px;text-align:right;font-variant-numeric:tabular-nums}"
    "td:first-child,th:first-child{text-align:left}table.details th,table.details td"
    "{text-align:left;border:none;padding:1px 9px 1px 0}table.details th{color:#666;"
    "font-weight:normal}figure{margin:1.2em 0}img{max-width:100%}figcaption{color:#555;"
    "font-size:.9em}h2{margin-top:2em;border-bottom:1px solid #ddd}"
)
