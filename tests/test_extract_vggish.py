"""The VGGish extractor against its reference, the torchvggish package: the log-mel front end on
the sample video's audio and on synthetic waveforms, the network and the AudioSet post-processing
with random weights saved in torchvggish's files; weight-file errors; videos of any length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avvp.extraction.base import MissingWeightsError, segment_count
from avvp.extraction.vggish import (
    PCA_FILE,
    RELEASE,
    WEIGHTS_FILE,
    VGGish,
    example_starts,
    log_mel_examples,
)
from avvp.registry import create

REFERENCE = "the reference torchvggish is not installed (pip install 'avvp[dev]')"
torchvggish = pytest.importorskip("torchvggish", reason=REFERENCE)
av = pytest.importorskip("av", reason="the clip extra is not installed (pip install 'avvp[clip]')")
soundfile = pytest.importorskip("soundfile", reason=REFERENCE)
from torchvggish import vggish_input  # noqa: E402  (after the skip: it needs resampy, soundfile)

SAMPLE_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "llp" / "sample_video"
SAMPLE_VIDEO = SAMPLE_VIDEO / "BjCEufrlXm4.mp4"
RATE = 16000
# float64 all the way on both sides: only the order of the mel sums can differ.
FRONT_END_TOLERANCE = 1e-9


def reference_examples(waveform: np.ndarray) -> np.ndarray:
    return vggish_input.waveform_to_examples(waveform, RATE, return_tensor=False)


def synthetic_waveform(seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """Noise under a rising chirp and a few clicks: every band and every frame differs."""
    rng = np.random.default_rng(seed)
    time = np.arange(round(seconds * rate)) / rate
    chirp = 0.4 * np.sin(2 * np.pi * (200 + 300 * time) * time)
    clicks = (rng.random(len(time)) < 1e-3) * 0.5
    return (chirp + clicks + 0.05 * rng.standard_normal(len(time))).astype(np.float32)


def sample_waveform(seconds: int) -> np.ndarray:
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"the LLP sample video is not at {SAMPLE_VIDEO}")
    from avvp.extraction.media import read_audio

    return read_audio(SAMPLE_VIDEO, RATE, seconds)


def test_front_end_equals_the_reference_on_the_sample_video():
    waveform = sample_waveform(10)
    ours = log_mel_examples(waveform, example_starts(10))
    reference = reference_examples(waveform)
    assert reference.shape == ours.shape == (10, 96, 64)
    assert np.abs(ours - reference).max() < FRONT_END_TOLERANCE


@pytest.mark.parametrize("seconds", [1, 3, 7, 10])
def test_front_end_equals_the_reference_on_synthetic_waveforms(seconds):
    # Up to one LLP clip (10 s), "llp" takes the reference's consecutive 0.96-s examples.
    waveform = synthetic_waveform(seconds, seed=seconds)
    ours = log_mel_examples(waveform, example_starts(seconds, "llp"))
    reference = reference_examples(waveform)
    assert reference.shape == ours.shape == (seconds, 96, 64)
    assert np.abs(ours - reference).max() < FRONT_END_TOLERANCE


def test_a_long_waveform_is_framed_as_consecutive_10_s_clips():
    # Here the reference would cut 26 examples for 25 s, the 25th starting 0.96 s before its
    # segment; "llp" gives the reference's examples of the pieces 0-10, 10-20 and 20-25 s.
    waveform = synthetic_waveform(25)
    ours = log_mel_examples(waveform, example_starts(25, "llp"))
    pieces = [
        reference_examples(waveform[start : start + 10 * RATE])
        for start in (0, 10 * RATE, 20 * RATE)
    ]
    assert [len(piece) for piece in pieces] == [10, 10, 5]
    assert np.abs(ours - np.concatenate(pieces)).max() < FRONT_END_TOLERANCE


def test_the_second_alignment_takes_the_window_starting_at_each_second():
    waveform = synthetic_waveform(4, seed=1)
    ours = log_mel_examples(waveform, example_starts(4, "second"))
    seconds = [reference_examples(waveform[s * RATE : (s + 1) * RATE]) for s in range(4)]
    assert np.abs(ours - np.concatenate(seconds)).max() < FRONT_END_TOLERANCE
    assert list(example_starts(4, "second")) == [0, 100, 200, 300]
    assert list(example_starts(12, "llp")) == [96 * s for s in range(10)] + [1000, 1096]


def test_an_example_past_the_end_of_the_waveform_is_an_error():
    with pytest.raises(ValueError, match="frame 194 was asked for"):
        log_mel_examples(np.zeros(RATE), np.array([99]))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """torchvggish's own VGG, randomly initialised, and a random PCA, saved under the file names
    and in the formats of torchvggish's release (the PCA file holds numpy arrays)."""
    folder = tmp_path_factory.mktemp("vggish-weights")
    torch.manual_seed(1)
    reference = torchvggish.torchvggish.VGG(torchvggish.torchvggish.make_layers(), False)
    torch.save(reference.state_dict(), folder / WEIGHTS_FILE)
    rng = np.random.default_rng(2)
    vectors = np.linalg.qr(rng.standard_normal((128, 128)))[0] * 20.0  # whitening scales up
    pca = {"pca_eigen_vectors": vectors, "pca_means": 0.05 * rng.standard_normal(128)}
    torch.save(pca, folder / PCA_FILE)
    return folder


