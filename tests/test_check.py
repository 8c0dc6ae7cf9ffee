"""``avvp check``: a clean dataset passes, every fault the data layer rejects is listed by file."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from avvp.cli import build_parser, main
from avvp.data.annotations import LLPAnnotations


def shallow_copy(source: Path, target: Path) -> Path:
    """The dataset at ``source`` with its CSVs copied and its feature files linked, cheaply."""
    for path in source.rglob("*"):
        if ".avvp_cache" in path.parts or path.is_dir():
            continue
        copy = target / path.relative_to(source)
        copy.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".npy":
            copy.symlink_to(path)
        else:
            shutil.copyfile(path, copy)
    return target


def replace(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` over a linked feature file without touching the file it links to."""
    path.unlink()
    np.save(path, array)
    return path


def ids(root: Path, split: str) -> tuple[str, ...]:
    return LLPAnnotations(root, warn=False, allow_leakage=True).weak(split).video_ids


def edit_line(path: Path, line: int, edit: Callable[[str], str]) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = edit(lines[line - 1])
    path.write_text("\n".join(lines) + "\n")


def check(root: Path, capsys) -> tuple[int, str]:
    code = main(["check", "--data", str(root), "--no-progress"])
    return code, capsys.readouterr().out


def test_a_clean_dataset_is_ready(dataset, capsys):
    code, out = check(dataset, capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[1:4] == [
        "  train: 56 videos, 3 feature sets checked, no problems",
        "  val: 12 videos, 3 feature sets checked, no problems",
        "  test: 12 videos, 3 feature sets checked, no problems",
    ]
    assert lines[-1] == f"OK: {dataset} is ready for `avvp train --data {dataset}`"


def missing_file(root: Path) -> str:
    path = root / "feats" / "vggish" / f"{ids(root, 'train')[3]}.npy"
    path.unlink()
    return f"feature file not found: {path} (feature set 'vggish', asked for by video"


def misshaped(root: Path) -> str:
    path = replace(root / "feats" / "res152" / f"{ids(root, 'val')[0]}.npy", np.zeros((79, 2048)))
    return f"{path}: expected shape (80, 2048)"


def nan(root: Path) -> str:
    values = np.zeros((10, 512), np.float32)
    values[4, 7] = np.nan
    path = replace(root / "feats" / "r2plus1d_18" / f"{ids(root, 'test')[5]}.npy", values)
    return f"{path}: non-finite value (NaN or inf) in row 4 of 10"


def unknown_class(root: Path) -> str:
    edit_line(root / "AVVP_val_pd.csv", 3, lambda line: line.split("\t")[0] + "\tDogs")
    return f"{root / 'AVVP_val_pd.csv'}: line 3: unknown class name 'Dogs'"


def leakage(root: Path) -> str:
    test = (root / "AVVP_test_pd.csv").read_text().splitlines()[1]
    with (root / "AVVP_train.csv").open("a") as handle:
        handle.write(test + "\n")
    return (
        f"video id {test[:11]!r} is in {root / 'AVVP_train.csv'} line 58 (train) and in "
        f"{root / 'AVVP_test_pd.csv'} line 2 (test)"
    )


def malformed_row(root: Path) -> str:
    edit_line(root / "AVVP_eval_visual.csv", 4, lambda line: line.rsplit("\t", 1)[0])
    return f"{root / 'AVVP_eval_visual.csv'}: line 4: expected 4 tab-separated fields"


def not_utf8(root: Path) -> str:
    path = root / "AVVP_test_pd.csv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\n\xff", 3).replace(b"\n\xff", b"\n", 2))
    return f"{path}: line 4: byte 0xff is not UTF-8"


def missing_folder(root: Path) -> str:
    shutil.rmtree(root / "feats" / "r2plus1d_18")
    return f"feature folder not found: {root / 'feats' / 'r2plus1d_18'} (feature set 'r2plus1d_18')"


@pytest.mark.parametrize(
    "fault",
    [missing_file, misshaped, nan, unknown_class, leakage, malformed_row, not_utf8, missing_folder],
)
def test_each_fault_is_one_problem_named_by_file(dataset, tmp_path, capsys, fault):
    root = shallow_copy(dataset, tmp_path / "copy")
    expected = fault(root)
    code, out = check(root, capsys)
    assert code == 1
    assert expected in out, out
    assert out.splitlines()[-1] == "1 problem: fix them and rerun avvp check"
    # What check lists, train rejects before training.
    train = ["train", "--data", str(root), "--out", str(tmp_path / "run"), "--no-progress"]
    assert main([*train, "optim.epochs=1"]) == 2


def test_every_problem_is_listed_not_only_the_first(dataset, tmp_path, capsys):
    root = shallow_copy(dataset, tmp_path / "copy")
    expected = [missing_file(root), misshaped(root), nan(root), leakage(root)]
    for video in ids(root, "train")[10:25]:
        (root / "feats" / "res152" / f"{video}.npy").unlink()
    code, out = check(root, capsys)
    assert code == 1
    assert all(message in out for message in expected), out
    assert "  train: 57 videos, 3 feature sets checked, 16 problems" in out
    assert "    ... and 6 more like these" in out
    assert out.splitlines()[-1] == "19 problems: fix them and rerun avvp check"


def test_rows_the_reference_ignores_are_listed_in_full_and_are_no_problem(
    dataset, tmp_path, capsys
):
    root = shallow_copy(dataset, tmp_path / "copy")
    video = (root / "AVVP_val_pd.csv").read_text().splitlines()[1].split("\t")[0]
    with (root / "AVVP_eval_audio.csv").open("a") as handle:
        handle.write(f"{video}\t4\t4\tDog\nnosuchvideo_0_10\t0\t10\tCat\n")
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    for path in root.glob("AVVP_*.csv"):
        path.rename(annotations / path.name)
    code = main(["check", "--data", str(root), "--annotations", str(annotations), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    rows = len((annotations / "AVVP_eval_audio.csv").read_text().splitlines())
    assert (
        "  2 annotation rows ignored by the reference evaluation (notes, not problems: the "
        "scores skip them as the reference does):\n"
        f"    AVVP_eval_audio.csv line {rows - 1}: {video} 4 4 Dog (empty interval)\n"
        f"    AVVP_eval_audio.csv line {rows}: nosuchvideo_0_10 0 10 Cat (no such video)\n"
    ) in out
    assert out.splitlines()[-1] == (
        f"OK: {root} is ready for `avvp train --data {root} --annotations {annotations}`"
    )


def test_a_missing_dataset_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["check", "--data", str(tmp_path / "absent")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err


# --- help ------------------------------------------------------------------------------------


def subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return choices.choices[command]


@pytest.mark.parametrize("command", ["synth", "cache", "check"])
def test_every_option_says_what_it_does_and_its_default(command):
    options = [a for a in subparser(command)._actions if a.option_strings and a.dest != "help"]
    assert "--no-progress" in {name for a in options for name in a.option_strings}
    for action in options:
        assert action.help, action.option_strings
        said = "(required)" if action.required else "(default: "
        assert said in action.help, (action.option_strings, action.help)


def test_help_shows_the_values_of_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0)" in text and "(default: 0.95" in text and "(default: 1.0" in text
