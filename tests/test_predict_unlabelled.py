"""`avvp predict` on videos without labels: a folder of features and videos.csv, any length."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from conftest import TINY_TRAINING

from avvp.cli import main
from avvp.data.annotations import read_weak_labels
from avvp.data.dataset import VIDEO_LIST, feature_key, load_videos
from avvp.evaluation.io import read_predictions
from avvp.training.batches import feature_names
from avvp.training.evaluate_run import load_run
from avvp.training.unlabelled import parse_videos, windows

SETS = ("vggish", "res152", "r2plus1d_18")
FRAMES = {"vggish": 1, "res152": 8, "r2plus1d_18": 1}
LONG = "long_video"  # 25 s, made of the first three test videos' features


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "han"
    flags = ["--data", str(dataset), "--out", str(out), *TINY_TRAINING]
    assert main(["train", "--method", "han", *flags]) == 0
    return out


@pytest.fixture(scope="module")
def test_filenames(dataset):
    return read_weak_labels(dataset / "AVVP_test_pd.csv").filenames


def features_of(dataset, filename: str, name: str) -> np.ndarray:
    return np.load(dataset / "feats" / name / f"{feature_key(filename)}.npy")


def write_folder(root, listed: list[str], arrays: dict[str, dict[str, np.ndarray]]):
    """An `avvp extract`-style folder: feats/<name>/<key>.npy and videos.csv."""
    for key, by_name in arrays.items():
        for name, array in by_name.items():
            (root / "feats" / name).mkdir(parents=True, exist_ok=True)
            np.save(root / "feats" / name / f"{key}.npy", array)
    (root / VIDEO_LIST).write_text("\n".join(["filename", *listed]) + "\n")
    return root


@pytest.fixture(scope="module")
def unlabelled(dataset, test_filenames, tmp_path_factory):
    """Three test videos (one listed by its full LLP filename, two by their id) and a 25-s one."""
    first, second, third = test_filenames[:3]
    arrays = {
        feature_key(name): {s: features_of(dataset, name, s) for s in SETS}
        for name in (first, second, third)
    }
    arrays[LONG] = {
        s: np.concatenate([arrays[feature_key(n)][s] for n in (first, second, third)])[
            : 25 * FRAMES[s]
        ]
        for s in SETS
    }
    listed = [first, feature_key(second), feature_key(third), LONG]
    return write_folder(tmp_path_factory.mktemp("unlabelled"), listed, arrays)


def test_predict_reads_features_and_a_video_list_without_labels(
    run, unlabelled, test_filenames, tmp_path, capsys
):
    """Before: "annotation file not found: .../AVVP_test_pd.csv" (exit 2)."""
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(run), "--data", str(unlabelled), "--out", str(out)]) == 0
    assert "4 videos" in capsys.readouterr().out
    listed = [test_filenames[0], *(feature_key(n) for n in test_filenames[1:3]), LONG]
    probabilities = np.load(out / "probabilities.npz")
    assert probabilities["filenames"].tolist() == listed
    assert probabilities["segments"].tolist() == [10, 10, 10, 25]
    assert probabilities["segment_prob_audio"].shape == (4, 25, 25)
    assert np.isnan(probabilities["segment_prob_audio"][0, 10:]).all()
    assert np.isfinite(probabilities["segment_prob_audio"][3]).all()
    # The same numbers as the run's parse of the test split, where the videos come from.
    reference = tmp_path / "reference"
    assert main(["predict", "--run", str(run), "--split", "test", "--out", str(reference)]) == 0
    expected = np.load(reference / "probabilities.npz")
    for key in ("segment_prob_audio", "segment_prob_visual"):
        np.testing.assert_allclose(probabilities[key][:3, :10], expected[key][:3], atol=1e-6)
    np.testing.assert_allclose(
        probabilities["video_prob"][:3], expected["video_prob"][:3], atol=1e-6
    )
    pred = read_predictions(out / "pred_audio.tsv", listed, num_segments=25)
    wanted = read_predictions(reference / "pred_audio.tsv", test_filenames)
    np.testing.assert_array_equal(pred[:3, :10], wanted[:3])


def test_windows_cut_a_long_video_into_near_equal_clips(run, unlabelled):
    assert windows(25, None) == [(0, 25)]
    assert windows(25, 10) == [(0, 9), (9, 17), (17, 25)]
    assert windows(10, 10) == [(0, 10)]
    assert windows(21, 7) == [(0, 7), (7, 14), (14, 21)]
    config, model, method = load_run(run)
    names = feature_names(config)
    dims = {name: config["features"]["dims"][name] for name in names}
    videos = load_videos(unlabelled, feature_dims=dims, feature_frames=config["features"]["frames"])
    long = videos.features[3]

    def parse(features, window):
        return parse_videos(model, method, [features], ["v"], names, config["eval"], "cpu", window)[
            0
        ]

    whole, windowed = parse(long, None), parse(long, 10)
    assert whole.windows == ((0, 25),) and windowed.windows == ((0, 9), (9, 17), (17, 25))
    assert windowed.segments == whole.segments == 25
    # Each window is parsed as a clip of its own: as if it were a video by itself.
    clips = [
        parse({name: long[name][start:end] for name in names}, None)
        for start, end in windowed.windows
    ]
    np.testing.assert_allclose(
        windowed.segment_prob, np.concatenate([clip.segment_prob for clip in clips]), atol=1e-6
    )
    np.testing.assert_array_equal(
        windowed.pred_audio, np.concatenate([clip.pred_audio for clip in clips])
    )
    np.testing.assert_allclose(
        windowed.video_prob, np.max([clip.video_prob for clip in clips], axis=0), atol=1e-6
    )
    # Attention over 25 segments is not attention over 9: the whole parse differs.
    assert not np.allclose(whole.segment_prob[:9], clips[0].segment_prob)
    # A 10-s clip is one window of 10: --window 10 leaves LLP clips as they are.
    short = parse(videos.features[0], 10)
    np.testing.assert_array_equal(short.segment_prob, parse(videos.features[0], None).segment_prob)


def test_predict_window_flag(run, unlabelled, tmp_path):
    flags = ["predict", "--run", str(run), "--data", str(unlabelled)]
    assert main([*flags, "--out", str(tmp_path / "whole")]) == 0
    assert main([*flags, "--out", str(tmp_path / "windows"), "--window", "10"]) == 0
    whole = np.load(tmp_path / "whole" / "probabilities.npz")
    windowed = np.load(tmp_path / "windows" / "probabilities.npz")
    np.testing.assert_array_equal(
        whole["segment_prob_audio"][:3], windowed["segment_prob_audio"][:3]
    )
    assert not np.allclose(whole["segment_prob_audio"][3], windowed["segment_prob_audio"][3])


def test_predict_a_split_without_dense_ground_truth(run, dataset, tmp_path, capsys):
    """Before: "annotation file not found: .../AVVP_eval_audio.csv" (exit 2)."""
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    shutil.copy(dataset / "AVVP_test_pd.csv", annotations)
    out = tmp_path / "pred"
    argv = ["predict", "--run", str(run), "--split", "test", "--annotations", str(annotations)]
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / "pred_visual.tsv").is_file()


def bad_folder(root, unlabelled, change):
    shutil.copytree(unlabelled, root)
    change(root)
    return root


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda root: shutil.rmtree(root / "feats" / "res152"),
            r"feature folder not found: .*feats/res152 \(feature set 'res152'\).*"
            r"`avvp extract --videos VIDEOS --out .* --features res152 --weights DIR`",
        ),
        (
            lambda root: (root / "feats" / "vggish" / f"{LONG}.npy").unlink(),
            rf"feature file not found: .*vggish/{LONG}.npy .*line 5 of .*videos.csv",
        ),
        (
            lambda root: np.save(root / "feats" / "res152" / f"{LONG}.npy", np.zeros((81, 2048))),
            rf"{LONG}.npy: expected shape \(T \* 8, 2048\).*found \(81, 2048\)",
        ),
        (
            lambda root: np.save(root / "feats" / "vggish" / f"{LONG}.npy", np.zeros((12, 128))),
            rf"video '{LONG}' on line 5 .*disagree on its number of seconds \(vggish 12, "
            r"res152 25, r2plus1d_18 25\)",
        ),
        (
            lambda root: (root / VIDEO_LIST).write_text("id\nx\n"),
            r"videos.csv: line 1: header \['id'\] does not start with 'filename'",
        ),
        (
            lambda root: (root / VIDEO_LIST).write_text("filename\nlong_video\nlong_video\n"),
            r"videos.csv: line 3: video 'long_video' reads the feature files of line 2",
        ),
    ],
)
def test_bad_unlabelled_folders_are_one_line_errors(
    run, unlabelled, tmp_path, capsys, change, message
):
    root = bad_folder(tmp_path / "data", unlabelled, change)
    out = tmp_path / "pred"
    assert main(["predict", "--run", str(run), "--data", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avvp predict: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not out.exists()


def test_a_folder_with_neither_list_nor_split_csv_says_what_it_needs(run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv = ["predict", "--run", str(run), "--data", str(tmp_path / "empty")]
    assert main([*argv, "--out", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err
    assert "holds neither AVVP_test_pd.csv (the test split) nor videos.csv" in err