def reference_pipeline(weights: Path, waveform: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvggish's raw and post-processed outputs, from its own code and the saved files."""
    vgg = torchvggish.torchvggish
    network = vgg.VGG(vgg.make_layers(), False)
    network.load_state_dict(torch.load(weights / WEIGHTS_FILE, weights_only=True))
    network.eval()
    # Its Postprocessor downloads the PCA in __init__: built without it, fed the saved file.
    postprocessor = object.__new__(vgg.Postprocessor)
    params = torch.load(weights / PCA_FILE, weights_only=False)
    postprocessor._pca_matrix = torch.as_tensor(params["pca_eigen_vectors"]).float()
    postprocessor._pca_means = torch.as_tensor(params["pca_means"].reshape(-1, 1)).float()
    examples = vggish_input.waveform_to_examples(waveform, RATE).detach()
    with torch.no_grad():
        raw = network(examples)
        return raw, postprocessor.postprocess(raw)


def test_network_and_postprocessing_equal_torchvggish(weights):
    waveform = synthetic_waveform(3, seed=3)
    raw, processed = reference_pipeline(weights, waveform)
    assert raw.shape == (3, 128) and (raw > 0).float().mean() > 0.1  # not a dead network
    ours = VGGish(weights=weights, batch_size=2).embed(waveform, 3)
    assert ours.dtype == np.float32 and ours.shape == (3, 128)
    assert np.abs(ours - raw.numpy()).max() < 1e-5 * raw.abs().max().item()
    ours = VGGish(weights=weights, postprocess=True).embed(waveform, 3)
    assert np.array_equal(ours, processed.numpy())
    assert len(np.unique(ours)) > 20 and ours.min() >= 0 and ours.max() <= 255


def test_a_missing_weight_file_names_it_and_where_to_get_it(tmp_path, weights):
    with pytest.raises(MissingWeightsError, match=rf"{tmp_path / WEIGHTS_FILE}.*{RELEASE}"):
        VGGish(weights=tmp_path)
    with pytest.raises(MissingWeightsError, match=rf"--weights DIR holding {WEIGHTS_FILE}"):
        VGGish()
    (tmp_path / WEIGHTS_FILE).symlink_to(weights / WEIGHTS_FILE)
    with pytest.raises(MissingWeightsError, match=rf"{tmp_path / PCA_FILE} \({RELEASE}{PCA_FILE}"):
        VGGish(weights=tmp_path, postprocess=True)


def test_wrong_files_and_options_are_clear_errors(tmp_path):
    (tmp_path / WEIGHTS_FILE).write_text("not a checkpoint")
    with pytest.raises(OSError, match=rf"cannot read {tmp_path / WEIGHTS_FILE} as a torch"):
        VGGish(weights=tmp_path)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / WEIGHTS_FILE)
    with pytest.raises(ValueError, match=rf"{tmp_path / WEIGHTS_FILE} is not torchvggish's"):
        VGGish(weights=tmp_path)
    with pytest.raises(ValueError, match="alignment must be one of llp, second: 'middle'"):
        VGGish(random_weights=True, alignment="middle")


def test_the_sample_video_with_random_weights_gives_ten_rows():
    sample_waveform(10)  # skips without the sample video
    extractor = create("extractor", "vggish", random_weights=True)
    assert (extractor.name, extractor.dim, extractor.frames, extractor.stream) == (
        "vggish",
        128,
        1,
        "audio",
    )
    features = extractor.extract(SAMPLE_VIDEO, 10)
    assert features.shape == (10, 128) and features.dtype == np.float32
    assert np.isfinite(features).all() and features.std() > 0
    # The same untrained network every time: plumbing tests are reproducible.
    again = VGGish(random_weights=True, postprocess=True)
    theirs = again.network.state_dict()
    assert all(
        torch.equal(mine, theirs[key]) for key, mine in extractor.network.state_dict().items()
    )
    processed = again.extract(SAMPLE_VIDEO, 10)
    assert np.array_equal(processed, np.round(processed)) and len(np.unique(processed)) > 20


@pytest.mark.parametrize("alignment", ["llp", "second"])
def test_a_2_4_s_video_gives_two_rows(tmp_path, alignment):
    # A 44.1-kHz stereo sound file: read_audio resamples and mixes it down, as for a video.
    path = tmp_path / "short.wav"
    soundfile.write(path, np.stack([synthetic_waveform(2.4, rate=44100)] * 2, axis=1), 44100)
    from avvp.extraction.media import probe

    seconds = segment_count(probe(path).duration, path)
    features = VGGish(random_weights=True, alignment=alignment).extract(path, seconds)
    assert seconds == 2 and features.shape == (2, 128) and features.dtype == np.float32
