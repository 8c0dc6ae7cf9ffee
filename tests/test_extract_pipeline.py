"""`avvp extract` and avvp.extraction.extract: the LLP layout, the record, resuming, failures.

The extractors are the fakes of media_fixtures (registered as fake_audio and fake_visual): they
decode the files as the real ones do and write each second's index in a column, so a test can
check which second every row came from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from media_fixtures import SAMPLE, FakeAudio, FakeVisual, write_video

from avvp.cli import build_parser, main
from avvp.data.dataset import VIDEO_LIST, load_videos
from avvp.extraction import extract, extract_video
from avvp.extraction.base import Extractor, weight_path
from avvp.extraction.pipeline import METADATA, RANDOM, RANDOM_WARNING, collect_videos
from avvp.registry import register

pytest.importorskip("av", reason="reading video files needs PyAV (the clip extra)")

FAKES = "fake_audio,fake_visual"
DIMS = {"fake_audio": 4, "fake_visual": 3}
FRAMES = {"fake_audio": 1, "fake_visual": 2}


@register("extractor", "fake_weighted")
class FakeWeighted(FakeAudio):
    """fake_audio that needs a weight file, lists it, and takes a ``scale`` option."""

    name = "fake_weighted"

    def __init__(self, weights=None, device="cpu", random_weights=False, scale: float = 1.0):
        super().__init__(weights, device, random_weights)
        self.scale = scale
        if not random_weights:
            self.weight_files = [weight_path(weights, "fake.pth", self.name, "from the tests")]

    def extract(self, video, seconds):
        return super().extract(video, seconds) * np.float32(self.scale)


@register("extractor", "fake_broken")
class FakeBroken(Extractor):
    """An extractor with a bug: one row too few."""

    name, dim, frames, stream = "fake_broken", 2, 1, "audio"

    def extract(self, video, seconds):
        return np.zeros((seconds - 1, 2), dtype=np.float32)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """3.2 s (3 segments), 12 s, and an LLP-named 2-s clip whose key is its YouTube id."""
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "short.mp4", 3.2)
    write_video(folder / "long.mp4", 12.0)
    write_video(folder / "abcdefghijk_30_32.mp4", 2.0)
    (folder / "notes.txt").write_text("not a video\n")
    return folder


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    """A folder with one good video and three that cannot be used."""
    folder = tmp_path_factory.mktemp("broken")
    write_video(folder / "good.mp4", 2.0)
    write_video(folder / "mute.mp4", 2.0, audio=False)
    write_video(folder / "blink.mp4", 0.4)
    (folder / "garbage.mp4").write_bytes(b"\x00 not a video" * 64)
    return folder


def extract_cli(videos, out, *flags: str) -> int:
    argv = ["extract", "--videos", str(videos), "--out", str(out), "--features", FAKES]
    return main([*argv, "--random-weights", "--no-progress", *flags])


def test_extract_writes_the_llp_layout_a_video_list_and_a_record(videos, tmp_path, capsys):
    """Before: `avvp extract` did not exist (argparse: invalid choice, exit 2)."""
    out = tmp_path / "data"
    assert extract_cli(videos, out) == 0
    assert "3 videos to" in capsys.readouterr().out
    lengths = {"short": 3, "long": 12, "abcdefghijk": 2}
    for key, seconds in lengths.items():
        audio = np.load(out / "feats" / "fake_audio" / f"{key}.npy")
        visual = np.load(out / "feats" / "fake_visual" / f"{key}.npy")
        assert audio.dtype == visual.dtype == np.float32
        assert audio.shape == (seconds, 4) and visual.shape == (2 * seconds, 3)
        # Row r of a set with f frames a second comes from second r // f.
        np.testing.assert_array_equal(audio[:, 2], np.arange(seconds))
        np.testing.assert_array_equal(visual[:, 1], np.arange(2 * seconds) // 2)
    listed = (out / VIDEO_LIST).read_text().split()
    assert listed == ["filename", "abcdefghijk_30_32", "long", "short"]  # sorted file names
    record = json.loads((out / METADATA).read_text())
    assert record["random_weights"] is True and "plumbing" in record["warning"]
    assert record["features"]["fake_visual"] == {
        "extractor": "media_fixtures.FakeVisual",
        "dim": 3,
        "frames": 2,
        "stream": "visual",
        "options": {},
        "weights": RANDOM,
    }
    assert record["videos"]["long"] == {
        "source": str((videos / "long.mp4").resolve()),
        "seconds": 12,
        "status": "done",
    }
    assert record["last_run"]["extracted"] == 3 and record["last_run"]["finished"]
    # The data layer reads the folder as it is.
    read = load_videos(out, feature_dims=DIMS, feature_frames=FRAMES)
    assert read.filenames == ("abcdefghijk_30_32", "long", "short")
    assert read.segments == (2, 12, 3)


def test_one_videos_failure_does_not_stop_the_others(broken, tmp_path, capsys):
    out = tmp_path / "data"
    assert extract_cli(broken, out) == 1
    captured = capsys.readouterr()
    assert (
        "4 videos to" in captured.out and "1 extracted, 0 already there, 3 failed" in captured.out
    )
    for reason in (
        f"failed: {broken / 'mute.mp4'}: has no audio track (needed by fake_audio)",
        f"failed: {broken / 'blink.mp4'}: lasts 0.40 s; a video needs at least 1 s",
        f"failed: {broken / 'garbage.mp4'}: cannot open as a video file",
    ):
        assert reason in captured.out
    assert "3 videos failed" in captured.err
    assert (out / VIDEO_LIST).read_text().split() == ["filename", "good"]
    record = json.loads((out / METADATA).read_text())
    assert record["videos"]["mute"]["status"] == "failed"
    assert "no audio track" in record["videos"]["mute"]["error"]
    assert not (out / "feats" / "fake_visual" / "mute.npy").exists()


def test_a_killed_run_resumes_where_it_stopped(videos, tmp_path, monkeypatch):
    out = tmp_path / "data"
    calls: list[str] = []
    extract_visual = FakeVisual.extract

    def killed_on_the_second_video(self, video, seconds):
        calls.append(Path(video).stem)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return extract_visual(self, video, seconds)

    monkeypatch.setattr(FakeVisual, "extract", killed_on_the_second_video)
    assert extract_cli(videos, out) == 130
    # The first video is complete and listed; the record says the run did not finish cleanly.
    assert (out / VIDEO_LIST).read_text().split() == ["filename", "abcdefghijk_30_32"]
    assert not (out / "feats" / "fake_visual" / "long.npy").exists()
    assert list((out / "feats" / "fake_audio").glob(".*.tmp")) == []
    # A file cut short by a crash outside avvp is found invalid and extracted again.
    (out / "feats" / "fake_audio" / "abcdefghijk.npy").write_bytes(b"\x93NUMPY")
    monkeypatch.setattr(FakeVisual, "extract", extract_visual)
    summary = extract(videos, out, FAKES.split(","), random_weights=True, progress=False)
    assert summary.ok
    assert sorted(summary.done) == ["abcdefghijk_30_32", "long", "short"]
    assert np.load(out / "feats" / "fake_audio" / "abcdefghijk.npy").shape == (2, 4)
    again = extract(videos, out, FAKES.split(","), random_weights=True, progress=False)
    assert again.done == [] and len(again.skipped) == 3


def test_a_feature_set_added_later_extracts_only_that_set(videos, tmp_path, monkeypatch):
    out = tmp_path / "data"
    assert extract(videos, out, ["fake_audio"], random_weights=True, progress=False).ok
    before = (out / "feats" / "fake_audio" / "long.npy").stat().st_mtime_ns

    def no_audio(*args):
        raise AssertionError("fake_audio extracted again")

    monkeypatch.setattr(FakeAudio, "extract", no_audio)
    summary = extract(videos, out, FAKES.split(","), random_weights=True, progress=False)
    assert len(summary.done) == 3
    assert (out / "feats" / "fake_audio" / "long.npy").stat().st_mtime_ns == before
    assert set(json.loads((out / METADATA).read_text())["features"]) == set(DIMS)


def test_weight_files_are_recorded_with_their_sha256(videos, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "fake.pth").write_bytes(b"pretend weights")
    out = tmp_path / "data"
    summary = extract(
        videos, out, ["fake_weighted"], weights=weights, options={"fake_weighted": {"scale": 2}}
    )
    assert summary.ok and not summary.random_weights
    record = json.loads((out / METADATA).read_text())
    assert "warning" not in record and record["random_weights"] is False
    entry = record["features"]["fake_weighted"]
    assert entry["weights"] == {
        str(weights / "fake.pth"): hashlib.sha256(b"pretend weights").hexdigest()
    }
    assert entry["options"] == {"scale": 2}
    audio = np.load(out / "feats" / "fake_weighted" / "long.npy")
    np.testing.assert_array_equal(audio[:, 2], 2 * np.arange(12))
    # Other weights in the same output would mix two feature sets under one name: refused.
    (weights / "fake.pth").write_bytes(b"other weights")
    with pytest.raises(ValueError, match=r"feats/fake_weighted was extracted with other settings"):
        extract(
            videos, out, ["fake_weighted"], weights=weights, options={"fake_weighted": {"scale": 2}}
        )


def test_random_weights_are_not_mixed_into_real_ones(videos, tmp_path, capsys):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "fake.pth").write_bytes(b"w")
    out = tmp_path / "data"
    argv = ["extract", "--videos", str(videos), "--out", str(out), "--features", "fake_weighted"]
    assert main([*argv, "--weights", str(weights), "--no-progress"]) == 0
    assert main([*argv, "--random-weights", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "feats/fake_weighted was extracted with other settings (weights differ" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--features", "fake_weighted"],
            r"fake_weighted needs pretrained weights: pass --weights DIR holding fake.pth",
        ),
        (
            ["--features", "fake_weighted", "--weights", "/nonexistent/w"],
            r"--weights /nonexistent/w: no such folder",
        ),
        (["--features", "fake_audi", "--random-weights"], r"did you mean 'fake_audio'\?"),
        (
            ["--features", "fake_audio", "--random-weights", "--option", "fake_audio.scale=2"],
            r"--option fake_audio\.\*: .*scale",
        ),
        (
            ["--features", "fake_audio", "--random-weights", "--option", "scale=2"],
            r"--option 'scale=2' is not NAME.KEY=VALUE",
        ),
        (
            ["--features", "fake_audio", "--random-weights", "--option", "res152.size=1"],
            r"options for res152, which --features does not name",
        ),
        (
            ["--features", "fake_audio", "--random-weights", "--device", "cuda:7"],
            r"--device cuda:7: CUDA is not available here",
        ),
    ],
)
def test_usage_errors_are_one_line_before_anything_is_written(
    videos, tmp_path, capsys, argv, message
):
    if "cuda" in message and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "data"
    assert main(["extract", "--videos", str(videos), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avvp extract: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not out.exists()


def test_a_folder_extract_did_not_write_is_refused(videos, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert extract_cli(videos, out) == 2
    assert "is not empty and holds no extraction.json" in capsys.readouterr().err
    assert sorted(path.name for path in out.iterdir()) == ["thesis.tex"]
    (tmp_path / "file").write_text("x")
    assert extract_cli(videos, tmp_path / "file") == 2
    assert "is a file" in capsys.readouterr().err


def test_a_list_of_paths(videos, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    relative = Path("..") / videos.name / "short.mp4"
    listing.write_text(
        f"# my videos\n{videos / 'long.mp4'}\n\n{relative}\n{tmp_path / 'gone.mp4'}\n"
    )
    (tmp_path / relative).resolve(strict=True)  # the relative path is relative to the list
    assert [video.filename for video in collect_videos(listing)] == ["long", "short", "gone"]
    out = tmp_path / "data"
    assert extract_cli(listing, out) == 1
    assert f"failed: {tmp_path / 'gone.mp4'}: no such file" in capsys.readouterr().out
    assert (out / VIDEO_LIST).read_text().split() == ["filename", "long", "short"]


def test_two_files_with_one_name_are_an_error_before_any_work(videos, tmp_path, capsys):
    write_video(tmp_path / "a" / "clip.mp4", 1.0)
    write_video(tmp_path / "b" / "clip.mp4", 1.0)
    listing = tmp_path / "list.txt"
    listing.write_text("a/clip.mp4\nb/clip.mp4\n")
    assert extract_cli(listing, tmp_path / "data") == 2
    err = capsys.readouterr().err
    assert "a/clip.mp4 and" in err and "would both write feats/<name>/clip.npy" in err
    assert extract_cli(tmp_path / "nothing", tmp_path / "data") == 2
    assert "--videos" in capsys.readouterr().err and not (tmp_path / "data").exists()


def test_extract_video_in_memory_and_a_buggy_extractor(videos):
    from avvp.registry import create

    extractors = [create("extractor", name, random_weights=True) for name in DIMS]
    features = extract_video(videos / "short.mp4", extractors)
    assert {name: array.shape for name, array in features.items()} == {
        "fake_audio": (3, 4),
        "fake_visual": (6, 3),
    }
    with pytest.raises(RuntimeError, match=r"'fake_broken' returned \(2, 2\) .*expected \(3, 2\)"):
        extract_video(videos / "short.mp4", [FakeBroken()])


@pytest.mark.parametrize("verb", ["extract", "parse"])
def test_every_option_has_help_and_shows_its_default(verb):
    (choices,) = [
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    parser = choices.choices[verb]
    formatter = parser._get_formatter()
    for option in parser._actions:
        if isinstance(option, argparse._HelpAction) or option.help == argparse.SUPPRESS:
            continue
        assert option.help, option.option_strings
        if option.option_strings and option.default not in (None, False, []):
            shown = formatter._expand_help(option)
            assert "default" in shown and str(option.default) in shown, option.option_strings


@pytest.mark.skipif(not SAMPLE.is_file(), reason=f"real_data: {SAMPLE} is absent")
def test_the_sample_video(tmp_path):
    summary = extract([SAMPLE], tmp_path / "data", FAKES.split(","), random_weights=True)
    assert summary.done == ["BjCEufrlXm4"]
    assert np.load(tmp_path / "data" / "feats" / "fake_audio" / "BjCEufrlXm4.npy").shape == (
        10,
        4,
    )
    assert np.load(tmp_path / "data" / "feats" / "fake_visual" / "BjCEufrlXm4.npy").shape == (
        20,
        3,
    )


@pytest.mark.parametrize("random_weights", [True, False])
def test_training_on_random_weight_features_warns(dataset, tmp_path, random_weights):
    """`avvp train` reads the data folder's extraction.json, as predict and parse do: features
    of untrained networks are said to be so before any training."""
    import shutil
    import warnings

    from conftest import TINY_TRAINING

    from avvp.extraction.pipeline import FORMAT

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    (data / METADATA).write_text(json.dumps({"format": FORMAT, "random_weights": random_weights}))
    flags = ["--data", str(data), "--out", str(tmp_path / "run"), *TINY_TRAINING]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", "--method", "han", *flags]) == 0
    said = [str(w.message) for w in caught if "--random-weights" in str(w.message)]
    expected = f"{data}: features {RANDOM_WARNING}"
    assert said == ([expected] if random_weights else [])
