"""Reading and validating the LLP annotation CSVs (SPEC section 2).

Weak-label files (``AVVP_train.csv``, ``AVVP_val_pd.csv``, ``AVVP_test_pd.csv``) have one video a
row; dense files (``AVVP_eval_audio.csv``, ``AVVP_eval_visual.csv``) one event a row. Every file is
tab-separated with a header. Malformed input raises :class:`AnnotationError` naming the file and
row; rows that the reference evaluation silently ignores (orphans, zero-length or reversed
intervals) are kept out of the labels exactly as the reference does, and counted in one short
line on stderr per file and process (``avvp check`` lists them).
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avvp.choices import Choice
from avvp.classes import NUM_CLASSES, NUM_SEGMENTS, UnknownClassError, class_index

SPLITS = ("train", "val", "test")
# The splits with segment-level ground truth, the ones a parse can be scored on.
EVAL_SPLITS = ("val", "test")
SPLIT_FILES = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
VISUAL_GT_FILE = "AVVP_eval_visual.csv"
WEAK_HEADER = ["filename", "event_labels"]
DENSE_HEADER = ["filename", "onset", "offset", "event_labels"]
FILENAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{11}_[0-9.]+_[0-9.]+")
VIDEO_ID_LENGTH = 11


class AudioGroundTruth(Choice, label="audio ground truth"):
    """Which audio ground truth to evaluate against."""

    V2024 = "2024"
    PRE2024 = "pre2024"

    @property
    def filename(self) -> str:
        return (
            "AVVP_eval_audio.csv"
            if self is AudioGroundTruth.V2024
            else ("AVVP_eval_audio_pre2024.csv")
        )


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and row."""


class LeakageError(AnnotationError):
    """The same video in two splits; the message names both files and lines."""


# Annotation files whose ignored rows this process has reported: each is reported once, however
# often it is read (``avvp report`` reads the ground truth once per run).
_reported: set[str] = set()
NO_VIDEO, EMPTY_INTERVAL = "(no such video)", "(empty interval)"


def video_id(filename: str) -> str:
    """The YouTube id keying the feature files: the first 11 characters of the filename."""
    return filename[:VIDEO_ID_LENGTH]


@dataclass(frozen=True)
class WeakLabels:
    """Video-level labels of one split, in file order."""

    path: Path
    filenames: tuple[str, ...]
    labels: np.ndarray  # (V, C) uint8
    lines: tuple[int, ...] = ()  # 1-based line of each video in the file

    @property
    def video_ids(self) -> tuple[str, ...]:
        return tuple(video_id(name) for name in self.filenames)

    def __len__(self) -> int:
        return len(self.filenames)


@dataclass(frozen=True)
class DenseLabels:
    """Segment-level ground truth of one split for both streams, shape (V, T, C), bool."""

    audio: np.ndarray
    visual: np.ndarray
    ignored_rows: tuple[str, ...] = field(default=())

    @property
    def audio_visual(self) -> np.ndarray:
        return self.audio & self.visual

    def subset(self, indices: np.ndarray) -> DenseLabels:
        return DenseLabels(self.audio[indices], self.visual[indices], self.ignored_rows)


def read_text(path: Path) -> str:
    """The text of an annotation file; a byte that is not UTF-8 is an error naming its line.

    A UTF-8 byte order mark (as spreadsheet programs write) is accepted and dropped.
    """
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise AnnotationError(
            f"{path}: line {line}: byte 0x{data[error.start]:02x} is not UTF-8; "
            "save the file as UTF-8"
        ) from None


