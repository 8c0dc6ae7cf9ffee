"""The LLP annotation reader on small hand-written files and on the real annotation files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avvp.classes import CLASSES, NUM_CLASSES
from avvp.data import annotations as annotations_module
from avvp.data.annotations import (
    AnnotationError,
    AudioGroundTruth,
    LeakageError,
    LLPAnnotations,
    read_dense_labels,
    read_weak_labels,
    split_leaks,
    video_id,
)

LLP = Path(__file__).resolve().parents[1].parent / "shared" / "llp"
WEAK_HEADER = "filename\tevent_labels"
DENSE_HEADER = "filename\tonset\toffset\tevent_labels"


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def naive_dense(rows: list[tuple[str, int, int, str]], filenames: list[str], segments: int = 10):
    """The reference evaluation's ground truth: per video a (C, T) zero array, and every row whose
    filename equals the video's sets ``gt[class, onset:offset] = 1`` (numpy slicing)."""
    labels = np.zeros((len(filenames), segments, NUM_CLASSES), dtype=bool)
    for v, name in enumerate(filenames):
        gt = np.zeros((NUM_CLASSES, segments))
        for filename, onset, offset, event in rows:
            if filename == name:
                gt[CLASSES.index(event), onset:offset] = 1
        labels[v] = gt.T.astype(bool)
    return labels


@pytest.fixture
def fresh_process(monkeypatch):
    """Forget which files this process has reported ignored rows for, as in a new process."""
    monkeypatch.setattr(annotations_module, "_reported", set())


def reported(capsys) -> list[str]:
    """The lines written to stderr since the last call."""
    return capsys.readouterr().err.splitlines()


# --- weak labels --------------------------------------------------------------------------------


def test_weak_labels_in_file_order(tmp_path):
    path = write(
        tmp_path / "weak.csv",
        WEAK_HEADER,
        "a-b_cdefghi_0_10\tSpeech,Dog",
        "",
        "-_-_-_-_-_-_30_40\t Clapping ",
    )
    weak = read_weak_labels(path)
    assert weak.filenames == ("a-b_cdefghi_0_10", "-_-_-_-_-_-_30_40")
    assert weak.video_ids == ("a-b_cdefghi", "-_-_-_-_-_-")
    assert video_id("1-VMTJRpjbE_150_160") == "1-VMTJRpjbE"
    expected = np.zeros((2, NUM_CLASSES), dtype=np.uint8)
    expected[0, [CLASSES.index("Speech"), CLASSES.index("Dog")]] = 1
    expected[1, CLASSES.index("Clapping")] = 1
    np.testing.assert_array_equal(weak.labels, expected)


@pytest.mark.parametrize(
    ("lines", "pattern"),
    [
        (["filename,event_labels"], r"line 1: header"),
        (
            [WEAK_HEADER, "abcdefghijk_0_10\tSpeech\tDog"],
            r"line 2: expected 2 tab-separated fields",
        ),
        ([WEAK_HEADER, "abcdefghijk_0_10\tSpeech,Dogs"], r"line 2: unknown class name 'Dogs'"),
        (
            [WEAK_HEADER, "abcdefghijk_0_10\tSpeech", "abcdefghijk_20_30\tDog"],
            r"line 3: video id 'abcdefghijk' already on line 2",
        ),
        ([WEAK_HEADER, "abcdefghij_0_10\tSpeech"], r"line 2: filename 'abcdefghij_0_10' is not"),
        ([WEAK_HEADER, "abcdefghijk_0_10\t , "], r"line 2: video 'abcdefghijk_0_10' has no event"),
        ([WEAK_HEADER], r"no videos"),
    ],
)
def test_weak_label_errors_name_file_and_line(tmp_path, lines, pattern):
    path = write(tmp_path / "weak.csv", *lines)
    with pytest.raises(AnnotationError, match=f"{path}: {pattern}"):
        read_weak_labels(path)


