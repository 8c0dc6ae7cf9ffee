"""Decoding video files with PyAV: duration, the audio waveform, frames at given times.

Every extractor reads its input through these three functions, so a file that cannot be used
fails the same way for all of them: a :class:`~avvp.extraction.base.VideoError` naming the file
(undecodable, no audio or video stream, too short). PyAV is imported when a function runs, so
``import avvp.extraction`` works without the ``clip`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avvp.extraction.base import VideoError


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learns of a file without decoding it."""

    path: Path
    duration: float  # seconds: the longest stream's
    has_audio: bool
    has_video: bool


def _av() -> Any:
    try:
        import av
    except ImportError as error:
        raise ImportError(
            "reading video files needs PyAV: pip install 'avvp[clip]' (or pip install av)"
        ) from error
    return av


def _open(path: Path) -> Any:
    av = _av()
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise VideoError(f"{path}: cannot open as a video file ({error})") from error


def _seconds(value: Any, time_base: Any) -> float:
    return float(value * time_base) if value is not None else 0.0


def probe(path: str | Path) -> MediaInfo:
    """Duration and streams of ``path``; a :class:`VideoError` if it cannot be opened."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    with _open(path) as container:
        durations = [
            _seconds(stream.duration, stream.time_base)
            for stream in container.streams
            if stream.type in ("audio", "video")
        ]
        duration = max(durations, default=0.0)
        if duration <= 0 and container.duration:
            duration = container.duration / _av().time_base
        return MediaInfo(
            path, duration, bool(container.streams.audio), bool(container.streams.video)
        )


def read_audio(path: str | Path, sample_rate: int, seconds: int) -> np.ndarray:
    """The first audio stream as float32 mono (full scale 1.0) at ``sample_rate``, exactly
    ``seconds * sample_rate`` samples: cut, or padded with silence at the end.

    The rate is converted by FFmpeg's resampler (through PyAV), channel by channel, and the
    channels are then averaged here: FFmpeg's own downmix to mono weights each channel of a
    stereo pair by 1/sqrt(2), not 1/2, which is louder than the mean that VGGish's reference
    front end takes.
    """
    av = _av()
    path = Path(path)
    chunks: list[np.ndarray] = []
    with _open(path) as container:
        if not container.streams.audio:
            raise VideoError(f"{path}: has no audio track")
        stream = container.streams.audio[0]
        # Planar float keeps the input's channels, one row each, for the mean below.
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        try:
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray().mean(axis=0) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().mean(axis=0) for out in resampler.resample(None))
        except av.error.FFmpegError as error:
            raise VideoError(f"{path}: cannot decode its audio ({error})") from error
    wanted = seconds * sample_rate
    waveform = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if not len(waveform):
        raise VideoError(f"{path}: its audio track holds no samples")
    waveform = waveform[:wanted]
    return np.pad(waveform, (0, wanted - len(waveform)))


# Decoding starts at the keyframe before ``times[0] - SEEK_MARGIN`` when that is later than this:
# reading a late part of a long video (a chunk of a long video's frames) then costs that part, not
# everything before it. The margin guards against containers whose seek lands a little late.
SEEK_AFTER = 5.0
SEEK_MARGIN = 1.0


def read_frames(path: str | Path, times: np.ndarray, seek: bool = True) -> np.ndarray:
    """RGB frames (len(times), H, W, 3) uint8 of the first video stream at ``times`` (seconds from
    the stream's start, ascending): for each time, the last frame shown at that time (the first
    frame for times before it, the last frame for times after the end).

    ``seek``: start decoding near ``times[0]`` (see :data:`SEEK_AFTER`) instead of at the start;
    the frames are the same.
    """
    av = _av()
    path = Path(path)
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or not len(times) or np.any(np.diff(times) < 0):
        raise ValueError("times must be a non-empty ascending 1-d array")
    picked: list[np.ndarray | None] = [None] * len(times)
    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        start = _seconds(stream.start_time, stream.time_base)
        wanted = 0  # index of the first time still waiting for its frame
        first = None  # the first decoded frame, RGB
        # The latest decoded frame, converted to RGB only once a time picks it: a 30-fps video
        # sampled at 8 frames a second would otherwise spend most of its time converting
        # frames nobody uses.
        latest = latest_rgb = None
        try:
            if seek and times[0] - SEEK_MARGIN > SEEK_AFTER:
                target = start + times[0] - SEEK_MARGIN
                container.seek(int(target / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is None:
                    raise VideoError(f"{path}: has video frames without timestamps")
                time = frame.time - start
                # Times before this frame's start get the frame shown until now.
                while wanted < len(times) and times[wanted] < time:
                    if latest is not None and latest_rgb is None:
                        latest_rgb = latest.to_ndarray(format="rgb24")
                    picked[wanted] = latest_rgb
                    wanted += 1
                if wanted == len(times):
                    break
                latest, latest_rgb = frame, None
                if first is None:
                    first = latest_rgb = frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as error:
            raise VideoError(f"{path}: cannot decode its video ({error})") from error
    if latest is None:
        raise VideoError(f"{path}: its video stream holds no frames")
    if latest_rgb is None:
        latest_rgb = latest.to_ndarray(format="rgb24")
    for index in range(len(times)):
        if picked[index] is None:
            # Before the first frame: that frame; after the last one: the last frame.
            picked[index] = first if index < wanted else latest_rgb
    return np.stack(picked)
