"""CLIP visual scores for VPLAN's pseudo-label generation (PLG, SPEC section 7, paper 003).

For every one-second segment of a video, one frame goes through CLIP's image encoder and every
LLP class through its text encoder with the prompt "This photo contains the [CLS]"; the score of
a class is the softmax over the 25 classes of the cosine similarities scaled by CLIP's logit scale.
Thresholding these scores and AND-ing them with the weak labels is the caller's job.

CLIP implementation: Hugging Face ``transformers`` (``CLIPModel`` + ``CLIPTokenizer``), not
``open_clip_torch``. open_clip imports torchvision unconditionally, and PyPI's torchvision wheels
do not load next to the CPU build of torch 2.13.0 ("operator torchvision::nms does not exist";
checked in a fresh virtual environment). transformers' CLIP needs no torchvision. The image
preprocessing is done here with PIL and numpy and is the one of ``CLIPImageProcessor`` (and of
OpenAI's CLIP): resize the shorter side to the model's image size (bicubic), centre crop,
scale to [0, 1], normalise with the OpenAI CLIP mean and standard deviation (those of OpenAI's
checkpoints and of the LAION OpenCLIP ones converted to transformers; a checkpoint's own
``preprocessor_config.json`` is not read).

Checkpoint: a local Hugging Face CLIP folder, as written by ``CLIPModel.save_pretrained`` plus
the tokenizer files (``config.json``, ``model.safetensors`` or ``pytorch_model.bin``, and
``vocab.json`` + ``merges.txt`` or ``tokenizer.json``), e.g. a copy of
``openai/clip-vit-base-patch32`` (the paper used a ViT CLIP), or the weights file inside such a
folder. The architecture comes from ``config.json``.
Nothing is downloaded.

Prompts: a class name is written readably by turning underscores into spaces ("Baby_cry_infant_cry"
-> "Baby cry infant cry", "Frying_(food)" -> "Frying (food)"); CLIP's tokenizer lowercases.

Frames, one per segment, from a folder ``frames`` that holds, for a video id such as
``BjCEufrlXm4_20_30``, the entry named by that LLP filename or else by its YouTube id
(``BjCEufrlXm4``), each either:

- a frame folder ``<name>/`` of images (sorted by name, numbers compared as numbers) that spans
  the clip: segment t gets the image at index ``floor((t + 0.5) * n / segments)`` of the n images;
- a video file ``<name>.mp4`` (or .mkv, .webm, .avi), decoded with PyAV: segment t gets the frame
  whose timestamp is nearest to ``clip_start + t + 0.5`` seconds, and that frame must lie inside
  the segment. Times count from the stream's start. The clip starts at 0 (the file is the clip, as
  the LLP release ships it), except for a file found by YouTube id that is longer than
  ``segments + 1`` seconds and reaches the end of the LLP window ``_start_end``: that is the whole
  YouTube video, and the clip starts at ``start``.

Precomputed image embeddings (``frame_features``), a ``.npz`` file with either one array a video,
keyed by the LLP filename or the YouTube id, each ``(segments, D)``, or the two arrays
``video_ids`` (V,) and ``features`` (V, segments, D); :func:`clip_frame_embeddings` computes them.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avvp.classes import CLASSES, NUM_SEGMENTS
from avvp.data.annotations import FILENAME_PATTERN
from avvp.data.annotations import video_id as youtube_id

if TYPE_CHECKING:
    from PIL.Image import Image

DEFAULT_PROMPT = "This photo contains the {}"
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# The normalisation of OpenAI's CLIP (see the module docstring).
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
# The weights files that ``CLIPModel.from_pretrained`` reads from a folder.
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
STACKED_IDS_KEY = "video_ids"
STACKED_FEATURES_KEY = "features"


def clip_visual_scores(
    video_ids: Sequence[str],
    *,
    checkpoint: Path,
    frames: Path | None = None,
    frame_features: Path | None = None,
    prompt: str = DEFAULT_PROMPT,
    segments: int = NUM_SEGMENTS,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """(V, segments, 25) float32 CLIP class scores of each segment, softmax over the LLP classes.

    Exactly one of ``frames`` (videos or frame folders) and ``frame_features`` (precomputed image
    embeddings, see the module docstring) is given; the checkpoint's ``config.json`` names the
    architecture. ``prompt`` holds one ``{}`` for the class name.
    """
    if (frames is None) == (frame_features is None):
        raise ValueError("give exactly one of frames (videos or frame folders) and frame_features")
    if "{}" not in prompt:
        raise ValueError(f"prompt {prompt!r} has no {{}} for the class name")
    _check_segments(segments)
    clip = _load_clip(Path(checkpoint), device)
    if frame_features is not None:
        embeddings = _read_frame_features(Path(frame_features), video_ids, segments, clip.dim)
    else:
        embeddings = _frame_embeddings(
            clip, video_ids, Path(frames), segments, batch_size, progress
        )
    text = clip.encode_text([prompt.format(readable_class_name(name)) for name in CLASSES])
    return class_scores(embeddings, text, clip.logit_scale)


def clip_frame_embeddings(
    video_ids: Sequence[str],
    *,
    checkpoint: Path,
    frames: Path,
    segments: int = NUM_SEGMENTS,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """(V, segments, D) float32 CLIP image embeddings (projected, not normalised) of the segment
    frames: what ``np.savez(path, video_ids=..., features=...)`` stores for ``frame_features``."""
    _check_segments(segments)
    clip = _load_clip(Path(checkpoint), device)
    return _frame_embeddings(clip, video_ids, Path(frames), segments, batch_size, progress)


def readable_class_name(name: str) -> str:
    """The class name as it goes into the prompt: underscores become spaces."""
    return name.replace("_", " ")


def class_scores(image: np.ndarray, text: np.ndarray, logit_scale: float) -> np.ndarray:
    """Softmax over classes of ``logit_scale`` x cosine similarity.

    ``image`` is (..., D) image embeddings, ``text`` (C, D) class embeddings; returns (..., C)
    float32.
    """
    image = image / np.linalg.norm(image, axis=-1, keepdims=True)
    text = text / np.linalg.norm(text, axis=-1, keepdims=True)
    logits = logit_scale * (image.astype(np.float64) @ text.astype(np.float64).T)
    logits -= logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    return (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float32)


def segment_frames(video_id: str, frames: Path, segments: int = NUM_SEGMENTS) -> list[Image]:
    """The RGB frame of each one-second segment of a video (rules in the module docstring)."""
    _check_segments(segments)
    frames = Path(frames)
    source = _find_source(video_id, frames)
    if source.is_dir():
        return _folder_frames(video_id, source, segments)
    # Only a file named by the YouTube id can be the whole YouTube video.
    window = _clip_window(video_id) if source.stem != video_id else None
    return _video_frames(video_id, source, segments, window)


def preprocess(image: Image, size: int) -> np.ndarray:
    """(3, size, size) float32 CLIP input: shorter side resized to ``size`` (bicubic), centre
    crop, OpenAI CLIP normalisation."""
    from PIL import Image as PILImage

    image = image.convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    resized = (size, int(height * scale)) if width <= height else (int(width * scale), size)
    image = image.resize(resized, PILImage.Resampling.BICUBIC)
    left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
    image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return ((pixels - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)


@dataclass
class _Clip:
    """A loaded CLIP model with its tokenizer, on one device, in evaluation mode."""

    model: Any  # transformers.CLIPModel
    tokenizer: Any  # transformers.CLIPTokenizer
    device: str

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())

    def encode_text(self, prompts: list[str]) -> np.ndarray:
        """(len(prompts), D) projected text embeddings."""
        import torch

        tokens = self.tokenizer(
            prompts,
            padding=True,
            truncation=True,
            max_length=int(self.model.config.text_config.max_position_embeddings),
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            pooled = self.model.text_model(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            ).pooler_output
            return self.model.text_projection(pooled).float().cpu().numpy()

    def encode_images(self, pixels: np.ndarray, batch_size: int) -> np.ndarray:
        """(N, D) projected image embeddings of (N, 3, S, S) preprocessed images."""
        import torch

        embeddings = []
        with torch.inference_mode():
            for first in range(0, len(pixels), batch_size):
                batch = torch.from_numpy(pixels[first : first + batch_size]).to(self.device)
                pooled = self.model.vision_model(pixel_values=batch).pooler_output
                embeddings.append(self.model.visual_projection(pooled).float().cpu().numpy())
        return np.concatenate(embeddings)


def _import_optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"CLIP pseudo labels need the optional dependency {module!r} ({error}); "
            "install avvp[clip]: pip install 'avvp[clip]'"
        ) from error


def _check_segments(segments: int) -> None:
    if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
        raise ValueError(f"segments must be a positive integer, got {segments!r}")


def _load_clip(checkpoint: Path, device: str) -> _Clip:
    transformers = _import_optional("transformers")
    if not checkpoint.exists():
        raise FileNotFoundError(f"CLIP checkpoint {checkpoint} does not exist")
    folder = checkpoint
    if checkpoint.is_file():
        if checkpoint.name not in WEIGHTS_FILES:
            raise ValueError(
                f"CLIP checkpoint {checkpoint}: expected a Hugging Face CLIP folder or its "
                f"weights file ({' or '.join(WEIGHTS_FILES)}); convert OpenAI or open_clip "
                "checkpoints to the transformers format first"
            )
        folder = checkpoint.parent
    try:
        model = transformers.CLIPModel.from_pretrained(folder, local_files_only=True)
        tokenizer = transformers.CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as error:  # every loader failure becomes one message naming the folder
        raise ValueError(
            f"CLIP checkpoint {folder} could not be loaded as a Hugging Face CLIP folder "
            "(config.json, model.safetensors or pytorch_model.bin, vocab.json + merges.txt "
            f"or tokenizer.json): {type(error).__name__}: {error}"
        ) from error
    return _Clip(model=model.float().to(device).eval(), tokenizer=tokenizer, device=device)


def _frame_embeddings(
    clip: _Clip,
    video_ids: Sequence[str],
    frames: Path,
    segments: int,
    batch_size: int,
    progress: bool,
) -> np.ndarray:
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not frames.is_dir():
        raise FileNotFoundError(f"frames folder {frames} does not exist")
    embeddings = np.empty((len(video_ids), segments, clip.dim), dtype=np.float32)
    # Whole videos per encoder call, about batch_size frames each.
    videos_per_batch = max(1, batch_size // segments)
    with tqdm(total=len(video_ids), desc="CLIP frames", unit="video", disable=not progress) as bar:
        for first in range(0, len(video_ids), videos_per_batch):
            batch_ids = video_ids[first : first + videos_per_batch]
            pixels = []
            for name in batch_ids:
                images = segment_frames(name, frames, segments)
                pixels.extend(preprocess(image, clip.image_size) for image in images)
                bar.update()
            encoded = clip.encode_images(np.stack(pixels), batch_size)
            embeddings[first : first + len(batch_ids)] = encoded.reshape(
                len(batch_ids), segments, -1
            )
    return embeddings


def _candidate_names(video_id: str) -> list[str]:
    """The LLP filename first, then its YouTube id (when ``video_id`` is an LLP filename)."""
    if FILENAME_PATTERN.fullmatch(video_id):
        return [video_id, youtube_id(video_id)]
    return [video_id]


def _find_source(video_id: str, frames: Path) -> Path:
    for name in _candidate_names(video_id):
        if (frames / name).is_dir():
            return frames / name
        for extension in VIDEO_EXTENSIONS:
            if (frames / f"{name}{extension}").is_file():
                return frames / f"{name}{extension}"
    tried = " or ".join(_candidate_names(video_id))
    raise FileNotFoundError(
        f"video {video_id}: no frame folder or video file ({', '.join(VIDEO_EXTENSIONS)}) "
        f"named {tried} in {frames}"
    )


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _folder_frames(video_id: str, folder: Path, segments: int) -> list[Image]:
    from PIL import Image as PILImage

    images = sorted(
        (path for path in folder.iterdir() if path.suffix.lower() in IMAGE_EXTENSIONS),
        key=_natural_key,
    )
    if len(images) < segments:
        raise ValueError(
            f"video {video_id}: frame folder {folder} has {len(images)} images, fewer than the "
            f"{segments} segments needed"
        )
    chosen = []
    for segment in range(segments):
        path = images[math.floor((segment + 0.5) * len(images) / segments)]
        try:
            with PILImage.open(path) as image:
                chosen.append(image.convert("RGB"))
        except OSError as error:
            raise ValueError(f"video {video_id}: cannot read image {path}: {error}") from error
    return chosen


def _clip_window(video_id: str) -> tuple[float, float] | None:
    """(start, end) seconds of an LLP filename ``<youtube id>_<start>_<end>``."""
    if not FILENAME_PATTERN.fullmatch(video_id):
        return None
    start, end = video_id[len(youtube_id(video_id)) + 1 :].split("_")
    return float(start), float(end)


def _clip_start(duration: float, window: tuple[float, float] | None, segments: int) -> float:
    """Where the clip starts in a file of ``duration`` seconds (rule in the module docstring)."""
    if window is not None and duration > segments + 1 and duration >= window[1]:
        return window[0]
    return 0.0


def _video_frames(
    video_id: str, path: Path, segments: int, window: tuple[float, float] | None
) -> list[Image]:
    av = _import_optional("av")
    nearest: list[Any] = [None] * segments  # per segment, the frame nearest to its middle
    gaps = [math.inf] * segments
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise ValueError(f"video {video_id}: cannot read video file {path}: {error}") from error
    with container:
        if not container.streams.video:
            raise ValueError(f"video {video_id}: {path} has no video stream")
        stream = container.streams.video[0]
        stream_start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        duration = container.duration / av.time_base if container.duration else 0.0
        clip_start = _clip_start(duration, window, segments)
        try:
            if clip_start > 0:
                container.seek(int((stream_start + clip_start) / stream.time_base), stream=stream)
            for frame in container.decode(stream):
                if frame.time is None:
                    raise ValueError(f"video {video_id}: {path} has frames without timestamps")
                time = frame.time - stream_start - clip_start
                if time >= segments:
                    break
                segment = math.floor(time)
                if segment >= 0 and abs(time - segment - 0.5) < gaps[segment]:
                    nearest[segment], gaps[segment] = frame, abs(time - segment - 0.5)
        except av.error.FFmpegError as error:
            raise ValueError(
                f"video {video_id}: cannot decode video file {path}: {error}"
            ) from error
    missing = [segment for segment, frame in enumerate(nearest) if frame is None]
    if missing:
        raise ValueError(
            f"video {video_id}: {path} has no frame in second {missing[0]} of the clip (clip "
            f"start {clip_start:g} s, file {duration:.2f} s); it is shorter than the "
            f"{segments} s needed"
        )
    return [frame.to_image() for frame in nearest]


def _read_frame_features(
    path: Path, video_ids: Sequence[str], segments: int, dim: int
) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"frame features file {path} does not exist")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read frame features file {path} as .npz: {error}") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"frame features file {path} holds one array, not an .npz archive")
    embeddings = np.empty((len(video_ids), segments, dim), dtype=np.float32)
    with archive:
        # One array a video is read lazily, only for the videos asked for.
        stored = _stacked_features(path, archive) if STACKED_IDS_KEY in archive else archive
        for row, name in enumerate(video_ids):
            key = next((key for key in _candidate_names(name) if key in stored), None)
            if key is None:
                raise ValueError(f"video {name}: not in frame features file {path}")
            embeddings[row] = _checked_features(name, path, stored[key], segments, dim)
    return embeddings


def _checked_features(
    video_id: str, path: Path, features: np.ndarray, segments: int, dim: int
) -> np.ndarray:
    if features.shape != (segments, dim):
        raise ValueError(
            f"video {video_id}: frame features in {path} have shape {features.shape}, "
            f"expected ({segments}, {dim}) (segments, CLIP embedding size)"
        )
    if not np.isfinite(features).all():
        raise ValueError(f"video {video_id}: frame features in {path} contain NaN or infinity")
    if not np.linalg.norm(features, axis=-1).all():
        raise ValueError(f"video {video_id}: frame features in {path} contain a zero vector")
    return features


def _stacked_features(path: Path, archive: np.lib.npyio.NpzFile) -> dict[str, np.ndarray]:
    ids = archive[STACKED_IDS_KEY]
    if STACKED_FEATURES_KEY not in archive:
        raise ValueError(
            f"frame features file {path} has {STACKED_IDS_KEY!r} but no {STACKED_FEATURES_KEY!r}"
        )
    features = archive[STACKED_FEATURES_KEY]
    if ids.ndim != 1 or features.ndim != 3 or len(features) != len(ids):
        raise ValueError(
            f"frame features file {path}: {STACKED_FEATURES_KEY!r} has shape {features.shape} "
            f"and {STACKED_IDS_KEY!r} {ids.shape}; expected (V, segments, D) and (V,)"
        )
    return {str(name): array for name, array in zip(ids, features, strict=True)}