def test_empty_and_missing_weak_files(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(AnnotationError, match=f"{path}: empty file"):
        read_weak_labels(path)
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        read_weak_labels(tmp_path / "absent.csv")


@pytest.mark.parametrize("header", [WEAK_HEADER, DENSE_HEADER])
def test_a_byte_that_is_not_utf8_names_file_and_line(tmp_path, header):
    row = "abcdefghijk_0_10\tSpeech" if header == WEAK_HEADER else "abcdefghijk_0_10\t0\t4\tSpeech"
    path = tmp_path / "AVVP_x.csv"
    path.write_bytes(f"{header}\n{row}\n".encode() + b"caf\xe9ab_xxxx_0_10\t" + b"Dog\n")
    read = read_weak_labels if header == WEAK_HEADER else lambda p: read_dense_labels(p, VIDEOS)
    with pytest.raises(AnnotationError, match=rf"{path}: line 3: byte 0xe9 .*not UTF-8"):
        read(path)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "weak.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"{WEAK_HEADER}\nabcdefghijk_0_10\tSpeech\n".encode())
    assert read_weak_labels(path).filenames == ("abcdefghijk_0_10",)


# --- dense labels -------------------------------------------------------------------------------

VIDEOS = ["aaaaaaaaaaa_0_10", "bbbbbbbbbbb_10_20", "1-ccccccccc_5_15"]


def test_faulty_rows_are_one_short_line_per_file_and_change_nothing(
    tmp_path, capsys, fresh_process
):
    rows = [
        ("aaaaaaaaaaa_0_10", 0, 4, "Speech"),
        ("ccccccccc_5_15", 3, 10, "Dog"),  # orphan: the real video is 1-ccccccccc_5_15
        ("bbbbbbbbbbb_10_20", 9, 0, "Cat"),  # reversed
        ("bbbbbbbbbbb_10_20", 10, 10, "Cat"),  # zero-length at the end
        ("bbbbbbbbbbb_10_20", 2, 10, "Car"),
        ("1-ccccccccc_5_15", 0, 10, "Banjo"),
    ]
    lines = [DENSE_HEADER, *("\t".join(map(str, row)) for row in rows[:3]), "", "\t\t\t"]
    lines += ["\t".join(map(str, row)) for row in rows[3:]]
    path = write(tmp_path / "dense.csv", *lines)
    labels, ignored = read_dense_labels(path, VIDEOS)
    assert ignored == [
        "line 3: ccccccccc_5_15 3 10 Dog (no such video)",
        "line 4: bbbbbbbbbbb_10_20 9 0 Cat (empty interval)",
        "line 7: bbbbbbbbbbb_10_20 10 10 Cat (empty interval)",
    ]
    assert reported(capsys) == [
        "avvp: dense.csv: 3 rows ignored by the reference evaluation (1 names no video, "
        f"2 zero-length or out of range); `avvp check --data {tmp_path}` lists them"
    ]
    np.testing.assert_array_equal(labels, naive_dense(rows, VIDEOS))
    # Once per file and process, however often it is read; never with warn=False.
    assert read_dense_labels(path, VIDEOS)[1] == ignored and reported(capsys) == []
    other = write(tmp_path / "other.csv", *lines)
    assert read_dense_labels(other, VIDEOS, warn=False)[1] == ignored
    assert reported(capsys) == []


def test_dense_labels_equal_the_reference_on_random_rows(tmp_path):
    # Intervals anywhere in -3..13, reversed or empty included: the reader must give exactly what
    # the reference's numpy slicing gives, and list exactly the rows that change nothing.
    rng = np.random.default_rng(0)
    names = [*VIDEOS, "orphan00000_0_10"]
    rows = [
        (
            names[rng.integers(len(names))],
            int(rng.integers(-3, 14)),
            int(rng.integers(-3, 14)),
            CLASSES[rng.integers(NUM_CLASSES)],
        )
        for _ in range(400)
    ]
    path = write(tmp_path / "dense.csv", DENSE_HEADER, *("\t".join(map(str, r)) for r in rows))
    labels, ignored = read_dense_labels(path, VIDEOS, warn=False)
    np.testing.assert_array_equal(labels, naive_dense(rows, VIDEOS))
    expected_ignored = [
        line
        for line, (name, onset, offset, _) in enumerate(rows, start=2)
        if name not in VIDEOS or not np.ones(10)[onset:offset].size
    ]
    assert [int(row.split(":")[0].removeprefix("line ")) for row in ignored] == expected_ignored


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        ("aaaaaaaaaaa_0_10\t0\t4.5\tSpeech", r"line 2: onset/offset must be integer seconds"),
        ("aaaaaaaaaaa_0_10\t0\t4\tspeech", r"line 2: unknown class name 'speech'"),
        ("aaaaaaaaaaa_0_10\t0\t4", r"line 2: expected 4 tab-separated fields"),
        ("aaaaaaaaaaa_0_10\t0\t4\tSpeech,Dog", r"line 2: unknown class name 'Speech,Dog'"),
    ],
)
def test_malformed_dense_rows_are_errors(tmp_path, row, pattern):
    path = write(tmp_path / "dense.csv", DENSE_HEADER, row)
    with pytest.raises(AnnotationError, match=f"{path}: {pattern}"):
        read_dense_labels(path, VIDEOS)


