"""avvp.extraction.media: durations, the mono waveform, frames at given times, one error type."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from media_fixtures import SAMPLE, SAMPLE_RATE, level, loudness, write_video

from avvp.extraction.base import VideoError
from avvp.extraction.media import probe, read_audio, read_frames

av = pytest.importorskip("av", reason="reading video files needs PyAV (the clip extra)")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """3 s of frames at grey level(s) and a tone at loudness(s), for seconds s = 0, 1, 2."""
    return write_video(tmp_path_factory.mktemp("media") / "clip.mp4", 3.0)


def rms(wave: np.ndarray) -> np.ndarray:
    return np.sqrt((wave.reshape(-1, SAMPLE_RATE) ** 2).mean(axis=1))


def test_probe_reports_duration_and_streams(clip, tmp_path):
    info = probe(clip)
    assert info.duration == pytest.approx(3.0, abs=0.05)
    assert (info.has_audio, info.has_video) == (True, True)
    silent = probe(write_video(tmp_path / "silent.mp4", 2.0, audio=False))
    assert (silent.has_audio, silent.has_video) == (False, True)
    assert silent.duration == pytest.approx(2.0, abs=0.05)


def test_read_audio_is_mono_at_the_rate_asked_cut_or_padded(clip):
    wave = read_audio(clip, SAMPLE_RATE, 3)
    assert wave.dtype == np.float32 and wave.shape == (3 * SAMPLE_RATE,)
    # A sine of amplitude a has RMS a / sqrt(2); each second has its own amplitude.
    expected = [loudness(second) / np.sqrt(2) for second in range(3)]
    np.testing.assert_allclose(rms(wave), expected, rtol=0.05)
    assert read_audio(clip, 8000, 2).shape == (2 * 8000,)  # cut
    padded = read_audio(clip, SAMPLE_RATE, 5)  # padded with silence
    assert padded.shape == (5 * SAMPLE_RATE,) and not padded[4 * SAMPLE_RATE :].any()


def test_stereo_is_the_mean_of_its_channels(tmp_path):
    """A tone of amplitude 0.5 on the left channel and silence on the right is 0.25 in mono.

    FFmpeg's own downmix gave 0.354 (each channel weighted by 1/sqrt(2)), which is not the mean
    that VGGish's reference front end takes over the channels.
    """
    path = tmp_path / "stereo.mp4"
    time = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    left = (0.5 * np.sin(2 * np.pi * 440 * time)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        for start in range(0, len(left), 1024):
            chunk = left[start : start + 1024]
            frame = av.AudioFrame.from_ndarray(
                np.stack([chunk, np.zeros_like(chunk)]), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts = SAMPLE_RATE, start
            frame.time_base = Fraction(1, SAMPLE_RATE)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    wave = read_audio(path, SAMPLE_RATE, 2)
    # Away from the encoder's priming at the start and its tail at the end.
    assert np.abs(wave[4000:28000]).max() == pytest.approx(0.25, abs=0.01)


def test_read_frames_gives_the_frame_shown_at_each_time(clip):
    times = np.array([0.0, 0.5, 1.0, 1.2, 2.9, 7.0])
    frames = read_frames(clip, times)
    assert frames.dtype == np.uint8 and frames.shape == (6, 24, 32, 3)
    # After the end: the last frame; at 1.0 exactly, the frame that starts then.
    expected = [level(0), level(0), level(1), level(1), level(2), level(2)]
    np.testing.assert_allclose(frames.mean(axis=(1, 2, 3)), expected, atol=2)


def test_read_frames_needs_ascending_times(clip):
    with pytest.raises(ValueError, match="ascending"):
        read_frames(clip, np.array([1.0, 0.5]))


def audio(path):
    return read_audio(path, SAMPLE_RATE, 1)


def frames(path):
    return read_frames(path, np.array([0.5]))


def garbage(path):
    path.write_bytes(b"\x00\x01not a video" * 50)
    return path


@pytest.mark.parametrize(
    ("make", "read", "message"),
    [
        (lambda folder: folder / "missing.mp4", probe, "no such file"),
        (lambda folder: garbage(folder / "noise.mp4"), audio, "cannot open as a video file"),
        (lambda folder: write_video(folder / "mute.mp4", 2.0, audio=False), audio, "no audio"),
        (lambda folder: write_video(folder / "blind.mp4", 2.0, video=False), frames, "no video"),
    ],
)
def test_an_unusable_file_is_a_video_error_naming_it(tmp_path, make, read, message):
    path = make(tmp_path)
    with pytest.raises(VideoError, match=message) as caught:
        read(path)
    assert str(path) in str(caught.value)


@pytest.mark.skipif(not SAMPLE.is_file(), reason=f"real_data: {SAMPLE} is absent")
def test_the_sample_video_decodes():
    info = probe(SAMPLE)
    assert info.duration == pytest.approx(10.03, abs=0.01)
    assert read_audio(SAMPLE, SAMPLE_RATE, 10).shape == (10 * SAMPLE_RATE,)
    frames = read_frames(SAMPLE, (np.arange(80) + 0.5) / 8)
    assert frames.shape == (80, 240, 320, 3)
    assert len({frame.tobytes() for frame in frames}) > 40  # distinct frames, not one repeated


def test_reading_a_late_part_seeks_and_gives_the_same_frames(tmp_path):
    long = write_video(tmp_path / "long.mp4", 40)
    times = np.arange(8 * 25, 8 * 30) / 8 + 0.01  # seconds 25-29: decoding starts near 24 s
    sought = read_frames(long, times)
    np.testing.assert_array_equal(sought, read_frames(long, times, seek=False))
    for frame, time in zip(sought, times, strict=True):
        assert abs(frame.mean() - level(int(time))) < 3
