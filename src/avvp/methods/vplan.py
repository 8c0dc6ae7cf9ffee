"""VPLAN: training on segment-level visual pseudo labels, and denoising them (SPEC section 7).

Paper 003 labels each visual segment with CLIP (PLG, written to a label file by ``avvp
pseudo-labels``) and trains HAN on those labels instead of the weak ones:

* basic loss (Eq. 5): ``BCE(P, w) + BCE(P_a, w) + BCE(P_v, y_v)``, HAN's attentive MIL loss with
  the visual video-level target ``y_v`` = the visual pseudo video label, the OR (max) over the
  segments of the label file, in place of the smoothed weak label;
* richness-aware loss (Eqs. 6-8, ``avvp.losses.richness_aware_loss``): category richness of
  segment t = classes in segment t / classes in the video, segment richness of class c =
  segments holding c / T, from the pseudo labels and, with sums of probabilities in place of
  counts, from the visual segment probabilities; ``L_RL = BCE(category) + BCE(segment)``;
* total (Eq. 9): ``L_basic + lambda L_RL``, lambda = ``rl_weight`` = 0.5.

Pseudo-label denoising (PLD, Eqs. 10-11, :func:`denoise_labels`, :func:`denoise_run`): with the
trained model, the element-wise BCE ``L[t, c]`` between the visual segment probabilities and the
pseudo labels is masked by the video-level pseudo label (classes absent from it get 0 and are
never flipped); per video and class, the threshold is ``alpha`` times the mean of the K smallest
losses over the T segments, and the labels of segments whose loss exceeds it are flipped. The
model is then retrained on the refined file: ``avvp train --method vplan
method.visual_labels=REFINED.npz``. Paper Table III rows are option settings: PLG only
``rl_weight=0``; PLG + L_BCE ``rl_weight=0 segment_bce_weight=0.5``; PLG + RL the preset; PLG +
RL + PLD the preset on the denoised file.

Label files are an input any method can train on: :func:`label_inputs` loads the files named by
the options ``audio_labels`` / ``visual_labels`` once, aligned to the train split's video ids,
and :meth:`StreamLabels.gather` takes a batch's rows by ``batch.index``.

Decisions where SPEC and the paper are silent (the option, where there is one, in brackets):

* Label smoothing. Eq. 5 replaces HAN's smoothed visual label by the pseudo label itself, so the
  preset smooths nothing; any value smooths the visual target as HAN does
  [``visual_label_smoothing``].
* The predictions' "classes in the video" of Eq. 6 are the max over segments of the visual
  probabilities (the same OR that turns pseudo labels into video labels), so a ratio never
  exceeds 1; ``attentive`` uses the attentive visual video probability instead
  [``richness_video``].
* A video whose pseudo labels hold no class has no category richness (0 / 0) and is left out of
  that term; its segment richness (0 for every class) counts. Means run over (video, segment) and
  (video, class).
* Audio label files, when given [``audio_labels``], get the same treatment on the audio stream
  (video target and richness loss); the paper has visual labels only.
* PLD's threshold is per (video, class) over the T segments ("the top-K smallest forward loss
  along the temporal dimension"), the comparison strict; a flip turns y into 1 - y. The refined
  file keeps every video of the original (those outside the run's train split unchanged) and
  its audio labels.
* PLD as written flips a label the model agrees with when every loss of the class is tiny (a
  segment labelled 1 and predicted 0.998 has loss 0.002 > 10 x 1e-5). The paper's reason for a
  flip is a "false pseudo label" that the model contradicts; the guard keeps Eq. 11's flips only
  where the model contradicts the label: p < 0.5 on a 1, p >= 0.5 on a 0, i.e. a loss above
  ln 2 [``pld_guard``, off by default: the paper's rule].
* The learning rate and schedule are HAN's (the paper's value did not survive in our copy).

The checkpoint holds a fingerprint of the label files, so resuming a killed run on a file that
changed meanwhile is an error rather than a silent mix. :func:`denoising_statistics` reports the
flips per class and, on synthetic data, the visual F-scores of the labels before and after
denoising against the hidden train labels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avvp.choices import Choice
from avvp.classes import CLASSES
from avvp.config import Config, Rule, boolean, number, one_of, path_string
from avvp.evaluation.metrics import evaluate
from avvp.losses import (
    PROBABILITY_EPSILON,
    attentive_mil_loss,
    clamped_bce,
    richness_aware_loss,
)
from avvp.methods.base import Batch, Method
from avvp.models.base import AUDIO, VISUAL
from avvp.pseudo_labels import (
    SOFT_LABEL_THRESHOLD,
    load_pseudo_labels,
    save_pseudo_labels,
    video_level,
)
from avvp.registry import register
from avvp.training.batches import feature_names
from avvp.training.data import interactive, load_hidden_train_labels, load_splits
from avvp.training.evaluate_run import load_run
from avvp.training.inference import predict_split

if TYPE_CHECKING:
    from avvp.data.dataset import SplitData

# Option naming each stream's label file; the stream's index in ParseOutput.segment_prob.
LABEL_OPTIONS = {"audio": "audio_labels", "visual": "visual_labels"}
STREAM_INDEX = {"audio": AUDIO, "visual": VISUAL}
# PLD defaults (SPEC section 7, paper Table II).
PLD_K = 5
PLD_ALPHA = 10.0


class RichnessVideo(Choice, label="method.richness_video"):
    MAX = "max"
    ATTENTIVE = "attentive"


@dataclass(frozen=True)
class StreamLabels:
    """One stream's segment-level labels aligned to the train split, on the CPU."""

    source: Path
    segment: Tensor  # (V, T, C) float32
    video: Tensor  # (V, C): OR over segments, the video-level pseudo label
    digest: str  # a fingerprint, so a resumed run can tell that its file changed

    @classmethod
    def from_array(cls, source: Path, segment: np.ndarray) -> StreamLabels:
        segment = np.ascontiguousarray(segment, dtype=np.float32)
        return cls(
            source,
            torch.from_numpy(segment),
            torch.from_numpy(np.ascontiguousarray(video_level(segment), dtype=np.float32)),
            hashlib.sha256(segment.tobytes()).hexdigest(),
        )

    def gather(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """(segment, video) labels of the videos at split positions ``index``, on its device."""
        rows = index.cpu()
        return self.segment[rows].to(index.device), self.video[rows].to(index.device)


def aligned_stream_labels(
    path: Path, stream: str, video_ids: tuple[str, ...], role: str
) -> np.ndarray:
    """The ``stream`` labels (V, T, C) of the file at ``path`` in the order of ``video_ids``.

    Errors name the file and its ``role`` (e.g. ``method.visual_labels``): a missing or invalid
    file, a file without this stream, or one whose videos do not cover ``video_ids``.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{role}: label file not found: {path}")
    try:
        labels = load_pseudo_labels(path, video_ids)
    except (KeyError, ValueError) as error:
        raise ValueError(f"{role}: {error}") from error
    values = getattr(labels, stream)
    if values is None:
        raise ValueError(f"{role} {path} holds no {stream} labels")
    return values


def label_inputs(options: dict[str, Any], train_data: SplitData | None) -> dict[str, StreamLabels]:
    """The label files a method's options name (``audio_labels``, ``visual_labels``), by stream.

    Any method can train on label files this way: add the two options (null or a path) to its
    preset, call this in ``__init__`` and gather a batch's rows with ``StreamLabels.gather(
    batch.index)``. Nothing is read without training data (a run that is only evaluated).
    """
    if train_data is None:
        return {}
    loaded = {}
    for stream, option in LABEL_OPTIONS.items():
        if options.get(option) is None:
            continue
        path = Path(options[option])
        segment = aligned_stream_labels(path, stream, train_data.video_ids, f"method.{option}")
        loaded[stream] = StreamLabels.from_array(path, segment)
    return loaded


@register("method", "vplan")
class VPLAN(Method):
    # data.video_labels (e.g. MA's) serves a stream that no segment-level file covers: VPLAN's
    # visual labels beside MA's audio labels (issue 15's composition).
    TRAINS_ON_VIDEO_LABELS = True
    OPTIONS: ClassVar[Mapping[str, Rule]] = {
        **Method.OPTIONS,
        "visual_labels": path_string(nullable=True),
        "audio_labels": path_string(nullable=True),
        "rl_weight": number(0),
        "segment_bce_weight": number(0),
        "richness_video": one_of(RichnessVideo),
        "pld_guard": boolean(),
    }

    @classmethod
    def config_problems(cls, config: Config, training: bool) -> list[str]:
        if not training:  # evaluation reads no label file
            return []
        options = config["method"]
        given = {option: options.get(option) for option in LABEL_OPTIONS.values()}
        if all(value is None for value in given.values()):
            return [
                "method vplan trains on segment-level pseudo labels: set "
                "method.visual_labels=FILE (a label file of `avvp pseudo-labels`)"
            ]
        return [
            f"method.{option}: label file not found: {value}"
            for option, value in given.items()
            if isinstance(value, str) and value and not Path(value).is_file()
        ]

    def __init__(self, config: Config, train_data: SplitData | None):
        super().__init__(config, train_data)
        self.richness_video = RichnessVideo.parse(self.options["richness_video"])
        self.labels = label_inputs(self.options, train_data)

    def training_forward(
        self, model: nn.Module, batch: Batch
    ) -> tuple[dict[str, Tensor], dict[str, float]]:
        options = self.options
        output = model(batch.features)
        gathered = {stream: labels.gather(batch.index) for stream, labels in self.labels.items()}
        target, video_audio, video_visual = self.mil_targets(batch)
        losses = {
            "mil": attentive_mil_loss(
                output,
                target,
                options["visual_label_smoothing"],
                audio_target=gathered["audio"][1] if "audio" in gathered else video_audio,
                visual_target=gathered["visual"][1] if "visual" in gathered else video_visual,
            )
        }
        pooled = {"audio": output.video_prob_audio, "visual": output.video_prob_visual}
        for stream, (segment_labels, _) in gathered.items():
            segment_prob = output.segment_prob[:, :, STREAM_INDEX[stream]]
            if options["rl_weight"] > 0:
                video_prob = (
                    pooled[stream] if self.richness_video is RichnessVideo.ATTENTIVE else None
                )
                losses[f"richness_{stream}"] = options["rl_weight"] * richness_aware_loss(
                    segment_prob, segment_labels, video_prob
                )
            if options["segment_bce_weight"] > 0:
                losses[f"segment_{stream}"] = options["segment_bce_weight"] * clamped_bce(
                    segment_prob, segment_labels
                )
        return losses, {}

    def state_dict(self) -> dict[str, Any]:
        return {"label_digests": {stream: labels.digest for stream, labels in self.labels.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Only a training run has labels to compare; evaluation reads no label file.
        for stream, labels in self.labels.items():
            if state["label_digests"].get(stream) != labels.digest:
                raise ValueError(
                    f"{labels.source} ({LABEL_OPTIONS[stream]}) changed since this run started; "
                    "resume with the file it started with, or train into a new --out"
                )


def denoising_losses(segment_prob: Tensor, labels: Tensor) -> Tensor:
    """Paper 003, Eq. 10: element-wise BCE (V, T, C), zero where the video label lacks the class."""
    loss = F.binary_cross_entropy(
        segment_prob.clamp(PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON), labels, reduction="none"
    )
    return loss * labels.amax(dim=1, keepdim=True)


def denoise_flips(
    segment_prob: Tensor,
    labels: Tensor,
    k: int = PLD_K,
    alpha: float = PLD_ALPHA,
    guard: bool = False,
) -> Tensor:
    """Paper 003, Eq. 11: which pseudo labels to flip, (V, T, C) bool.

    Per video and class, the segments whose masked loss (Eq. 10) exceeds ``alpha`` times the mean
    of the ``k`` smallest losses over the T segments. ``guard`` (ours) keeps only the flips of
    labels the model contradicts (p < 0.5 on a label >= 0.5, p >= 0.5 on a label < 0.5).
    """
    segments = labels.shape[1]
    if not 1 <= k <= segments:
        raise ValueError(f"k must be in 1..{segments} (segments per video), got {k}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    loss = denoising_losses(segment_prob, labels)
    smallest = loss.topk(k, dim=1, largest=False).values.mean(dim=1, keepdim=True)
    flips = loss > alpha * smallest
    if guard:
        flips &= (segment_prob >= 0.5) != (labels >= 0.5)
    return flips


def denoise_labels(
    segment_prob: np.ndarray,
    labels: np.ndarray,
    k: int = PLD_K,
    alpha: float = PLD_ALPHA,
    guard: bool = False,
) -> np.ndarray:
    """Refined pseudo labels: ``labels`` (V, T, C) with the PLD flips of ``segment_prob``."""
    flips = denoise_flips(
        torch.from_numpy(np.asarray(segment_prob, dtype=np.float64)),
        torch.from_numpy(np.asarray(labels, dtype=np.float64)),
        k,
        alpha,
        guard,
    ).numpy()
    return np.where(flips, 1 - labels, labels).astype(np.float32)


def run_label_file(config: Config, run_dir: Path) -> Path:
    """The visual label file a run trained on."""
    path = config["method"].get("visual_labels")
    if path is None:
        raise ValueError(
            f"{run_dir} was not trained on visual pseudo labels (method.visual_labels); "
            "denoising needs the labels the run learnt from"
        )
    return Path(path)


def denoise_run(
    run_dir: Path,
    out: Path,
    *,
    k: int = PLD_K,
    alpha: float = PLD_ALPHA,
    split: str = "train",
    labels: Path | None = None,
    progress: bool = True,
    guard: bool | None = None,
) -> Path:
    """PLD with a trained run: a visual label file, denoised by the run's best model, to ``out``.

    ``labels`` defaults to the file the run trained on; another split's file (e.g. PLG labels of
    val, to score PLD against dense ground truth as the paper's Table II) goes with ``split``.
    The run's visual segment probabilities on the split decide the flips (Eqs. 10-11); videos of
    the file outside the split and its audio labels are written unchanged. ``out`` may not be
    the source file, which a resume of the run may still need. ``guard``: the flips
    :func:`denoise_flips` keeps; None takes the run's ``method.pld_guard``.
    """
    run_dir, out = Path(run_dir), Path(out)
    config, model, method = load_run(run_dir)
    source = label_source(config, run_dir, labels)
    if out.resolve() == source.resolve():
        raise ValueError(f"{out} is the label file to denoise; write the refined one apart")
    data = load_splits(config, (split,), progress=progress)[split]
    current = aligned_stream_labels(source, "visual", data.video_ids, str(source))
    probabilities = predict_split(model, method, data, feature_names(config), torch.device("cpu"))
    if guard is None:
        guard = config["method"]["pld_guard"]
    refined = denoise_labels(probabilities.segment_prob[:, :, VISUAL], current, k, alpha, guard)
    original = load_pseudo_labels(source)
    rows = {video: row for row, video in enumerate(original.video_ids)}
    visual = np.array(original.visual, dtype=np.float32, copy=True)
    visual[[rows[video] for video in data.video_ids]] = refined
    return save_pseudo_labels(out, original.video_ids, audio=original.audio, visual=visual)


def label_source(config: Config, run_dir: Path, labels: Path | None) -> Path:
    return run_label_file(config, run_dir) if labels is None else Path(labels)


@dataclass(frozen=True)
class DenoisingStatistics:
    """How denoising changed a split's visual labels (binarised at 0.5).

    ``to_positive`` / ``to_negative`` count flipped segments per class (0 -> 1, 1 -> 0). On
    synthetic data ``f1_before`` / ``f1_after`` hold the evaluation's visual F-scores (percent,
    ``segment`` and ``event`` level) of the labels against the hidden train labels.
    """

    videos: int
    to_positive: np.ndarray  # (C,) int
    to_negative: np.ndarray  # (C,) int
    f1_before: dict[str, float] | None = None
    f1_after: dict[str, float] | None = None

    @property
    def flips(self) -> np.ndarray:
        return self.to_positive + self.to_negative

    def format(self) -> str:
        """Lines for the command line: totals, flips per class, and F-scores when known."""
        lines = [
            f"{int(self.flips.sum())} segment labels flipped in {self.videos} videos: "
            f"{int(self.to_positive.sum())} became 1, {int(self.to_negative.sum())} became 0"
        ]
        for name, up, down in zip(CLASSES, self.to_positive, self.to_negative, strict=True):
            if up or down:
                lines.append(f"  {name:<24} {up + down:>6}  (+{up} / -{down})")
        if self.f1_before is not None and self.f1_after is not None:
            for level in ("segment", "event"):
                lines.append(
                    f"{level}-level visual F against hidden labels: "
                    f"{self.f1_before[level]:.2f} -> {self.f1_after[level]:.2f}"
                )
        return "\n".join(lines)


def label_changes(
    before: np.ndarray, after: np.ndarray, hidden_visual: np.ndarray | None = None
) -> DenoisingStatistics:
    """Flips per class between two (V, T, C) label arrays, and their quality when truth is known."""
    old = np.asarray(before) >= SOFT_LABEL_THRESHOLD
    new = np.asarray(after) >= SOFT_LABEL_THRESHOLD
    to_positive = (~old & new).sum(axis=(0, 1))
    to_negative = (old & ~new).sum(axis=(0, 1))
    if hidden_visual is None:
        return DenoisingStatistics(len(old), to_positive, to_negative)
    return DenoisingStatistics(
        len(old),
        to_positive,
        to_negative,
        _visual_f1(old, hidden_visual),
        _visual_f1(new, hidden_visual),
    )


def _visual_f1(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    silent = np.zeros_like(labels)  # the audio stream takes no part in the visual scores
    metrics = evaluate(silent, labels, silent, truth)
    return {level: metrics[level]["visual"] for level in ("segment", "event")}


def denoising_statistics(
    run_dir: Path, refined: Path, *, split: str = "train", labels: Path | None = None
) -> DenoisingStatistics:
    """What :func:`denoise_run` changed on ``split``, with F-scores against the hidden train
    labels on synthetic train data (other splits: ``avvp pseudo-labels score``)."""
    config = load_run(run_dir)[0]
    data = load_splits(config, (split,), progress=interactive())[split]
    source = label_source(config, Path(run_dir), labels)
    before = aligned_stream_labels(source, "visual", data.video_ids, str(source))
    after = aligned_stream_labels(Path(refined), "visual", data.video_ids, "refined labels")
    hidden = load_hidden_train_labels(config) if split == "train" else None
    return label_changes(before, after, None if hidden is None else hidden.visual)
