"""benchmarks/suite.py: a tiny suite end to end, reuse, resume, --dry-run, and the table marks."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY_TRAINING

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare_methods
import suite

from avvp.cli import main as avvp_main
from avvp.evaluation.stats import compare
from avvp.training.trainer import Trainer

TINY_SCHEDULE = [flag for flag in TINY_TRAINING if flag != "--no-progress"]


def write_suite(path: Path, schedule=TINY_SCHEDULE) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "schedule": schedule,
                "seeds": [1, 2],
                "metrics": ["segment.type", "event.type"],
                "bootstrap": {"resamples": 200, "seed": 0},
                "datasets": {
                    "tiny-a": {"synth": {"videos": 40, "seed": 0}},
                    "tiny-b": {"synth": {"videos": 40, "seed": 1}},
                },
                "methods": {"han": {}, "ppl": {}},
            }
        )
    )
    return path


def never(*args, **kwargs):
    raise AssertionError(f"nothing should run, but {args[-1]!r} did")


def test_a_tiny_suite_trains_tables_reuses_and_resumes(tmp_path, monkeypatch, capsys):
    suite_file = write_suite(tmp_path / "tiny.yaml")
    data, out, results = tmp_path / "data", tmp_path / "runs", tmp_path / "results" / "suite"
    argv = ["--suite", str(suite_file), "--data-dir", str(data), "--out", str(out)]
    argv += ["--results", str(results)]
    assert suite.main([*argv, "--jobs", "2"]) == 0
    runs = sorted(out.glob("*/*/seed-*/test_metrics.json"))
    assert len(runs) == 8
    assert sorted(path.name for path in data.iterdir() if path.is_dir()) == [
        "builtin-v40-d0.95-g0",
        "builtin-v40-d0.95-g1",
    ]
    payload = json.loads(results.with_suffix(".json").read_text())
    rows = {(row["dataset"], row["method"]): row for row in payload["rows"]}
    assert set(rows) == {(d, m) for d in ("tiny-a", "tiny-b") for m in ("han", "ppl")}
    han = json.loads((out / "tiny-a" / "han" / "seed-2" / "test_metrics.json").read_text())
    assert rows[("tiny-a", "han")]["metrics"]["segment.type"]["values"][1] == pytest.approx(
        han["segment"]["type"], abs=1e-9
    )
    versus = rows[("tiny-a", "ppl")]["metrics"]["event.type"]["vs_baseline"]
    assert versus["seed_ci"][0] <= versus["difference"] <= versus["seed_ci"][1]
    assert "vs_baseline" not in rows[("tiny-a", "han")]["metrics"]["segment.type"]
    table = results.with_suffix(".md").read_text()
    assert "| tiny-b | ppl | 2 |" in table and "paper ordering (ppl > han" in table

    # A second pass reuses every run: nothing is generated or trained.
    monkeypatch.setattr(suite, "run_logged", never)
    assert suite.main(argv) == 0

    # A killed run resumes: train tiny-b/ppl/seed-1 again, stopped after its first epoch.
    run_dir = out / "tiny-b" / "ppl" / "seed-1"
    job = next(
        job
        for job in suite.plan(suite.load_suite(suite_file), out, data, {}, False)
        if job.name == "tiny-b/ppl/seed-1"
    )
    shutil.rmtree(run_dir)
    run_epoch = Trainer._run_epoch

    def stop_after_one(self, writer):
        if self.epoch == 1:
            raise KeyboardInterrupt
        run_epoch(self, writer)

    monkeypatch.setattr(Trainer, "_run_epoch", stop_after_one)
    assert avvp_main(job.arguments) == 130
    monkeypatch.undo()
    assert not (run_dir / "test_metrics.json").exists() and (run_dir / "last.pt").is_file()
    capsys.readouterr()
    assert suite.main([*argv, "--dry-run"]) == 0
    assert f"resume tiny-b/ppl/seed-1: {run_dir}" in capsys.readouterr().out
    assert suite.main(argv) == 0
    assert "resuming" in run_dir.with_suffix(".log").read_text()
    assert (run_dir / "test_metrics.json").is_file()

    # A finished run of another config is not silently reused.
    other = write_suite(tmp_path / "other.yaml", [*TINY_SCHEDULE, "optim.lr=0.001"])
    with pytest.raises(ValueError, match=r"optim\.lr"):
        suite.main(["--suite", str(other), *argv[2:]])


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path, monkeypatch, capsys):
    suite_file = write_suite(tmp_path / "tiny.yaml")
    monkeypatch.setattr(suite, "run_logged", never)
    data, out = tmp_path / "data", tmp_path / "runs"
    argv = ["--suite", str(suite_file), "--data-dir", str(data), "--out", str(out), "--dry-run"]
    assert suite.main([*argv, "--only", "dataset=tiny-a,method=ppl"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed if not line.startswith(" ")] == [
        f"generate {data / 'builtin-v40-d0.95-g0'}",
        "train tiny-a/ppl/seed-1",
        "train tiny-a/ppl/seed-2",
    ]
    assert not data.exists() and not out.exists()


def test_the_table_marks_a_difference_only_where_both_intervals_exclude_zero():
    rng = np.random.default_rng(0)
    baseline = rng.normal(50, 5, (3, 100, 1))
    cases = {
        "gain": baseline + 4 + rng.normal(0, 0.5, baseline.shape),
        "loss": baseline - 4 + rng.normal(0, 0.5, baseline.shape),
        "noise": baseline + rng.normal(0, 5, baseline.shape),
    }
    rows = [{"dataset": "d", "method": "han", "seeds": [1, 2, 3],
             "metrics": {"segment.type": {"mean": 50.0, "std": 1.0}}}]  # fmt: skip
    for name, scores in cases.items():
        result = compare(scores, baseline, resamples=500)
        rows.append(
            {
                "dataset": name,
                "method": "m",
                "seeds": [1, 2, 3],
                "metrics": {
                    "segment.type": {
                        "mean": 50.0,
                        "std": 1.0,
                        "vs_baseline": {
                            "difference": float(result.difference[0]),
                            "seed_ci": [float(result.seed_low[0]), float(result.seed_high[0])],
                            "video_ci": [float(result.video_low[0]), float(result.video_high[0])],
                            "significant": bool(result.significant[0]),
                        },
                    }
                },
            }
        )
    spec = suite.Suite(datasets={}, methods={"han": None, "m": None}, seeds=(1, 2, 3))
    table = suite.format_tables(spec, rows)
    cells = {line.split(" | ")[0][2:]: line.split(" | ")[4] for line in table.splitlines()
             if line.startswith("| ") and " | m | " in line}  # fmt: skip
    assert cells["gain"].startswith("+4") and cells["gain"].endswith(suite.MARK)
    assert cells["loss"].startswith("-4") and cells["loss"].endswith(suite.MARK)
    assert not cells["noise"].endswith(suite.MARK)
    assert "- paper ordering (m > han, segment Type@AV): holds on gain; reversed on loss; " \
        "not resolved on noise." in table  # fmt: skip


def test_insert_suite_table_puts_it_on_top_and_replaces_it(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nOld text.\n")
    suite.insert_suite_table(doc, "TABLE ONE", "python benchmarks/suite.py")
    suite.insert_suite_table(doc, "TABLE TWO", "python benchmarks/suite.py")
    text = doc.read_text()
    assert text.startswith("# Results\n\n" + suite.SUITE_START)
    assert "TABLE TWO" in text and "TABLE ONE" not in text and text.endswith("Old text.\n")


def test_a_rewritten_results_page_keeps_the_suite_table(tmp_path):
    """compare_methods.py rewrites docs/results.md whole; the suite's block survives on top."""
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nOld text.\n")
    suite.insert_suite_table(doc, "SUITE TABLE", "python benchmarks/suite.py")
    kept = compare_methods.kept_suite_table(doc)
    page = "\n".join(["# Results on the calibrated synthetic benchmark", *kept, "", "New text."])
    doc.write_text(page)
    suite.insert_suite_table(doc, "SUITE TABLE 2", "python benchmarks/suite.py")
    text = doc.read_text()
    assert text.count(suite.SUITE_START) == 1 and "SUITE TABLE 2" in text
    assert text.endswith("New text.") and "Old text." not in text
    assert compare_methods.kept_suite_table(tmp_path / "absent.md") == []


def test_a_suite_names_the_built_in_label_model_and_reads_old_folders_as_global(tmp_path):
    """``label_model: global`` makes (and recognises) the built-in set of the old sampler; a
    folder made before label models were recorded is read as global."""
    old = suite.Synth(videos=40, seed=0, label_model="global")
    new = suite.Synth(videos=40, seed=0)
    assert old.key != new.key and "--label-model" in old.arguments(tmp_path / "d")
    assert "--label-model" not in new.arguments(tmp_path / "d")
    settings = dict(old.settings())
    del settings["label_model"]  # as an old synthetic.json has it
    assert suite.with_label_model(settings) == old.settings() != new.settings()
