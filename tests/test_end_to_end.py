"""The whole pipeline in-process on tiny synthetic data: synth, train, evaluate, predict."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest

from avvp.cli import main

TINY = [
    "--no-progress",
    "optim.epochs=3",
    "optim.lr_step=2",
    "optim.batch_size=8",
    "model.d_model=32",
    "model.feedforward=32",
]


def read_json(path):
    return json.loads(path.read_text())


def test_train_evaluate_predict_round_trip(dataset, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--method", "han", "--data", str(dataset), "--out", str(run), *TINY]) == 0
    for name in (
        "config.yaml",
        "meta.json",
        "metrics.csv",
        "last.pt",
        "best.pt",
        "test_metrics.json",
    ):
        assert (run / name).is_file(), name
    test_metrics = read_json(run / "test_metrics.json")
    assert set(test_metrics) == {"segment", "event"}
    assert set(test_metrics["segment"]) == {"audio", "visual", "audio_visual", "type", "event"}
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 1 + 3

    # the run rebuilt from its checkpoint alone scores what training reported
    assert (
        main(["evaluate", "--run", str(run), "--split", "test", "--json", str(tmp_path / "e.json")])
        == 0
    )
    assert read_json(tmp_path / "e.json") == test_metrics

    # predictions written as files and scored from the files give the same numbers again
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(run), "--split", "test", "--out", str(out)]) == 0
    assert (out / "probabilities.npz").is_file()
    assert (
        main(
            [
                "evaluate",
                "--annotations",
                str(dataset),
                "--split",
                "test",
                "--pred-audio",
                str(out / "pred_audio.tsv"),
                "--pred-visual",
                str(out / "pred_visual.tsv"),
                "--json",
                str(tmp_path / "f.json"),
            ]
        )
        == 0
    )
    from_files = read_json(tmp_path / "f.json")
    for level in test_metrics:
        for name, value in test_metrics[level].items():
            assert from_files[level][name] == pytest.approx(value, abs=1e-9)


def test_resume_after_kill_gives_identical_results(dataset, tmp_path, monkeypatch):
    from avvp.training import trainer as trainer_module

    uninterrupted = tmp_path / "full"
    assert main(["train", "--data", str(dataset), "--out", str(uninterrupted), *TINY]) == 0

    killed = tmp_path / "killed"
    original = trainer_module.Trainer._run_epoch

    def run_then_die(self, writer):
        original(self, writer)
        if self.epoch == 1:
            raise KeyboardInterrupt("simulated kill after epoch 1")

    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", run_then_die)
    assert main(["train", "--data", str(dataset), "--out", str(killed), *TINY]) == 130
    assert not (killed / "test_metrics.json").exists()
    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", original)
    assert main(["train", "--data", str(dataset), "--out", str(killed), *TINY]) == 0
    assert read_json(killed / "test_metrics.json") == read_json(uninterrupted / "test_metrics.json")
    assert read_json(killed / "meta.json")["resumed_from_epoch"] == 1


def test_resume_refuses_another_config(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(dataset), "--out", str(run), *TINY]) == 0
    assert main(["train", "--data", str(dataset), "--out", str(run), *TINY, "optim.lr=0.01"]) == 2
    assert "optim.lr" in capsys.readouterr().err


def test_resume_accepts_options_added_since_at_their_defaults():
    from avvp.config import resolve_config
    from avvp.training.trainer import check_resumable

    current = resolve_config("ppl")
    saved = resolve_config("ppl")
    del saved["method"]["selection"]  # a run started before the option existed
    check_resumable(saved, current)
    changed = resolve_config("ppl", overrides=["method.selection=per_stream"])
    with pytest.raises(ValueError, match=re.escape("method.selection: 'joint' -> 'per_stream'")):
        check_resumable(saved, changed)


def test_seeds_summary(dataset, tmp_path):
    out = tmp_path / "seeds"
    assert main(["train", "--data", str(dataset), "--out", str(out), "--seeds", "1,2", *TINY]) == 0
    summary = read_json(out / "summary.json")
    assert summary["seeds"] == [1, 2]
    runs = [read_json(out / f"seed-{s}" / "test_metrics.json") for s in (1, 2)]
    mean = (runs[0]["segment"]["type"] + runs[1]["segment"]["type"]) / 2
    assert summary["mean"]["segment"]["type"] == pytest.approx(mean)


def test_seeds_trained_by_several_processes_share_one_summary(dataset, tmp_path):
    """Processes that train other seeds into one --out (here one after the other) leave a
    summary of every finished seed run of the same config, whoever finishes last; a seed run
    of another config in that folder is not averaged in."""
    out = tmp_path / "seeds"
    flags = ["--data", str(dataset), "--out", str(out), *TINY]
    assert main(["train", *flags, "--seeds", "1,2"]) == 0
    assert main(["train", *flags, "--seeds", "3"]) == 0
    summary = read_json(out / "summary.json")
    assert summary["seeds"] == [1, 2, 3]
    runs = [read_json(out / f"seed-{s}" / "test_metrics.json") for s in (1, 2, 3)]
    assert summary["runs"] == runs
    mean = sum(run["segment"]["type"] for run in runs) / 3
    assert summary["mean"]["segment"]["type"] == pytest.approx(mean)
    assert main(["train", *flags, "--seeds", "4", "optim.lr=1e-3"]) == 0
    assert read_json(out / "summary.json")["seeds"] == [1, 2, 3]


@pytest.mark.slow
def test_torchrun_two_processes_gloo(dataset, tmp_path):
    run = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "avvp.cli",
        "train",
        "--data",
        str(dataset),
        "--out",
        str(run),
        *TINY,
        "train.device=cpu",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_json(run / "test_metrics.json")
    assert 0 <= metrics["segment"]["type"] <= 100
    # each process saw half of the training set per epoch
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 1 + 3


def test_builtin_synthetic_data_is_generated_once_and_reused(tmp_path, monkeypatch):
    """The README main job's path: ``--data synthetic`` under a fresh AVVP_HOME, twice."""
    monkeypatch.setenv("AVVP_HOME", str(tmp_path / "home"))
    flags = ["--data", "synthetic", *TINY, "data.synthetic_videos=30"]
    assert main(["train", "--out", str(tmp_path / "a"), *flags]) == 0
    (generated,) = (tmp_path / "home").iterdir()
    assert main(["train", "--out", str(tmp_path / "b"), *flags]) == 0
    assert list((tmp_path / "home").iterdir()) == [generated]
    assert read_json(tmp_path / "a" / "test_metrics.json") == read_json(
        tmp_path / "b" / "test_metrics.json"
    )


def test_metrics_csv_times_each_phase_of_an_epoch(seeds_run):
    with open(seeds_run / "seed-1" / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2
    for row in rows:
        phases = [float(row[f"seconds.{phase}"]) for phase in ("method", "train", "val")]
        assert phases[1] > 0 and phases[2] > 0
        assert sum(phases) <= float(row["seconds"])
