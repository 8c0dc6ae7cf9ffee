"""CLIP image and CLAP audio embeddings per one-second segment (feature sets ``clip``, ``clap``).

The inputs of the strongest published systems (SPEC section 9: VALOR++, UWAV), written in the LLP
layout like the other feature sets (``feats/clip/<id>.npy``, ``feats/clap/<id>.npy``: one row a
segment, ``frames`` = 1), so a model reads them through ``features.*`` (docs/extraction.md).

Both come from local Hugging Face ``transformers`` checkpoints in the ``--weights`` folder:

- ``WEIGHTS/clip/``: a CLIP folder (``config.json`` and ``model.safetensors`` or
  ``pytorch_model.bin``), as ``CLIPModel.from_pretrained("openai/clip-vit-base-patch32")
  .save_pretrained("WEIGHTS/clip")`` writes it; no tokenizer is needed. Loaded and preprocessed
  by :mod:`avvp.clip_labels` (the loader of ``avvp pseudo-labels clip``).
- ``WEIGHTS/clap/``: a CLAP folder (the same files plus the feature extractor's
  ``preprocessor_config.json``), as ``ClapModel`` and ``ClapProcessor.from_pretrained(
  "laion/clap-htsat-unfused")`` each ``.save_pretrained("WEIGHTS/clap")`` write it.

The dimension is the checkpoint's projection dimension (512 for both of those), set on the
instance: the class attribute ``dim`` is only the default of those checkpoints. Embeddings are the
projected ones (what CLIP and CLAP compare by cosine), L2-normalised by default, since only their
direction carries meaning in those models; ``normalize=False`` keeps the raw projection.

``random_weights=True`` builds a small untrained network of the same family with the default
dimension (512), for plumbing tests only: its features mean nothing.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from avvp.clip_labels import _Clip, _load_clip, preprocess
from avvp.extraction.base import Extractor, MissingWeightsError, weight_path
from avvp.extraction.media import read_audio, read_frames
from avvp.registry import register

# Files holding a transformers model's weights in a saved folder (a single file, or the index of
# a sharded one).
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
CLIP_SOURCE = (
    "a Hugging Face CLIP folder: in Python with transformers, "
    "CLIPModel.from_pretrained('openai/clip-vit-base-patch32').save_pretrained('DIR/clip')"
)
CLAP_SOURCE = (
    "a Hugging Face CLAP folder: in Python with transformers, for both ClapModel and "
    "ClapProcessor, .from_pretrained('laion/clap-htsat-unfused').save_pretrained('DIR/clap')"
)
# The projection dimension of the checkpoints named above, which the random networks share so that
# a config written for plumbing tests also fits the real features.
DEFAULT_DIM = 512
# Every random network starts from this seed: plumbing runs are reproducible.
RANDOM_SEED = 0


def _transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError as error:
        raise ImportError(
            "CLIP and CLAP features need transformers: pip install 'avvp[clip]'"
        ) from error


def checkpoint_folder(
    weights: str | Path | None, folder: str, extractor: str, source: str, extra: tuple[str, ...]
) -> Path:
    """``weights/folder`` holding ``config.json``, a weights file and ``extra`` files, or a
    :class:`MissingWeightsError` naming the first file missing and where to get it."""
    for filename in ("config.json", *extra):
        weight_path(weights, f"{folder}/{filename}", extractor, source)
    path = Path(weights) / folder  # weight_path has checked weights is given
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise MissingWeightsError(
            f"{extractor}: no weights file ({' or '.join(WEIGHT_FILES[:2])}) in {path} ({source})"
        )
    return path


def _finish(embeddings: torch.Tensor, normalize: bool) -> np.ndarray:
    if normalize:
        embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
    return embeddings.float().cpu().numpy()


@register("extractor", "clip")
class ClipImage(Extractor):
    """CLIP image embeddings, one row a segment.

    ``frame_samples`` frames of each second, at its middle by default (second ``t``: times
    ``t + (k + 0.5) / frame_samples``), go through CLIP's image encoder with the preprocessing of
    :func:`avvp.clip_labels.preprocess`; their projected embeddings are averaged, then normalised
    (``normalize``). ``batch_size`` frames go through the network at once.
    """

    name: ClassVar[str] = "clip"
    dim: ClassVar[int] = DEFAULT_DIM
    frames: ClassVar[int] = 1
    stream: ClassVar[str] = "visual"

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        random_weights: bool = False,
        *,
        frame_samples: int = 1,
        normalize: bool = True,
        batch_size: int = 64,
    ):
        super().__init__(weights, device, random_weights)
        for option, value in (("frame_samples", frame_samples), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"clip: {option} must be a positive integer, got {value!r}")
        self.frame_samples = frame_samples
        self.normalize = normalize
        self.batch_size = batch_size
        if random_weights:
            self.clip = _Clip(_random_clip().to(self.device).eval(), None, str(self.device))
        else:
            folder = checkpoint_folder(self.weights, "clip", "clip", CLIP_SOURCE, ())
            self.clip = _load_clip(folder, str(self.device))
            self.weight_files = [folder]
        self.dim = self.clip.dim

    def extract(self, video: str | Path, seconds: int) -> np.ndarray:
        from PIL import Image

        offsets = (np.arange(self.frame_samples) + 0.5) / self.frame_samples
        times = (np.arange(seconds)[:, None] + offsets).reshape(-1)
        frames = read_frames(video, times)
        embeddings = []
        # Preprocessed one batch at a time: the float pixels of a long video would not fit.
        for first in range(0, len(frames), self.batch_size):
            pixels = np.stack(
                [
                    preprocess(Image.fromarray(frame), self.clip.image_size)
                    for frame in frames[first : first + self.batch_size]
                ]
            )
            embeddings.append(self.clip.encode_images(pixels, self.batch_size))
        raw = torch.from_numpy(np.concatenate(embeddings))
        return _finish(raw.reshape(seconds, self.frame_samples, -1).mean(dim=1), self.normalize)


@register("extractor", "clap")
class ClapAudio(Extractor):
    """CLAP audio embeddings, one row a segment.

    The audio track, mono at the checkpoint's rate (48 kHz), is cut into its one-second segments;
    each segment alone goes through the checkpoint's feature extractor, which pads it to CLAP's
    10-s input as it pads any short clip (LAION's checkpoints: ``repeatpad``, the second repeated
    ten times), then through the audio encoder and projection (``normalize``: L2-normalised).
    So a segment's embedding depends on that second only, like the other LLP feature sets.
    ``batch_size`` segments go through the network at once.
    """

    name: ClassVar[str] = "clap"
    dim: ClassVar[int] = DEFAULT_DIM
    frames: ClassVar[int] = 1
    stream: ClassVar[str] = "audio"

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        random_weights: bool = False,
        *,
        normalize: bool = True,
        batch_size: int = 32,
    ):
        super().__init__(weights, device, random_weights)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"clap: batch_size must be a positive integer, got {batch_size!r}")
        self.normalize = normalize
        self.batch_size = batch_size
        transformers = _transformers()
        if random_weights:
            model = _random_clap()
            # An unfused CLAP takes one mel channel: truncation "rand_trunc" gives it (the
            # default, "fusion", stacks four for fused ones).
            self.feature_extractor = transformers.ClapFeatureExtractor(truncation="rand_trunc")
        else:
            folder = checkpoint_folder(
                self.weights, "clap", "clap", CLAP_SOURCE, ("preprocessor_config.json",)
            )
            self.weight_files = [folder]
            try:
                model = transformers.ClapModel.from_pretrained(folder, local_files_only=True)
                self.feature_extractor = transformers.ClapFeatureExtractor.from_pretrained(
                    folder, local_files_only=True
                )
            except Exception as error:  # every loader failure becomes one message naming it
                raise ValueError(
                    f"clap: {folder} could not be loaded as a Hugging Face CLAP folder "
                    f"({CLAP_SOURCE}): {type(error).__name__}: {error}"
                ) from error
        self.model = model.float().to(self.device).eval()
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self.dim = int(self.model.config.projection_dim)

    def extract(self, video: str | Path, seconds: int) -> np.ndarray:
        segments = read_audio(video, self.sample_rate, seconds).reshape(seconds, self.sample_rate)
        embeddings = []
        with torch.inference_mode():
            for first in range(0, seconds, self.batch_size):
                inputs = self.feature_extractor(
                    list(segments[first : first + self.batch_size]),
                    sampling_rate=self.sample_rate,
                    return_tensors="pt",
                )
                # No segment is longer than CLAP's input, but with truncation="fusion" the feature
                # extractor marks a random one as longer (a training-time augmentation), which
                # would make a segment's embedding depend on its batch.
                longer = torch.zeros_like(inputs["is_longer"], dtype=torch.bool)
                pooled = self.model.audio_model(
                    input_features=inputs["input_features"].float().to(self.device),
                    is_longer=longer.to(self.device),
                ).pooler_output
                embeddings.append(self.model.audio_projection(pooled))
        return _finish(torch.cat(embeddings), self.normalize)


def _random_clip() -> Any:
    """A small untrained CLIP taking 224-pixel images, projecting to :data:`DEFAULT_DIM`."""
    transformers = _transformers()
    config = transformers.CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 32,
        },
        projection_dim=DEFAULT_DIM,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return transformers.CLIPModel(config).float()


def _random_clap() -> Any:
    """A small untrained CLAP (HTSAT audio encoder, unfused) projecting to :data:`DEFAULT_DIM`."""
    transformers = _transformers()
    config = transformers.ClapConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        # Two stages of 8 and 16 channels: the encoder's width (hidden_size) is the last one's.
        audio_config={
            "hidden_size": 16,
            "patch_embeds_hidden_size": 8,
            "depths": [1, 1],
            "num_attention_heads": [1, 1],
            "enable_fusion": False,
        },
        projection_dim=DEFAULT_DIM,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return transformers.ClapModel(config).float()
