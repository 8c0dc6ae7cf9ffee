"""`avvp parse VIDEO... --run RUN`: extraction, parse, and per video TSV, JSON and timeline PNG.

The run is a tiny HAN trained on the synthetic set with two extra feature sets, fake_audio and
fake_visual, whose extractors (media_fixtures) read real video files in milliseconds.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import TINY_TRAINING
from media_fixtures import SAMPLE, FakeAudio, write_video

import avvp.plots
from avvp.cli import main
from avvp.data.annotations import SPLIT_FILES, read_weak_labels
from avvp.data.dataset import feature_key
from avvp.evaluation.io import read_predictions

pytest.importorskip("av", reason="reading video files needs PyAV (the clip extra)")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILES = ["events.json", "pred_audio.tsv", "pred_visual.tsv", "probabilities.npz", "timeline.png"]
FAKE_FEATURES = [
    "features.audio=[fake_audio]",
    "features.visual=[fake_visual]",
    "features.dims.fake_audio=4",
    "features.dims.fake_visual=3",
    "features.frames.fake_visual=2",
]


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    """A run whose model reads fake_audio and fake_visual (random features of their shapes)."""
    rng = np.random.default_rng(0)
    for split_file in SPLIT_FILES.values():
        for filename in read_weak_labels(dataset / split_file).filenames:
            for name, shape in (("fake_audio", (10, 4)), ("fake_visual", (20, 3))):
                folder = dataset / "feats" / name
                folder.mkdir(parents=True, exist_ok=True)
                array = rng.normal(size=shape).astype(np.float32)
                np.save(folder / f"{feature_key(filename)}.npy", array)
    out = tmp_path_factory.mktemp("runs") / "fake"
    flags = ["--data", str(dataset), "--out", str(out), *TINY_TRAINING, *FAKE_FEATURES]
    assert main(["train", "--method", "han", *flags]) == 0
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {
        "clip": write_video(folder / "clip.mp4", 4.0),
        "long": write_video(folder / "long.mp4", 25.0, fps=2),
        "mute": write_video(folder / "mute.mp4", 2.0, audio=False),
    }


@pytest.fixture
def figures(monkeypatch):
    """The figures `avvp parse` draws, captured on their way to the PNG."""
    drawn = []
    timeline = avvp.plots.timeline_figure

    def capture(*args, **kwargs):
        drawn.append(timeline(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(avvp.plots, "timeline_figure", capture)
    return drawn


def parse(*argv: str) -> int:
    return main(["parse", *argv, "--random-weights", "--no-progress", "--device", "cpu"])


@pytest.mark.skipif(not SAMPLE.is_file(), reason=f"real_data: {SAMPLE} is absent")
def test_parse_the_sample_video_end_to_end(run, tmp_path, capsys, figures):
    """Before: `avvp parse` did not exist (argparse: invalid choice, exit 2)."""
    out = tmp_path / "parsed"
    assert parse(str(SAMPLE), "--run", str(run), "--out", str(out)) == 0
    captured = capsys.readouterr()
    folder = out / "BjCEufrlXm4"
    assert sorted(path.name for path in folder.iterdir()) == FILES
    assert f"{SAMPLE}: " in captured.out and str(folder / "timeline.png") in captured.out
    assert "RANDOM WEIGHTS" in captured.err or "random-weights" in captured.err
    events = json.loads((folder / "events.json").read_text())
    assert events["seconds"] == 10 and events["filename"] == "BjCEufrlXm4"
    assert events["random_weights"] is True and "plumbing" in events["warning"]
    assert events["features"]["fake_visual"]["weights"] == "RANDOM WEIGHTS (plumbing only)"
    assert events["windows"] == [[0, 10]] and events["window"] is None
    assert len(events["segment_probabilities"]["audio"]) == 10
    assert set(events["video_probabilities"]) == {"global", "audio", "visual"}
    for event in events["events"]:
        assert set(event) == {"class", "stream", "onset", "offset", "probability"}
        assert event["stream"] in ("audio", "visual", "audio-visual")
        assert 0 <= event["onset"] < event["offset"] <= 10
    # The TSVs are the evaluation format and hold the JSON's audio events.
    pred = read_predictions(folder / "pred_audio.tsv", ["BjCEufrlXm4"])
    assert pred.sum() == sum(
        e["offset"] - e["onset"] for e in events["events"] if e["stream"] == "audio"
    )
    assert (folder / "timeline.png").read_bytes().startswith(PNG_SIGNATURE)
    # The figure says loudly that nothing here is a real parse, and that there is no GT.
    (figure,) = figures
    assert "RANDOM WEIGHTS (plumbing only): NOT A REAL PARSE" in figure.get_suptitle()
    assert "no ground truth" in figure.get_suptitle()
    assert "RANDOM WEIGHTS" in [text.get_text() for text in figure.texts]  # the watermark
    minor = figure.subfigs[0].axes[0].get_yticklabels(minor=True)
    assert {label.get_text() for label in minor} <= {"no GT", "pred"}


def test_a_long_video_whole_or_in_windows(run, clips, tmp_path):
    whole, windows = tmp_path / "whole", tmp_path / "windows"
    assert parse(str(clips["long"]), "--run", str(run), "--out", str(whole)) == 0
    assert (
        parse(str(clips["long"]), "--run", str(run), "--out", str(windows), "--window", "10") == 0
    )
    one = json.loads((whole / "long" / "events.json").read_text())
    cut = json.loads((windows / "long" / "events.json").read_text())
    assert one["seconds"] == cut["seconds"] == 25
    assert one["windows"] == [[0, 25]]
    assert cut["windows"] == [[0, 9], [9, 17], [17, 25]] and cut["window"] == 10
    assert one["segment_probabilities"] != cut["segment_probabilities"]
    probabilities = np.load(windows / "long" / "probabilities.npz")
    assert probabilities["segment_prob_audio"].shape == (1, 25, 25)


def test_a_video_that_fails_does_not_stop_the_others(run, clips, tmp_path, capsys):
    out = tmp_path / "parsed"
    argv = [str(clips["mute"]), str(clips["clip"]), "--run", str(run), "--out", str(out)]
    assert parse(*argv) == 1
    err = capsys.readouterr().err
    assert f"avvp parse: failed: {clips['mute']}: has no audio track (needed by fake_audio)" in err
    assert sorted(path.name for path in (out / "clip").iterdir()) == FILES
    assert not (out / "mute").exists()


def test_overrides_among_the_videos(run, clips, tmp_path):
    out = tmp_path / "parsed"
    argv = [str(clips["clip"]), "eval.threshold=0.3", "--run", str(run), "--out", str(out)]
    assert parse(*argv, "--gate", "none") == 0
    events = json.loads((out / "clip" / "events.json").read_text())
    assert (events["threshold"], events["gate"], events["seconds"]) == (0.3, "none", 4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--window", "0"], r"window must be a positive number of seconds, got 0"),
        (["eval.threshold=0.4"], r"no VIDEO to parse"),
        (["--run", "/nonexistent/run"], r"run folder not found: /nonexistent/run"),
    ],
)
def test_usage_errors_are_one_line(run, clips, tmp_path, capsys, argv, message):
    videos = [] if "eval.threshold=0.4" in argv else [str(clips["clip"])]
    flags = [] if "--run" in argv else ["--run", str(run)]
    assert parse(*videos, *argv, *flags, "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert err.startswith("avvp parse: error: ") and err.count("\n") == 1
    assert re.search(message, err), err


def test_an_extractor_the_run_cannot_read_is_an_error(run, clips, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(FakeAudio, "dim", 5)
    assert parse(str(clips["clip"]), "--run", str(run), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "reads fake_audio features of dim 4, 1 rows a second" in err
    assert "the fake_audio extractor gives dim 5" in err


def test_extract_then_predict_gives_the_parse_of_avvp_parse(run, clips, tmp_path):
    """The two routes from a video file, through feature files or in memory, agree."""
    data, pred, parsed = tmp_path / "data", tmp_path / "pred", tmp_path / "parsed"
    videos = [str(clips["clip"]), str(clips["long"])]
    listing = tmp_path / "videos.txt"
    listing.write_text("\n".join(videos) + "\n")
    extract = ["extract", "--videos", str(listing), "--out", str(data), "--random-weights"]
    assert main([*extract, "--features", "fake_audio,fake_visual", "--no-progress"]) == 0
    with pytest.warns(UserWarning, match=rf"{data}: features made with --random-weights"):
        assert main(["predict", "--run", str(run), "--data", str(data), "--out", str(pred)]) == 0
    assert parse(*videos, "--run", str(run), "--out", str(parsed)) == 0
    predicted = np.load(pred / "probabilities.npz")
    assert predicted["filenames"].tolist() == ["clip", "long"]
    assert predicted["segments"].tolist() == [4, 25]
    for row, name in enumerate(["clip", "long"]):
        one = np.load(parsed / name / "probabilities.npz")
        length = predicted["segments"][row]
        for key in ("segment_prob_audio", "segment_prob_visual"):
            np.testing.assert_allclose(predicted[key][row, :length], one[key][0], atol=1e-6)
        np.testing.assert_allclose(predicted["video_prob"][row], one["video_prob"][0], atol=1e-6)
