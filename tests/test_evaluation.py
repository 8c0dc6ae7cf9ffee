"""The vectorised evaluation against the naive reference, the SPEC table, prediction files, CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from naive_eval import (
    EXCLUSIVE_EPSILON,
    extract_events,
    naive_binarize,
    naive_class_f1,
    naive_evaluate,
    naive_per_video,
)

from avvp.classes import CLASSES, NUM_CLASSES
from avvp.cli import main
from avvp.data.annotations import AnnotationError, LLPAnnotations
from avvp.evaluation import (
    SCORES,
    Gate,
    IoUMode,
    binarize,
    evaluate,
    evaluate_detailed,
    format_table,
    read_predictions,
    runs,
    write_predictions,
)
from avvp.evaluation.checks import (
    EvaluationWarning,
    empty_streams,
    predicted_fraction,
    videos_without_rows,
)

LLP = Path(__file__).resolve().parents[1].parent / "shared" / "llp"
EPSILON = {"inclusive": 0.0, "exclusive": EXCLUSIVE_EPSILON}


def random_parse(rng: np.random.Generator, videos: int, segments: int, classes: int):
    """Binary (V, T, C) arrays whose density and run length vary from video to video.

    Each video draws how many classes are active and how persistent they are, so the set holds
    empty videos, isolated segments, long runs and whole-video events.
    """
    fraction = rng.choice([0.0, 0.05, 0.2, 0.6, 1.0], size=(videos, 1))
    active = rng.random((videos, classes)) < fraction
    stay = rng.uniform(0.0, 1.0, size=(videos, 1))
    parse = np.empty((videos, segments, classes), dtype=bool)
    parse[:, 0] = rng.random((videos, classes)) < 0.5
    for t in range(1, segments):
        parse[:, t] = parse[:, t - 1] ^ (rng.random((videos, classes)) > stay)
    return parse & active[:, None, :]


def predictions_like(rng: np.random.Generator, truth: np.ndarray) -> np.ndarray:
    """Per video, an independent parse, a noisy copy of ``truth`` or a shifted copy of it.

    Copies make predicted and true events overlap, so IoU near and at 0.5 is exercised.
    """
    videos, segments, classes = truth.shape
    independent = random_parse(rng, videos, segments, classes)
    noisy = truth ^ (rng.random(truth.shape) < rng.choice([0.02, 0.1, 0.3], size=(videos, 1, 1)))
    shifted = np.roll(truth, rng.integers(-3, 4, size=videos)[0], axis=1)
    kind = rng.integers(0, 3, size=(videos, 1, 1))
    return np.where(kind == 0, independent, np.where(kind == 1, noisy, shifted))


def random_case(seed: int, videos: int, segments: int = 10, classes: int = NUM_CLASSES):
    rng = np.random.default_rng(seed)
    gt_audio = random_parse(rng, videos, segments, classes)
    gt_visual = random_parse(rng, videos, segments, classes)
    return (
        predictions_like(rng, gt_audio),
        predictions_like(rng, gt_visual),
        gt_audio,
        gt_visual,
    )


def assert_same_metrics(actual: dict, expected: dict, tolerance: float = 1e-9) -> None:
    assert actual.keys() == expected.keys() == {"segment", "event"}
    for level in expected:
        assert actual[level].keys() == expected[level].keys()
        for name, value in expected[level].items():
            assert abs(actual[level][name] - value) <= tolerance, (level, name)


# --- the vectorised protocol against the naive one ------------------------------------------


@pytest.mark.parametrize("iou", ["inclusive", "exclusive"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_on_random_parses(seed, iou):
    case = random_case(seed, videos=300)
    assert_same_metrics(evaluate(*case, iou=iou), naive_evaluate(*case, epsilon=EPSILON[iou]))


@pytest.mark.parametrize("iou", ["inclusive", "exclusive"])
def test_per_video_scores_and_class_f1_match_naive(iou):
    case = random_case(2, videos=100)
    result = evaluate_detailed(*case, iou=iou)
    for level, videos in naive_per_video(*case, epsilon=EPSILON[iou]).items():
        np.testing.assert_allclose(result.per_video[level], 100 * np.array(videos), atol=1e-9)
    for level, names in naive_class_f1(*case, epsilon=EPSILON[iou]).items():
        assert result.class_f1[level].keys() == names.keys()
        for name, scores in names.items():
            expected = np.array([math.nan if s is None else s for s in scores])
            np.testing.assert_allclose(result.class_f1[level][name], expected, atol=1e-9)


@pytest.mark.parametrize("segments", [1, 2, 3, 17])
def test_matches_naive_for_other_segment_counts(segments):
    case = random_case(10 + segments, videos=80, segments=segments, classes=7)
    for iou in ("inclusive", "exclusive"):
        assert_same_metrics(evaluate(*case, iou=iou), naive_evaluate(*case, epsilon=EPSILON[iou]))


def test_random_cases_exercise_the_iou_boundary():
    # Without IoU = 0.5 pairs in the random data the two modes would be indistinguishable and
    # the comparisons above would not test the boundary.
    case = random_case(0, videos=300)
    inclusive, exclusive = evaluate(*case), evaluate(*case, iou="exclusive")
    assert inclusive["event"]["audio"] > exclusive["event"]["audio"]
    assert inclusive["segment"] == exclusive["segment"]


def test_accepts_numbers_and_bools_alike():
    case = random_case(3, videos=20)
    as_numbers = [array.astype(np.float32) for array in case]
    assert evaluate(*as_numbers) == evaluate(*case)


def test_runs_match_naive_event_extraction():
    parse = random_parse(np.random.default_rng(6), 50, 10, 7)
    found = list(zip(*(part.tolist() for part in runs(parse)), strict=True))
    expected = [
        (v, c, start, end)
        for v in range(50)
        for c in range(7)
        for start, end in extract_events(parse[v, :, c])
    ]
    assert found == expected


# --- the protocol on hand-made cases ----------------------------------------------------------


def single_video(**streams: list[tuple[int, int, int]]) -> list[np.ndarray]:
    """(1, 10, C) arrays for pa, pv, ga, gv from lists of (class, onset, offset)."""
    arrays = []
    for name in ("pa", "pv", "ga", "gv"):
        array = np.zeros((1, 10, NUM_CLASSES), dtype=bool)
        for klass, onset, offset in streams.get(name, []):
            array[0, onset:offset, klass] = True
        arrays.append(array)
    return arrays


def test_iou_of_exactly_one_half_is_a_match_only_when_inclusive():
    # Predicted [0, 2) against true [0, 4): IoU 2 / 4.
    case = single_video(pa=[(0, 0, 2)], pv=[(0, 0, 2)], ga=[(0, 0, 4)], gv=[(0, 0, 4)])
    assert evaluate(*case)["event"]["audio"] == 100.0
    assert evaluate(*case, iou=IoUMode.EXCLUSIVE)["event"]["audio"] == 0.0
    assert evaluate(*case)["segment"]["audio"] == pytest.approx(100 * 2 * 2 / (2 * 2 + 2))


def test_a_video_with_nothing_predicted_or_present_scores_one():
    case = single_video()
    assert all(value == 100.0 for level in evaluate(*case).values() for value in level.values())


def test_event_at_av_pools_counts_instead_of_averaging():
    # Audio: class 0 right on 10 segments (F1 1); visual: class 0 predicted on 10 segments that
    # are absent (F1 0). Pooled: TP 10, FP 10, FN 0 -> 2/3, not the mean 1/2.
    case = single_video(pa=[(0, 0, 10)], pv=[(0, 0, 10)], ga=[(0, 0, 10)])
    metrics = evaluate(*case)["segment"]
    assert (metrics["audio"], metrics["visual"]) == (100.0, 0.0)
    assert metrics["event"] == pytest.approx(200 / 3)


def test_per_video_scores_average_to_the_metrics():
    result = evaluate_detailed(*random_case(5, videos=50))
    for level in ("segment", "event"):
        assert result.per_video[level].shape == (50, len(SCORES))
        for column, name in enumerate(SCORES):
            assert result.metrics[level][name] == pytest.approx(
                result.per_video[level][:, column].mean(), abs=1e-9
            )


def test_class_f1_is_nan_only_for_classes_never_predicted_nor_present():
    case = single_video(pa=[(2, 0, 4)], ga=[(2, 2, 6)], gv=[(3, 0, 10)])
    f1 = evaluate_detailed(*case).class_f1["segment"]
    assert f1["audio"][2] == pytest.approx(50.0)
    assert f1["visual"][3] == 0.0
    assert np.isnan(f1["audio"][3]) and np.isnan(f1["visual"][2])
    assert np.isnan(np.delete(f1["audio"], 2)).all()


# --- input validation -------------------------------------------------------------------------


def test_rejects_mismatched_shapes():
    pa, pv, ga, gv = random_case(0, videos=4)
    with pytest.raises(ValueError, match=r"share one .*shape.*gt_visual"):
        evaluate(pa, pv, ga, gv[:3])


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (np.zeros((4, 10)), r"pred_audio must be a non-empty \(videos, segments, classes\)"),
        (np.zeros((0, 10, 25)), r"pred_audio must be a non-empty"),
        (np.full((4, 10, 25), "1"), r"pred_audio must hold bool or 0/1 numbers, found dtype"),
    ],
)
def test_rejects_bad_arrays(value, pattern):
    _, pv, ga, gv = random_case(0, videos=4)
    with pytest.raises(ValueError, match=pattern):
        evaluate(value, pv, ga, gv)


def test_rejects_nan_and_non_binary_values_with_their_position():
    pa, pv, ga, gv = (array.astype(float) for array in random_case(0, videos=4))
    gv[2, 3, 4] = np.nan
    with pytest.raises(
        ValueError, match=r"gt_visual must hold only 0 and 1.*NaN at .* \(2, 3, 4\)"
    ):
        evaluate(pa, pv, ga, gv)
    pa[1, 0, 0] = 0.7
    with pytest.raises(ValueError, match=r"pred_audio .*found 0\.7 at .* \(1, 0, 0\); 1 such"):
        evaluate(pa, pv, ga, np.nan_to_num(gv))


def test_unknown_iou_mode_lists_the_allowed_values():
    with pytest.raises(
        ValueError, match="unknown iou mode 'strict'; expected one of inclusive, exclusive"
    ):
        evaluate(*random_case(0, videos=2), iou="strict")


# --- binarize ---------------------------------------------------------------------------------


def random_probabilities(seed: int, videos: int = 40, classes: int = NUM_CLASSES):
    # Multiples of 0.1 put many values exactly on the thresholds, where >= matters.
    rng = np.random.default_rng(seed)
    segment = rng.integers(0, 11, size=(2, videos, 10, classes)) / 10
    video = rng.integers(0, 11, size=(3, videos, classes)) / 10
    return segment[0], segment[1], video[0], video[1], video[2]


@pytest.mark.parametrize("gate", ["global", "modality", "none"])
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_binarize_matches_naive(gate, threshold):
    seed = ["global", "modality", "none"].index(gate) + int(10 * threshold)
    audio, visual, video, video_audio, video_visual = random_probabilities(seed)
    kwargs = {"threshold": threshold, "gate": gate}
    kwargs |= {"video_prob_audio": video_audio, "video_prob_visual": video_visual}
    actual = binarize(audio, visual, video, **kwargs)
    expected = naive_binarize(audio, visual, video, **kwargs)
    for got, want in zip(actual, expected, strict=True):
        assert got.dtype == np.bool_
        np.testing.assert_array_equal(got, want)


def test_binarize_with_class_thresholds_and_video_threshold_matches_naive():
    audio, visual, video, _, _ = random_probabilities(7)
    cut = np.random.default_rng(8).integers(1, 10, size=NUM_CLASSES) / 10
    actual = binarize(audio, visual, video, class_thresholds=cut, video_threshold=0.7)
    expected = naive_binarize(audio, visual, video, class_thresholds=cut, video_threshold=0.7)
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_binarize_default_is_the_reference_rule():
    # SPEC section 3 step 1, written out for one video.
    audio, visual, video, _, _ = random_probabilities(9, videos=1)
    pred_audio, pred_visual = binarize(audio, visual, video)
    gate = video[0] >= 0.5
    np.testing.assert_array_equal(pred_audio[0], (audio[0] >= 0.5) & gate)
    np.testing.assert_array_equal(pred_visual[0], (visual[0] >= 0.5) & gate)


def test_binarize_errors():
    audio, visual, video, _, _ = random_probabilities(0, videos=3)
    with pytest.raises(ValueError, match="gate 'global' needs video_prob"):
        binarize(audio, visual)
    with pytest.raises(ValueError, match="gate 'modality' needs video_prob_audio"):
        binarize(audio, visual, video, gate=Gate.MODALITY)
    with pytest.raises(ValueError, match="unknown gate 'video'; expected one of global, modality"):
        binarize(audio, visual, video, gate="video")
    with pytest.raises(ValueError, match=r"seg_prob_visual \(3, 9, 25\)"):
        binarize(audio, visual[:, :9], video)
    with pytest.raises(ValueError, match=r"video_prob has shape \(2, 25\), expected"):
        binarize(audio, visual, video[:2])
    with pytest.raises(ValueError, match="class_thresholds must be 25 finite numbers"):
        binarize(audio, visual, video, class_thresholds=np.full(24, 0.5))
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        binarize(audio, visual, video, threshold=math.nan)
    bad = audio.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"seg_prob_audio must hold probabilities in \[0, 1\], "):
        binarize(bad, visual, video)
    with pytest.raises(ValueError, match=r"found 3\.5 at index \(0, 1\); 3 such entries .*logits"):
        binarize(audio, visual, np.where(np.arange(25) == 1, 3.5, video))


# --- the table --------------------------------------------------------------------------------


def test_format_table_prints_the_ten_numbers_with_two_decimals():
    metrics = evaluate(*random_case(2, videos=30))
    lines = format_table(metrics).splitlines()
    assert lines[0].split() == ["Audio", "Visual", "Audio-Visual", "Type@AV", "Event@AV"]
    for line, level in zip(lines[1:], ("segment", "event"), strict=True):
        label, *cells = line.split()
        assert label == f"{level}-level"
        expected = [metrics[level][n] for n in ("audio", "visual", "audio_visual", "type", "event")]
        assert cells == [f"{value:.2f}" for value in expected]
    assert len({len(line) for line in lines}) == 1


# --- the SPEC reference table on the real annotations -----------------------------------------

SEGMENT_EVENT_ZEROS = [0.50, 10.08, 14.50, 8.36, 0.00]
REFERENCE = {
    ("test", "2024", "weak"): (
        [76.12, 60.35, 52.61, 63.03, 71.73],
        [63.03, 55.75, 44.69, 54.49, 61.60],
    ),
    ("test", "pre2024", "weak"): (
        [76.08, 60.35, 52.61, 63.01, 71.70],
        [63.03, 55.75, 44.69, 54.49, 61.60],
    ),
    ("val", "2024", "weak"): (
        [77.07, 58.65, 52.07, 62.60, 71.53],
        [63.85, 53.48, 44.15, 53.82, 61.12],
    ),
    ("test", "2024", "zeros"): (SEGMENT_EVENT_ZEROS, SEGMENT_EVENT_ZEROS),
    ("test", "pre2024", "zeros"): (SEGMENT_EVENT_ZEROS, SEGMENT_EVENT_ZEROS),
    ("test", "2024", "truth"): ([100.0] * 5, [100.0] * 5),
    ("test", "pre2024", "truth"): ([100.0] * 5, [100.0] * 5),
}


def real_annotations(audio_gt: str) -> LLPAnnotations:
    if not (LLP / "annotations").is_dir():
        pytest.skip(f"real LLP annotations not found at {LLP / 'annotations'}")
    return LLPAnnotations(LLP / "annotations", audio_gt)


def predictor(name: str, annotations: LLPAnnotations, split: str):
    truth = annotations.dense(split)
    if name == "truth":
        return truth.audio, truth.visual
    weak = annotations.weak(split).labels.astype(bool)
    if name == "zeros":
        weak = np.zeros_like(weak)
    broadcast = np.repeat(weak[:, None, :], truth.audio.shape[1], axis=1)
    return broadcast, broadcast


@pytest.mark.real_data
@pytest.mark.parametrize(("split", "audio_gt", "name"), list(REFERENCE))
def test_spec_reference_table(split, audio_gt, name):
    annotations = real_annotations(audio_gt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the known faults; test_annotations checks the list
        truth = annotations.dense(split)
        pred_audio, pred_visual = predictor(name, annotations, split)
    metrics = evaluate(pred_audio, pred_visual, truth.audio, truth.visual)
    names = ("audio", "visual", "audio_visual", "type", "event")
    for level, expected in zip(("segment", "event"), REFERENCE[split, audio_gt, name], strict=True):
        assert [round(metrics[level][n], 2) for n in names] == expected, level


@pytest.mark.real_data
def test_exclusive_reading_misses_iou_one_half_on_real_data():
    annotations = real_annotations("2024")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = annotations.dense("test")
        pred_audio, pred_visual = predictor("weak", annotations, "test")
    metrics = evaluate(pred_audio, pred_visual, truth.audio, truth.visual, iou="exclusive")
    assert round(metrics["event"]["audio"], 2) == 58.44
    assert round(metrics["segment"]["audio"], 2) == 76.12


# --- prediction files -------------------------------------------------------------------------

FILENAMES = ["a-b_cdefghi_0_10", "Z9y8X7w6V5u_30_40", "__--__--__-_120_130"]


def test_write_predictions_writes_one_row_per_event_in_llp_order(tmp_path):
    pred = np.zeros((3, 10, NUM_CLASSES), dtype=bool)
    pred[0, 2:5, CLASSES.index("Dog")] = True
    pred[0, 7:10, CLASSES.index("Dog")] = True
    pred[0, 0:10, CLASSES.index("Speech")] = True
    pred[2, 9, CLASSES.index("Clapping")] = True
    path = write_predictions(tmp_path / "out" / "pred.tsv", FILENAMES, pred)
    assert path.read_text() == (
        "filename\tonset\toffset\tevent_labels\n"
        "a-b_cdefghi_0_10\t0\t10\tSpeech\n"
        "a-b_cdefghi_0_10\t2\t5\tDog\n"
        "a-b_cdefghi_0_10\t7\t10\tDog\n"
        "__--__--__-_120_130\t9\t10\tClapping\n"
    )
    assert [p.name for p in path.parent.iterdir()] == ["pred.tsv"]  # no temporary left


@pytest.mark.parametrize("segments", [10, 4])
def test_predictions_round_trip(tmp_path, segments):
    rng = np.random.default_rng(segments)
    filenames = [f"{i:011d}_0_10" for i in range(60)]
    pred = random_parse(rng, 60, segments, NUM_CLASSES)
    write_predictions(tmp_path / "pred.tsv", filenames, pred)
    read = read_predictions(tmp_path / "pred.tsv", filenames, num_segments=segments)
    np.testing.assert_array_equal(read, pred)


def test_read_predictions_of_a_subset_and_unions_overlapping_rows(tmp_path):
    path = tmp_path / "pred.tsv"
    path.write_text(
        "filename\tonset\toffset\tevent_labels\n"
        f"{FILENAMES[1]}\t0\t3\tCar\n"
        f"{FILENAMES[1]}\t2\t6\tCar\n"
        "\n"
    )
    pred = read_predictions(path, FILENAMES)
    expected = np.zeros((3, 10, NUM_CLASSES), dtype=bool)
    expected[1, 0:6, CLASSES.index("Car")] = True
    np.testing.assert_array_equal(pred, expected)


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        ("VMTJRpjbE_150_160\t0\t3\tCar", r"line 3: video 'VMTJRpjbE_150_160' is not one of the 3 "),
        ("{name}\t0\t3\tCar\textra", r"line 3: expected 4 tab-separated fields"),
        ("{name}\t0\t2.5\tCar", r"line 3: onset/offset must be integer seconds"),
        ("{name}\t0\t3\tCars", r"line 3: unknown class name 'Cars'"),
        ("{name}\t4\t4\tCar", r"line 3: interval 4..4 of .* is not a non-empty part of 0..10"),
        ("{name}\t5\t2\tCar", r"line 3: interval 5..2"),
        ("{name}\t-1\t2\tCar", r"line 3: interval -1..2"),
        ("{name}\t8\t11\tCar", r"line 3: interval 8..11"),
    ],
)
def test_read_predictions_rejects_bad_rows_naming_file_and_line(tmp_path, row, pattern):
    path = tmp_path / "pred.tsv"
    good = f"{FILENAMES[0]}\t0\t10\tSpeech"
    path.write_text(
        f"filename\tonset\toffset\tevent_labels\n{good}\n{row.format(name=FILENAMES[0])}\n"
    )
    with pytest.raises(AnnotationError, match=f"{path}: {pattern}"):
        read_predictions(path, FILENAMES)


def test_read_predictions_rejects_a_bad_header_and_a_missing_file(tmp_path):
    path = tmp_path / "pred.tsv"
    path.write_text("filename,onset,offset,event_labels\n")
    with pytest.raises(AnnotationError, match=f"{path}: line 1: header"):
        read_predictions(path, FILENAMES)
    with pytest.raises(FileNotFoundError, match=r"missing\.tsv"):
        read_predictions(tmp_path / "missing.tsv", FILENAMES)


def test_write_predictions_rejects_bad_input(tmp_path):
    pred = np.zeros((3, 10, NUM_CLASSES), dtype=bool)
    with pytest.raises(ValueError, match=r"expected \(2 videos, segments, 25 classes\)"):
        write_predictions(tmp_path / "p.tsv", FILENAMES[:2], pred)
    with pytest.raises(ValueError, match="duplicate filenames"):
        write_predictions(tmp_path / "p.tsv", [FILENAMES[0]] * 3, pred)
    with pytest.raises(ValueError, match="pred must hold only 0 and 1"):
        write_predictions(tmp_path / "p.tsv", FILENAMES, pred + 0.5)
    assert not list(tmp_path.iterdir())


# --- the command line -------------------------------------------------------------------------

TEST_VIDEOS = ["t-est_0001a_0_10", "test_00002b_10_20", "test-00003c_5_15", "test_00004d_0_10"]
VAL_VIDEOS = ["v-al_00001a_0_10"]


def write_tsv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    lines = ["\t".join(header)] + ["\t".join(str(value) for value in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def tiny_dataset(tmp_path):
    """A four-video test split with dense labels, and prediction files of a random parse."""
    root = tmp_path / "llp"
    root.mkdir()
    write_tsv(
        root / "AVVP_test_pd.csv",
        ["filename", "event_labels"],
        [[name, "Speech,Dog"] for name in TEST_VIDEOS],
    )
    write_tsv(root / "AVVP_val_pd.csv", ["filename", "event_labels"], [[VAL_VIDEOS[0], "Car"]])
    rng = np.random.default_rng(4)
    truth = {"audio": random_parse(rng, 4, 10, NUM_CLASSES)}
    truth["visual"] = random_parse(rng, 4, 10, NUM_CLASSES)
    truth["pre2024"] = truth["audio"].copy()
    truth["pre2024"][0] = ~truth["pre2024"][0]
    dense = {"audio": "AVVP_eval_audio.csv", "visual": "AVVP_eval_visual.csv"}
    dense["pre2024"] = "AVVP_eval_audio_pre2024.csv"
    for key, name in dense.items():
        write_predictions(root / name, TEST_VIDEOS, truth[key])
    pred = {stream: predictions_like(rng, truth[stream]) for stream in ("audio", "visual")}
    for stream, parse in pred.items():
        write_predictions(tmp_path / f"{stream}.tsv", TEST_VIDEOS, parse)
    return tmp_path, truth, pred


def cli_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        *("--pred-audio", str(tmp_path / "audio.tsv")),
        *("--pred-visual", str(tmp_path / "visual.tsv")),
        *extra,
    ]


@pytest.mark.parametrize(
    ("flags", "audio_key", "audio_gt", "iou"),
    [
        (["--annotations", "{root}", "--split", "test"], "audio", "2024", "inclusive"),
        (
            ["--data", "{root}", "--audio-gt", "pre2024", "--iou", "exclusive"],
            "pre2024",
            "pre2024",
            "exclusive",
        ),
    ],
)
def test_cli_scores_prediction_files(tiny_dataset, capsys, flags, audio_key, audio_gt, iou):
    tmp_path, truth, pred = tiny_dataset
    out = tmp_path / "results" / "metrics.json"
    flags = [flag.format(root=tmp_path / "llp") for flag in flags]
    assert main(cli_args(tmp_path, *flags, "--json", str(out))) == 0
    expected = naive_evaluate(
        pred["audio"], pred["visual"], truth[audio_key], truth["visual"], epsilon=EPSILON[iou]
    )
    printed = capsys.readouterr().out
    assert f"on test (4 videos, audio GT {audio_gt}, IoU {iou})" in printed
    assert format_table(expected) in printed
    assert_same_metrics(json.loads(out.read_text()), expected)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--run", "runs/x"], "either --run or --pred-audio/--pred-visual, not both"),
        (["--gate", "none"], "--gate only apply with --run"),
        ([], "file mode needs --annotations DIR (or --data DIR)"),
        (["--data", "{root}", "--split", "val"], "line 2: video 't-est_0001a_0_10' is not one of"),
        (["--data", "{root}/nowhere"], "annotation folder not found"),
    ],
)
def test_cli_reports_errors(tiny_dataset, capsys, extra, message):
    tmp_path, _, _ = tiny_dataset
    extra = [flag.format(root=tmp_path / "llp") for flag in extra]
    assert main(cli_args(tmp_path, *extra)) == 2
    error = capsys.readouterr().err
    assert error.startswith("avvp evaluate: error: ") and message in error


def test_cli_needs_both_prediction_files(tiny_dataset, capsys):
    tmp_path, _, _ = tiny_dataset
    args = ["evaluate", "--pred-audio", str(tmp_path / "audio.tsv"), "--data", str(tmp_path)]
    assert main(args) == 2
    assert "needs both --pred-audio and --pred-visual" in capsys.readouterr().err


def test_cli_run_mode_hands_over_to_the_training_package(monkeypatch):
    seen = []
    fake = types.ModuleType("avvp.training.evaluate_run")
    fake.evaluate_run_command = lambda args: seen.append(args) or 0
    monkeypatch.setitem(sys.modules, "avvp.training.evaluate_run", fake)
    assert main(["evaluate", "--run", "runs/han", "--split", "val", "--gate", "modality"]) == 0
    (args,) = seen
    assert (str(args.run), args.split, args.gate, args.iou, args.audio_gt) == (
        "runs/han",
        "val",
        "modality",
        None,
        None,
    )


# --- warnings before the numbers ---------------------------------------------------------------


def test_empty_streams_flags_streams_below_the_fraction():
    pred = np.zeros((10, 10, NUM_CLASSES), dtype=bool)
    assert empty_streams(pred, pred) == {"audio": 0.0, "visual": 0.0}
    pred[0, 0, 3] = True  # 1 segment of 100 has an event: exactly 1%, not below it
    pred[0, 0, 4] = True  # a second class in the same segment counts once
    assert predicted_fraction(pred) == 0.01
    assert empty_streams(pred, np.ones_like(pred)) == {}
    assert empty_streams(np.ones_like(pred), pred[:, :, :3]) == {"visual": 0.0}
    assert videos_without_rows(pred) == 9


def test_file_mode_warns_about_videos_without_prediction_rows(tiny_dataset, capsys):
    tmp_path, _, pred = tiny_dataset
    partial = pred["audio"].copy()
    partial[1:] = False  # rows for the first of the four test videos only
    partial[0, 0, 0] = True
    write_predictions(tmp_path / "audio.tsv", TEST_VIDEOS, partial)
    full = np.ones_like(pred["visual"])
    write_predictions(tmp_path / "visual.tsv", TEST_VIDEOS, full)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert main(cli_args(tmp_path, "--data", str(tmp_path / "llp"))) == 0
    assert [str(warning.message) for warning in record] == [
        f"3 of 4 test videos have no prediction row in {tmp_path / 'audio.tsv'}; they count as "
        "predicting nothing"
    ]
    assert record[0].category is EvaluationWarning
    assert "Audio" in capsys.readouterr().out  # the numbers are still printed


def test_file_mode_warns_about_an_empty_prediction(tiny_dataset):
    tmp_path, _, pred = tiny_dataset
    write_predictions(tmp_path / "audio.tsv", TEST_VIDEOS, np.zeros_like(pred["audio"]))
    with pytest.warns(EvaluationWarning) as record:
        assert main(cli_args(tmp_path, "--data", str(tmp_path / "llp"))) == 0
    messages = [str(warning.message) for warning in record]
    assert any(
        message.startswith("the prediction on test is (nearly) empty: an event in 0.0% of audio")
        for message in messages
    ), messages


def test_warnings_reach_the_terminal_as_one_line_each(tiny_dataset):
    tmp_path, _, pred = tiny_dataset
    write_predictions(tmp_path / "audio.tsv", TEST_VIDEOS, np.zeros_like(pred["audio"]))
    write_predictions(tmp_path / "visual.tsv", TEST_VIDEOS, np.ones_like(pred["visual"]))
    src = Path(__file__).resolve().parents[1] / "src"
    done = subprocess.run(
        [sys.executable, "-m", "avvp", *cli_args(tmp_path, "--data", str(tmp_path / "llp"))],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(src)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"avvp evaluate: warning: 4 of 4 test videos have no prediction row in "
        f"{tmp_path / 'audio.tsv'}; they count as predicting nothing",
        "avvp evaluate: warning: the prediction on test is (nearly) empty: an event in 0.0% of "
        "audio segments (warned below 1%), so its numbers score predicting (almost) nothing; "
        "check the run's training and eval.threshold / eval.gate",
    ]


def test_run_mode_warns_about_an_empty_prediction_and_epochs_stay_quiet(seeds_run):
    from avvp.training.data import load_splits
    from avvp.training.evaluate_run import load_run
    from avvp.training.inference import score_split

    run = str(seeds_run / "seed-1")
    # No probability reaches 1.0: the positional override empties the parse.
    with pytest.warns(EvaluationWarning, match=r"prediction on val is \(nearly\) empty"):
        assert main(["evaluate", "--run", run, "eval.threshold=1.0", "--split", "val"]) == 0
    config, model, method = load_run(run, "cpu", ["eval.threshold=1.0"])
    data = load_splits(config, ("val",), progress=False)["val"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = score_split(model, method, data, config, torch.device("cpu"))
    with pytest.warns(EvaluationWarning):
        loud = score_split(model, method, data, config, torch.device("cpu"), warn_empty=True)
    assert quiet == loud


# --- where --json writes -----------------------------------------------------------------------


def test_json_naming_a_folder_or_someone_elses_file_is_an_error_before_scoring(tmp_path, capsys):
    mine = tmp_path / "pred_audio.tsv"
    mine.write_text("filename\tonset\toffset\tevent_labels\n")
    # The prediction files do not exist: the --json check comes first.
    base = cli_args(tmp_path / "missing", "--data", str(tmp_path))
    assert main([*base, "--json", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"avvp evaluate: error: --json {tmp_path} is a folder; give a file, e.g. "
        f"{tmp_path}/out.json\n"
    )
    assert main([*base, "--json", str(mine)]) == 2
    assert "exists and is not a .json file; not overwriting it" in capsys.readouterr().err
    assert mine.read_text() == "filename\tonset\toffset\tevent_labels\n"
    assert main([*base, "--json", str(mine / "metrics.json")]) == 2
    assert f"{mine} is a file, not a folder" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path / "nope"), "--json", str(tmp_path)]) == 2
    assert "is a folder; give a file" in capsys.readouterr().err


def test_training_warns_when_its_test_prediction_is_empty(dataset, tmp_path):
    from conftest import TINY_TRAINING

    run = tmp_path / "empty"
    flags = ["--data", str(dataset), "--out", str(run), *TINY_TRAINING, "eval.threshold=1.0"]
    with pytest.warns(EvaluationWarning, match=r"prediction on test is \(nearly\) empty"):
        assert main(["train", *flags]) == 0
