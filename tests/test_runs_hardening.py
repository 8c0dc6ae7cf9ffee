"""`avvp train` against what users do (issue 16): two processes on one run folder, data changed
under a killed run, bad flags and config values, damaged checkpoints, a full disk, Ctrl-C, absurd
feature values, reruns of finished runs, and what the output says about the numbers."""

import contextlib
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_TRAINING

import avvp
from avvp.cli import build_parser, main
from avvp.config import resolve_config
from avvp.training.data import load_splits
from avvp.training.trainer import Trainer

# TINY_TRAINING's overrides, for runs built in-process without the command line.
TINY_OVERRIDES = [flag for flag in TINY_TRAINING if "=" in flag] + ["train.progress=false"]
HOLD_FOLDER = """
import sys
from avvp.training.run_folder import claim_run_folder
with claim_run_folder(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def train(dataset, out, *overrides, options=()):
    """``avvp train`` of a tiny run; ``options`` are flags (``--seeds``, ``--method``, ...)."""
    command = ["train", "--data", str(dataset), "--out", str(out), *options, *TINY_TRAINING]
    return main([*command, *overrides])


def read_json(path):
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def finished_run(dataset, tmp_path_factory):
    """A finished 2-epoch HAN run; tests that change it work on a copy (:func:`copy_run`)."""
    run = tmp_path_factory.mktemp("finished") / "han"
    assert train(dataset, run) == 0
    return run


def copy_run(run, tmp_path):
    return Path(shutil.copytree(run, tmp_path / "run"))


def kill_after(monkeypatch, finished_epochs):
    """Make the next training stop with Ctrl-C once ``finished_epochs`` epochs are saved."""
    original = Trainer._run_epoch

    def run_then_die(self, writer):
        original(self, writer)
        if self.epoch == finished_epochs:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(Trainer, "_run_epoch", run_then_die)
    return lambda: monkeypatch.setattr(Trainer, "_run_epoch", original)


def tiny_config(dataset, *overrides):
    return resolve_config("han", overrides=[*TINY_OVERRIDES, f"data.root={dataset}", *overrides])


# ---- item 2: one process per run folder


@contextlib.contextmanager
def held_by_another_process(folder):
    """``folder`` claimed as a run folder by a child process; yields its pid."""
    source = Path(avvp.__file__).resolve().parents[1]  # this checkout's src/
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), sys.path[0]])}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_FOLDER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_a_second_train_into_a_held_run_folder_fails_at_once_naming_the_holder(
    dataset, tmp_path, capsys
):
    run = tmp_path / "run"
    with held_by_another_process(run) as pid:
        assert train(dataset, run) == 2
        error = capsys.readouterr().err
        assert f"pid {pid}" in error and "in use" in error
        assert sorted(path.name for path in run.iterdir()) == [".avvp.lock", ".avvp.lock.holder"]
    assert train(dataset, run) == 0  # free again once the holder is gone


def test_processes_may_train_other_seeds_of_one_out_folder(dataset, tmp_path, capsys):
    out = tmp_path / "runs"
    with held_by_another_process(out / "seed-1") as pid:
        assert train(dataset, out, options=["--seeds", "1,2"]) == 2
        assert f"pid {pid}" in capsys.readouterr().err
        assert sorted(path.name for path in out.iterdir()) == ["seed-1"]
        assert train(dataset, out, options=["--seeds", "2"]) == 0
    assert (out / "seed-2" / "test_metrics.json").is_file()


def test_a_failed_start_removes_the_run_folder_it_created(dataset, tmp_path, monkeypatch):
    from avvp.training import data

    def no_data(*args, **kwargs):
        raise FileNotFoundError("simulated: the data went away")

    monkeypatch.setattr(data, "load_splits", no_data)
    assert train(dataset, tmp_path / "new" / "run") == 2
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "empty"
    existing.mkdir()
    assert train(dataset, existing) == 2
    assert sorted(path.name for path in existing.iterdir()) == [".avvp.lock"]


# ---- items 13 and 19: rerunning a run folder


def test_the_next_start_removes_what_a_killed_write_left(dataset, finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    ours = [run / ".last.pt.k3j4x9_a.tmp", run / ".metrics.csv.w8e1q2ab.tmp"]
    theirs = [run / ".notes.tmp", run / "draft.pt.tmp"]
    for path in ours + theirs:
        path.write_bytes(b"half")
    assert train(dataset, run) == 0
    assert not any(path.exists() for path in ours)
    assert all(path.exists() for path in theirs)


def test_rerunning_a_finished_run_says_nothing_was_trained(dataset, finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    before = (run / "meta.json").read_text()
    assert train(dataset, run) == 0
    output = capsys.readouterr().out
    assert f"{run} is finished (2 epochs): nothing trained" in output
    assert (run / "meta.json").read_text() == before  # the run's own record stays
    assert read_json(run / "test_metrics.json") == read_json(finished_run / "test_metrics.json")


# ---- item 3: resuming on changed data


def changed_copy(dataset, tmp_path):
    """A copy of ``dataset`` and a function that rewrites one of its train feature files."""
    data = Path(shutil.copytree(dataset, tmp_path / "data", ignore=shutil.ignore_patterns(".*")))
    first = (data / "AVVP_train.csv").read_text().splitlines()[1].split("\t")[0][:11]

    def change():
        path = data / "feats" / "vggish" / f"{first}.npy"
        np.save(path, np.load(path) * 1.01)

    return data, change


def test_resume_refuses_data_that_changed_unless_told(dataset, tmp_path, monkeypatch, capsys):
    data, change = changed_copy(dataset, tmp_path)
    run = tmp_path / "run"
    restore = kill_after(monkeypatch, 1)
    assert train(data, run, "optim.epochs=3") == 130
    restore()
    change()
    capsys.readouterr()
    assert train(data, run, "optim.epochs=3") == 2
    error = capsys.readouterr().err
    assert str(run / "last.pt") in error and "--resume-on-changed-data" in error
    first = read_json(run / "meta.json")
    assert train(data, run, "optim.epochs=3", options=["--resume-on-changed-data"]) == 0
    meta = read_json(run / "meta.json")
    assert meta["resumed_from_epoch"] == 1
    # The killed session's record, with the run's original start, is kept.
    assert meta["earlier_sessions"] == [first]
    assert first["resumed_from_epoch"] is None


def test_a_checkpoint_from_before_fingerprints_resumes_as_before(dataset, tmp_path, monkeypatch):
    data, change = changed_copy(dataset, tmp_path)
    run = tmp_path / "run"
    restore = kill_after(monkeypatch, 1)
    assert train(data, run, "optim.epochs=3") == 130
    restore()
    state = torch.load(run / "last.pt", weights_only=False)
    assert state.pop("data_fingerprint")
    torch.save(state, run / "last.pt")
    change()
    assert train(data, run, "optim.epochs=3") == 0
    assert read_json(run / "meta.json")["resumed_from_epoch"] == 1


# ---- items 5, 10, 11, 14: everything checked before any data is read


@pytest.mark.parametrize("seeds", ["1,1", "abc", "1,,2", "-1", "2,1,2"])
def test_seeds_must_be_distinct_whole_numbers(tmp_path, capsys, seeds):
    out = tmp_path / "run"
    assert train(tmp_path / "no-data", out, options=["--seeds", seeds]) == 2
    assert f"--seeds {seeds!r}" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("method", "override", "key"),
    [
        ("han", "optim.epochs=0", "optim.epochs"),
        ("han", "optim.batch_size=0", "optim.batch_size"),
        ("han", "optim.lr=-1", "optim.lr"),
        ("han", "optim.lr=nan", "optim.lr"),
        ("han", "train.select_metric=segment.typo", "train.select_metric"),
        ("han", "model.num_heads=3", "model.num_heads"),
        ("han", "eval.gate=sometimes", "eval.gate"),
        ("poibin", "method.warmup_epochs=2", "method.warmup_epochs"),
        ("vplan", "optim.lr=1e-3", "method.visual_labels"),
    ],
)
def test_config_values_are_checked_before_any_data_is_read(tmp_path, capsys, method, override, key):
    out = tmp_path / "run"
    assert train(tmp_path / "no-data", out, override, options=["--method", method]) == 2
    error = capsys.readouterr().err
    assert key in error and "no-data" not in error
    assert not out.exists()


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path, capsys):
    config = tmp_path / "mine.yaml"
    config.write_text("optim:\n  lr: [1\n  epochs: 2\n")
    assert train(tmp_path / "no-data", tmp_path / "run", options=["--config", str(config)]) == 2
    assert f"{config}: line 3, column 9" in capsys.readouterr().err


def test_an_unknown_method_gets_the_close_match_and_base_is_no_method(tmp_path, capsys):
    assert main(["train", "--method", "hna", "--out", str(tmp_path / "run")]) == 2
    assert "unknown method 'hna' (did you mean 'han'?)" in capsys.readouterr().err
    assert main(["train", "--method", "base", "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "unknown method 'base'" in error and "base," not in error.split("available:")[1]


def test_train_help_lists_the_methods_and_every_default():
    parser = build_parser()
    (subcommands,) = [action for action in parser._actions if action.dest == "command"]
    train_parser = subcommands.choices["train"]
    text = train_parser.format_help()
    assert "--list-methods" not in text
    (method,) = [action for action in train_parser._actions if action.dest == "method"]
    assert all(name in method.help for name in ("han", "poibin", "ppl", "vplan"))
    assert "base" not in method.help
    for action in train_parser._actions:
        if action.dest != "help":
            assert action.help and ("default" in action.help or action.required), action.dest


def claim(path):
    from avvp.training.run_folder import claim_run_folder

    with claim_run_folder(path):
        pass


def test_out_must_be_a_folder_that_can_be_written(tmp_path, monkeypatch):
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(NotADirectoryError, match=re.escape(f"--out {afile} is a file")):
        claim(afile)
    with pytest.raises(NotADirectoryError, match="--out"):
        claim(afile / "run")

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = tmp_path / "read-only"
    with pytest.raises(PermissionError, match=r"--out .*cannot write there"):
        claim(out)
    assert not out.exists()


# ---- item 7: saved paths


def test_a_relative_data_path_is_saved_resolved(dataset, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    monkeypatch.chdir(dataset.parent)
    assert train(dataset.name, run) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["root"] == str(dataset.resolve())
    capsys.readouterr()
    assert train(dataset.resolve(), run) == 0  # the same folder written another way
    assert "nothing trained" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--run", str(run), "--split", "test"]) == 0


def test_a_saved_data_folder_that_is_gone_names_the_config_and_the_override(
    dataset, finished_run, tmp_path, capsys
):
    run = copy_run(finished_run, tmp_path)
    best = torch.load(run / "best.pt", weights_only=False)
    best["config"]["data"]["root"] = str(tmp_path / "moved")
    torch.save(best, run / "best.pt")
    assert main(["evaluate", "--run", str(run), "--split", "test"]) == 2
    error = capsys.readouterr().err
    assert (
        f"{run / 'config.yaml'} has data.root={tmp_path / 'moved'}, which does not exist" in error
    )
    assert "pass data.root=DIR (or --data DIR)" in error
    assert main(["evaluate", "--run", str(run), "--split", "test", "--data", str(dataset)]) == 0


# ---- item 9: damaged checkpoints


def test_damaged_checkpoints_are_named_with_the_way_out(dataset, finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    (run / "last.pt").write_bytes(b"not a checkpoint")
    assert train(dataset, run) == 2
    error = capsys.readouterr().err
    assert f"{run / 'last.pt'} is not a readable checkpoint" in error
    assert "delete it to restart the run" in error
    shutil.copy(finished_run / "last.pt", run / "last.pt")
    best = (run / "best.pt").read_bytes()
    (run / "best.pt").write_bytes(best[: len(best) // 2])
    for command in (["evaluate", "--run", str(run), "--split", "test"], None):
        assert (train(dataset, run) if command is None else main(command)) == 2
        assert f"{run / 'best.pt'} is not a readable checkpoint" in capsys.readouterr().err


# ---- items 11 and 12: failures during training say how to go on


def test_a_full_disk_while_saving_a_checkpoint_says_how_to_resume(dataset, tmp_path, monkeypatch):
    config = tiny_config(dataset, "optim.epochs=3")
    data = load_splits(config, progress=False)
    run = tmp_path / "run"
    save = torch.save

    def full_at_epoch_2(value, handle, *args, **kwargs):
        if isinstance(value, dict) and "optimizer" in value and value["epoch"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(value, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_at_epoch_2)
    with pytest.raises(OSError) as raised:
        Trainer(config, run, data).fit()
    assert raised.value.errno == errno.ENOSPC
    message = str(raised.value)
    assert f"cannot write {run / 'last.pt'}: No space left on device" in message
    assert "free space" in message and "rerun the same command to resume from epoch 2" in message
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 1
    assert not list(run.glob(".*.tmp"))


def test_ctrl_c_says_where_the_run_resumes(dataset, tmp_path, monkeypatch):
    config = tiny_config(dataset, "optim.epochs=3")
    data = load_splits(config, progress=False)
    original = Trainer.train_one_epoch

    def interrupted_in_epoch_2(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_one_epoch", interrupted_in_epoch_2)
    expected = "after epoch 1 of 3; rerun the same command to resume from epoch 2"
    with pytest.raises(KeyboardInterrupt, match=expected):
        Trainer(config, tmp_path / "run", data).fit()


def test_absurd_feature_values_stop_training_naming_the_videos(dataset, tmp_path):
    config = tiny_config(dataset)
    data = load_splits(config, progress=False)
    train_data = data["train"]
    features = {name: np.array(array) for name, array in train_data.features.items()}
    features["res152"][3] *= 1e30  # finite, so the data checks pass it
    data["train"] = replace(train_data, features=features)
    with pytest.raises(FloatingPointError) as raised:
        Trainer(config, tmp_path / "run", data).fit()
    message = str(raised.value)
    assert message.startswith("epoch 1, batch ")
    assert train_data.video_ids[3] in message and "res152" in message
    assert "Check their feature files" in message


# ---- items 8, 16, 24: what the output says


def test_training_says_what_it_trains_on_and_what_the_numbers_are(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    flags = [flag for flag in TINY_TRAINING if flag != "--no-progress"]
    assert main(["train", "--data", str(dataset), "--out", str(run), *flags]) == 0
    output = capsys.readouterr().out
    assert f"data: {dataset}: train 56, val 12, test 12 videos" in output
    epoch_lines = [line for line in output.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    for line in epoch_lines:
        assert "seed 1" in line and "val segment Type@AV" in line
        assert "elapsed" in line and "ETA" in line
    assert f"scoring {run / 'best.pt'}" in output
    assert f"han seed 1, test split of {dataset}" in output
    assert "F1 in % (higher is better) of best.pt, the epoch with the best val segment Type@AV" in (
        output
    )


def test_the_built_in_synthetic_set_is_named_with_its_place_and_size(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("AVVP_HOME", str(home))
    run = tmp_path / "run"
    assert train("synthetic", run, "data.synthetic_videos=30") == 0
    output = capsys.readouterr().out
    assert "the built-in synthetic set (30 synthetic videos, not real data" in output
    assert f"generated once under {home}" in output and "pass --data DIR" in output
    (generated,) = home.iterdir()
    assert f"data: {generated}, synthetic, " in output and " GB on disk" in output
    assert "han seed 1, test split of the built-in synthetic set" in output


@pytest.mark.parametrize(
    ("method", "flags", "note"),
    [
        ("poibin", ["method.warmup_epochs=0"], "E-step"),
        ("ppl", ["method.k=2"], "pseudo labels for the 56 train videos"),
    ],
)
def test_long_steps_between_epochs_say_what_they_do(dataset, tmp_path, capsys, method, flags, note):
    quiet = ["train", "--method", method, "--data", str(dataset), *TINY_TRAINING, *flags]
    assert main([*quiet[:5], "--out", str(tmp_path / "quiet"), *quiet[5:]]) == 0
    assert note not in capsys.readouterr().out
    shown = [flag for flag in quiet if flag != "--no-progress"]
    assert main([*shown[:5], "--out", str(tmp_path / "shown"), *shown[5:]]) == 0
    lines = capsys.readouterr().out.splitlines()
    notes = [number for number, line in enumerate(lines) if note in line]
    assert notes and lines[notes[0] + 1].startswith("epoch ")


def test_train_never_writes_into_a_folder_of_the_users_own(dataset, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yml").write_text("my own file\n")
    for seeds in ([], ["--seeds", "1,2"]):
        assert main(["train", "--data", str(dataset), "--out", str(mine), *seeds]) == 2
        assert "is not empty and holds no avvp run" in capsys.readouterr().err
        assert sorted(path.name for path in mine.iterdir()) == ["config.yml"]
