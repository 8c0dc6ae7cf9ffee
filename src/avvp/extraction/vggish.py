"""VGGish (audio, 1 x 128 a second): the LLP release's ``feats/vggish`` from a video file.

Three stages, each equal to its reference:

* the front end (:func:`log_mel_examples`): 16 kHz mono, 25-ms periodic-Hann frames every 10 ms,
  the magnitude of a 512-point FFT, 64 HTK mel bands from 125 to 7500 Hz, ``log(mel + 0.01)``,
  and 96-frame (0.96-s) examples: the numbers of the reference front end, ``vggish_input`` /
  ``mel_features`` of the ``torchvggish`` package;
* the network (:class:`VGGishNetwork`): the VGG of VGGish with the state-dict keys and shapes of
  ``torchvggish``, so its ``vggish-10086976.pth`` loads as it is;
* optionally the AudioSet post-processing (:func:`postprocess`): PCA with whitening, clip to
  [-2, 2], 8-bit quantisation, with the PCA of ``vggish_pca_params-970ea276.pth``.

Which example is segment ``s``'s (``alignment``): the LLP features were made by the reference
front end on 10-s clips, which cuts a clip into consecutive 0.96-s examples: segment ``s`` of a
clip gets the window starting at ``0.96 * s`` seconds, not at ``s``. ``"llp"`` (the default) keeps
exactly that and treats a longer video as consecutive 10-s clips, so a 10-s video gets the
reference's examples and a 25-s one those of its pieces 0-10, 10-20, 20-25 s: a window never
starts more than 0.36 s before its segment, as in the features the models were trained on.
``"second"`` takes the window starting at ``s`` seconds exactly.

Post-processing is off by default: the LLP (HAN) features are the raw 128-d embeddings of the
2018 TensorFlow VGGish, whose last layer ends in a ReLU, as ``torchvggish``'s does (see
docs/extraction.md, "VGGish").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from avvp.extraction.base import Extractor, weight_path
from avvp.extraction.media import read_audio
from avvp.registry import register

SAMPLE_RATE = 16000
WINDOW = 400  # samples: 25 ms
HOP = 160  # samples: 10 ms
FFT = 512  # the power of two above WINDOW
BANDS = 64
LOW_HZ, HIGH_HZ = 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s
FRAMES_PER_SECOND = SAMPLE_RATE // HOP
CLIP_SECONDS = 10  # the LLP clip, framed as the reference frames it
ALIGNMENTS = ("llp", "second")

QUANTISE_MIN, QUANTISE_MAX = -2.0, 2.0

RELEASE = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
WEIGHTS_FILE = "vggish-10086976.pth"
PCA_FILE = "vggish_pca_params-970ea276.pth"
RANDOM_SEED = 0


def _hertz_to_mel(hertz: np.ndarray | float) -> np.ndarray:
    # HTK's mel scale, as VGGish uses it.
    return 1127.0 * np.log(1.0 + np.asarray(hertz, dtype=np.float64) / 700.0)


def mel_matrix() -> np.ndarray:
    """(FFT // 2 + 1, BANDS) float64 weights: the magnitude spectrum times this is the mel one.

    Triangles equally spaced on the mel scale between LOW_HZ and HIGH_HZ, each rising from its
    lower neighbour's centre to 1 at its own centre; the DC bin weighs nothing.
    """
    bins = _hertz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, FFT // 2 + 1))[:, None]
    edges = np.linspace(_hertz_to_mel(LOW_HZ), _hertz_to_mel(HIGH_HZ), BANDS + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0] = 0.0
    return weights


def example_starts(seconds: int, alignment: str = "llp") -> np.ndarray:
    """The first log-mel frame (10-ms units) of segment ``s``'s example, for each segment."""
    if alignment not in ALIGNMENTS:
        raise ValueError(f"vggish alignment must be one of {', '.join(ALIGNMENTS)}: {alignment!r}")
    segments = np.arange(seconds)
    if alignment == "second":
        return segments * FRAMES_PER_SECOND
    clip, within = np.divmod(segments, CLIP_SECONDS)
    return clip * CLIP_SECONDS * FRAMES_PER_SECOND + within * EXAMPLE_FRAMES


def log_mel_examples(waveform: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(len(starts), 96, 64) float64 log-mel examples of a 16-kHz mono ``waveform``.

    Example ``i`` holds log-mel frames ``starts[i] .. starts[i] + 95``, frame ``f`` being the
    25-ms window of samples ``160 f .. 160 f + 399``; every one must lie inside the waveform.
    """
    waveform = np.asarray(waveform, dtype=np.float64)
    if waveform.ndim != 1:
        raise ValueError(f"a mono waveform is 1-d, got shape {waveform.shape}")
    frames = np.lib.stride_tricks.sliding_window_view(waveform, WINDOW)[::HOP]
    wanted = np.asarray(starts)[:, None] + np.arange(EXAMPLE_FRAMES)
    if len(wanted) and wanted.max() >= len(frames):
        raise ValueError(
            f"a waveform of {len(waveform)} samples has {len(frames)} frames; "
            f"frame {wanted.max()} was asked for"
        )
    # A periodic Hann window: one whole period of the cosine over the 400 samples.
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)
    spectrum = np.abs(np.fft.rfft(frames[wanted] * hann, FFT))
    return np.log(spectrum @ mel_matrix() + LOG_OFFSET)


def make_features() -> nn.Sequential:
    """VGGish's convolutions; the layer indices are torchvggish's ``features.N`` keys."""
    layers: list[nn.Module] = []
    channels = 1
    for width in (64, "pool", 128, "pool", 256, 256, "pool", 512, 512, "pool"):
        if width == "pool":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = width
    return nn.Sequential(*layers)


class VGGishNetwork(nn.Module):
    """(batch, 1, 96, 64) log-mel examples -> (batch, 128) raw embeddings.

    The module names and layer indices are torchvggish's, so its state dict loads with
    ``strict=True``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = make_features()
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 128),
            nn.ReLU(inplace=True),
        )

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        maps = self.features(examples)  # (batch, 512, 6, 4)
        # The weights were ported from TensorFlow, which flattens channels last:
        # (time, band, channel).
        return self.embeddings(maps.permute(0, 2, 3, 1).flatten(1))


