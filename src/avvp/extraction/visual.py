"""ResNet-152 (8 x 2048 a second) and R(2+1)D-18 (1 x 512 a second): see avvp.extraction.base.

The LLP release made its visual features with torchvision's networks: ``ffmpeg -r 8`` frames, 80 of
them picked evenly per 10-s clip; ResNet-152 (ImageNet) on each frame, shorter side resized to 256
and centre-cropped to 224, ImageNet mean/std, the 2048-d pooled output; R(2+1)D-18 (Kinetics-400)
on each second's 8 frames squashed to 112 x 112, Kinetics mean/std, the 512-d pooled output. These
are the defaults here; docs/extraction.md says what differs (frames decoded directly, not through
JPEG files) and which keywords change the choices.

torchvision cannot be imported beside avvp's torch, so both networks are written here with exactly
torchvision's parameter names, shapes and order: users' torchvision weight files load unchanged,
with ``strict=True`` (tests/data/torchvision_state_dicts.json pins the names and shapes).
"""

from __future__ import annotations

import pickle
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from avvp.extraction.base import Extractor, weight_path
from avvp.extraction.media import read_frames
from avvp.registry import register

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The statistics torchvision's Kinetics-400 video models were trained with.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

# A resize option's name -> the (resize, crop) arguments of prepare_frames.
_Resizes = dict[str, tuple[int | tuple[int, int], int | None]]

# Segments decoded at a time: bounds the memory of long videos (read_frames returns whole frames).
CHUNK_SECONDS = 30


# --- ResNet-152 (torchvision's resnet152: Bottleneck blocks [3, 8, 36, 3], stride on the 3x3) ---


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's "ResNet v1.5"), 1x1 expand x4."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * 4
        # Attribute names and their order are torchvision's: they are the state-dict keys.
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )
            if stride != 1 or inplanes != out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + shortcut)