def test_bad_dense_header_is_an_error(tmp_path):
    path = write(tmp_path / "dense.csv", "filename\tstart\tend\tevent_labels")
    with pytest.raises(AnnotationError, match=f"{path}: line 1: header"):
        read_dense_labels(path, VIDEOS)


# --- the annotation folder ------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
    write(tmp_path / "AVVP_test_pd.csv", WEAK_HEADER, *(f"{name}\tSpeech" for name in VIDEOS))
    write(tmp_path / "AVVP_val_pd.csv", WEAK_HEADER, "vvvvvvvvvvv_0_10\tDog")
    audio = [f"{VIDEOS[0]}\t0\t5\tSpeech", "vvvvvvvvvvv_0_10\t0\t3\tDog"]
    write(tmp_path / "AVVP_eval_audio.csv", DENSE_HEADER, *audio)
    write(tmp_path / "AVVP_eval_audio_pre2024.csv", DENSE_HEADER, *audio, f"{VIDEOS[1]}\t1\t2\tCat")
    write(tmp_path / "AVVP_eval_visual.csv", DENSE_HEADER, "nosuchvideo_0_10\t0\t10\tCar")
    return tmp_path


def test_rows_of_another_split_pass_quietly_orphans_do_not(folder, capsys, fresh_process):
    dense = LLPAnnotations(folder).dense("test")
    assert LLPAnnotations(folder).dense("val").ignored_rows == dense.ignored_rows
    assert reported(capsys) == [
        "avvp: AVVP_eval_visual.csv: 1 row ignored by the reference evaluation (1 names no "
        f"video); `avvp check --data {folder}` lists them"
    ]
    assert dense.ignored_rows == (
        "AVVP_eval_visual.csv line 2: nosuchvideo_0_10 0 10 Car (no such video)",
    )
    assert dense.audio.sum() == 5 and dense.audio[0, :5, CLASSES.index("Speech")].all()
    assert not dense.visual.any() and not dense.audio_visual.any()


def test_audio_ground_truth_selects_the_file(folder, capsys):
    dense = LLPAnnotations(folder, "pre2024", warn=False).dense("test")
    assert reported(capsys) == []
    assert dense.audio[1, 1, CLASSES.index("Cat")] and dense.audio.sum() == 6
    with pytest.raises(ValueError, match="unknown audio ground truth '2023'; expected one of 2024"):
        AudioGroundTruth.parse("2023")
    with pytest.raises(ValueError, match="unknown split 'dev'; expected one of train, val, test"):
        LLPAnnotations(folder).weak("dev")
    with pytest.raises(FileNotFoundError, match="annotation folder not found"):
        LLPAnnotations(folder / "absent")


