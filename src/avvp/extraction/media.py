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

    Channels are averaged and the rate converted by FFmpeg's resampler (through PyAV).
    """
    av = _av()
    path = Path(path)
    chunks: list[np.ndarray] = []
    with _open(path) as container:
        if not container.streams.audio:
            raise VideoError(f"{path}: has no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        try:
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        except av.error.FFmpegError as error:
            raise VideoError(f"{path}: cannot decode its audio ({error})") from error
    wanted = seconds * sample_rate
    waveform = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if not len(waveform):
        raise VideoError(f"{path}: its audio track holds no samples")
    waveform = waveform[:wanted]
    return np.pad(waveform, (0, wanted - len(waveform)))


def read_frames(path: str | Path, times: np.ndarray) -> np.ndarray:
    """RGB frames (len(times), H, W, 3) uint8 of the first video stream at ``times`` (seconds from
    the stream's start, ascending): for each time, the last frame shown at that time (the first
    frame for times before it, the last frame for times after the end).
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
        first = shown = None  # the first and the latest decoded frame (RGB arrays)
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    raise VideoError(f"{path}: has video frames without timestamps")
                time = frame.time - start
                # Times before this frame's start get the frame shown until now.
                while wanted < len(times) and times[wanted] < time:
                    picked[wanted] = shown
                    wanted += 1
                if wanted == len(times):
                    break
                shown = frame.to_ndarray(format="rgb24")
                first = shown if first is None else first
        except av.error.FFmpegError as error:
            raise VideoError(f"{path}: cannot decode its video ({error})") from error
    if shown is None:
        raise VideoError(f"{path}: its video stream holds no frames")
    for index in range(len(times)):
        if picked[index] is None:
            # Before the first frame: that frame; after the last one: the last frame.
            picked[index] = first if index < wanted else shown
    return np.stack(picked)
