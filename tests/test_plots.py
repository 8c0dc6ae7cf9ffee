"""`avvp plot` and the timeline figure: which class rows appear, --compare, clean errors."""

import numpy as np
import pytest

import avvp.plots
from avvp.classes import CLASS_INDEX, CLASSES
from avvp.cli import main
from avvp.data.annotations import LLPAnnotations
from avvp.evaluation.io import read_predictions
from avvp.plots import TimelinePanel, display_name, timeline_classes, timeline_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEGMENTS = 10


def empty() -> np.ndarray:
    return np.zeros((2, SEGMENTS, len(CLASSES)), dtype=bool)


def class_rows(figure, panel: int = 0) -> list[str]:
    """The class names down the audio axes of a panel (its major y tick labels)."""
    audio_axes = figure.subfigs[panel].axes[0]
    return [label.get_text() for label in audio_axes.get_yticklabels()]


@pytest.fixture
def captured(monkeypatch):
    """The figures `avvp plot` draws, captured on their way to the PNG."""
    figures = []

    def capture(*args, **kwargs):
        figures.append(timeline(*args, **kwargs))
        return figures[-1]

    timeline = avvp.plots.timeline_figure
    monkeypatch.setattr(avvp.plots, "timeline_figure", capture)
    return figures


def test_rows_are_gt_classes_then_classes_only_predicted():
    speech, car, dog, cat = (CLASS_INDEX[name] for name in ("Speech", "Car", "Dog", "Cat"))
    gt = empty()
    gt[0, 0:4, dog] = True  # audio
    gt[1, 5:10, speech] = True  # visual
    first = empty()
    first[0, 0:2, dog] = True
    first[1, 3:6, cat] = True
    second = empty()
    second[0, 7:9, car] = True
    panels = [
        TimelinePanel("first", gt, np.where(first, 0.9, 0.1), first),
        TimelinePanel("second", gt, np.where(second, 0.8, 0.2), second),
    ]
    assert timeline_classes(panels) == [speech, dog, car, cat]
    figure = timeline_figure(panels, CLASSES, title="synthetic")
    expected = ["Speech", "Dog", "Car", "Cat"]
    assert class_rows(figure, 0) == class_rows(figure, 1) == expected
    assert [subfigure.get_suptitle() for subfigure in figure.subfigs] == ["first", "second", ""]
    assert len(figure.subfigs[0].axes) == 2  # audio and visual


def test_panels_must_agree_in_shape():
    gt = empty()
    with pytest.raises(ValueError, match="must be \\(2, T, C\\)"):
        TimelinePanel("bad", gt, gt[:1].astype(float), gt)
    with pytest.raises(ValueError, match="class names"):
        timeline_figure([TimelinePanel("x", gt, gt.astype(float), gt)], CLASSES[:3])


def test_plot_command_draws_the_gt_and_predicted_classes(dataset, seeds_run, tmp_path, captured):
    run = seeds_run / "seed-1"
    labels = LLPAnnotations(dataset)
    filenames = labels.weak("test").filenames
    # The test video with the most ground-truth classes, so several rows must appear.
    gt = labels.dense("test")
    present = (gt.audio | gt.visual).any(axis=1)
    row = int(present.sum(axis=1).argmax())
    assert main(["predict", "--run", str(run), "--out", str(tmp_path / "pred")]) == 0
    predicted = np.zeros_like(present[row])
    for stream in ("audio", "visual"):
        pred = read_predictions(tmp_path / "pred" / f"pred_{stream}.tsv", filenames)
        predicted |= pred[row].any(axis=0)
    expected = [
        *(CLASSES[k] for k in np.flatnonzero(present[row])),
        *(CLASSES[k] for k in np.flatnonzero(predicted & ~present[row])),
    ]

    out = tmp_path / "timeline.png"
    video = filenames[row][:11]
    assert main(["plot", "--run", str(run), "--video", video, "--out", str(out)]) == 0
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    (figure,) = captured
    assert class_rows(figure) == [display_name(name) for name in expected]
    assert filenames[row] in figure.get_suptitle()
    colorbar_axes = figure.subfigs[-1].axes[1]
    assert "the threshold, 0.5" in colorbar_axes.get_xlabel()


def test_compare_stacks_one_panel_per_run(dataset, seeds_run, tmp_path, captured):
    single, compared = tmp_path / "single.png", tmp_path / "compare.png"
    video = LLPAnnotations(dataset).weak("test").filenames[0]  # the full filename works too
    base = ["plot", "--run", str(seeds_run / "seed-1"), "--video", video]
    assert main([*base, "--out", str(single)]) == 0
    assert main([*base, "--out", str(compared), "--compare", str(seeds_run / "seed-2")]) == 0
    figure = captured[-1]
    titles = [subfigure.get_suptitle().split(" (")[0] for subfigure in figure.subfigs]
    # The run folder's name, not where it lies on this machine.
    assert titles == ["han: han/seed-1", "han: han/seed-2", ""]
    assert class_rows(figure, 0) == class_rows(figure, 1)
    height = int.from_bytes(compared.read_bytes()[20:24], "big")  # IHDR height
    assert height > int.from_bytes(single.read_bytes()[20:24], "big")


