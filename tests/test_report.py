"""`avvp report`: the documents, their numbers and figures, and the per-class F1 behind the bars."""

import csv
import json
import math
import re
import shutil

import numpy as np
import pytest

import avvp.report
from avvp.cli import main
from avvp.report import class_f1_per_stream, load_experiment

DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def naive_class_f1(pred: np.ndarray, gt: np.ndarray) -> list[float]:
    """Per class, TP/FP/FN counted segment by segment over all videos, then 100 * F1."""
    videos, segments, classes = gt.shape
    scores = []
    for c in range(classes):
        tp = fp = fn = 0
        for v in range(videos):
            for t in range(segments):
                tp += bool(pred[v, t, c] and gt[v, t, c])
                fp += bool(pred[v, t, c] and not gt[v, t, c])
                fn += bool(gt[v, t, c] and not pred[v, t, c])
        scores.append(math.nan if tp + fp + fn == 0 else 100 * 2 * tp / (2 * tp + fp + fn))
    return scores


def test_class_f1_per_stream_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    shape = (9, 10, 25)
    # Sparse labels with some classes that no video has, so NaN classes are exercised too.
    active = rng.random(25) < 0.6
    arrays = [(rng.random(shape) < 0.3) & active for _ in range(4)]
    pred_audio, pred_visual, gt_audio, gt_visual = arrays
    result = class_f1_per_stream(pred_audio, pred_visual, gt_audio, gt_visual)
    assert set(result) == {"audio", "visual"}
    expected_audio = naive_class_f1(pred_audio, gt_audio)
    expected_visual = naive_class_f1(pred_visual, gt_visual)
    assert np.isnan(expected_audio).any() and not np.isnan(expected_audio).all()
    np.testing.assert_allclose(result["audio"], expected_audio, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(result["visual"], expected_visual, atol=1e-9, equal_nan=True)


def add_columns(run, columns: dict[str, list[str]]) -> None:
    """Append columns to a run's metrics.csv, as a method that logs them would have written it."""
    path = run / "metrics.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for name, values in columns.items():
        for row, value in zip(rows, values, strict=True):
            row[name] = value
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def report(seeds_run, tmp_path_factory):
    """A report of the two-seed folder and of one seed run alone."""
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(seeds_run), str(seeds_run / "seed-1"), "--out", str(out)]) == 0
    return out


def without_images(text: str) -> str:
    return DATA_URI.sub("data:...", text)