class ResNet152Net(nn.Module):
    """torchvision's resnet152 (ImageNet, 1000 classes); :meth:`features` stops before ``fc``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for index, (planes, blocks, stride) in enumerate(
            [(64, 3, 1), (128, 8, 2), (256, 36, 2), (512, 3, 2)], start=1
        ):
            layer = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * 4
            layer += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        # Unused by the features, kept so that torchvision's files load with strict=True.
        self.fc = nn.Linear(2048, 1000)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, Bottleneck):
                # torchvision's zero_init_residual: untrained blocks start as identities. Without
                # it, eval-mode --random-weights features grow to ~1e11 over 50 residual sums.
                nn.init.zeros_(module.bn3.weight)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images -> (N, 2048) globally average-pooled features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(images))


# --- R(2+1)D-18 (torchvision's r2plus1d_18: VideoResNet, BasicBlock [2, 2, 2, 2]) ---


class Conv2Plus1D(nn.Sequential):
    """A 3x3x3 convolution factored into a spatial 1x3x3 and a temporal 3x1x1 one (Tran et al.);
    the stride applies to both space (first) and time (second)."""

    def __init__(self, inplanes: int, planes: int, midplanes: int, stride: int = 1):
        super().__init__(
            nn.Conv3d(inplanes, midplanes, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False),
        )


class BasicBlock3d(nn.Module):
    """Two (2+1)D convolutions and a shortcut, named as torchvision's video BasicBlock."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        # The paper's choice, kept by torchvision: as many parameters as one full 3x3x3
        # convolution from inplanes to planes. Both convolutions of a block use this width.
        midplanes = (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)
        self.conv1 = nn.Sequential(
            Conv2Plus1D(inplanes, planes, midplanes, stride),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes, midplanes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(
                nn.Conv3d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm3d(planes)
            )
            if stride != 1 or inplanes != planes
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


class R2Plus1D18Net(nn.Module):
    """torchvision's r2plus1d_18 (Kinetics-400, 400 classes); :meth:`features` stops before
    ``fc``."""

    def __init__(self) -> None:
        super().__init__()
        # The (2+1)D stem: 45 mid-channels, torchvision's R2Plus1dStem.
        self.stem = nn.Sequential(
            nn.Conv3d(3, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
            nn.BatchNorm3d(45),
            nn.ReLU(inplace=True),
            nn.Conv3d(45, 64, (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )
        inplanes = 64
        for index, (planes, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
            layer = nn.Sequential(
                BasicBlock3d(inplanes, planes, stride), BasicBlock3d(planes, planes)
            )
            self.add_module(f"layer{index}", layer)
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512, 400)  # unused by the features; there for strict loading
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) normalised clips -> (N, 512) globally average-pooled features."""
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(clips)))))
        return self.avgpool(x).flatten(1)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(clips))


# --- frames to network inputs ---


def prepare_frames(
    frames: np.ndarray,
    resize: int | tuple[int, int],
    crop: int | None,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, h, w) float32, normalised.

    ``resize``: an int sets the shorter side (the other keeps the aspect ratio, truncated), a
    (height, width) pair sets both; ``crop``: the side of a centred square crop, or None. Resizing
    is Pillow's bilinear (antialiased when shrinking), the filter torchvision's Resize applies to
    the PIL images the LLP release fed it.
    """
    from PIL import Image

    images = []
    for frame in frames:
        image = Image.fromarray(frame)
        width, height = image.size
        if isinstance(resize, int):
            if width <= height:
                size = (resize, int(resize * height / width))
            else:
                size = (int(resize * width / height), resize)
        else:
            size = (resize[1], resize[0])
        image = image.resize(size, Image.Resampling.BILINEAR)
        if crop is not None:
            # Offsets rounded as torchvision's CenterCrop rounds them.
            left = round((image.width - crop) / 2.0)
            top = round((image.height - crop) / 2.0)
            image = image.crop((left, top, left + crop, top + crop))
        images.append(np.asarray(image))
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)
    return (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def frame_times(first: int, stop: int, per_second: int, offset: float) -> np.ndarray:
    """Times of the frames of segments ``first..stop-1``: ``s + (i + offset) / per_second``."""
    slots = np.arange(first * per_second, stop * per_second, dtype=np.float64)
    return (slots + offset) / per_second


def _build(network: type[nn.Module]) -> nn.Module:
    # A fixed seed, without touching the caller's random state: --random-weights features are
    # the same on every run and machine.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return network()


def load_network(
    network: type[nn.Module],
    weights: Path | None,
    filenames: Sequence[str],
    extractor: str,
    source: str,
    random_weights: bool,
) -> tuple[nn.Module, Path | None]:
    """The network, untrained (``random_weights``) or loaded strictly from the first of
    ``filenames`` present in ``weights``; and the file it came from."""
    net = _build(network)
    if random_weights:
        return net, None
    present = [name for name in filenames if weights is not None and (weights / name).is_file()]
    path = weight_path(weights, (present or list(filenames))[0], extractor, source)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, TypeError) as error:
        # RuntimeError: missing/unexpected keys or wrong shapes, or a damaged file; the others: a
        # file that is not a plain state dict. The reason on one line, cut: key lists are long.
        reason = " ".join(str(error).split())
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        raise ValueError(
            f"{path}: not a torchvision {network.__name__.removesuffix('Net')} state dict "
            f"({reason}); use the file from {source}"
        ) from error
    return net, path


class _VisualExtractor(Extractor):
    """Decoding in chunks of segments, preprocessing, batched forward passes: shared by both."""

    stream: ClassVar[str] = "visual"
    resizes: ClassVar[_Resizes]
    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]
    network: ClassVar[type[nn.Module]]
    filenames: ClassVar[tuple[str, ...]]  # the weight file names looked for, in order
    source: ClassVar[str]  # where the weights come from, for the missing-weights error
    per_second: int  # frames decoded per one-second segment

    def __init__(
        self,
        weights: str | Path | None,
        device: str | torch.device,
        random_weights: bool,
        frame_offset: float,
        resize: str,
        batch_size: int,
        filename: str | None,
    ):
        super().__init__(weights, device, random_weights)
        if resize not in self.resizes:
            raise ValueError(
                f"{self.name}: resize={resize!r}; expected one of {', '.join(self.resizes)}"
            )
        if not 0 <= frame_offset < 1:
            raise ValueError(f"{self.name}: frame_offset={frame_offset} must be in [0, 1)")
        if batch_size < 1:
            raise ValueError(f"{self.name}: batch_size={batch_size} must be at least 1")
        self.frame_offset = frame_offset
        self.resize = resize
        self.batch_size = batch_size
        filenames = (filename,) if filename else self.filenames
        net, self.weight_file = load_network(
            self.network, self.weights, filenames, self.name, self.source, random_weights
        )
        self.net = net.to(self.device).eval()
        self.weight_files = [] if self.weight_file is None else [self.weight_file]

    @abstractmethod
    def _inputs(self, frames: torch.Tensor) -> torch.Tensor:
        """Prepared frames of whole segments -> the network's inputs, one per output row."""

    def extract(self, video: str | Path, seconds: int) -> np.ndarray:
        if seconds < 1:
            raise ValueError(f"{video}: seconds={seconds}; at least one segment is needed")
        resize, crop = self.resizes[self.resize]
        rows = []
        for first in range(0, seconds, CHUNK_SECONDS):
            stop = min(seconds, first + CHUNK_SECONDS)
            times = frame_times(first, stop, self.per_second, self.frame_offset)
            frames = read_frames(video, times)
            inputs = self._inputs(prepare_frames(frames, resize, crop, self.mean, self.std))
            with torch.inference_mode():
                for start in range(0, len(inputs), self.batch_size):
                    batch = inputs[start : start + self.batch_size].to(self.device)
                    rows.append(self.net.features(batch).float().cpu())
        return torch.cat(rows).numpy().astype(np.float32, copy=False)


@register("extractor", "res152")
class ResNet152(_VisualExtractor):
    """ResNet-152 (ImageNet) features: 8 frames a second, 2048-d each (LLP's ``res152``).

    Keywords: ``frame_offset`` (frame ``i`` of second ``s`` at ``s + (i + frame_offset) / 8``;
    0, the default, is where LLP's ``ffmpeg -r 8`` frames fall), ``resize`` ("crop": shorter side
    256 and centre crop 224, LLP's; "squash": the whole frame to 224 x 224), ``batch_size``
    (frames a forward pass), ``filename`` (the weight file; default: the first present of
    :attr:`filenames`).
    """

    name = "res152"
    dim = 2048
    frames = 8
    per_second = 8
    resizes: ClassVar[_Resizes] = {"crop": (256, 224), "squash": ((224, 224), None)}
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    # torchvision's IMAGENET1K_V1 file (LLP's weights, under their old and current file names),
    # then IMAGENET1K_V2, tried in this order.
    network = ResNet152Net
    filenames = ("resnet152-394f9c45.pth", "resnet152-b121ed2d.pth", "resnet152-f82ba261.pth")
    source = (
        "torchvision's ResNet152_Weights.IMAGENET1K_V1, "
        "https://download.pytorch.org/models/resnet152-394f9c45.pth"
    )

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        random_weights: bool = False,
        *,
        frame_offset: float = 0.0,
        resize: str = "crop",
        batch_size: int = 32,
        filename: str | None = None,
    ):
        super().__init__(
            weights,
            device,
            random_weights,
            frame_offset,
            resize,
            batch_size,
            filename,
        )

    def _inputs(self, frames: torch.Tensor) -> torch.Tensor:
        return frames


