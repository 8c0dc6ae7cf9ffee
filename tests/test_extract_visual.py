"""The ResNet-152 and R(2+1)D-18 extractors: torchvision's parameter layout, the LLP feature shapes,
which frames feed which row, weight files (round trip, missing, wrong)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avvp import registry
from avvp.extraction import visual
from avvp.extraction.base import MissingWeightsError, segment_count
from avvp.extraction.media import probe

DATA = Path(__file__).with_name("data")
SAMPLE_VIDEO = (
    Path(__file__).resolve().parents[1].parent / "shared/llp/sample_video/BjCEufrlXm4.mp4"
)
FPS = 10  # of the synthetic videos


def write_video(path: Path, frames: int) -> Path:
    """A 64 x 48 h264 video at FPS frames a second; frame k is uniformly grey 8k + 4, so that a
    decoded frame tells its index (lossless encoding: within 1 grey level of the original)."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        stream.options = {"qp": "0"}
        for index in range(frames):
            image = np.full((48, 64, 3), 8 * index + 4, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def short_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 2.6 s: three segments, the last one padded past the end.
    return write_video(tmp_path_factory.mktemp("video") / "short.mp4", 26)


@pytest.mark.parametrize(
    ("name", "network"), [("resnet152", visual.ResNet152Net), ("r2plus1d_18", visual.R2Plus1D18Net)]
)
def test_state_dict_layout_is_torchvisions(name: str, network: type[torch.nn.Module]) -> None:
    # The manifest was written from torchvision itself (tests/data/torchvision_check.py).
    manifest = json.loads((DATA / "torchvision_state_dicts.json").read_text())
    ours = [[key, list(value.shape)] for key, value in network().state_dict().items()]
    assert ours == manifest[name]


def test_registered_with_the_llp_layout() -> None:
    assert {"res152", "r2plus1d_18"} <= set(registry.available("extractor"))
    res152 = registry.create("extractor", "res152", random_weights=True)
    r2plus1d = registry.create("extractor", "r2plus1d_18", random_weights=True)
    assert (res152.name, res152.dim, res152.frames, res152.stream) == ("res152", 2048, 8, "visual")
    assert (r2plus1d.name, r2plus1d.dim, r2plus1d.frames, r2plus1d.stream) == (
        "r2plus1d_18",
        512,
        1,
        "visual",
    )
    assert res152.weight_file is None and r2plus1d.weight_file is None


@pytest.mark.slow
@pytest.mark.real_data
def test_sample_video_gives_llp_shapes() -> None:
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"the LLP sample video is not at {SAMPLE_VIDEO}")
    seconds = segment_count(probe(SAMPLE_VIDEO).duration)
    assert seconds == 10
    res152 = visual.ResNet152(random_weights=True).extract(SAMPLE_VIDEO, seconds)
    r2plus1d = visual.R2Plus1D18(random_weights=True).extract(SAMPLE_VIDEO, seconds)
    assert res152.shape == (80, 2048) and res152.dtype == np.float32
    assert r2plus1d.shape == (10, 512) and r2plus1d.dtype == np.float32
    assert np.isfinite(res152).all() and np.isfinite(r2plus1d).all()
    # Rows come from different frames: the video moves.
    assert not np.allclose(res152[0], res152[40]) and not np.allclose(r2plus1d[0], r2plus1d[5])


