"""benchmarks/compare_methods.py: runs each (experiment, seed) once, tables mean ± std."""

import json
import sys
from pathlib import Path

import pytest
from conftest import TINY_TRAINING

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare_methods

from avvp.evaluation.summary import summarize

TINY_OVERRIDES = [flag for flag in TINY_TRAINING if flag != "--no-progress"]
# PoiBin's preset warms up for 5 epochs and selects its checkpoint after them.
LONG_ENOUGH_FOR_POIBIN = [
    "optim.epochs=6" if flag.startswith("optim.epochs=") else flag for flag in TINY_OVERRIDES
]


def test_compare_methods_tables_the_runs_and_skips_finished_ones(dataset, tmp_path):
    out, doc = tmp_path / "runs", tmp_path / "docs" / "results.md"
    argv = ["--data", str(dataset), "--seeds", "1,2", "--jobs", "2", "--out", str(out)]
    argv += ["--doc", str(doc), "--only", "HAN,PoiBin", *LONG_ENOUGH_FOR_POIBIN]
    assert compare_methods.main(argv) == 0
    page = doc.read_text()
    for name, folder in (("HAN", "han"), ("PoiBin", "poibin")):
        runs = [
            json.loads((out / folder / f"seed-{s}" / "test_metrics.json").read_text())
            for s in (1, 2)
        ]
        summary = summarize(runs)
        type_cell = (
            f"{summary['mean']['segment']['type']:.1f} ± {summary['std']['segment']['type']:.1f}"
        )
        row = next(
            line for line in page.splitlines() if line.startswith(f"| {name} (ours, 2 seeds)")
        )
        assert row.split(" | ")[4] == type_cell
        assert f"| {name} (paper, LLP) |" in page
    assert "| HAN (paper, LLP) | 60.1 | 52.9 | 48.9 | 54.0 | 55.4 | 51.3" in page
    assert (doc.parent / "figures" / "poibin_tau_error.png").is_file()  # tau error on synthetic
    assert "![parses](figures/parse_comparison.png)" in page
    assert (doc.parent / "figures" / "parse_comparison.png").stat().st_size > 10_000
    # PPL_Test: the HAN runs evaluated with prototype inference
    ppl_test = [
        json.loads((out / "han" / f"seed-{s}" / "ppl_test_metrics.json").read_text())
        for s in (1, 2)
    ]
    row = next(line for line in page.splitlines() if line.startswith("| HAN + PPL_Test (ours"))
    assert row.split(" | ")[4] == (
        f"{summarize(ppl_test)['mean']['segment']['type']:.1f} ± "
        f"{summarize(ppl_test)['std']['segment']['type']:.1f}"
    )
    assert ppl_test[0] != json.loads((out / "han" / "seed-1" / "test_metrics.json").read_text())
    per_stream = json.loads(
        (out / "han" / "seed-1" / "ppl_test_per_stream_metrics.json").read_text()
    )
    assert per_stream != ppl_test[0]
    assert "| HAN + PPL_Test, per-stream selection (ours, 2 seeds) |" in page
    cost = page.split("## Training cost", 1)[1]
    assert cost.split("| HAN | ", 1)[1].split(" | ")[1].startswith("1.00")  # HAN is the unit
    assert "| PoiBin | " in cost
    speed = page.split("## Speed", 1)[1]
    link = speed.split("[han_speed.md](", 1)[1].split(")", 1)[0]
    assert (doc.parent / link).resolve() == compare_methods.RESULTS / "han_speed.md"
    assert "| device |" in speed  # the HAN speed table of benchmarks/results

    logs = sorted(out.glob("*/seed-*.log"))
    written = [path.stat().st_mtime_ns for path in logs]
    assert len(logs) == 8  # 2 methods x 2 seeds trained, 2 x 2 PPL_Test evaluations
    assert compare_methods.main(argv) == 0  # finished runs are kept, not trained again
    assert [path.stat().st_mtime_ns for path in logs] == written


def test_compare_methods_rejects_unknown_experiments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        compare_methods.main(["--data", str(tmp_path), "--only", "HAN,Nope"])
    assert "Nope" in capsys.readouterr().err


def test_ablation_rows_train_with_their_own_seeds(dataset, tmp_path):
    out, doc = tmp_path / "runs", tmp_path / "results.md"
    argv = ["--data", str(dataset), "--seeds", "1,2", "--ablation-seeds", "3", "--jobs", "2"]
    argv += ["--out", str(out), "--doc", str(doc), "--only", "HAN,PPL: k = 1", *TINY_OVERRIDES]
    assert compare_methods.main(argv) == 0
    assert sorted(path.name for path in (out / "han").glob("seed-*") if path.is_dir()) == [
        "seed-1",
        "seed-2",
    ]
    assert [path.name for path in (out / "ppl-k-1").glob("seed-*") if path.is_dir()] == ["seed-3"]
    metrics = json.loads((out / "ppl-k-1" / "seed-3" / "test_metrics.json").read_text())
    row = next(line for line in doc.read_text().splitlines() if line.startswith("| PPL: k = 1"))
    assert row.startswith("| PPL: k = 1 (ours, 1 seed) |")
    assert row.split(" | ")[4] == f"{metrics['segment']['type']:.1f}"  # one seed: no ± cell
    assert "--ablation-seeds 3" in doc.read_text()


def test_vplan_rows_make_plg_labels_then_denoise_the_rl_run(dataset, tmp_path):
    out, doc = tmp_path / "runs", tmp_path / "results.md"
    argv = ["--data", str(dataset), "--seeds", "1", "--out", str(out), "--doc", str(doc)]
    argv += ["--only", "VPLAN: PLG + RL,VPLAN (PLG + RL + PLD)", *TINY_OVERRIDES]
    assert compare_methods.main(argv) == 0
    plg, pld = out / "plg_labels.npz", out / "vplan-plg-rl" / "seed-1" / "pld_labels.npz"
    assert plg.is_file() and pld.is_file()
    for folder, labels in (("vplan-plg-rl", plg), ("vplan-plg-rl-pld", pld)):
        config = (out / folder / "seed-1" / "config.yaml").read_text()
        assert f"visual_labels: {labels}" in config
    page = doc.read_text()
    assert "| VPLAN (PLG + RL + PLD) (ours, 1 seed) |" in page
    assert "| VPLAN (PLG + RL + PLD) (paper, LLP) | 61.1 | 65.5 |" in page
    quality = page.split("## VPLAN: visual label quality on val", 1)[1]
    plg_val = json.loads((out / "plg_labels_val.quality.json").read_text())["labels"]["visual"]
    row = next(line for line in quality.splitlines() if line.startswith("| PLG (ours) |"))
    assert row.split(" | ")[1:3] == [
        f"{plg_val['video']['precision']:.1f}",
        f"{plg_val['video']['recall']:.1f}",
    ]
    assert "| PLD (ours, mean of the 1 PLG + RL runs) |" in quality


def test_the_label_denoising_results_join_the_page(tmp_path, monkeypatch):
    monkeypatch.setattr(compare_methods, "RESULTS", tmp_path)
    doc = tmp_path / "docs" / "results.md"
    assert compare_methods.label_denoising_section(doc) == []
    (tmp_path / "label_denoising.md").write_text("# Label denoising\n\n`cmd`\n\n| a |\n| --- |\n")
    section = compare_methods.label_denoising_section(doc)
    assert section[:4] == [
        "",
        "## Label denoising",
        "",
        "From [label_denoising.md](../label_denoising.md):",
    ]
    assert section[-2:] == ["| a |", "| --- |"]