def _read_rows(path: Path, header: list[str]) -> list[tuple[int, list[str]]]:
    """Rows of a tab-separated file as (line number, fields), header checked."""
    with io.StringIO(read_text(path), newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        try:
            found = next(reader)
        except StopIteration:
            raise AnnotationError(f"{path}: empty file, expected header {header}") from None
        if [column.strip() for column in found] != header:
            raise AnnotationError(f"{path}: line 1: header {found} is not {header} (tab-separated)")
        rows = []
        for row in reader:
            if not row or all(not value.strip() for value in row):
                continue
            if len(row) != len(header):
                raise AnnotationError(
                    f"{path}: line {reader.line_num}: expected {len(header)} tab-separated fields "
                    f"{header}, found {len(row)}: {row}"
                )
            rows.append((reader.line_num, [value.strip() for value in row]))
    return rows


def read_weak_labels(path: str | Path) -> WeakLabels:
    """Read a split file (``filename``, comma-joined ``event_labels``)."""
    path = Path(path)
    filenames: list[str] = []
    labels: list[np.ndarray] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    for line, (filename, events) in _read_rows(path, WEAK_HEADER):
        where = f"{path}: line {line}"
        if not FILENAME_PATTERN.fullmatch(filename):
            raise AnnotationError(
                f"{where}: filename {filename!r} is not '<11-char YouTube id>_<start>_<end>'"
            )
        key = video_id(filename)
        if key in seen:
            raise AnnotationError(f"{where}: video id {key!r} already on line {seen[key]}")
        seen[key] = line
        names = [name.strip() for name in events.split(",") if name.strip()]
        if not names:
            raise AnnotationError(f"{where}: video {filename!r} has no event label")
        row = np.zeros(NUM_CLASSES, dtype=np.uint8)
        try:
            for name in names:
                row[class_index(name, where)] = 1
        except UnknownClassError as error:
            raise AnnotationError(str(error)) from None
        filenames.append(filename)
        labels.append(row)
        lines.append(line)
    if not filenames:
        raise AnnotationError(f"{path}: no videos")
    return WeakLabels(path, tuple(filenames), np.stack(labels), tuple(lines))


def split_leaks(weak: Mapping[str, WeakLabels]) -> list[str]:
    """Every video id found in two of the splits ``weak`` (split name -> labels), one message
    each naming both files and lines: a video in two splits leaks test answers into training."""
    leaks = []
    splits = list(weak.items())
    for i, (first_split, first) in enumerate(splits):
        first_lines = dict(zip(first.video_ids, first.lines, strict=True))
        for second_split, second in splits[i + 1 :]:
            for key, line in zip(second.video_ids, second.lines, strict=True):
                if key in first_lines:
                    leaks.append(
                        f"video id {key!r} is in {first.path} line {first_lines[key]} "
                        f"({first_split}) and in {second.path} line {line} ({second_split})"
                    )
    return leaks


def read_dense_labels(
    path: str | Path,
    filenames: tuple[str, ...] | list[str],
    known_filenames: set[str] | None = None,
    num_segments: int = NUM_SEGMENTS,
    warn: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """Segment labels (V, T, C) for ``filenames`` from a dense file (one event a row).

    A row sets ``labels[video, onset:offset, class]`` for the video whose filename equals the row's
    exactly, with Python slice semantics as in the reference evaluation. Rows that match no video in
    ``known_filenames`` (default: ``filenames``) and rows whose interval covers nothing
    (zero-length, reversed or outside 0..T) are returned and, with ``warn``, counted on stderr
    once per file and process; they change no label, as in the reference. Rows of other known
    videos (val rows when reading test) pass quietly.
    """
    path = Path(path)
    index = {name: i for i, name in enumerate(filenames)}
    known = set(filenames) if known_filenames is None else known_filenames | set(filenames)
    labels = np.zeros((len(filenames), num_segments, NUM_CLASSES), dtype=bool)
    ignored: list[str] = []
    for line, (filename, onset_text, offset_text, event) in _read_rows(path, DENSE_HEADER):
        where = f"{path}: line {line}"
        try:
            onset, offset = int(onset_text), int(offset_text)
        except ValueError:
            raise AnnotationError(
                f"{where}: onset/offset must be integer seconds, "
                f"found {onset_text!r}, {offset_text!r}"
            ) from None
        try:
            klass = class_index(event, where)
        except UnknownClassError as error:
            raise AnnotationError(str(error)) from None
        if filename not in known:
            ignored.append(f"line {line}: {filename} {onset} {offset} {event} {NO_VIDEO}")
            continue
        covered = range(num_segments)[onset:offset]
        if len(covered) == 0:
            ignored.append(f"line {line}: {filename} {onset} {offset} {event} {EMPTY_INTERVAL}")
            continue
        if filename in index:
            labels[index[filename], onset:offset, klass] = True
    if ignored and warn:
        _report_ignored(path, ignored)
    return labels, ignored


def _report_ignored(path: Path, ignored: list[str]) -> None:
    """One line on stderr, once per file and process: how many rows, why, and who lists them."""
    key = str(path.resolve())
    if key in _reported:
        return
    _reported.add(key)
    orphans = sum(row.endswith(NO_VIDEO) for row in ignored)
    reasons = []
    if orphans:
        reasons.append(f"{orphans} {'names' if orphans == 1 else 'name'} no video")
    if len(ignored) > orphans:
        reasons.append(f"{len(ignored) - orphans} zero-length or out of range")
    rows = "1 row" if len(ignored) == 1 else f"{len(ignored)} rows"
    print(
        f"avvp: {path.name}: {rows} ignored by the reference evaluation ({', '.join(reasons)}); "
        f"`avvp check --data {path.parent}` lists them",
        file=sys.stderr,
    )


class LLPAnnotations:
    """The annotation folder of an LLP-layout dataset: split files and dense ground truth.

    The first split asked for also reads every other split file present and raises
    :class:`LeakageError` if a video is in two of them (unless ``allow_leakage``, for tools that
    collect every problem themselves with :func:`split_leaks`).
    """

    def __init__(
        self,
        root: str | Path,
        audio_gt: str | AudioGroundTruth = AudioGroundTruth.V2024,
        *,
        warn: bool = True,
        allow_leakage: bool = False,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"annotation folder not found: {self.root}")
        self.audio_gt = AudioGroundTruth.parse(audio_gt)
        self._weak: dict[str, WeakLabels] = {}
        self._dense: dict[str, DenseLabels] = {}
        self._leakage_checked = allow_leakage
        self._warn = warn

    def present_splits(self) -> tuple[str, ...]:
        """The splits whose file exists in the folder."""
        return tuple(split for split in SPLITS if (self.root / SPLIT_FILES[split]).is_file())

    def weak(self, split: str) -> WeakLabels:
        labels = self._read(split)
        if not self._leakage_checked:
            leaks = split_leaks({name: self._read(name) for name in self.present_splits()})
            if leaks:
                more = (
                    f" ({len(leaks) - 1} more shared; `avvp check --data {self.root}` lists them)"
                    if len(leaks) > 1
                    else ""
                )
                raise LeakageError(
                    f"{leaks[0]}: a video may be in one split only; remove it from one of the "
                    f"files{more}"
                )
            self._leakage_checked = True
        return labels

    def _read(self, split: str) -> WeakLabels:
        _check_split(split)
        if split not in self._weak:
            self._weak[split] = read_weak_labels(self.root / SPLIT_FILES[split])
        return self._weak[split]

    def known_filenames(self) -> set[str]:
        """Filenames of every split present (rows of the dense files matching none are orphans)."""
        names: set[str] = set()
        for split in self.present_splits():
            names.update(self.weak(split).filenames)
        return names

    def dense(self, split: str) -> DenseLabels:
        """Dense audio and visual ground truth of a split (val or test in real LLP)."""
        _check_split(split)
        if split not in self._dense:
            filenames = self.weak(split).filenames
            known = self.known_filenames()
            audio, ignored_audio = read_dense_labels(
                self.root / self.audio_gt.filename, filenames, known, warn=self._warn
            )
            visual, ignored_visual = read_dense_labels(
                self.root / VISUAL_GT_FILE, filenames, known, warn=self._warn
            )
            ignored = tuple(
                [f"{self.audio_gt.filename} {row}" for row in ignored_audio]
                + [f"{VISUAL_GT_FILE} {row}" for row in ignored_visual]
            )
            self._dense[split] = DenseLabels(audio, visual, ignored)
        return self._dense[split]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