def test_three_second_video_gives_one_row_group_a_second(
    short_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seconds = segment_count(probe(short_video).duration)
    assert seconds == 3
    monkeypatch.setattr(visual, "CHUNK_SECONDS", 2)  # two decoding chunks: 2 s, then 1 s
    res152 = visual.ResNet152(random_weights=True, batch_size=5).extract(short_video, seconds)
    r2plus1d = visual.R2Plus1D18(random_weights=True, batch_size=2).extract(short_video, seconds)
    assert res152.shape == (24, 2048) and r2plus1d.shape == (3, 512)
    assert np.isfinite(res152).all() and np.isfinite(r2plus1d).all()


class FrameProbe(torch.nn.Module):
    """Stands in for a network: each input's red channel, averaged over space (a frame's grey)."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0].mean(dim=(-2, -1)).reshape(len(x), -1)


def decoded_index(values: np.ndarray, extractor: visual._VisualExtractor) -> np.ndarray:
    """Which synthetic frame a normalised red mean came from."""
    grey = (values * extractor.std[0] + extractor.mean[0]) * 255
    return np.rint((grey - 4) / 8).astype(int)


@pytest.mark.parametrize("offset", [0.5, 0.25])
def test_rows_follow_the_frames_of_each_second(
    short_video: Path, monkeypatch: pytest.MonkeyPatch, offset: float
) -> None:
    monkeypatch.setattr(visual, "CHUNK_SECONDS", 2)
    last = 25  # the video's last frame, shown until its end and repeated past it
    res152 = visual.ResNet152(random_weights=True, frame_offset=offset, batch_size=5)
    res152.net = FrameProbe()
    rows = decoded_index(res152.extract(short_video, 3)[:, 0], res152)
    # Row j: the frame shown at (j + offset) / 8 s.
    expected = np.minimum(np.floor((np.arange(24) + offset) / 8 * FPS), last)
    np.testing.assert_array_equal(rows, expected)

    r2plus1d = visual.R2Plus1D18(
        random_weights=True, clip_frames=4, frame_offset=offset, batch_size=2
    )
    r2plus1d.net = FrameProbe()
    clips = decoded_index(r2plus1d.extract(short_video, 3), r2plus1d)
    # Clip s: the frames shown at s + (i + offset) / 4 s, in time order.
    expected = np.minimum(np.floor((np.arange(12) + offset) / 4 * FPS), last).reshape(3, 4)
    np.testing.assert_array_equal(clips, expected)


def test_prepare_frames_resizes_crops_and_normalises() -> None:
    frames = np.full((2, 240, 320, 3), 200, np.uint8)
    crop = visual.prepare_frames(frames, 256, 224, visual.IMAGENET_MEAN, visual.IMAGENET_STD)
    squash = visual.prepare_frames(frames, (112, 112), None, visual.KINETICS_MEAN, (1, 1, 1))
    assert crop.shape == (2, 3, 224, 224) and squash.shape == (2, 3, 112, 112)
    expected = (200 / 255 - np.array(visual.IMAGENET_MEAN)) / np.array(visual.IMAGENET_STD)
    np.testing.assert_allclose(crop[0, :, 100, 100].numpy(), expected, rtol=1e-6)
    # A portrait frame: the width is the shorter side.
    tall = visual.prepare_frames(frames[:, :200, :100], 128, None, (0, 0, 0), (1, 1, 1))
    assert tall.shape == (2, 3, 256, 128)


@pytest.mark.parametrize(
    ("extractor", "filename"),
    [
        (visual.ResNet152, "resnet152-394f9c45.pth"),
        (visual.ResNet152, "resnet152-f82ba261.pth"),  # IMAGENET1K_V2, when V1 is absent
        (visual.R2Plus1D18, "r2plus1d_18-91a641e6.pth"),
    ],
)
def test_weight_file_round_trip(
    tmp_path: Path, extractor: type[visual._VisualExtractor], filename: str
) -> None:
    state = extractor(random_weights=True).net.state_dict()
    state = {key: value + 1 if value.is_floating_point() else value for key, value in state.items()}
    torch.save(state, tmp_path / filename)
    loaded = extractor(weights=tmp_path)
    assert loaded.weight_file == tmp_path / filename
    for key, value in loaded.net.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_missing_weight_file_names_it_and_its_source(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match=r"resnet152-394f9c45\.pth.*download\.pytorch"):
        visual.ResNet152(weights=tmp_path)
    with pytest.raises(MissingWeightsError, match=r"r2plus1d_18-91a641e6\.pth.*KINETICS400_V1"):
        visual.R2Plus1D18(weights=tmp_path)
    with pytest.raises(MissingWeightsError, match=r"--weights DIR.*--random-weights"):
        registry.create("extractor", "res152")


def test_wrong_weight_file_is_a_clear_error(tmp_path: Path) -> None:
    # A checkpoint dict around the state dict, as training scripts save them.
    state = visual.R2Plus1D18(random_weights=True).net.state_dict()
    torch.save({"model": state}, tmp_path / "r2plus1d_18-91a641e6.pth")
    with pytest.raises(
        ValueError, match=r"r2plus1d_18-91a641e6\.pth: not a torchvision R2Plus1D18"
    ):
        visual.R2Plus1D18(weights=tmp_path)
    (tmp_path / "resnet152-394f9c45.pth").write_text("not a weight file")
    with pytest.raises(ValueError, match=r"resnet152-394f9c45\.pth: not a torchvision ResNet152"):
        visual.ResNet152(weights=tmp_path)


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="resize='bicubic'; expected one of crop, squash"):
        visual.ResNet152(random_weights=True, resize="bicubic")
    with pytest.raises(ValueError, match=r"frame_offset=1\.0 must be in \[0, 1\)"):
        visual.R2Plus1D18(random_weights=True, frame_offset=1.0)
    with pytest.raises(ValueError, match="clip_frames=0"):
        visual.R2Plus1D18(random_weights=True, clip_frames=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        visual.ResNet152(random_weights=True, batch_size=0)