def test_a_video_in_two_splits_is_an_error_naming_both_files_and_lines(folder):
    val = folder / "AVVP_val_pd.csv"
    write(val, WEAK_HEADER, "vvvvvvvvvvv_0_10\tDog", f"{VIDEOS[1][:11]}_40_50\tCat")
    test = folder / "AVVP_test_pd.csv"
    message = rf"video id 'bbbbbbbbbbb' is in {val} line 3 \(val\) and in {test} line 3 \(test\)"
    for split in ("test", "val"):  # whichever split is asked for
        with pytest.raises(LeakageError, match=message):
            LLPAnnotations(folder).weak(split)
    with pytest.raises(LeakageError, match=message):
        LLPAnnotations(folder).dense("test")
    write(folder / "AVVP_train.csv", WEAK_HEADER, *(f"{name}\tSpeech" for name in VIDEOS))
    first = r"in .*AVVP_train\.csv line 3 \(train\) and in .*AVVP_val_pd\.csv line 3 \(val\)"
    with pytest.raises(LeakageError, match=rf"{first}.*\(4 more shared; `avvp check --data"):
        LLPAnnotations(folder).weak("val")
    annotations = LLPAnnotations(folder, allow_leakage=True)
    weak = {split: annotations.weak(split) for split in ("train", "val", "test")}
    assert len(split_leaks(weak)) == 5 and weak["test"].lines == (2, 3, 4)


# --- the real annotation files --------------------------------------------------------------------

ORPHANS_AUDIO = [
    "line 19: AkAfFL5Q4QA_30_40 0 10 Acoustic_guitar (no such video)",
    "line 20: AkAfFL5Q4QA_30_40 0 3 Speech (no such video)",
    "line 48: CaC2xvdLC34_250_260 9 9 Speech (empty interval)",
    "line 53: P7x4FV4lg_570_580 0 10 Frying_(food) (no such video)",
    "line 54: P7x4FV4lg_570_580 0 6 Speech (no such video)",
    "line 60: 17iGUal2M_10_20 0 10 Singing (no such video)",
    "line 64: CSWQ_HzQ_10_20 0 9 Speech (no such video)",
    "line 65: CSWQ_HzQ_10_20 4 8 Singing (no such video)",
    "line 66: CSWQ_HzQ_10_20 9 9 Basketball_bounce (no such video)",
    "line 91: 7X3oSVoA_90_100 0 9 Vacuum_cleaner (no such video)",
    "line 92: 7X3oSVoA_90_100 5 10 Speech (no such video)",
    "line 100: Gg3pK71kApY_30_40 10 10 Speech (empty interval)",
    "line 129: H5WcJwyjxIg_2_12 0 0 Baby_cry_infant_cry (empty interval)",
    "line 137: Baue01N86wE_10_20 1 1 Dog (empty interval)",
    "line 1007: VMTJRpjbE_150_160 3 10 Basketball_bounce (no such video)",
    "line 1008: VMTJRpjbE_150_160 5 10 Clapping (no such video)",
    "line 3046: 12eWNawPekw_30_40 0 10 Helicopter (no such video)",
    "line 3770: 8DF2PxdT5tE_390_400 9 0 Cheering (empty interval)",
    "line 3790: 19jWnmYnlD8_30_400 0 10 Clapping (no such video)",
]
# The three rows the 2024 fix corrected: two lost their filename, one has a stray backquote.
PRE2024_ONLY = [
    "line 930: Baby_cry_infant_cry 0 4 Speech (no such video)",
    "line 931: Baby_cry_infant_cry 7 10 Speech (no such video)",
    "line 2449: KvIjsmANkxI_10_20` 0 1 Cat (no such video)",
]
ORPHANS_VISUAL = [
    "line 11: AkAfFL5Q4QA_30_40 0 10 Acoustic_guitar (no such video)",
    "line 31: P7x4FV4lg_570_580 0 10 Frying_(food) (no such video)",
    "line 32: P7x4FV4lg_570_580 3 6 Speech (no such video)",
    "line 39: CSWQ_HzQ_10_20 0 4 Speech (no such video)",
    "line 55: 7X3oSVoA_90_100 0 10 Vacuum_cleaner (no such video)",
    "line 56: 7X3oSVoA_90_100 7 10 Speech (no such video)",
    "line 620: VMTJRpjbE_150_160 1 3 Speech (no such video)",
    "line 621: VMTJRpjbE_150_160 3 10 Basketball_bounce (no such video)",
    "line 1879: 12eWNawPekw_30_40 0 10 Helicopter (no such video)",
    "line 1880: 12eWNawPekw_30_40 0 10 Car (no such video)",
    "line 2302: 19jWnmYnlD8_30_400 0 10 Clapping (no such video)",
]


