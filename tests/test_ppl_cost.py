"""benchmarks/ppl_cost.py: the pseudo-labelling share of PPL epochs, from the trainer's timings."""

import json
import sys
from pathlib import Path

import pytest
from conftest import TINY_TRAINING

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ppl_cost


def test_ppl_cost_writes_the_share_of_every_epoch(dataset, tmp_path):
    overrides = [flag for flag in TINY_TRAINING if not flag.startswith(("--", "optim.epochs"))]
    out = tmp_path / "ppl_cost"
    argv = ["--data", str(dataset), "--epochs", "3", "--out", str(out), *overrides]
    assert ppl_cost.main(argv) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    rows = result["rows"]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows[0]["labels_refreshed"] is False and rows[1]["labels_refreshed"] is True
    for row in rows:
        assert row["train_seconds"] > 0 and row["pseudo_label_seconds"] > 0  # prototypes each epoch
        share = (
            100 * row["pseudo_label_seconds"] / (row["train_seconds"] + row["pseudo_label_seconds"])
        )
        assert row["share_percent"] == pytest.approx(share)
        parts = [row[f"{phase}_seconds"] for phase in ppl_cost.PHASES]
        assert row["features_seconds"] > 0 and sum(parts) <= row["pseudo_label_seconds"]
        features = 100 * parts[0] / (row["train_seconds"] + parts[0])
        assert row["features_only_share_percent"] == pytest.approx(features)
    assert result["worst_share_percent"] == max(row["share_percent"] for row in rows[1:])
    floor = min(row["features_only_share_percent"] for row in rows[1:])
    assert result["features_only_share_percent"] == floor
    assert "| 2 |" in out.with_suffix(".md").read_text()
