"""Parsing videos of any length without labels: the whole sequence at once, or in windows.

HAN attends over all the segments it is given and its MIL pooling softmaxes over time, so it
takes any number of segments T. A model trained on LLP's 10-s clips therefore parses a 25-s
video in one pass by default (``window=None``): every segment attends to the whole video and one
video-level probability gates all of it. With ``window=N`` the video is cut into consecutive,
non-overlapping windows of at most N segments, of near-equal length (25 s with N = 10: 9 + 8 + 8),
each parsed as a clip of its own, as the model saw clips in training; each window's own
video-level probabilities gate its segments, and the video's are the maximum over its windows
(a class is in the video if it is in one window). A video of at most N seconds is one window.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from avvp.classes import CLASSES, NUM_CLASSES
from avvp.data.dataset import SplitData
from avvp.evaluation.metrics import stream_events
from avvp.methods.base import Method
from avvp.training.inference import INFERENCE_BATCH_SIZE, predict_split


@dataclass(frozen=True)
class VideoParse:
    """One video's probabilities and binary parse, (T, ...) over its T one-second segments."""

    filename: str
    segment_prob: np.ndarray  # (T, 2, C): audio, visual
    video_prob: np.ndarray  # (C,)
    video_prob_audio: np.ndarray  # (C,)
    video_prob_visual: np.ndarray  # (C,)
    pred_audio: np.ndarray  # (T, C) bool
    pred_visual: np.ndarray  # (T, C) bool
    windows: tuple[tuple[int, int], ...]  # the segment ranges [start, end) parsed together

    @property
    def segments(self) -> int:
        return len(self.segment_prob)

    def events(self) -> list[dict]:
        """Every event of the parse, by onset, then stream, then class: a maximal run of one
        class's positive segments in one stream (``audio``, ``visual``, or ``audio-visual``
        where both are positive; :func:`avvp.evaluation.metrics.stream_events`).

        ``probability`` is the mean over the event of the stream's segment probability (for an
        audio-visual event, of the smaller of the two); onset and offset are in seconds, the
        offset exclusive, as in the evaluation files.
        """
        audio, visual = self.segment_prob[:, 0], self.segment_prob[:, 1]
        probabilities = {
            "audio": audio,
            "visual": visual,
            "audio-visual": np.minimum(audio, visual),
        }
        return [
            {
                "class": CLASSES[c],
                "stream": stream,
                "onset": start,
                "offset": end,
                "probability": round(float(probabilities[stream][start:end, c].mean()), 4),
            }
            for stream, c, start, end in stream_events(self.pred_audio, self.pred_visual)
        ]


def windows(segments: int, window: int | None) -> list[tuple[int, int]]:
    """Consecutive near-equal ranges of at most ``window`` segments covering ``0..segments``."""
    if window is not None and (isinstance(window, bool) or window < 1):
        raise ValueError(f"window must be a positive number of seconds, got {window!r}")
    if window is None or segments <= window:
        return [(0, segments)]
    count = math.ceil(segments / window)
    sizes = [segments // count + (index < segments % count) for index in range(count)]
    ends = np.cumsum(sizes).tolist()
    return list(zip([0, *ends[:-1]], ends, strict=True))


def parse_videos(
    model: nn.Module,
    method: Method,
    videos: Sequence[Mapping[str, np.ndarray]],
    filenames: Sequence[str],
    names: list[str],
    eval_config: dict,
    device: torch.device,
    window: int | None = None,
) -> list[VideoParse]:
    """Parse ``videos`` (per video, feature set name -> (T, D) segment features) under the
    threshold and gate of ``eval_config``; the whole sequence, or windows (module docstring).

    Pieces of equal length are batched together, so a split of 10-s clips runs in batches of
    :data:`~avvp.training.inference.INFERENCE_BATCH_SIZE` videos, as ``avvp evaluate`` does.
    """
    if len(videos) != len(filenames):
        raise ValueError(f"{len(videos)} videos but {len(filenames)} filenames")
    pieces: list[tuple[int, int, int]] = []  # (video, start, end)
    of_video: list[list[int]] = []  # each video's pieces, in time order
    for video, features in enumerate(videos):
        spans = windows(len(features[names[0]]), window)
        of_video.append(list(range(len(pieces), len(pieces) + len(spans))))
        pieces.extend((video, start, end) for start, end in spans)
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, (_, start, end) in enumerate(pieces):
        by_length[end - start].append(index)
    results: list = [None] * len(pieces)
    # One batch at a time: stacking a whole split at once would copy all its (memory-mapped)
    # features into memory.
    batches = [
        indices[start : start + INFERENCE_BATCH_SIZE]
        for indices in by_length.values()
        for start in range(0, len(indices), INFERENCE_BATCH_SIZE)
    ]
    for indices in batches:
        group = SplitData(
            split="unlabelled",
            filenames=tuple(str(index) for index in indices),
            features={
                name: np.stack(
                    [videos[pieces[i][0]][name][pieces[i][1] : pieces[i][2]] for i in indices]
                )
                for name in names
            },
            weak=np.zeros((len(indices), NUM_CLASSES), dtype=np.uint8),
            dense=None,
        )
        probabilities = predict_split(model, method, group, names, device)
        pred_audio, pred_visual = probabilities.binarize(eval_config)
        for row, index in enumerate(indices):
            results[index] = (
                probabilities.segment_prob[row],
                probabilities.video_prob[row],
                probabilities.video_prob_audio[row],
                probabilities.video_prob_visual[row],
                pred_audio[row],
                pred_visual[row],
            )
    parses = []
    for filename, mine in zip(filenames, of_video, strict=True):
        parts = [results[index] for index in mine]
        parses.append(
            VideoParse(
                filename=filename,
                segment_prob=np.concatenate([part[0] for part in parts]),
                video_prob=np.max([part[1] for part in parts], axis=0),
                video_prob_audio=np.max([part[2] for part in parts], axis=0),
                video_prob_visual=np.max([part[3] for part in parts], axis=0),
                pred_audio=np.concatenate([part[4] for part in parts]),
                pred_visual=np.concatenate([part[5] for part in parts]),
                windows=tuple(pieces[index][1:] for index in mine),
            )
        )
    return parses