def real(audio_gt: str = "2024") -> LLPAnnotations:
    if not (LLP / "annotations").is_dir():
        pytest.skip(f"real LLP annotations not found at {LLP / 'annotations'}")
    return LLPAnnotations(LLP / "annotations", audio_gt, warn=False)


@pytest.mark.real_data
@pytest.mark.parametrize("audio_gt", ["2024", "pre2024"])
def test_real_test_split_ignores_exactly_the_known_faults(audio_gt, capsys, fresh_process):
    annotations = LLPAnnotations(real().root, audio_gt)
    dense = annotations.dense("test")
    audio_file = AudioGroundTruth(audio_gt).filename
    audio_rows = sorted(
        ORPHANS_AUDIO + (PRE2024_ONLY if audio_gt == "pre2024" else []),
        key=lambda row: int(row.split(":")[0].removeprefix("line ")),
    )
    assert dense.ignored_rows == tuple(
        [f"{audio_file} {row}" for row in audio_rows]
        + [f"AVVP_eval_visual.csv {row}" for row in ORPHANS_VISUAL]
    )
    assert [line.split(":")[1] for line in reported(capsys)] == [
        f" {audio_file}",
        " AVVP_eval_visual.csv",
    ]
    # SPEC section 2: six zero-length or reversed audio rows (one of them also an orphan).
    zero_length = [row for row in audio_rows if int(row.split()[4]) <= int(row.split()[3])]
    assert len(zero_length) == 6
    # The orphan VMTJRpjbE_150_160 is test video 1-VMTJRpjbE_150_160 with its first
    # characters lost; the reference evaluation never scores its rows.
    assert "1-VMTJRpjbE_150_160" in annotations.weak("test").filenames


@pytest.mark.real_data
def test_real_split_sizes_and_label_statistics():
    annotations = real()
    train = annotations.weak("train")
    assert (len(train), len(annotations.weak("val")), len(annotations.weak("test"))) == (
        10_000,
        649,
        1_200,
    )
    cardinality = train.labels.sum(axis=1)
    assert [round(100 * float(np.mean(cardinality == k)), 1) for k in (1, 2, 3)] == [
        40.3,
        58.8,
        0.9,
    ]
    assert train.labels[:, CLASSES.index("Speech")].sum() == 4_988
    assert train.labels[:, CLASSES.index("Telephone_bell_ringing")].sum() == 99
    dense = [annotations.dense(split) for split in ("val", "test")]
    audio = np.concatenate([d.audio for d in dense])
    visual = np.concatenate([d.visual for d in dense])
    # SPEC section 2: an audible class covers 7.0 segments of its video, a visible one 8.1.
    assert round(float(audio.sum(axis=1)[audio.any(axis=1)].mean()), 1) == 7.0
    assert round(float(visual.sum(axis=1)[visual.any(axis=1)].mean()), 1) == 8.1