@register("extractor", "r2plus1d_18")
class R2Plus1D18(_VisualExtractor):
    """R(2+1)D-18 (Kinetics-400) features: one clip a second, 512-d (LLP's ``r2plus1d_18``).

    Keywords: ``clip_frames`` (frames a clip, spread evenly over its second; LLP's 8 by default,
    16 is the clip length torchvision's Kinetics weights were trained on), ``frame_offset`` (frame
    ``i`` at ``s + (i + frame_offset) / clip_frames``), ``resize`` ("squash": the whole frame to
    112 x 112, LLP's; "crop": 128 x 171 and centre crop 112, torchvision's Kinetics evaluation),
    ``batch_size`` (clips a forward pass), ``filename`` (the weight file).
    """

    name = "r2plus1d_18"
    dim = 512
    frames = 1
    resizes: ClassVar[_Resizes] = {"squash": ((112, 112), None), "crop": ((128, 171), 112)}
    mean = KINETICS_MEAN
    std = KINETICS_STD
    network = R2Plus1D18Net
    filenames = ("r2plus1d_18-91a641e6.pth",)
    source = (
        "torchvision's R2Plus1D_18_Weights.KINETICS400_V1, "
        "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth"
    )

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        random_weights: bool = False,
        *,
        clip_frames: int = 8,
        frame_offset: float = 0.0,
        resize: str = "squash",
        batch_size: int = 8,
        filename: str | None = None,
    ):
        if clip_frames < 1:
            raise ValueError(f"{self.name}: clip_frames={clip_frames} must be at least 1")
        self.per_second = clip_frames
        super().__init__(
            weights,
            device,
            random_weights,
            frame_offset,
            resize,
            batch_size,
            filename,
        )

    def _inputs(self, frames: torch.Tensor) -> torch.Tensor:
        # (seconds * T, 3, H, W) -> (seconds, 3, T, H, W): one clip per second.
        clips = frames.view(-1, self.per_second, *frames.shape[1:])
        return clips.permute(0, 2, 1, 3, 4).contiguous()
