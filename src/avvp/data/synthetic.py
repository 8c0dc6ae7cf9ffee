"""Synthetic LLP: a dataset in exactly the official layout, with known segment labels.

Two label sources:

* **annotation-driven** (``annotations`` given): val and test are the real LLP videos with their
  real dense labels; train has the real weak labels, and its hidden per-stream segment labels copy
  the segment pattern of a random real val/test instance of the same class. Annotation files are
  written verbatim (a subset keeps the rows of the chosen videos and every row that matches no real
  video), so a predictor that uses labels only scores exactly what it scores on real LLP.
* **built-in**: labels sampled from statistics of the real labels. The default label model
  (``per_class``) draws each class's frequency and each (video, class) pair's audible-only /
  visible-only / both kind from real LLP's per-class statistics (``LLP_CLASS_STATISTICS``); the
  ``global`` model (the only one before) draws the kind from one mix for every class and gives
  the classes a geometric ladder of frequencies. Both follow SPEC section 2's label cardinality
  and event durations.

Features come from a generative model in a latent space per stream (``GeneratorConfig`` documents
every knob). A segment's latent is ``scene + nuisance + noise + sum_c label * strength * mode``:

* each class has several distinct **modes** per stream (intra-class variation): a video draws one;
* a **scene** (one of a few shared backgrounds) and a per-video **nuisance** vector are added to
  every segment of the video; classes prefer some scenes, so context predicts the video label but
  not the segments it occurs in;
* some labelled segments are **faint** (an event only weakly present);
* noise is correlated over time; audible-only and visible-only events leave no trace in the other
  stream, so the weak label alone cannot say which stream carries an event.

Each feature set is a fixed random map of its stream's latent (ReLU for the visual CNN features,
linear for VGGish), with per-frame jitter for res152's eight frames a segment. ``difficulty``
scales noise, nuisance and scene strength together: 0 gives clean features; the default is
calibrated so that HAN on the full-size annotation-driven set lands near HAN on real LLP
(docs/calibration.md).

The hidden train labels go to ``synthetic_train_labels.npz``, apart from everything a method
reads; only diagnostics (pseudo-label quality, PoiBin's count error) open it.

Simulated CLIP scores (``ClipSimulation``) go to ``synthetic_clip_scores.npz``: what zero-shot
CLIP would say of one frame a segment, derived from the visual labels and the rendered scene, for
VPLAN's pseudo-label generation (docs/synthetic.md, "Simulated CLIP").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from avvp.classes import CLASSES, NUM_CLASSES, NUM_SEGMENTS, class_indices
from avvp.data.annotations import (
    DENSE_HEADER,
    SPLIT_FILES,
    SPLITS,
    VISUAL_GT_FILE,
    WEAK_HEADER,
    AudioGroundTruth,
    DenseLabels,
    LLPAnnotations,
    read_text,
    read_weak_labels,
    video_id,
)
from avvp.io_utils import atomic_write, atomic_write_text, write_json

MANIFEST = "synthetic.json"
STARTED = "synthetic.partial.json"  # the settings of a generation not finished yet
HIDDEN_TRAIN_LABELS = "synthetic_train_labels.npz"
CLIP_SCORES = "synthetic_clip_scores.npz"
CLIP_FORMAT_VERSION = 1
# Calibrated so that PLG labels on the full-size annotation-driven val split come out near the
# paper's video-level precision and recall (docs/synthetic.md, "Simulated CLIP").
DEFAULT_CLIP_QUALITY = 1.0
FULL_FILE = "AVVP_dataset_full.csv"
AUDIO_FILES = tuple(member.filename for member in AudioGroundTruth)
FORMAT_VERSION = 1
AUDIO, VISUAL = 0, 1
BUILTIN_SPLIT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


@dataclass(frozen=True)
class FeatureSet:
    """One feature file family: ``feats/<name>/<id>.npy`` of shape (T * frames, dim)."""

    stream: int  # AUDIO or VISUAL
    dim: int
    frames: int
    activation: str  # "linear" or "relu"
    noise: float  # feature-space noise, relative to the feature scale


OFFICIAL_FEATURES: dict[str, FeatureSet] = {
    "vggish": FeatureSet(AUDIO, 128, 1, "linear", 0.3),
    "res152": FeatureSet(VISUAL, 2048, 8, "relu", 0.3),
    "r2plus1d_18": FeatureSet(VISUAL, 512, 1, "relu", 0.3),
}


@dataclass(frozen=True)
class GeneratorConfig:
    """Every knob of the feature model; ``difficulty`` is the one users turn."""

    # Calibrated against HAN's published LLP test scores (docs/calibration.md).
    difficulty: float = 0.95
    latent_dim: int = 64
    modes_per_class: int = 4
    # cosine between a mode and its class's shared direction is sqrt(1 - mode_spread**2)
    mode_spread: float = 0.8
    scenes: int = 12
    scene_scale: float = 0.6  # x difficulty
    scene_affinity: float = 0.5  # chance that a video's scene is its class's preferred one
    nuisance: float = 0.15  # per-dimension std of the per-video offset, x difficulty
    noise: float = 0.12  # per-dimension std of segment noise, x difficulty
    temporal_correlation: float = 0.5  # AR(1) coefficient of the segment noise
    strength: tuple[float, float] = (0.7, 1.3)  # event strength, uniform per (video, class, stream)
    faint_fraction: float = 0.2  # share of labelled segments where the event is only faint
    faint_strength: tuple[float, float] = (0.1, 0.4)
    frame_jitter: float = 0.05  # per-frame latent jitter for multi-frame feature sets
    features: Mapping[str, FeatureSet] = field(default_factory=lambda: dict(OFFICIAL_FEATURES))

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "features": {name: asdict(spec) for name, spec in self.features.items()},
        }

    @classmethod
    def from_json(cls, values: Mapping) -> GeneratorConfig:
        """The config that :meth:`to_json` wrote (JSON turned its tuples into lists)."""
        fields = {
            name: tuple(value) if isinstance(value, list) else value
            for name, value in values.items()
            if name != "features"
        }
        features = {name: FeatureSet(**spec) for name, spec in values["features"].items()}
        return cls(**fields, features=features)


# ---- labels ---------------------------------------------------------------------------------


@dataclass
class SplitLabels:
    """Labels of one synthetic split; ``audio``/``visual`` (V, T, C) bool are the truth."""

    filenames: list[str]
    audio: np.ndarray
    visual: np.ndarray

    @property
    def weak(self) -> np.ndarray:
        return (self.audio.any(axis=1) | self.visual.any(axis=1)).astype(np.uint8)


# Facts of SPEC section 2 (the real LLP label statistics) that the built-in sampler reproduces.
CARDINALITY = {1: 0.403, 2: 0.588, 3: 0.009}
SPEECH_SHARE = 0.4988
SECOND_SHARE = 0.1457
RAREST_SHARE = 0.0099
PAIR_TYPE = {"audio_visual": 2054, "audio_only": 1185, "visual_only": 155}
# Share of a stream's events that cover the whole video, and how many runs the others have:
# with single runs of uniform length 1..9 otherwise, mean coverage is 7.0 audio, 8.1 visual.
FULL_COVERAGE = {AUDIO: 0.41, VISUAL: 0.62}
RUNS = {AUDIO: (0.77, 0.18, 0.05), VISUAL: (0.88, 0.10, 0.02)}


# Per class, in LLP order, counted from the real LLP annotations (tests/test_synthetic.py
# recounts them from the annotation files and checks they are equal):
#   single, multi: AVVP_train.csv (10,000 videos, weak labels): the videos whose only label is the
#     class, and the videos with two or more labels that include it. Train, not val+test: it is
#     the split the built-in train set stands for, five times larger, and the source of SPEC
#     section 2's cardinality and Speech share. Kept apart because the class mix depends on the
#     cardinality: Speech is in 84 % of the multi-label videos and in none of the single-label ones.
#   audio_only, visual_only, both: the weakly labelled (video, class) pairs of val + test (1,849
#     videos; AVVP_val_pd.csv and AVVP_test_pd.csv) that some segment of AVVP_eval_audio.csv (the
#     2024 audio ground truth) holds and no segment of AVVP_eval_visual.csv, the other way round,
#     or both, as benchmarks/modality_shares.py counts them. The 37 weak pairs that no segment
#     holds (annotation gaps) are left out: the generator derives weak labels from segments.
#     A class named twice in one weak label (test video LcFWKgFphXI_20_30) counts once.
LLP_CLASS_STATISTICS_FIELDS = ("single", "multi", "audio_only", "visual_only", "both")
LLP_CLASS_STATISTICS: dict[str, tuple[int, int, int, int, int]] = {
    "Speech": (0, 4988, 752, 2, 217),
    "Car": (253, 371, 2, 27, 104),
    "Cheering": (215, 313, 74, 5, 49),
    "Dog": (51, 710, 13, 21, 134),
    "Cat": (16, 176, 2, 15, 39),
    "Frying_(food)": (208, 135, 4, 1, 59),
    "Basketball_bounce": (132, 323, 4, 14, 61),
    "Fire_alarm": (116, 102, 6, 0, 30),
    "Chainsaw": (218, 81, 1, 0, 44),
    "Cello": (41, 561, 23, 5, 93),
    "Banjo": (17, 169, 8, 2, 34),
    "Singing": (350, 822, 81, 1, 180),
    "Chicken_rooster": (228, 209, 7, 5, 86),
    "Violin_fiddle": (218, 1239, 39, 6, 186),
    "Vacuum_cleaner": (388, 107, 6, 1, 92),
    "Baby_laughter": (55, 91, 7, 0, 25),
    "Accordion": (361, 84, 21, 1, 59),
    "Lawn_mower": (130, 94, 3, 1, 40),
    "Motorcycle": (76, 335, 4, 7, 71),
    "Helicopter": (439, 148, 9, 2, 92),
    "Acoustic_guitar": (58, 445, 13, 16, 126),
    "Telephone_bell_ringing": (36, 63, 8, 0, 11),
    "Baby_cry_infant_cry": (174, 256, 13, 1, 62),
    "Blender": (213, 78, 0, 1, 55),
    "Clapping": (39, 125, 52, 6, 69),
}
# How built-in labels are drawn, stored in synthetic.json as "label_model". "global" is the
# sampler of format 1 before per-class statistics; a manifest without the key was made by it.
LABEL_MODELS = ("per_class", "global")
DEFAULT_LABEL_MODEL = "per_class"
KIND_ORDER = LLP_CLASS_STATISTICS_FIELDS[2:]  # a pair's kind, as the per-class columns list them


def llp_class_table() -> np.ndarray:
    """``LLP_CLASS_STATISTICS`` as a (C, 5) int array in LLP class order."""
    return np.array([LLP_CLASS_STATISTICS[name] for name in CLASSES], dtype=np.int64)


def class_frequencies() -> np.ndarray:
    """The global model's per-class share of videos, in LLP order: Speech at its LLP share, the
    others a geometric ladder (in a random order) down to the rarest class's share, summing to
    the mean label cardinality."""
    mean_cardinality = sum(count * share for count, share in CARDINALITY.items())
    ladder = np.geomspace(SECOND_SHARE, RAREST_SHARE, NUM_CLASSES - 1)
    ladder *= (mean_cardinality - SPEECH_SHARE) / ladder.sum()
    frequency = np.empty(NUM_CLASSES)
    frequency[0] = SPEECH_SHARE
    frequency[1:] = ladder[np.random.default_rng(0).permutation(NUM_CLASSES - 1)]
    return frequency


def draw_weights(
    shares: np.ndarray, single: float = CARDINALITY[1], iterations: int = 200
) -> np.ndarray:
    """Weights for drawing a video's classes without replacement (one draw with probability
    ``single``, else two) so that class c is included with probability ``shares[c]``: the fixed
    point of the inclusion formula. Three-class videos (0.9 %) count as two-class ones."""
    weights = shares / shares.sum()
    for _ in range(iterations):
        pair = weights * (1 + (weights / (1 - weights)).sum() - weights / (1 - weights))
        inclusion = single * weights + (1 - single) * pair
        weights = weights * shares / inclusion
        weights /= weights.sum()
    return weights


def sample_stream_pattern(rng: np.random.Generator, stream: int, segments: int) -> np.ndarray:
    """Segments (T,) bool where one class is present in one stream."""
    pattern = np.zeros(segments, dtype=bool)
    if rng.random() < FULL_COVERAGE[stream]:
        pattern[:] = True
        return pattern
    runs = 1 + int(rng.choice(3, p=RUNS[stream]))
    if runs == 1:
        length = int(rng.integers(1, segments))
        start = int(rng.integers(0, segments - length + 1))
        pattern[start : start + length] = True
        return pattern
    bounds = np.sort(rng.choice(segments + 1, size=2 * runs, replace=False))
    for start, stop in bounds.reshape(-1, 2):
        pattern[start:stop] = True
    return pattern


def sample_builtin_labels(
    rng: np.random.Generator,
    videos: int,
    segments: int = NUM_SEGMENTS,
    label_model: str = DEFAULT_LABEL_MODEL,
) -> tuple[np.ndarray, np.ndarray]:
    """(audio, visual) labels (V, T, C) drawn by ``label_model`` (:data:`LABEL_MODELS`)."""
    if label_model == "per_class":
        return _sample_per_class_labels(rng, videos, segments)
    if label_model != "global":
        raise ValueError(f"label model must be one of {LABEL_MODELS}, got {label_model!r}")
    return _sample_global_labels(rng, videos, segments)


def _sample_per_class_labels(
    rng: np.random.Generator, videos: int, segments: int
) -> tuple[np.ndarray, np.ndarray]:
    """Labels with LLP's per-class statistics: a single-label video's class is drawn in the
    proportions of real single-label videos; a multi-label video's classes without replacement
    with weights that give each class its real share of multi-label videos; each pair's kind in
    its class's real audible-only : visible-only : both proportions."""
    table = llp_class_table().astype(float)
    single, multi, kinds = table[:, 0], table[:, 1], table[:, 2:]
    single_p = single / single.sum()
    # Shares among multi-label videos, scaled to two classes a video for the two-draw fixed point.
    multi_p = draw_weights(2 * multi / multi.sum(), single=0.0)
    kind_p = kinds / kinds.sum(axis=1, keepdims=True)
    cardinalities = np.array(list(CARDINALITY))
    cardinality_p = np.array(list(CARDINALITY.values()))
    audio = np.zeros((videos, segments, NUM_CLASSES), dtype=bool)
    visual = np.zeros_like(audio)
    for v in range(videos):
        count = int(rng.choice(cardinalities, p=cardinality_p / cardinality_p.sum()))
        if count == 1:
            classes = [int(rng.choice(NUM_CLASSES, p=single_p))]
        else:
            classes = rng.choice(NUM_CLASSES, size=count, replace=False, p=multi_p)
        for c in classes:
            kind = KIND_ORDER[int(rng.choice(3, p=kind_p[c]))]
            if kind != "visual_only":
                audio[v, :, c] = sample_stream_pattern(rng, AUDIO, segments)
            if kind != "audio_only":
                visual[v, :, c] = sample_stream_pattern(rng, VISUAL, segments)
    return audio, visual


