"""The Python API: load a trained run, parse features, score predictions.

    run = avvp.load_run("runs/han")            # a run folder, RUN/seed-S, or RUN with seed=S
    parse = run.predict({"vggish": a, "res152": v, "r2plus1d_18": s})   # arrays as on disk
    parse.events()                             # [Event("Speech", "audio", 0, 4), ...]
    avvp.evaluate("pred_audio.tsv", "pred_visual.tsv", "LLP", split="test")

``import avvp`` serves these names lazily; this module imports torch only when a run is loaded,
so scoring predictions with :func:`evaluate` does not load it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from avvp.classes import CLASSES

if TYPE_CHECKING:
    import torch
    from torch import nn

    from avvp.config import Config
    from avvp.methods.base import Method

Stream = Literal["audio", "visual", "audio-visual"]


class Event(NamedTuple):
    """One event of a parse: a class over whole seconds [onset, offset) in one stream.

    ``stream`` is "audio" (audible in every segment of the event), "visual" (visible) or
    "audio-visual" (audible and visible), as the evaluation counts events: a segment where a
    class is heard and seen lies in one event of each stream.
    """

    label: str
    stream: Stream
    onset: int
    offset: int


@dataclass(frozen=True)
class FeatureSet:
    """A feature set the run's model reads, as its files store it: (T * frames, dim) a video."""

    name: str
    stream: Literal["audio", "visual"]
    dim: int
    frames: int  # rows per one-second segment (res152: 8)

    def shape(self, segments: int = 10) -> tuple[int, int]:
        """The on-disk shape for a video of ``segments`` seconds, e.g. (80, 2048) for res152."""
        return (segments * self.frames, self.dim)


@dataclass(frozen=True)
class Parse:
    """One video's parse: probabilities and the binary parse, T segments by 25 classes.

    ``pred_audio`` / ``pred_visual`` follow the evaluation rule (:func:`avvp.evaluation.binarize`)
    with ``threshold`` and ``gate``: a segment is positive when its probability reaches the
    threshold and the gating video-level probability reaches 0.5.
    """

    segment_prob_audio: np.ndarray  # (T, 25)
    segment_prob_visual: np.ndarray  # (T, 25)
    video_prob: np.ndarray  # (25,) over both streams
    video_prob_audio: np.ndarray  # (25,)
    video_prob_visual: np.ndarray  # (25,)
    pred_audio: np.ndarray  # (T, 25) bool
    pred_visual: np.ndarray  # (T, 25) bool
    threshold: float
    gate: str

    @property
    def segments(self) -> int:
        return len(self.pred_audio)

    def events(self) -> list[Event]:
        """The parse as events, by onset, then stream, then class order
        (:data:`avvp.classes.CLASSES`), as the evaluation and ``avvp parse`` count them: a
        maximal run of segments where a class is audible is an "audio" event, visible a "visual"
        one, and audible and visible an "audio-visual" one, so a class heard and seen over the
        same seconds gives all three (:func:`avvp.evaluation.metrics.stream_events`).
        """
        from avvp.evaluation.metrics import stream_events

        return [
            Event(CLASSES[c], stream, onset, offset)
            for stream, c, onset, offset in stream_events(self.pred_audio, self.pred_visual)
        ]


class Run:
    """A trained run rebuilt from its ``best.pt``, ready to predict (see :func:`load_run`).

    ``config``, ``model`` (eval mode, on ``device``) and ``method`` (its inference rule) are what
    ``avvp evaluate --run`` uses; ``features`` lists the feature sets the model reads.
    """

    def __init__(
        self, path: Path, config: Config, model: nn.Module, method: Method, device: torch.device
    ):
        self.path = path
        self.config = config
        self.model = model
        self.method = method
        self.device = device
        features = config["features"]
        self.features: dict[str, FeatureSet] = {}
        for stream in ("audio", "visual"):  # a set both streams read is listed once, as audio
            for name in features[stream]:
                frames = features["frames"].get(name, 1)
                self.features.setdefault(
                    name, FeatureSet(name, stream, features["dims"][name], frames)
                )

    def __repr__(self) -> str:
        sets = ", ".join(f"{f.name} {f.shape()}" for f in self.features.values())
        return f"Run({str(self.path)!r}, method={self.config['method']['name']!r}, {sets})"

    def predict(
        self,
        features: Mapping[str, ArrayLike],
        *,
        threshold: float | None = None,
        gate: str | None = None,
    ) -> Parse | list[Parse]:
        """Parse one video, or a batch of videos of one length, from their features.

        ``features``: feature set name -> array shaped as its ``feats/<name>/<id>.npy`` file,
        (T * frames, dim) for one video or (V, T * frames, dim) for a batch (``self.features``
        says frames and dim; LLP: vggish (T, 128), res152 (8 T, 2048), r2plus1d_18 (T, 512)).
        T is any number of one-second segments: the model reads the whole sequence (a model
        trained on 10-s clips attends over all T segments). Extra sets are ignored.
        ``threshold`` / ``gate`` override the run's ``eval.threshold`` / ``eval.gate``.
        Returns a :class:`Parse` for one video, a list of them for a batch.
        """
        from avvp.data.dataset import SplitData
        from avvp.evaluation.metrics import Gate
        from avvp.training.batches import feature_names, segment_features
        from avvp.training.inference import predict_split

        rule = self.config["eval"]
        threshold = rule["threshold"] if threshold is None else threshold
        gate = Gate.parse(rule["gate"] if gate is None else gate).value
        inputs = segment_features(features, self.config)
        videos = len(next(iter(inputs.arrays.values())))
        # The videos as an unlabelled split, predicted as `avvp predict` predicts one.
        split = SplitData(
            split="given",
            filenames=tuple(str(video) for video in range(videos)),
            features=inputs.arrays,
            weak=np.zeros((videos, len(CLASSES)), dtype=np.uint8),
            dense=None,
        )
        names = feature_names(self.config)
        prob = predict_split(self.model, self.method, split, names, self.device)
        pred_audio, pred_visual = prob.binarize({**rule, "threshold": threshold, "gate": gate})
        parses = [
            Parse(
                segment_prob_audio=prob.segment_prob[v, :, 0],
                segment_prob_visual=prob.segment_prob[v, :, 1],
                video_prob=prob.video_prob[v],
                video_prob_audio=prob.video_prob_audio[v],
                video_prob_visual=prob.video_prob_visual[v],
                pred_audio=pred_audio[v],
                pred_visual=pred_visual[v],
                threshold=float(threshold),
                gate=gate,
            )
            for v in range(videos)
        ]
        return parses if inputs.batched else parses[0]