def test_report_is_self_contained_html_and_markdown_with_the_figures(report):
    page = (report / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == 4  # per run: per-class F1 and training curves
    assert all(DATA_URI.fullmatch(source) for source in sources)
    rest = without_images(page)
    assert "http" not in rest.lower()
    assert all(link.startswith("#") for link in re.findall(r"href='([^']*)'", rest))
    assert "<link" not in rest and "<script" not in rest

    markdown = (report / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == 4
    for link in links:
        assert (report / link).read_bytes().startswith(PNG_SIGNATURE)
    assert "http" not in markdown.lower()


def test_report_tables_hold_the_runs_test_metrics(report, seeds_run):
    page = (report / "index.html").read_text(encoding="utf-8")
    markdown = (report / "report.md").read_text(encoding="utf-8")
    single = json.loads((seeds_run / "seed-1" / "test_metrics.json").read_text())
    summary = json.loads((seeds_run / "summary.json").read_text())
    for level in ("segment", "event"):
        for name in ("audio", "visual", "audio_visual", "type", "event"):
            alone = f"<td>{single[level][name]:.2f}</td>"
            seeds = f"{summary['mean'][level][name]:.2f} ± {summary['std'][level][name]:.2f}"
            assert alone in page
            assert f"<td>{seeds}</td>" in page
            assert f"| {single[level][name]:.2f} |" in markdown
            assert f"| {seeds} |" in markdown
    # One comparison table (a row per run) before the per-run sections.
    assert page.index("<h2>Comparison</h2>") < page.index('<h2 id="run-1">')
    assert markdown.count("## ") == 3


def test_tau_and_pseudo_columns_get_their_own_curves(seeds_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(seeds_run / "seed-1", run)
    # A blank cell: methods log some values in some epochs only.
    add_columns(run, {"tau.mean": ["3.5", "2.0"], "pseudo.audio_precision": ["0.6", ""]})
    drawn = []

    def spy(histories, groups, **kwargs):
        drawn.append((histories, dict(groups)))
        return curves(histories, groups, **kwargs)

    curves = avvp.report.curves_figure
    monkeypatch.setattr(avvp.report, "curves_figure", spy)
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    (_, training), (histories, diagnostics) = drawn
    assert diagnostics == {
        "tau: mean over positive (video, class)": ["tau.mean"],
        "pseudo.audio precision": ["pseudo.audio_precision"],  # not a known column: its name
    }
    assert not any(
        column.startswith(("tau.", "pseudo.")) for g in training.values() for column in g
    )
    assert np.isnan(histories[0]["pseudo.audio_precision"][1])
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "1-run-diagnostics.png" in markdown
    assert (tmp_path / "out" / "1-run-diagnostics.png").read_bytes().startswith(PNG_SIGNATURE)


def test_report_of_a_folder_without_runs_is_a_clean_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "avvp report: error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_figure_titles_name_the_run_folder_when_it_is_not_the_method(seeds_run, tmp_path):
    assert load_experiment(seeds_run).short_title == "han"  # the folder is called han
    variant = tmp_path / "han-no-smoothing"
    variant.symlink_to(seeds_run, target_is_directory=True)
    assert load_experiment(variant).short_title == "han (han-no-smoothing)"


def test_report_titles_name_run_folders_not_machine_paths(report, seeds_run):
    markdown = (report / "report.md").read_text(encoding="utf-8")
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == ["## Comparison", "## han: han", "## han: han/seed-1"]
    page = (report / "index.html").read_text(encoding="utf-8")
    assert f"han: {seeds_run}" not in page and f"han: {seeds_run}" not in markdown


def test_diagnostics_are_readable_and_skip_panels_without_values(seeds_run, tmp_path, monkeypatch):
    run = tmp_path / "ppl-like"
    shutil.copytree(seeds_run, run)
    for seed in ("seed-1", "seed-2"):
        add_columns(
            run / seed,
            {
                "pseudo.precision": ["", "0.623"] if seed == "seed-1" else ["", "0.625"],
                "pseudo.positives": ["92", "95"],
                "pseudo.classes_without_negatives": ["0", "0"],  # all zero: not drawn
                "tau.exact": ["", ""],  # blank throughout: not drawn
            },
        )
    figures = []

    def spy(*args, **kwargs):
        figures.append(curves(*args, **kwargs))
        return figures[-1]

    curves = avvp.report.curves_figure
    monkeypatch.setattr(avvp.report, "curves_figure", spy)
    out = tmp_path / "out"
    assert main(["report", str(run), "--out", str(out)]) == 0
    training, diagnostics = figures
    axes = {ax.get_title(): ax for ax in diagnostics.axes if ax.get_title()}
    assert set(axes) == {"pseudo-label precision (hidden labels)", "features selected as positives"}
    precision = axes["pseudo-label precision (hidden labels)"]
    assert precision.get_ylabel() == "precision (0-1)"
    low, high = precision.get_ylim()
    assert high - low == pytest.approx(0.1)  # 0.623 against 0.625 is no cliff
    positives = axes["features selected as positives"]
    assert all(float(tick).is_integer() for tick in positives.get_yticks())
    # One epoch axis for all panels, though precision starts at epoch 2.
    assert precision.get_xlim() == positives.get_xlim()
    assert all(float(tick).is_integer() for tick in precision.get_xticks())
    # Seeds: one colour and marker each, named by their folders in a legend.
    colours = {line.get_color() for line in precision.lines if line.get_linestyle() == "-"}
    assert len(colours) == 2
    for figure in (training, diagnostics):
        (legend,) = figure.legends
        assert [text.get_text() for text in legend.get_texts()] == ["seed-1", "seed-2"]
    markers = {line.get_marker() for line in training.axes[0].lines if line.get_marker() != "None"}
    assert len(markers) == 2
    markdown = (out / "report.md").read_text()
    assert "not drawn: classes without negative features, tau = true count" in markdown


def test_a_converted_run_is_scored_on_its_test_split_and_has_no_curves(dataset, tmp_path, capsys):
    """`avvp import-han` writes weights only: the report scores them itself (the numbers `avvp
    evaluate` prints), says there is no training history and draws no curves."""
    import torch
    from test_official import MMILNet

    torch.manual_seed(0)
    checkpoint = tmp_path / "MMIL_Net.pt"
    torch.save(MMILNet().state_dict(), checkpoint)
    run = tmp_path / "han-official"
    assert main(["import-han", str(checkpoint), "--out", str(run), "--data", str(dataset)]) == 0
    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", "--run", str(run), "--split", "test", "--json", str(metrics)]) == 0
    expected = json.loads(metrics.read_text())
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for level in ("segment", "event"):
        for name in ("audio", "visual", "audio_visual", "type", "event"):
            assert f"| {expected[level][name]:.2f} |" in markdown
    assert "none (converted weights)" in markdown
    assert len(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)) == 1  # per-class F1 only
    assert not (run / "test_metrics.json").exists()  # the run folder is only read