def test_unknown_video_and_seed_folder_are_clean_errors(dataset, seeds_run, tmp_path, capsys):
    out = tmp_path / "x.png"
    run = str(seeds_run / "seed-1")
    assert main(["plot", "--run", run, "--video", "nosuchvideo", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("avvp plot: error: video 'nosuchvideo' is not in the test split")
    assert str(dataset / "AVVP_test_pd.csv") in error
    assert main(["plot", "--run", str(seeds_run), "--video", "x", "--out", str(out)]) == 2
    assert "one run per seed" in capsys.readouterr().err
    assert not out.exists()


def test_out_naming_a_folder_writes_video_png_there(dataset, seeds_run, tmp_path, capsys):
    video = LLPAnnotations(dataset).weak("test").filenames[0]
    base = ["plot", "--run", str(seeds_run / "seed-1"), "--video", video[:11]]
    existing = tmp_path / "figures"
    existing.mkdir()
    assert main([*base, "--out", str(existing)]) == 0
    assert (existing / f"{video}.png").read_bytes().startswith(PNG_SIGNATURE)
    new = tmp_path / "new"
    assert main([*base, "--out", f"{new}/"]) == 0
    assert (new / f"{video}.png").read_bytes().startswith(PNG_SIGNATURE)
    capsys.readouterr()
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    assert main([*base, "--out", str(mine)]) == 2
    assert "is not a .png file; not overwriting it" in capsys.readouterr().err
    assert mine.read_text() == "mine"


def test_threshold_and_gate_flags_and_overrides_reach_the_figure(
    dataset, seeds_run, tmp_path, captured
):
    video = LLPAnnotations(dataset).weak("test").filenames[0]
    base = ["plot", "--run", str(seeds_run / "seed-1"), "--video", video]
    out = str(tmp_path / "x.png")
    assert main([*base, "--out", out, "--threshold", "0.25", "--gate", "none"]) == 0
    assert main([*base, "--out", out, "eval.threshold=0.35", "--gate", "modality"]) == 0
    compare = ["--compare", str(seeds_run / "seed-2"), "eval.threshold=0.45"]
    assert main([*base, "--out", out, *compare]) == 0
    titles = [figure.subfigs[0].get_suptitle() for figure in captured]
    assert titles == [
        "han: han/seed-1 (threshold 0.25, gate none)",
        "han: han/seed-1 (threshold 0.35, gate modality)",
        "han: han/seed-1 (threshold 0.45, gate global)",
    ]
    assert captured[-1].subfigs[1].get_suptitle() == "han: han/seed-2 (threshold 0.45, gate global)"


def video_prob_labels(figure, panel: int = 0, stream: int = 0) -> list[tuple[str, str]]:
    """(text, colour) of the video-level probabilities right of a panel's prediction tracks."""
    ax = figure.subfigs[panel].axes[stream]
    return [(text.get_text(), text.get_color()) for text in ax.texts]


def test_timeline_shows_video_probabilities_and_marks_what_the_gate_suppressed():
    dog, cat = CLASS_INDEX["Dog"], CLASS_INDEX["Cat"]
    gt = empty()
    gt[:, 2:6, dog] = True
    prob = np.full(gt.shape, 0.1)
    prob[:, 2:6, dog] = 0.9
    prob[:, 0:3, cat] = 0.8  # above the threshold, but the cat's video probability gates it off
    pred = (prob >= 0.5) & (np.arange(len(CLASSES)) == dog)
    video_prob = np.full((2, len(CLASSES)), 0.05)
    video_prob[:, dog], video_prob[:, cat] = 0.95, 0.3
    suppressed = (prob >= 0.5) & ~pred
    panel = TimelinePanel("run", gt, prob, pred, video_prob, 0.5, suppressed)
    figure = timeline_figure([panel], CLASSES, threshold=0.5)
    # Only classes in the GT or predicted get a row: the dog; the cat row appears when predicted.
    assert class_rows(figure) == ["Dog"]
    assert video_prob_labels(figure) == [("0.95", "#333333")]
    pred[0, 0, cat] = True
    figure = timeline_figure(
        [TimelinePanel("run", gt, prob, pred, video_prob, 0.5, suppressed)], CLASSES
    )
    assert class_rows(figure) == ["Dog", "Cat"]
    assert video_prob_labels(figure) == [("0.95", "#333333"), ("0.30", avvp.plots.GATED_COLOR)]
    hatched = [p for p in figure.subfigs[0].axes[1].patches if p.get_hatch() == "///"]
    assert [(p.get_x(), p.get_width()) for p in hatched] == [(0, 3)]  # visual: segments 0..3
    legend = figure.subfigs[-1].axes[0].get_legend()
    texts = [text.get_text() for text in legend.get_texts()]
    assert any("the gate is off (video probability < 0.5)" in text for text in texts)
    with pytest.raises(ValueError, match="video_prob must be"):
        TimelinePanel("bad", gt, prob, pred, video_prob[:1], 0.5)