def _sample_global_labels(
    rng: np.random.Generator, videos: int, segments: int
) -> tuple[np.ndarray, np.ndarray]:
    """The global model: one pair-kind mix for all classes (SPEC section 2's 2054 : 1185 : 155),
    class frequencies from :func:`class_frequencies`. Kept draw for draw as it was."""
    frequency = draw_weights(class_frequencies())
    cardinalities = np.array(list(CARDINALITY))
    cardinality_p = np.array(list(CARDINALITY.values()))
    pair_types = np.array(list(PAIR_TYPE.values()), dtype=float)
    pair_types /= pair_types.sum()
    audio = np.zeros((videos, segments, NUM_CLASSES), dtype=bool)
    visual = np.zeros_like(audio)
    for v in range(videos):
        count = int(rng.choice(cardinalities, p=cardinality_p / cardinality_p.sum()))
        for c in rng.choice(NUM_CLASSES, size=count, replace=False, p=frequency):
            kind = int(rng.choice(3, p=pair_types))
            if kind != 2:
                audio[v, :, c] = sample_stream_pattern(rng, AUDIO, segments)
            if kind != 1:
                visual[v, :, c] = sample_stream_pattern(rng, VISUAL, segments)
    return audio, visual


def random_filenames(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    """YouTube-like ``<11-char id>_<start>_<end>`` names with ids unique among ``taken``."""
    names = []
    while len(names) < count:
        identifier = "".join(rng.choice(ID_ALPHABET, size=11))
        if identifier in taken:
            continue
        taken.add(identifier)
        start = 10 * int(rng.integers(0, 30))
        names.append(f"{identifier}_{start}_{start + NUM_SEGMENTS}")
    return names


def builtin_labels(
    videos: int, seed: int, label_model: str = DEFAULT_LABEL_MODEL
) -> dict[str, SplitLabels]:
    rng = np.random.default_rng([seed, 1])
    sizes = split_sizes(videos)
    taken: set[str] = set()
    labels = {}
    for split in SPLITS:
        audio, visual = sample_builtin_labels(rng, sizes[split], label_model=label_model)
        labels[split] = SplitLabels(random_filenames(rng, sizes[split], taken), audio, visual)
    return labels


def split_sizes(videos: int) -> dict[str, int]:
    if videos < 3:
        raise ValueError(f"a synthetic dataset needs at least 3 videos (one a split), got {videos}")
    val = max(1, round(videos * BUILTIN_SPLIT_FRACTIONS["val"]))
    test = max(1, round(videos * BUILTIN_SPLIT_FRACTIONS["test"]))
    return {"train": videos - val - test, "val": val, "test": test}


def apportion(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """``total`` shared in proportion to ``weights``, at least 1 each, adding up to ``total``.

    Largest remainders: every share is its quota rounded down, then raised to 1, and the
    difference to ``total`` goes to (or comes from) the shares furthest from their quotas.
    """
    if total < len(weights):
        raise ValueError(f"cannot share {total} among {len(weights)} with at least 1 each")
    norm = sum(weights.values())
    quotas = {key: total * weight / norm for key, weight in weights.items()}
    sizes = {key: max(1, int(quota)) for key, quota in quotas.items()}
    while sum(sizes.values()) < total:
        key = max(sizes, key=lambda k: quotas[k] - sizes[k])
        sizes[key] += 1
    while sum(sizes.values()) > total:
        key = max((k for k in sizes if sizes[k] > 1), key=lambda k: sizes[k] - quotas[k])
        sizes[key] -= 1
    return sizes


def annotation_driven_labels(
    annotations: LLPAnnotations, videos: int | None, seed: int
) -> dict[str, SplitLabels]:
    """Real val/test labels; real train weak labels with segment patterns from val/test."""
    rng = np.random.default_rng([seed, 2])
    chosen = {split: np.arange(len(annotations.weak(split))) for split in SPLITS}
    total = sum(len(indices) for indices in chosen.values())
    if videos is not None and videos > total:
        counts = ", ".join(f"{split} {len(chosen[split]):,}" for split in SPLITS)
        raise ValueError(
            f"--videos {videos}: the annotations in {annotations.root} have {total:,} videos "
            f"({counts}); ask for at most that many, or leave --videos out for all of them"
        )
    if videos is not None and videos < total:
        sizes = apportion(videos, {split: len(chosen[split]) for split in SPLITS})
        for split in SPLITS:
            chosen[split] = np.sort(rng.choice(chosen[split], size=sizes[split], replace=False))
    labels = {}
    pool = _instance_pool(annotations)
    for split in ("val", "test"):
        dense = annotations.dense(split)
        names = annotations.weak(split).filenames
        indices = chosen[split]
        labels[split] = SplitLabels(
            [names[i] for i in indices], dense.audio[indices], dense.visual[indices]
        )
    weak = annotations.weak("train")
    indices = chosen["train"]
    audio = np.zeros((len(indices), NUM_SEGMENTS, NUM_CLASSES), dtype=bool)
    visual = np.zeros_like(audio)
    for row, v in enumerate(indices):
        for c in np.flatnonzero(weak.labels[v]):
            if pool[c]:
                instance_audio, instance_visual = pool[c][int(rng.integers(len(pool[c])))]
            else:  # a class with no dense instance anywhere: sample its pattern instead
                instance_audio = sample_stream_pattern(rng, AUDIO, NUM_SEGMENTS)
                instance_visual = sample_stream_pattern(rng, VISUAL, NUM_SEGMENTS)
            audio[row, :, c], visual[row, :, c] = instance_audio, instance_visual
    labels["train"] = SplitLabels([weak.filenames[i] for i in indices], audio, visual)
    return labels


def _instance_pool(annotations: LLPAnnotations) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per class, the (audio, visual) segment patterns of its real val/test instances."""
    pool: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(NUM_CLASSES)]
    for split in ("val", "test"):
        dense = annotations.dense(split)
        present = dense.audio.any(axis=1) | dense.visual.any(axis=1)
        for v, c in zip(*np.nonzero(present), strict=True):
            pool[c].append((dense.audio[v, :, c].copy(), dense.visual[v, :, c].copy()))
    return pool


# ---- features -------------------------------------------------------------------------------


class FeatureModel:
    """The fixed parts of the generative model (prototypes, scenes, feature maps) for one seed."""

    def __init__(self, config: GeneratorConfig, seed: int):
        self.config = config
        rng = np.random.default_rng([seed, 3])
        latent, modes = config.latent_dim, config.modes_per_class
        shared = _unit(rng.standard_normal((2, NUM_CLASSES, 1, latent)))
        offsets = _unit(rng.standard_normal((2, NUM_CLASSES, modes, latent)))
        spread = config.mode_spread
        self.prototypes = _unit(np.sqrt(1 - spread**2) * shared + spread * offsets)  # (2, C, K, L)
        self.scenes = _unit(rng.standard_normal((2, config.scenes, latent)))
        self.preferred_scene = rng.integers(config.scenes, size=NUM_CLASSES)
        self.maps = {}
        for name, spec in config.features.items():
            weight = rng.standard_normal((latent, spec.dim))
            bias = rng.standard_normal(spec.dim) * 0.5 if spec.activation == "relu" else 0.0
            self.maps[name] = (weight.astype(np.float32), np.float32(bias))

    def draw_scene(self, audio: np.ndarray, visual: np.ndarray, rng: np.random.Generator) -> int:
        """The background scene of a video from its (T, C) labels: the first draw of ``render``.

        Simulated CLIP (:func:`simulate_clip_scores`) replays it from the same generator state, so
        it sees the scene that is in the video's frames.
        """
        present = np.flatnonzero(audio.any(axis=0) | visual.any(axis=0))
        if len(present) and rng.random() < self.config.scene_affinity:
            return int(self.preferred_scene[rng.choice(present)])
        return int(rng.integers(self.config.scenes))

    def render(
        self,
        audio: np.ndarray,
        visual: np.ndarray,
        rng: np.random.Generator,
        names: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Feature arrays (T * frames, dim) float32 of one video from its (T, C) labels.

        ``names`` renders only those feature sets (the latents, and so the other sets, are the
        same whichever are asked for, given the same ``rng`` state).
        """
        config = self.config
        difficulty = config.difficulty
        segments = audio.shape[0]
        scene = self.draw_scene(audio, visual, rng)
        latents = []
        for stream, labels in ((AUDIO, audio), (VISUAL, visual)):
            latent = np.empty((segments, config.latent_dim))
            latent[:] = config.scene_scale * difficulty * self.scenes[stream, scene]
            latent += config.nuisance * difficulty * rng.standard_normal(config.latent_dim)
            latent += config.noise * difficulty * _ar1(rng, segments, config)
            for c in np.flatnonzero(labels.any(axis=0)):
                mode = rng.integers(config.modes_per_class)
                strength = rng.uniform(*config.strength) * np.ones(segments)
                faint = rng.random(segments) < config.faint_fraction
                strength[faint] *= rng.uniform(*config.faint_strength, size=int(faint.sum()))
                latent += (labels[:, c] * strength)[:, None] * self.prototypes[stream, c, mode]
            latents.append(latent)
        features = {}
        for name in config.features if names is None else names:
            spec = config.features[name]
            latent = np.repeat(latents[spec.stream], spec.frames, axis=0)
            if spec.frames > 1:
                latent = latent + config.frame_jitter * rng.standard_normal(latent.shape)
            weight, bias = self.maps[name]
            values = latent.astype(np.float32) @ weight + bias
            values += spec.noise * difficulty * rng.standard_normal(values.shape, np.float32)
            if spec.activation == "relu":
                np.maximum(values, 0, out=values)
            features[name] = values.astype(np.float32, copy=False)
        return features


def _unit(values: np.ndarray) -> np.ndarray:
    return values / np.linalg.norm(values, axis=-1, keepdims=True)


def _ar1(rng: np.random.Generator, segments: int, config: GeneratorConfig) -> np.ndarray:
    """Unit-variance AR(1) noise over segments, (T, L)."""
    rho = config.temporal_correlation
    innovations = rng.standard_normal((segments, config.latent_dim))
    noise = np.empty_like(innovations)
    noise[0] = innovations[0]
    for t in range(1, segments):
        noise[t] = rho * noise[t - 1] + np.sqrt(1 - rho**2) * innovations[t]
    return noise


# ---- writing --------------------------------------------------------------------------------


def generate(
    out: str | Path,
    annotations: str | Path | None = None,
    videos: int | None = None,
    seed: int = 0,
    config: GeneratorConfig | None = None,
    progress: bool = True,
    clip_quality: float | None = DEFAULT_CLIP_QUALITY,
    label_model: str | None = None,
) -> Path:
    """Write a synthetic dataset in the LLP layout to ``out``; returns ``out``.

    ``label_model`` (built-in mode only; default :data:`DEFAULT_LABEL_MODEL`) is how built-in
    labels are drawn (:data:`LABEL_MODELS`); it is part of the settings.

    A killed generation resumes: every file is written atomically and the manifest last, and
    each video's features depend only on the seed and the video, so finished files are kept.
    An existing dataset made with other settings is refused rather than overwritten, and so is
    any other non-empty folder, a file, and a folder that overlaps ``annotations``.

    ``clip_quality`` (None: skip) also writes simulated CLIP scores (:func:`write_clip_scores`),
    or rewrites them when the file was made with another quality or seed. They derive from the
    labels and scenes, not the features, so they are not part of the settings: a dataset made
    before them, or with another quality, is the same dataset and is accepted.
    """
    out = Path(out)
    config = config or GeneratorConfig()
    if annotations is None and videos is None:
        raise ValueError("built-in synthetic data needs --videos N (or give --annotations DIR)")
    if clip_quality is not None:
        ClipSimulation(quality=clip_quality)  # fails on a bad quality before anything is written
    settings = dataset_settings(annotations, videos, seed, config, label_model)
    _check_out(out, annotations)
    made_with = _settings_found(out)
    if made_with is not None and made_with != settings:
        hint = ""
        if {**made_with, "label_model": None} == {**settings, "label_model": None}:
            hint = (
                f" (its labels were drawn by label model {made_with['label_model']!r}, not "
                f"{settings['label_model']!r}: pass --label-model {made_with['label_model']} "
                "to use it)"
            )
        raise ValueError(
            f"{out} holds a synthetic dataset made with other settings ({out / MANIFEST}){hint}; "
            "choose another --out or delete it"
        )
    if read_manifest(out) is not None:
        _ensure_clip_scores(out, clip_quality, seed)
        return out
    if annotations is None:
        labels = builtin_labels(videos, seed, settings["label_model"])
    else:
        # The ignored rows are copied verbatim and reported when the dataset is read.
        real = LLPAnnotations(annotations, AudioGroundTruth.V2024, warn=False)
        labels = annotation_driven_labels(real, videos, seed)
    # Written before any other file and removed last: it marks the folder as ours while the
    # generation is unfinished, so a killed one resumes and other non-empty folders are refused.
    write_json(out / STARTED, {"settings": settings})
    if annotations is None:
        _write_builtin_annotations(out, labels)
    else:
        _write_annotation_subset(real, out, labels)
    hidden = labels["train"]
    atomic_write(
        out / HIDDEN_TRAIN_LABELS,
        lambda handle: np.savez_compressed(
            handle, filenames=np.array(hidden.filenames), audio=hidden.audio, visual=hidden.visual
        ),
    )
    _write_features(out, labels, FeatureModel(config, seed), seed, progress)
    counts = {split: len(labels[split].filenames) for split in SPLITS}
    write_json(out / MANIFEST, {"settings": settings, "videos": counts})
    (out / STARTED).unlink()
    _ensure_clip_scores(out, clip_quality, seed)
    return out


def dataset_settings(
    annotations: str | Path | None,
    videos: int | None,
    seed: int,
    config: GeneratorConfig,
    label_model: str | None = None,
) -> dict:
    """The settings ``generate`` records in ``synthetic.json`` (and compares with a folder's).

    Built-in sets record their ``label_model``; annotation-driven ones have none (their labels
    are the real ones) and refuse one.
    """
    if annotations is not None and label_model is not None:
        raise ValueError(
            "--label-model applies to built-in labels only; annotation-driven labels are the "
            "real ones"
        )
    if label_model is not None and label_model not in LABEL_MODELS:
        raise ValueError(f"--label-model must be one of {LABEL_MODELS}, got {label_model!r}")
    settings = {
        "format_version": FORMAT_VERSION,
        "mode": "builtin" if annotations is None else "annotation-driven",
        "annotations": None if annotations is None else str(Path(annotations).resolve()),
        "videos": videos,
        "seed": seed,
        "generator": config.to_json(),
    }
    if annotations is None:
        settings["label_model"] = label_model or DEFAULT_LABEL_MODEL
    # Through JSON, so that it compares equal to what the manifest holds (tuples become lists).
    return _json_round_trip(settings)


def with_label_model(settings: Mapping) -> dict:
    """``settings`` as read from a manifest, with the label model a built-in set made before
    label models existed was drawn by ("global") filled in."""
    settings = dict(settings)
    if settings.get("mode") == "builtin":
        settings.setdefault("label_model", "global")
    return settings


def _check_out(out: Path, annotations: str | Path | None) -> None:
    """Refuse an ``out`` where generating could destroy or mix in anything of the user's.

    Allowed: a new or empty folder, or one that ``generate`` made (finished or killed); never the
    annotation folder being read, nor a folder inside it or around it.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; choose a new or empty folder")
    if annotations is not None:
        source, target = Path(annotations).resolve(), out.resolve()
        if source == target or source in target.parents or target in source.parents:
            raise ValueError(
                f"--out {out} and --annotations {annotations} overlap: synth never writes into "
                "the annotation folder it reads; choose an --out outside it"
            )
    if out.is_dir() and _settings_found(out) is None and any(out.iterdir()):
        raise ValueError(
            f"{out} is not empty and holds no synthetic dataset (no {MANIFEST}): synth writes "
            "only into a new or empty folder or one it made; choose another --out"
        )


def _settings_found(out: Path) -> dict | None:
    """The settings of the synthetic dataset in ``out``, finished or unfinished; None if none."""
    for name in (MANIFEST, STARTED):
        path = out / name
        if path.is_file():
            try:
                return with_label_model(json.loads(path.read_text(encoding="utf-8"))["settings"])
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(
                    f"{path} is damaged ({error}); delete {out} to generate it again"
                ) from None
    return None


def _ensure_clip_scores(root: Path, quality: float | None, seed: int) -> None:
    """Write the simulated CLIP scores unless skipped or already there with these settings."""
    if quality is None:
        return
    path = root / CLIP_SCORES
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            found = {
                key: stored[key].item() if key in stored.files else None
                for key in ("format_version", "quality", "seed")
            }
        if found == {"format_version": CLIP_FORMAT_VERSION, "quality": quality, "seed": seed}:
            return
    write_clip_scores(root, quality, seed)


def _write_features(
    out: Path,
    labels: Mapping[str, SplitLabels],
    model: FeatureModel,
    seed: int,
    progress: bool,
) -> None:
    for name in model.config.features:
        (out / "feats" / name).mkdir(parents=True, exist_ok=True)
    jobs = [(split, i) for split in SPLITS for i in range(len(labels[split].filenames))]
    for split, i in tqdm(jobs, desc="synthetic features", unit="video", disable=not progress):
        split_labels = labels[split]
        identifier = video_id(split_labels.filenames[i])
        paths = {name: out / "feats" / name / f"{identifier}.npy" for name in model.config.features}
        if all(path.is_file() for path in paths.values()):
            continue
        rng = _render_rng(seed, identifier)
        features = model.render(split_labels.audio[i], split_labels.visual[i], rng)
        for name, path in paths.items():
            _save_npy(path, features[name])


def _video_key(identifier: str) -> int:
    """A stable integer per video id, so a video's random draws do not depend on its split."""
    return int.from_bytes(hashlib.sha256(identifier.encode()).digest()[:8], "little")


def _render_rng(seed: int, identifier: str) -> np.random.Generator:
    """The generator that renders a video's features (and first draws its scene)."""
    return np.random.default_rng([seed, 4, _video_key(identifier)])


def _json_round_trip(value: dict) -> dict:
    return json.loads(json.dumps(value))


def _save_npy(path: Path, array: np.ndarray) -> None:
    # No fsync: a crash leaves either no file or a whole one, and ~36k fsyncs would dominate.
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as handle:
        np.save(handle, array)
    os.replace(temporary, path)


def _weak_row(filename: str, weak: np.ndarray) -> str:
    return f"{filename}\t{','.join(CLASSES[c] for c in np.flatnonzero(weak))}"


def _dense_rows(filenames: Sequence[str], labels: np.ndarray) -> list[str]:
    """One row a maximal run of positive segments, per video and class."""
    rows = []
    for filename, video in zip(filenames, labels, strict=True):
        for c in range(NUM_CLASSES):
            padded = np.concatenate(([0], video[:, c].astype(np.int8), [0]))
            changes = np.flatnonzero(np.diff(padded))
            for onset, offset in changes.reshape(-1, 2):
                rows.append(f"{filename}\t{onset}\t{offset}\t{CLASSES[c]}")
    return rows


def _write_table(path: Path, header: Sequence[str], rows: Sequence[str]) -> None:
    atomic_write_text(path, "\n".join(["\t".join(header), *rows]) + "\n")


def _write_builtin_annotations(out: Path, labels: Mapping[str, SplitLabels]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        split_labels = labels[split]
        rows = [
            _weak_row(f, w) for f, w in zip(split_labels.filenames, split_labels.weak, strict=True)
        ]
        _write_table(out / SPLIT_FILES[split], WEAK_HEADER, rows)
    full = [
        _weak_row(f, w)
        for split in SPLITS
        for f, w in zip(labels[split].filenames, labels[split].weak, strict=True)
    ]
    _write_table(out / FULL_FILE, WEAK_HEADER, full)
    evaluated = ("val", "test")
    audio = [row for s in evaluated for row in _dense_rows(labels[s].filenames, labels[s].audio)]
    visual = [row for s in evaluated for row in _dense_rows(labels[s].filenames, labels[s].visual)]
    for name in AUDIO_FILES:
        _write_table(out / name, DENSE_HEADER, audio)
    _write_table(out / VISUAL_GT_FILE, DENSE_HEADER, visual)


def _write_annotation_subset(
    annotations: LLPAnnotations, out: Path, labels: Mapping[str, SplitLabels]
) -> None:
    """The real annotation files restricted to the chosen videos, otherwise verbatim.

    Weak files keep the chosen videos' rows; dense files keep the chosen videos' rows and every
    row that names no real video (the faults the reference evaluation ignores), in file order.
    """
    out.mkdir(parents=True, exist_ok=True)
    chosen = {name for split in SPLITS for name in labels[split].filenames}
    source = annotations.root
    real = annotations.known_filenames()
    for name in [*SPLIT_FILES.values(), FULL_FILE, *AUDIO_FILES, VISUAL_GT_FILE]:
        if not (source / name).is_file():
            continue
        if chosen == real:
            shutil.copyfile(source / name, out / name)
            continue
        lines = read_text(source / name).splitlines()
        kept = [
            line
            for line in lines[1:]
            if line.strip()
            and ((filename := line.split("\t", 1)[0]) in chosen or filename not in real)
        ]
        atomic_write_text(out / name, "\n".join([lines[0], *kept]) + "\n")


# ---- reading back ---------------------------------------------------------------------------


def read_manifest(root: str | Path) -> dict | None:
    """A synthetic dataset's ``synthetic.json`` as written (see :func:`with_label_model` for the
    label model of sets made before it was recorded); None for other folders."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def load_hidden_train_labels(root: str | Path) -> DenseLabels | None:
    """The hidden segment labels of a synthetic train split, in split order; None for real data.

    For diagnostics only: nothing that trains may read them.
    """
    root = Path(root)
    path = root / HIDDEN_TRAIN_LABELS
    if not path.is_file():
        return None
    with np.load(path) as stored:
        filenames = [str(name) for name in stored["filenames"]]
        audio, visual = stored["audio"], stored["visual"]
    order = read_weak_labels(root / SPLIT_FILES["train"]).filenames
    if list(order) != filenames:
        raise ValueError(f"{path} does not match the videos of {root / SPLIT_FILES['train']}")
    return DenseLabels(audio.astype(bool), visual.astype(bool))


def default_home() -> Path:
    """Where generated built-in datasets live: ``$AVVP_HOME`` or ``~/.cache/avvp``."""
    return Path(os.environ.get("AVVP_HOME", Path.home() / ".cache" / "avvp"))


def builtin_dataset(
    videos: int,
    seed: int = 0,
    difficulty: float | None = None,
    progress: bool = True,
    label_model: str = DEFAULT_LABEL_MODEL,
) -> Path:
    """The built-in synthetic dataset of this size, generated once under ``default_home()``.

    Each label model has its own folder: global sets keep the name they had before label models
    existed (so they are still found), per-class ones are named after their model, so a set of
    one model is never regenerated over, or mistaken for, one of the other.
    """
    config = GeneratorConfig() if difficulty is None else GeneratorConfig(difficulty=difficulty)
    tag = hashlib.sha256(json.dumps(config.to_json(), sort_keys=True).encode()).hexdigest()[:8]
    model = "" if label_model == "global" else f"-{label_model}"
    root = default_home() / f"synthetic-{videos}-seed{seed}{model}-{tag}"
    return generate(
        root,
        videos=videos,
        seed=seed,
        config=config,
        progress=progress,
        label_model=label_model,
    )


# ---- simulated CLIP -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipSimulation:
    """Simulated zero-shot CLIP on one frame a segment; ``quality`` is the knob (higher = cleaner).

    The similarity (cosine-like, in CLIP's units) of segment t to the prompt of class c is

        class_bias[c] + video_offset[c] + noise[t, c]    no prompt is ever exactly at chance
        + context                                       the video's scene is c's preferred one
        + background peak                               frames showing no event
        + lift[t, c]                                    c is visible (or just next to it)
        + confusion * lift[t, c']                       c's look-alike c' is visible

    and the scores are the softmax over the 25 classes of ``logit_scale`` times it, as CLIP's.
    ``lift = saturation * (1 - exp(-quality * visibility / saturation))``: linear in
    ``quality * visibility`` at first, bounded as cosines are; ``visibility`` is a strength per
    (video, class), log-uniform, times a factor per frame (some frames show everything faintly).
    With the logit scale of 100 a visible class dominates its segment; visible classes of
    comparable strength share the mass and all pass PLG's threshold of 0.04, while one much
    weaker than another in the same frames is missed, which is how CLIP misses whole classes of a
    video. Higher ``quality`` means fewer misses (the lifts of co-visible classes approach the
    same bound) and fewer wrong classes above the threshold where an event is shown.
    """

    quality: float = DEFAULT_CLIP_QUALITY
    logit_scale: float = 100.0
    class_bias: float = 0.004  # std over classes, fixed per seed
    video_offset: float = 0.015  # std per (video, class): CLIP's view of a video is consistent
    noise: float = 0.007  # std per (video, segment, class)
    strength: tuple[float, float] = (0.084, 0.35)  # log-uniform per visible (video, class)
    saturation: float = 0.12  # the most a visible class can raise its similarity
    # Classes named after a sound that a photo can only hint at (a talking or singing person, a
    # cheering crowd, clapping hands): CLIP matches their prompts more weakly than things'.
    sound_classes: tuple[str, ...] = ("Speech", "Singing", "Cheering", "Clapping")
    sound_factor: float = 0.3  # their strength, relative
    sound_bias: float = -0.016  # and they match any photo a little less
    faint_share: float = 0.45  # frames where objects are small, blurred or partly out of view
    faint_factor: tuple[float, float] = (0.1, 0.5)  # what such a frame leaves of the strength
    jitter: tuple[float, float] = (0.8, 1.2)  # per (segment, class) factor on the strength
    # Annotated extents are tighter than what the frames show: the segment just before and just
    # after an extent show part of the object, with this share of its strength.
    spill: tuple[float, float] = (0.3, 1.0)
    lookalike_pairs: int = 6  # classes confused in pairs (12 of 25), drawn per seed
    confusion: float = 0.8  # share of a visible class's lift that its look-alike gets
    context: tuple[float, float] = (0.005, 0.015)  # per video whose scene a class prefers
    background_peak: tuple[float, float] = (0.04, 0.1)  # in frames showing no event

    def __post_init__(self) -> None:
        if not np.isfinite(self.quality) or self.quality < 0:
            raise ValueError(f"CLIP quality must be a finite number >= 0, got {self.quality!r}")


@dataclass(frozen=True)
class FrameTruth:
    """What simulated CLIP sees of one split's videos: visual labels (V, T, C) and scenes (V,)."""

    video_ids: tuple[str, ...]
    visual: np.ndarray
    scenes: np.ndarray


def lookalike_classes(rng: np.random.Generator, pairs: int) -> np.ndarray:
    """(C,) index of each class's look-alike, -1 for none: ``pairs`` disjoint random pairs."""
    partner = np.full(NUM_CLASSES, -1)
    chosen = rng.permutation(NUM_CLASSES)[: 2 * pairs].reshape(-1, 2)
    partner[chosen[:, 0]], partner[chosen[:, 1]] = chosen[:, 1], chosen[:, 0]
    return partner


def simulate_clip_scores(
    truth: FrameTruth,
    preferred_scene: np.ndarray,
    seed: int,
    simulation: ClipSimulation | None = None,
) -> np.ndarray:
    """(V, T, C) float32 softmax scores of simulated CLIP for the videos of ``truth``.

    ``preferred_scene`` (C,) is each class's scene (``FeatureModel``). Every video draws from its
    own generator (seed and video id), so its scores do not depend on the other videos.
    """
    simulation = simulation or ClipSimulation()
    fixed = np.random.default_rng([seed, 5])
    class_bias = fixed.normal(0.0, simulation.class_bias, NUM_CLASSES)
    partner = lookalike_classes(fixed, simulation.lookalike_pairs)
    # leak[c, d]: the share of class c's lift that raises class d's similarity.
    leak = np.eye(NUM_CLASSES)
    paired = np.flatnonzero(partner >= 0)
    leak[paired, partner[paired]] = simulation.confusion
    recognisability = np.ones(NUM_CLASSES)
    sounds = class_indices(simulation.sound_classes)
    recognisability[sounds] = simulation.sound_factor
    class_bias[sounds] += simulation.sound_bias
    _, segments, classes = truth.visual.shape
    scores = np.empty(truth.visual.shape, dtype=np.float32)
    for v, identifier in enumerate(truth.video_ids):
        rng = np.random.default_rng([seed, 6, _video_key(identifier)])
        visible = truth.visual[v]
        strength = np.exp(rng.uniform(*np.log(simulation.strength), classes)) * recognisability
        frame = np.where(
            rng.random(segments) < simulation.faint_share,
            rng.uniform(*simulation.faint_factor, segments),
            1.0,
        )
        factor = frame[:, None] * rng.uniform(*simulation.jitter, (segments, classes))
        beside = np.zeros_like(visible)
        beside[1:] |= visible[:-1]
        beside[:-1] |= visible[1:]
        beside &= ~visible
        presence = visible + beside * rng.uniform(*simulation.spill, classes)
        visibility = presence * strength * factor
        # Cosines are bounded: the lift saturates, so at high quality every visible class,
        # however weak, nears the same similarity, and co-visible classes share the mass.
        saturation = simulation.saturation
        lift = saturation * -np.expm1(-simulation.quality * visibility / saturation)
        similarity = (
            class_bias
            + rng.normal(0.0, simulation.video_offset, classes)
            + rng.normal(0.0, simulation.noise, (segments, classes))
            + (preferred_scene == truth.scenes[v]) * rng.uniform(*simulation.context)
            + lift @ leak
        )
        # CLIP always names something: a frame showing no event peaks on a random wrong class.
        peaked = ~visible.any(axis=1)
        wrong = rng.integers(classes, size=segments)
        peak = rng.uniform(*simulation.background_peak, segments)
        similarity[np.flatnonzero(peaked), wrong[peaked]] += peak[peaked]
        logits = simulation.logit_scale * similarity
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        scores[v] = probabilities / probabilities.sum(axis=1, keepdims=True)
    return scores


def frame_truth(root: str | Path) -> tuple[dict[str, FrameTruth], np.ndarray]:
    """Per split, what CLIP would see of a synthetic dataset's videos; and classes' scenes (C,).

    Visual labels: train's hidden ones, val's and test's dense visual ground truth. Scenes: each
    video's, replayed from the generator state its features were rendered with.
    """
    root = Path(root)
    manifest = read_manifest(root)
    if manifest is None:
        raise FileNotFoundError(
            f"{root} is not a synthetic dataset (no {root / MANIFEST}): simulated CLIP needs the "
            "hidden labels and scenes of `avvp synth`"
        )
    settings = manifest["settings"]
    seed = int(settings["seed"])
    model = FeatureModel(GeneratorConfig.from_json(settings["generator"]), seed)
    hidden = load_hidden_train_labels(root)
    if hidden is None:
        raise FileNotFoundError(f"hidden train labels not found: {root / HIDDEN_TRAIN_LABELS}")
    # What generate rendered from; the rows the evaluation ignores are reported when evaluating.
    annotations = LLPAnnotations(root, AudioGroundTruth.V2024, warn=False)
    truth = {}
    for split in SPLITS:
        labels = hidden if split == "train" else annotations.dense(split)
        ids = annotations.weak(split).video_ids
        scenes = [
            model.draw_scene(audio, visual, _render_rng(seed, identifier))
            for audio, visual, identifier in zip(labels.audio, labels.visual, ids, strict=True)
        ]
        truth[split] = FrameTruth(ids, labels.visual, np.array(scenes))
    return truth, model.preferred_scene


def write_clip_scores(
    root: str | Path, quality: float = DEFAULT_CLIP_QUALITY, seed: int | None = None
) -> Path:
    """Write ``synthetic_clip_scores.npz`` for every split of a synthetic dataset; its path.

    CLIP sees frames only, so the scores derive from what the frames show (:func:`frame_truth`).
    ``seed`` (default: the dataset's) draws the simulation's own randomness. Works on any dataset
    ``generate`` wrote, including ones made before simulated CLIP existed; features are untouched.
    The file holds per split the (V, T, C) float32 scores (``train``, ``val``, ``test``) and the
    video ids (``train_video_ids``, ...), and the ``quality`` and ``seed`` used.
    """
    root = Path(root)
    simulation = ClipSimulation(quality=quality)
    truth, preferred_scene = frame_truth(root)
    if seed is None:
        seed = int(read_manifest(root)["settings"]["seed"])
    arrays: dict[str, np.ndarray] = {}
    for split, split_truth in truth.items():
        arrays[split] = simulate_clip_scores(split_truth, preferred_scene, seed, simulation)
        arrays[f"{split}_video_ids"] = np.array(split_truth.video_ids)
    arrays.update(
        format_version=np.array(CLIP_FORMAT_VERSION), quality=np.array(quality), seed=np.array(seed)
    )
    return atomic_write(root / CLIP_SCORES, lambda handle: np.savez_compressed(handle, **arrays))


def load_clip_scores(root: str | Path, split: str) -> tuple[tuple[str, ...], np.ndarray]:
    """(video ids, (V, T, C) float32 scores) of one split from ``synthetic_clip_scores.npz``."""
    path = Path(root) / CLIP_SCORES
    if not path.is_file():
        raise FileNotFoundError(
            f"simulated CLIP scores not found: {path}; write them with "
            f"`avvp pseudo-labels simulate-clip --data {root}`"
        )
    with np.load(path, allow_pickle=False) as stored:
        if split not in stored.files:
            raise ValueError(f"{path} has no scores for split {split!r} (found {stored.files})")
        ids = tuple(str(name) for name in stored[f"{split}_video_ids"])
        return ids, stored[split].astype(np.float32, copy=False)
