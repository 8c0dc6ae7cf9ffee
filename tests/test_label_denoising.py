"""benchmarks/label_denoising.py: the commands it runs and the intervals it reports."""

import argparse
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import label_denoising


def test_interval_is_the_t_interval_of_the_paired_differences():
    differences = [3.2, 2.5, 2.9]
    half = 4.303 * statistics.stdev(differences) / 3**0.5  # t(0.975, 2 degrees of freedom)
    mean = sum(differences) / 3
    assert label_denoising.interval(differences) == (
        f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}] (holds)"
    )
    assert "(holds)" not in label_denoising.interval([2.0, -1.5, 0.4])
    assert label_denoising.interval([1.25]) == "+1.2"


@pytest.mark.parametrize("row", label_denoising.ROWS, ids=lambda row: row.folder)
def test_refinements_start_from_the_same_seed_of_their_start(row, tmp_path):
    args = argparse.Namespace(out=tmp_path, data=tmp_path / "data", plg_labels=tmp_path / "plg.npz")
    command = row.command(args, seed=2)
    assert command[command.index("--out") + 1] == str(tmp_path / row.folder / "seed-2")
    assert "seed=2" in command
    assert (f"method.visual_labels={tmp_path / 'plg.npz'}" in command) == row.plg
    labels = [item for item in command if item.startswith("data.video_labels=")]
    if row.labels is None:
        assert not labels
    else:
        assert labels == [f"data.video_labels={tmp_path / row.labels / 'seed-2' / 'ma_labels.npz'}"]
    if row.start is None:
        assert "--init-from" not in command
    else:
        start = tmp_path / row.start / "seed-2"
        assert command[command.index("--init-from") + 1] == str(start)


def test_the_refinement_rows_train_with_the_packaged_recipe():
    from avvp.config import resolve_config

    subset = "data.train_videos=1000"
    assert subset in label_denoising.REFINE
    rows = [item for item in label_denoising.REFINE if item != subset]
    assert resolve_config("poibin", overrides=rows) == resolve_config(
        "poibin", "recipe:poibin_refine"
    )