def load_run(
    path: str | Path,
    *,
    seed: int | None = None,
    device: str = "cpu",
    overrides: Sequence[str] = (),
) -> Run:
    """The run in ``path``: a run folder (holding ``best.pt``, e.g. ``RUN/seed-1``), or a folder
    of ``seed-S`` runs with ``seed`` choosing one (alone, the only seed).

    ``device``: cpu, cuda, cuda:N or auto. ``overrides``: config ``key=value`` as on the command
    line, e.g. ``["eval.gate=modality"]``. The data folder the run was trained on is not needed.
    """
    from avvp.training.evaluate_run import load_run as load_checkpoint_run
    from avvp.training.runs import seed_runs
    from avvp.training.trainer import resolve_device

    runs = seed_runs(path)
    if seed is not None:
        chosen = [run for run in runs if run.name == f"seed-{seed}"]
        if not chosen:
            raise FileNotFoundError(
                f"{path} has no seed-{seed}/best.pt; runs there: "
                f"{', '.join(str(run) for run in runs)}"
            )
        runs = chosen
    if len(runs) > 1:
        raise ValueError(
            f"{path} holds one run per seed; pass seed=S or one of them: "
            f"{', '.join(str(run) for run in runs)}"
        )
    config, model, method = load_checkpoint_run(runs[0], device, list(overrides), check_data=False)
    return Run(runs[0], config, model, method, resolve_device(device))


def evaluate(
    pred_audio: str | Path | ArrayLike,
    pred_visual: str | Path | ArrayLike,
    annotations: str | Path,
    split: str = "test",
    *,
    audio_gt: str = "2024",
    iou: str = "inclusive",
) -> dict[str, dict[str, float]]:
    """The ten numbers of the exact evaluation protocol, as ``avvp evaluate`` prints them.

    ``pred_audio`` / ``pred_visual``: a prediction file in the dense evaluation format (what
    ``avvp predict`` writes), or a (V, 10, 25) binary array with the split's videos in the order
    of its CSV. ``annotations``: the folder of the ``AVVP_*.csv`` files. ``audio_gt``: "2024"
    (fixed) or "pre2024" (what published papers used); ``iou``: "inclusive" or "exclusive" (see
    :class:`avvp.evaluation.IoUMode`). Returns ``{"segment": {...}, "event": {...}}`` with keys
    audio, visual, audio_visual, type, event, in percent.
    """
    from avvp.data.annotations import LLPAnnotations
    from avvp.evaluation.io import read_predictions
    from avvp.evaluation.metrics import evaluate as evaluate_parse

    labels = LLPAnnotations(annotations, audio_gt)
    filenames = labels.weak(split).filenames
    truth = labels.dense(split)
    pred = {}
    for stream, value in (("pred_audio", pred_audio), ("pred_visual", pred_visual)):
        if isinstance(value, str | Path):
            pred[stream] = read_predictions(value, filenames)
            continue
        pred[stream] = np.asarray(value)
        if pred[stream].shape[:1] != (len(filenames),):
            raise ValueError(
                f"{stream} has shape {pred[stream].shape}: expected ({len(filenames)}, segments, "
                f"classes), one row per video of the {split} split in the order of its CSV"
            )
    return evaluate_parse(
        pred["pred_audio"], pred["pred_visual"], truth.audio, truth.visual, iou=iou
    )