def postprocess(
    embeddings: torch.Tensor, vectors: torch.Tensor, means: torch.Tensor
) -> torch.Tensor:
    """AudioSet's release format: PCA (with whitening), clip to [-2, 2], 8 bits as floats 0..255."""
    projected = (embeddings - means) @ vectors.T
    clipped = projected.clamp(QUANTISE_MIN, QUANTISE_MAX)
    return torch.round((clipped - QUANTISE_MIN) * (255.0 / (QUANTISE_MAX - QUANTISE_MIN)))


def _load(path: Path) -> Any:
    # torchvggish's PCA file pickles numpy arrays (saved by numpy 1, whose reconstructor lived in
    # numpy.core); allowing those few numpy types keeps the load weights-only, so a weight file
    # cannot run code.
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    allowed = [
        reconstruct,
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        type(np.dtype(np.float32)),
        type(np.dtype(np.float64)),
    ]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a checkpoint
        raise OSError(f"vggish: cannot read {path} as a torch checkpoint ({error})") from error


def _pca_tensors(params: Any, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        vectors = torch.as_tensor(np.asarray(params["pca_eigen_vectors"]), dtype=torch.float32)
        means = torch.as_tensor(np.asarray(params["pca_means"]), dtype=torch.float32)
    except (KeyError, TypeError, IndexError) as error:
        raise ValueError(
            f"vggish: {path} is not a VGGish PCA file: it needs pca_eigen_vectors and pca_means"
        ) from error
    means = means.reshape(-1)  # (128,) or torchvggish's in-memory (128, 1)
    if vectors.shape != (128, 128) or means.shape != (128,):
        raise ValueError(
            f"vggish: {path}: pca_eigen_vectors {tuple(vectors.shape)} and pca_means "
            f"{tuple(means.shape)} should be (128, 128) and (128,)"
        )
    return vectors, means


@register("extractor", "vggish")
class VGGish(Extractor):
    """128-d VGGish embeddings, one per one-second segment (see the module docstring).

    ``postprocess``: AudioSet's PCA and 8-bit quantisation (floats 0..255), off for the LLP
    features. ``alignment``: ``"llp"`` or ``"second"``, which window is a segment's.
    ``batch_size``: examples per forward pass.
    """

    name: ClassVar[str] = "vggish"
    dim: ClassVar[int] = 128
    frames: ClassVar[int] = 1
    stream: ClassVar[str] = "audio"

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        random_weights: bool = False,
        postprocess: bool = False,
        alignment: str = "llp",
        batch_size: int = 64,
    ):
        super().__init__(weights, device, random_weights)
        example_starts(0, alignment)  # an unknown alignment fails here, before any video
        if batch_size < 1:
            raise ValueError(f"vggish batch_size must be at least 1, got {batch_size}")
        self.postprocess = postprocess
        self.alignment = alignment
        self.batch_size = batch_size
        self.pca: tuple[torch.Tensor, torch.Tensor] | None = None
        self.network = self._random_network() if random_weights else self._loaded_network()
        self.network.to(self.device).eval()
        if self.pca is not None:
            self.pca = (self.pca[0].to(self.device), self.pca[1].to(self.device))

    def _random_network(self) -> VGGishNetwork:
        # For plumbing tests only: the same untrained network every time, and a random rotation
        # with random means for the PCA, so that post-processing still changes the numbers.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            network = VGGishNetwork()
            if self.postprocess:
                vectors, _ = torch.linalg.qr(torch.randn(128, 128))
                self.pca = (vectors, 0.1 * torch.randn(128))
        return network

    def _loaded_network(self) -> VGGishNetwork:
        path = weight_path(self.weights, WEIGHTS_FILE, self.name, RELEASE + WEIGHTS_FILE)
        # The PCA file is checked before the network's 290 MB are read.
        pca_path = None
        if self.postprocess:
            pca_path = weight_path(self.weights, PCA_FILE, self.name, RELEASE + PCA_FILE)
        self.weight_files = [path] if pca_path is None else [path, pca_path]
        network = VGGishNetwork()
        try:
            network.load_state_dict(_load(path))
        except (RuntimeError, TypeError, AttributeError) as error:
            raise ValueError(
                f"vggish: {path} is not torchvggish's VGGish state dict ({error})"
            ) from error
        if pca_path is not None:
            self.pca = _pca_tensors(_load(pca_path), pca_path)
        return network

    def extract(self, video: str | Path, seconds: int) -> np.ndarray:
        """``(seconds, 128)`` float32 VGGish features of ``video``'s audio."""
        return self.embed(read_audio(video, SAMPLE_RATE, seconds), seconds)

    @torch.inference_mode()
    def embed(self, waveform: np.ndarray, seconds: int) -> np.ndarray:
        """``(seconds, 128)`` float32 features of a 16-kHz mono waveform of ``seconds`` seconds."""
        if seconds < 1:
            raise ValueError(f"vggish: a waveform of {seconds} segments has no example")
        if len(waveform) != seconds * SAMPLE_RATE:
            raise ValueError(
                f"vggish: a {seconds}-s waveform has {seconds * SAMPLE_RATE} samples, "
                f"got {len(waveform)}"
            )
        starts = example_starts(seconds, self.alignment)
        rows = []
        for first in range(0, seconds, self.batch_size):
            examples = log_mel_examples(waveform, starts[first : first + self.batch_size])
            batch = torch.as_tensor(examples, dtype=torch.float32, device=self.device)
            embeddings = self.network(batch[:, None])
            if self.pca is not None:
                embeddings = postprocess(embeddings, *self.pca)
            rows.append(embeddings.float().cpu().numpy())
        return np.concatenate(rows)
