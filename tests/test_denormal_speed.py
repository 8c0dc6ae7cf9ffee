"""benchmarks/denormal_speed.py end to end on the tiny dataset: both modes train, the table has a
row per epoch, and the two modes' weights and scores are compared."""

import json
import sys
from pathlib import Path

from conftest import TINY_TRAINING

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import denormal_speed


def test_both_modes_train_and_are_compared(dataset, tmp_path):
    settings = [flag for flag in TINY_TRAINING if "=" in flag and "epochs" not in flag]
    out = tmp_path / "result"
    arguments = ["--data", str(dataset), "--epochs", "2", "--repeats", "1"]
    assert (
        denormal_speed.main([*arguments, "--work", str(tmp_path), "--out", str(out), *settings])
        == 0
    )
    payload = json.loads(out.with_suffix(".json").read_text())
    assert {mode: len(runs) for mode, runs in payload["seconds"].items()} == {"off": 1, "on": 1}
    assert all(len(runs[0]) == 2 for runs in payload["seconds"].values())
    assert all(second > 0 for runs in payload["seconds"].values() for second in runs[0])
    # Same seed and data: flushing only touches values below 1.2e-38, so the scores agree.
    scores = payload["test_segment_type"]
    assert abs(scores["off"] - scores["on"]) < 1e-6
    assert payload["weights_identical"] == (payload["largest_weight_difference"] == 0)
    table = out.with_suffix(".md").read_text()
    assert "| 1 |" in table and "| 2 |" in table and "| all |" in table
    for mode in ("off", "on"):
        config = (tmp_path / f"{mode}-0" / "config.yaml").read_text()
        assert f"flush_denormal: {'true' if mode == 'on' else 'false'}" in config
