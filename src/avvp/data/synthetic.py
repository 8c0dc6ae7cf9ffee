"""Synthetic LLP: a dataset in exactly the official layout, with known segment labels.

Two label sources:

* **annotation-driven** (``annotations`` given): val and test are the real LLP videos with their
  real dense labels; train has the real weak labels, and its hidden per-stream segment labels copy
  the segment pattern of a random real val/test instance of the same class. Annotation files are
  written verbatim (a subset keeps the rows of the chosen videos and every row that matches no real
  video), so a predictor that uses labels only scores exactly what it scores on real LLP.
* **built-in**: labels sampled to match the published statistics of SPEC section 2 (label
  cardinality, class frequency, audible-only / visible-only shares, event durations).

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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from avvp.classes import CLASSES, NUM_CLASSES, NUM_SEGMENTS
from avvp.data.annotations import (
    DENSE_HEADER,
    SPLIT_FILES,
    SPLITS,
    VISUAL_GT_FILE,
    WEAK_HEADER,
    AnnotationWarning,
    AudioGroundTruth,
    DenseLabels,
    LLPAnnotations,
    read_weak_labels,
    video_id,
)
from avvp.io_utils import atomic_write, atomic_write_text, write_json

MANIFEST = "synthetic.json"
HIDDEN_TRAIN_LABELS = "synthetic_train_labels.npz"
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


def class_frequencies() -> np.ndarray:
    """Per-class share of videos, in LLP order: Speech at its LLP share, the others a geometric
    ladder down to the rarest class (Telephone), summing to the mean label cardinality."""
    mean_cardinality = sum(count * share for count, share in CARDINALITY.items())
    ladder = np.geomspace(SECOND_SHARE, RAREST_SHARE, NUM_CLASSES - 1)
    ladder *= (mean_cardinality - SPEECH_SHARE) / ladder.sum()
    frequency = np.empty(NUM_CLASSES)
    frequency[0] = SPEECH_SHARE
    frequency[1:] = ladder[np.random.default_rng(0).permutation(NUM_CLASSES - 1)]
    return frequency


def draw_weights(shares: np.ndarray, iterations: int = 200) -> np.ndarray:
    """Weights for drawing a video's classes without replacement (one or two draws, in the
    CARDINALITY mix) so that class c is included with probability ``shares[c]``: the fixed point
    of the inclusion formula. Three-class videos (0.9 %) count as two-class ones."""
    single = CARDINALITY[1]
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
    rng: np.random.Generator, videos: int, segments: int = NUM_SEGMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """(audio, visual) labels (V, T, C) with the statistics of SPEC section 2."""
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


def builtin_labels(videos: int, seed: int) -> dict[str, SplitLabels]:
    rng = np.random.default_rng([seed, 1])
    sizes = split_sizes(videos)
    taken: set[str] = set()
    labels = {}
    for split in SPLITS:
        audio, visual = sample_builtin_labels(rng, sizes[split])
        labels[split] = SplitLabels(random_filenames(rng, sizes[split], taken), audio, visual)
    return labels


def split_sizes(videos: int) -> dict[str, int]:
    if videos < 3:
        raise ValueError(f"a synthetic dataset needs at least 3 videos (one a split), got {videos}")
    val = max(1, round(videos * BUILTIN_SPLIT_FRACTIONS["val"]))
    test = max(1, round(videos * BUILTIN_SPLIT_FRACTIONS["test"]))
    return {"train": videos - val - test, "val": val, "test": test}


def annotation_driven_labels(
    annotations: LLPAnnotations, videos: int | None, seed: int
) -> dict[str, SplitLabels]:
    """Real val/test labels; real train weak labels with segment patterns from val/test."""
    rng = np.random.default_rng([seed, 2])
    chosen = {split: np.arange(len(annotations.weak(split))) for split in SPLITS}
    total = sum(len(indices) for indices in chosen.values())
    if videos is not None and videos < total:
        for split in SPLITS:
            size = max(1, round(videos * len(chosen[split]) / total))
            chosen[split] = np.sort(rng.choice(chosen[split], size=size, replace=False))
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
        present = np.flatnonzero(audio.any(axis=0) | visual.any(axis=0))
        if len(present) and rng.random() < config.scene_affinity:
            scene = self.preferred_scene[rng.choice(present)]
        else:
            scene = rng.integers(config.scenes)
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
) -> Path:
    """Write a synthetic dataset in the LLP layout to ``out``; returns ``out``.

    A killed generation resumes: every file is written atomically and the manifest last, and
    each video's features depend only on the seed and the video, so finished files are kept.
    An existing dataset made with other settings is refused rather than overwritten.
    """
    out = Path(out)
    config = config or GeneratorConfig()
    if annotations is None and videos is None:
        raise ValueError("built-in synthetic data needs --videos N (or give --annotations DIR)")
    # Through JSON, so that it compares equal to what the manifest holds (tuples become lists).
    settings = _json_round_trip(
        {
            "format_version": FORMAT_VERSION,
            "mode": "builtin" if annotations is None else "annotation-driven",
            "annotations": None if annotations is None else str(Path(annotations).resolve()),
            "videos": videos,
            "seed": seed,
            "generator": config.to_json(),
        }
    )
    existing = read_manifest(out)
    if existing is not None and existing["settings"] != settings:
        raise ValueError(
            f"{out} holds a synthetic dataset made with other settings ({out / MANIFEST}); "
            "choose another --out or delete it"
        )
    if existing is not None:
        return out
    if annotations is None:
        labels = builtin_labels(videos, seed)
        _write_builtin_annotations(out, labels)
    else:
        real = LLPAnnotations(annotations, AudioGroundTruth.V2024)
        with warnings.catch_warnings():
            # The ignored rows are copied verbatim and warned about when the dataset is read.
            warnings.simplefilter("ignore", AnnotationWarning)
            labels = annotation_driven_labels(real, videos, seed)
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
    return out


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
        key = int.from_bytes(hashlib.sha256(identifier.encode()).digest()[:8], "little")
        rng = np.random.default_rng([seed, 4, key])
        features = model.render(split_labels.audio[i], split_labels.visual[i], rng)
        for name, path in paths.items():
            _save_npy(path, features[name])


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
        lines = (source / name).read_text(encoding="utf-8").splitlines()
        kept = [
            line
            for line in lines[1:]
            if line.strip()
            and ((filename := line.split("\t", 1)[0]) in chosen or filename not in real)
        ]
        atomic_write_text(out / name, "\n".join([lines[0], *kept]) + "\n")


# ---- reading back ---------------------------------------------------------------------------


def read_manifest(root: str | Path) -> dict | None:
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
    videos: int, seed: int = 0, difficulty: float | None = None, progress: bool = True
) -> Path:
    """The built-in synthetic dataset of this size, generated once under ``default_home()``."""
    config = GeneratorConfig() if difficulty is None else GeneratorConfig(difficulty=difficulty)
    tag = hashlib.sha256(json.dumps(config.to_json(), sort_keys=True).encode()).hexdigest()[:8]
    root = default_home() / f"synthetic-{videos}-seed{seed}-{tag}"
    return generate(root, videos=videos, seed=seed, config=config, progress=progress)
