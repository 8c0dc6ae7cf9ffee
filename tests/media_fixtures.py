"""Small video files written with PyAV, and fake extractors reading them, for the extraction tests.

The fake extractors stand in for the real networks (VGGish, ResNet-152, ...): they decode the
file through :mod:`avvp.extraction.media` as the real ones do and turn each second into a few
numbers that depend on its content, so a test can tell which second of which video a row came
from, in milliseconds and without weights.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from avvp.extraction.base import Extractor
from avvp.extraction.media import read_audio, read_frames
from avvp.registry import register

SAMPLE_RATE = 16000
FPS = 8
SIZE = (32, 24)  # width, height: the smallest frames the mpeg4 encoder takes without complaint
SAMPLE_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "llp" / "sample_video"
SAMPLE = SAMPLE_VIDEO / "BjCEufrlXm4.mp4"


def level(second: int) -> int:
    """The grey level of the frames of ``second``: distinct seconds far apart for a lossy codec."""
    return 16 + (second * 40) % 224


def loudness(second: int) -> float:
    """The amplitude of the tone in ``second``."""
    return 0.1 + 0.1 * (second % 5)


def write_video(
    path: Path,
    seconds: float,
    *,
    audio: bool = True,
    video: bool = True,
    fps: int = FPS,
) -> Path:
    """An mp4 of ``seconds`` seconds: grey frames at :func:`level` of their second (mpeg4) and a
    440-Hz tone at :func:`loudness` of its second (AAC, mono, 16 kHz)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        streams = []
        if video:
            picture = container.add_stream("mpeg4", rate=fps)
            picture.width, picture.height, picture.pix_fmt = *SIZE, "yuv420p"
            streams.append(picture)
        if audio:
            sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
            streams.append(sound)
        if video:
            for index in range(round(seconds * fps)):
                grey = np.full((SIZE[1], SIZE[0], 3), level(int(index / fps)), dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(grey, format="rgb24")
                frame.pts, frame.time_base = index, Fraction(1, fps)
                container.mux(picture.encode(frame))
            container.mux(picture.encode(None))
        if audio:
            time = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
            amplitude = np.array([loudness(int(t)) for t in time[::SAMPLE_RATE]])
            wave = amplitude.repeat(SAMPLE_RATE)[: len(time)] * np.sin(2 * np.pi * 440 * time)
            block = 1024
            for start in range(0, len(wave), block):
                chunk = wave[start : start + block].astype(np.float32)[None]
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate, frame.pts = SAMPLE_RATE, start
                frame.time_base = Fraction(1, SAMPLE_RATE)
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return path


@register("extractor", "fake_audio")
class FakeAudio(Extractor):
    """Per second: [RMS, peak, second index, 1] of the 16-kHz mono audio."""

    name, dim, frames, stream = "fake_audio", 4, 1, "audio"

    def extract(self, video: str | Path, seconds: int) -> np.ndarray:
        wave = read_audio(video, SAMPLE_RATE, seconds).reshape(seconds, SAMPLE_RATE)
        rms = np.sqrt((wave**2).mean(axis=1))
        index = np.arange(seconds)
        return np.stack([rms, np.abs(wave).max(axis=1), index, np.ones(seconds)], 1).astype(
            np.float32
        )


@register("extractor", "fake_visual")
class FakeVisual(Extractor):
    """Two frames a second (at s + 0.25 and s + 0.75): [mean grey level / 255, second index, 1]."""

    name, dim, frames, stream = "fake_visual", 3, 2, "visual"

    def extract(self, video: str | Path, seconds: int) -> np.ndarray:
        times = (np.arange(seconds)[:, None] + np.array([0.25, 0.75])).reshape(-1)
        grey = read_frames(video, times).mean(axis=(1, 2, 3)) / 255
        index = np.repeat(np.arange(seconds), 2)
        return np.stack([grey, index, np.ones(len(times))], 1).astype(np.float32)
