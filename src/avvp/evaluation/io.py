"""Prediction files in the dense evaluation format, so any tool's parse can be scored.

The format is that of ``AVVP_eval_audio.csv`` / ``AVVP_eval_visual.csv``: tab-separated, header
``filename onset offset event_labels``, one event a row (a maximal run of positive segments of one
class), integer seconds with an exclusive offset. Reading is strict where the ground-truth reader
is lenient: a prediction file is ours or a user's, not a dataset with known faults, so a row for a
video outside the split (the usual sign of mixed-up splits) or an interval outside 0..T is an
error naming the file and line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avvp.classes import CLASSES, NUM_CLASSES, NUM_SEGMENTS, UnknownClassError, class_index
from avvp.data.annotations import DENSE_HEADER, AnnotationError, _read_rows
from avvp.evaluation.metrics import as_binary, runs


def write_predictions(path: str | Path, filenames: Sequence[str], pred: np.ndarray) -> Path:
    """Write a (V, T, C) binary parse of the videos ``filenames`` (in that order) to ``path``.

    Rows go video by video, classes in LLP order, events by onset; a video with no positive
    segment has no row. The file appears atomically: a crash leaves the old file or the new one.
    """
    pred = as_binary("pred", pred)
    if pred.shape[0] != len(filenames) or pred.shape[2] != NUM_CLASSES:
        raise ValueError(
            f"pred has shape {pred.shape}, expected ({len(filenames)} videos, segments, "
            f"{NUM_CLASSES} classes) for {path}"
        )
    if len(set(filenames)) != len(filenames):
        raise ValueError(f"duplicate filenames; each video must appear once in {path}")
    video, klass, onset, offset = runs(pred)
    lines = ["\t".join(DENSE_HEADER)] + [
        f"{filenames[v]}\t{s}\t{e}\t{CLASSES[c]}"
        for v, c, s, e in zip(
            video.tolist(), klass.tolist(), onset.tolist(), offset.tolist(), strict=True
        )
    ]
    # io_utils imports torch; importing it here keeps `avvp --help` and numpy-only users light.
    from avvp.io_utils import atomic_write_text

    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_predictions(
    path: str | Path, filenames: Sequence[str], num_segments: int = NUM_SEGMENTS
) -> np.ndarray:
    """(V, T, C) bool parse of the videos ``filenames`` from a prediction file.

    Videos without rows are predicted empty. Overlapping or repeated rows are allowed (their union
    counts), as in the ground-truth files.
    """
    path = Path(path)
    index = {name: i for i, name in enumerate(filenames)}
    pred = np.zeros((len(filenames), num_segments, NUM_CLASSES), dtype=bool)
    for line, (filename, onset_text, offset_text, event) in _read_rows(path, DENSE_HEADER):
        where = f"{path}: line {line}"
        if filename not in index:
            raise AnnotationError(
                f"{where}: video {filename!r} is not one of the {len(filenames)} videos being "
                "evaluated; is this file a prediction for another split?"
            )
        try:
            onset, offset = int(onset_text), int(offset_text)
        except ValueError:
            raise AnnotationError(
                f"{where}: onset/offset must be integer seconds, "
                f"found {onset_text!r}, {offset_text!r}"
            ) from None
        if not 0 <= onset < offset <= num_segments:
            raise AnnotationError(
                f"{where}: interval {onset}..{offset} of {filename!r} is not a non-empty part of "
                f"0..{num_segments} (onset inclusive, offset exclusive)"
            )
        try:
            klass = class_index(event, where)
        except UnknownClassError as error:
            raise AnnotationError(str(error)) from None
        pred[index[filename], onset:offset, klass] = True
    return pred
