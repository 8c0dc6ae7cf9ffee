"""The command-line shell: `python -m avvp`, overrides anywhere, errors, Ctrl-C, --help, --out."""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import avvp.commands.report
from avvp.cli import build_parser, main

SRC = Path(__file__).resolve().parents[1] / "src"
# The verbs this file holds to the --help convention (train, synth and cache have their own).
VERBS = ["evaluate", "predict", "plot", "report"]
ACTIONS = ["simulate-clip", "clip", "score", "denoise"]


def run_module(*args: str) -> subprocess.CompletedProcess:
    """`python -m avvp ARGS` on this checkout's sources."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "avvp", *args], capture_output=True, text=True, env=env, check=False
    )


def test_python_dash_m_runs_the_command_line():
    done = run_module("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("avvp ")


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "D", "--out", "R", "--no-progress", "optim.epochs=2"],
        ["train", "optim.epochs=2", "--data", "D", "--out", "R", "--no-progress"],
        ["train", "--data", "D", "optim.epochs=2", "--out", "R", "--no-progress"],
        # Overrides split by a flag: argparse alone rejects the second group.
        ["train", "--out", "R", "optim.epochs=2", "--no-progress", "--data", "D", "a.b=1"],
    ],
)
def test_overrides_parse_anywhere_among_the_flags(argv):
    args = build_parser().parse_args(argv)
    assert (args.data, str(args.out), args.no_progress) == ("D", "R", True)
    assert args.overrides == [arg for arg in argv if "=" in arg]


def test_evaluate_predict_and_plot_take_positional_overrides():
    from avvp.training.evaluate_run import run_overrides

    parser = build_parser()
    evaluate = parser.parse_args(
        ["evaluate", "eval.iou=exclusive", "--run", "R", "--threshold", "0.3", "a.b=1"]
    )
    assert run_overrides(evaluate) == ["eval.threshold=0.3", "eval.iou=exclusive", "a.b=1"]
    # The older spelling still works.
    legacy = parser.parse_args(["evaluate", "--run", "R", "--set", "method.selection=per_stream"])
    assert run_overrides(legacy) == ["method.selection=per_stream"]
    predict = parser.parse_args(["predict", "--run", "R", "eval.gate=none", "--out", "P"])
    assert run_overrides(predict) == ["eval.gate=none"]
    plot = parser.parse_args(["plot", "--run", "R", "--video", "v", "--out", "o.png", "x.y=2"])
    assert run_overrides(plot) == ["x.y=2"]


def subparser(name: str, action: str | None = None) -> argparse.ArgumentParser:
    def find(parser: argparse.ArgumentParser, key: str) -> argparse.ArgumentParser:
        (choices,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return choices.choices[key]

    parser = find(build_parser(), name)
    return parser if action is None else find(parser, action)


@pytest.mark.parametrize(
    ("name", "action"), [(verb, None) for verb in VERBS] + [("pseudo-labels", a) for a in ACTIONS]
)
def test_every_option_has_help_and_shows_its_default(name, action):
    parser = subparser(name, action)
    for option in parser._actions:
        if option.help == argparse.SUPPRESS or isinstance(option, argparse._HelpAction):
            continue
        assert option.help, f"{name} {action or ''} {option.option_strings} has no help text"
    formatter = parser._get_formatter()
    for option in parser._actions:
        default = option.default
        if option.option_strings and default not in (None, False, [], argparse.SUPPRESS):
            # Either the formatter's "(default: X)" or a help text that says it itself.
            shown = formatter._expand_help(option)
            assert "default" in shown and str(default) in shown, option.option_strings
    assert "%(default)" not in parser.format_help()


def test_no_progress_wherever_a_progress_bar_is_drawn():
    for action in ("clip", "denoise"):
        assert "--no-progress" in subparser("pseudo-labels", action).format_help()


def fail_with(monkeypatch, error: BaseException) -> None:
    def run(args):
        raise error

    monkeypatch.setattr(avvp.commands.report, "run", run)


REPORT = ["report", "R", "--out", "O"]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "/data/run/x.json"),
            "/data/run/x.json: Permission denied; check its permissions or choose another path",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/data/run/last.pt"),
            "/data/run/last.pt: No space left on device; the disk is full",
        ),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "out"), "out: Is a directory"),
        (NotADirectoryError("--out a/b: a is a file, not a folder"), "a is a file, not a folder"),
        (FileNotFoundError("x.csv not found"), "x.csv not found"),
        (KeyError("unknown key 'optim.epoch'"), "unknown key 'optim.epoch'"),
        (FloatingPointError("loss is NaN at epoch 3"), "loss is NaN at epoch 3"),
        (ImportError("pip install avvp[clip]"), "pip install avvp[clip]"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(monkeypatch, capsys, error, expected):
    fail_with(monkeypatch, error)
    assert main(REPORT) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("avvp report: error: ")
    assert expected in captured.err
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize(
    ("interrupt", "line"),
    [
        (
            KeyboardInterrupt("after epoch 3 of 10; rerun the same command to resume"),
            "avvp report: interrupted: after epoch 3 of 10; rerun the same command to resume\n",
        ),
        (KeyboardInterrupt(), "avvp report: interrupted\n"),
    ],
)
def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, interrupt, line):
    fail_with(monkeypatch, interrupt)
    assert main(REPORT) == 130
    assert capsys.readouterr().err == line


def test_warnings_are_one_line_naming_the_command(monkeypatch, capsys):
    def run(args):
        warnings.warn("something to know", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(avvp.commands.report, "run", run)
    format_warning = warnings.formatwarning
    with warnings.catch_warnings():
        # pytest records warnings; show them as a user's terminal would.
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "_showwarnmsg_impl", warnings._showwarnmsg_impl)
        warnings._showwarnmsg_impl = lambda message: sys.stderr.write(
            warnings.formatwarning(
                message.message, message.category, message.filename, message.lineno
            )
        )
        assert main(REPORT) == 0
    assert capsys.readouterr().err == "avvp report: warning: something to know\n"
    assert warnings.formatwarning is format_warning  # restored after the command


# --- where commands write --------------------------------------------------------------------


def test_predict_out_naming_a_file_is_an_error_before_any_work(tmp_path, capsys):
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes")
    # The run does not exist: the --out check comes first.
    assert main(["predict", "--run", str(tmp_path / "nope"), "--out", str(mine)]) == 2
    assert capsys.readouterr().err == (
        f"avvp predict: error: --out {mine} is a file; give a folder (it is created if it "
        "does not exist)\n"
    )
    assert mine.read_text() == "my notes"
    below = mine / "pred"
    assert main(["predict", "--run", str(tmp_path / "nope"), "--out", str(below)]) == 2
    assert f"{mine} is a file, not a folder" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anyway")
def test_predict_out_in_a_read_only_folder_is_an_error(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert main(["predict", "--run", str(tmp_path), "--out", str(locked / "pred")]) == 2
    assert f"cannot write in {locked}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "flag", "message"),
    [
        (["report", "RUN", "--out", "{mine}"], "--out", "is a file; give a folder"),
        (
            ["pseudo-labels", "clip", "--data", "D", "--simulated", "--out", "{mine}"],
            "--out",
            "exists and is not a .npz file; not overwriting it",
        ),
        (
            ["pseudo-labels", "denoise", "--run", "RUN", "--out", "{mine}"],
            "--out",
            "exists and is not a .npz file; not overwriting it",
        ),
        (
            ["pseudo-labels", "score", "L.npz", "--data", "D", "--json", "{mine}"],
            "--json",
            "exists and is not a .json file; not overwriting it",
        ),
    ],
)
def test_outputs_never_replace_a_users_file(tmp_path, capsys, argv, flag, message):
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes")
    # Nothing else named exists: the output check comes before any other work.
    assert main([arg.format(mine=mine) for arg in argv]) == 2
    assert capsys.readouterr().err.startswith(f"avvp {argv[0]}: error: {flag} {mine} ")
    assert mine.read_text() == "my notes"


@pytest.mark.parametrize("terminal", [True, False])
def test_a_first_cache_build_shows_progress_on_a_terminal_only(
    seeds_run, dataset, tmp_path, monkeypatch, capsys, terminal
):
    """`avvp evaluate` (like predict, plot, parse and report) builds a missing cache with a
    progress bar where stderr is a terminal, and silently into logs and pipes."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(dataset, data, ignore=shutil.ignore_patterns(".avvp_cache"))
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    run = str(seeds_run / "seed-1")
    assert main(["evaluate", "--run", run, "--split", "test", "--data", str(data)]) == 0
    assert ("cache test" in capsys.readouterr().err) == terminal
