"""CLIP image and CLAP audio segment embeddings (avvp.extraction.embeddings): tiny random CLIP and
CLAP checkpoints saved with save_pretrained and loaded back through the extractors, checked
against transformers' own preprocessing and embedding calls segment by segment; frame times,
averaging, normalisation, batching; generated videos and the real sample video; missing weights;
training a model on the features through the features.* config."""

from __future__ import annotations

import fractions
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_TRAINING

from avvp.cli import main
from avvp.extraction import embeddings
from avvp.extraction.base import MissingWeightsError
from avvp.extraction.embeddings import ClapAudio, ClipImage
from avvp.registry import available, create

NOT_INSTALLED = "the clip extra is not installed (pip install 'avvp[clip]')"
transformers = pytest.importorskip("transformers", reason=NOT_INSTALLED)
av = pytest.importorskip("av", reason=NOT_INSTALLED)

SAMPLE_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "llp" / "sample_video"
SAMPLE_VIDEO = SAMPLE_VIDEO / "BjCEufrlXm4.mp4"
CLIP_SIZE, CLIP_DIM, CLAP_DIM = 32, 16, 24
CLAP_RATE = 48_000
SECONDS = 4


def tiny_clap(enable_fusion: bool) -> tuple:
    """A small random CLAP and the feature extractor of its kind (fused: four mel channels)."""
    config = transformers.ClapConfig(
        text_config={
            "vocab_size": 100,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        audio_config={
            "hidden_size": 16,
            "patch_embeds_hidden_size": 8,
            "depths": [1, 1],
            "num_attention_heads": [1, 1],
            "enable_fusion": enable_fusion,
        },
        projection_dim=CLAP_DIM,
    )
    torch.manual_seed(1)
    model = transformers.ClapModel(config)
    truncation = "fusion" if enable_fusion else "rand_trunc"
    return model, transformers.ClapFeatureExtractor(truncation=truncation)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A --weights folder: a tiny CLIP in clip/ (no tokenizer files) and a tiny CLAP in clap/."""
    folder = tmp_path_factory.mktemp("weights")
    config = transformers.CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": CLIP_SIZE,
            "patch_size": 8,
        },
        projection_dim=CLIP_DIM,
    )
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(folder / "clip")
    model, feature_extractor = tiny_clap(enable_fusion=False)
    model.save_pretrained(folder / "clap")
    feature_extractor.save_pretrained(folder / "clap")
    return folder


def write_video(path: Path, seconds: int, fps: int = 8, audio: bool = True) -> Path:
    """An MPEG-4 video of random 56 x 40 frames and, with ``audio``, a stereo AAC tone whose pitch
    changes every second."""
    rng = np.random.default_rng(seconds)
    rate = 44_100
    with av.open(str(path), "w") as container:
        # Every stream is added before the first packet is written.
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 56, 40, "yuv420p"
        sound = container.add_stream("aac", rate=rate, layout="stereo") if audio else None
        for _ in range(seconds * fps):
            pixels = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(video.encode())
        if sound is not None:
            time = np.arange(seconds * rate) / rate
            tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * np.floor(time)) * time)
            samples = np.stack([tone, tone]).astype(np.float32)
            for first in range(0, samples.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(samples[:, first : first + 1024]),
                    format="fltp",
                    layout="stereo",
                )
                frame.sample_rate, frame.pts = rate, first
                frame.time_base = fractions.Fraction(1, rate)
                container.mux(sound.encode(frame))
            container.mux(sound.encode())
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", SECONDS)


def fake_frames(monkeypatch) -> list[np.ndarray]:
    """Replace the decoder: every call records its times and gets random 40 x 56 RGB frames."""
    calls: list[np.ndarray] = []
    rng = np.random.default_rng(0)

    def read_frames(path, times):
        calls.append(np.asarray(times))
        return rng.integers(0, 256, (len(times), 40, 56, 3), dtype=np.uint8)

    monkeypatch.setattr(embeddings, "read_frames", read_frames)
    return calls


def reference_clip(folder: Path, frames: np.ndarray) -> torch.Tensor:
    """Raw projected CLIP embeddings of each frame, preprocessed by transformers' processor."""
    from PIL import Image

    model = transformers.CLIPModel.from_pretrained(folder).eval()
    processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": CLIP_SIZE}, crop_size={"height": CLIP_SIZE, "width": CLIP_SIZE}
    )
    pixels = processor(images=[Image.fromarray(f) for f in frames], return_tensors="pt")
    with torch.no_grad():
        return model.get_image_features(pixel_values=pixels["pixel_values"]).pooler_output


def test_registered_under_the_feature_set_names(weights):
    assert {"clip", "clap"} <= set(available("extractor"))
    clip = create("extractor", "clip", weights=weights)
    clap = create("extractor", "clap", weights=weights)
    assert (type(clip), clip.name, clip.stream, clip.frames) == (ClipImage, "clip", "visual", 1)
    assert (type(clap), clap.name, clap.stream, clap.frames) == (ClapAudio, "clap", "audio", 1)
    # The dimension is the checkpoint's projection, not the class default (512).
    assert (clip.dim, clap.dim, ClipImage.dim) == (CLIP_DIM, CLAP_DIM, 512)


def test_clip_one_frame_at_each_segment_middle_like_transformers(weights, monkeypatch):
    calls = fake_frames(monkeypatch)
    features = ClipImage(weights, batch_size=3).extract("any.mp4", SECONDS)
    np.testing.assert_allclose(calls[0], np.arange(SECONDS) + 0.5)
    frames = np.random.default_rng(0).integers(0, 256, (SECONDS, 40, 56, 3), dtype=np.uint8)
    expected = torch.nn.functional.normalize(reference_clip(weights / "clip", frames), dim=-1)
    assert features.shape == (SECONDS, CLIP_DIM) and features.dtype == np.float32
    np.testing.assert_allclose(features, expected.numpy(), atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)


def test_clip_frame_samples_are_averaged_and_raw_is_kept(weights, monkeypatch):
    calls = fake_frames(monkeypatch)
    features = ClipImage(weights, frame_samples=2, normalize=False).extract("any.mp4", SECONDS)
    np.testing.assert_allclose(calls[0], np.arange(SECONDS * 2) / 2 + 0.25)
    frames = np.random.default_rng(0).integers(0, 256, (SECONDS * 2, 40, 56, 3), dtype=np.uint8)
    raw = reference_clip(weights / "clip", frames).reshape(SECONDS, 2, CLIP_DIM).mean(dim=1)
    np.testing.assert_allclose(features, raw.numpy(), atol=2e-5)
    assert not np.allclose(np.linalg.norm(features, axis=1), 1.0)


def clap_reference(model, feature_extractor, seconds: np.ndarray, normalize: bool) -> np.ndarray:
    """Each one-second segment alone through transformers' feature extractor and CLAP; as no
    segment is longer than CLAP's input, none is marked longer."""
    rows = []
    with torch.no_grad():
        for segment in seconds:
            inputs = feature_extractor(segment, sampling_rate=CLAP_RATE, return_tensors="pt")
            output = model.audio_model(
                input_features=inputs["input_features"], is_longer=torch.tensor([[False]])
            )
            rows.append(model.audio_projection(output.pooler_output)[0])
    embedding = torch.stack(rows)
    return (torch.nn.functional.normalize(embedding, dim=-1) if normalize else embedding).numpy()


def fake_audio(monkeypatch) -> tuple[list, np.ndarray]:
    calls: list = []
    waveform = np.random.default_rng(3).uniform(-0.5, 0.5, SECONDS * CLAP_RATE)
    waveform = waveform.astype(np.float32)

    def read_audio(path, sample_rate, seconds):
        calls.append((sample_rate, seconds))
        return waveform[: seconds * sample_rate]

    monkeypatch.setattr(embeddings, "read_audio", read_audio)
    return calls, waveform.reshape(SECONDS, CLAP_RATE)


@pytest.mark.parametrize("normalize", [True, False])
def test_clap_each_second_alone_like_transformers(weights, monkeypatch, normalize):
    calls, seconds = fake_audio(monkeypatch)
    features = ClapAudio(weights, normalize=normalize, batch_size=3).extract("any.mp4", SECONDS)
    assert calls == [(CLAP_RATE, SECONDS)]
    model = transformers.ClapModel.from_pretrained(weights / "clap").eval()
    feature_extractor = transformers.ClapFeatureExtractor.from_pretrained(weights / "clap")
    expected = clap_reference(model, feature_extractor, seconds, normalize)
    assert features.shape == (SECONDS, CLAP_DIM) and features.dtype == np.float32
    np.testing.assert_allclose(features, expected, atol=2e-5)
    norms = np.linalg.norm(features, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5) == normalize


def test_fused_clap_segment_does_not_depend_on_its_batch(tmp_path, monkeypatch):
    """transformers' feature extractor marks a random clip of a batch as 'longer' under fusion;
    a segment is never longer, so its embedding is the same alone or in any batch."""
    model, feature_extractor = tiny_clap(enable_fusion=True)
    model.save_pretrained(tmp_path / "clap")
    feature_extractor.save_pretrained(tmp_path / "clap")
    _, seconds = fake_audio(monkeypatch)
    alone = ClapAudio(tmp_path, batch_size=1).extract("any.mp4", SECONDS)
    together = ClapAudio(tmp_path, batch_size=SECONDS).extract("any.mp4", SECONDS)
    np.testing.assert_allclose(alone, together, atol=2e-5)
    expected = clap_reference(model.eval(), feature_extractor, seconds, normalize=True)
    np.testing.assert_allclose(together, expected, atol=2e-5)


def test_generated_video_one_row_a_second(weights, video):
    for extractor in (ClipImage(weights), ClapAudio(weights)):
        features = extractor.extract(video, SECONDS)
        assert features.shape == (SECONDS, extractor.dim) and features.dtype == np.float32
        assert np.isfinite(features).all()
        # The frames are random and the tone changes each second: no two segments are alike.
        assert np.abs(features[1:] - features[:-1]).max(axis=1).min() > 1e-4


def test_random_weights_are_plumbing_of_the_real_dimension(video):
    clip, clap = ClipImage(random_weights=True), ClapAudio(random_weights=True)
    again = ClipImage(random_weights=True)
    for extractor in (clip, clap):
        features = extractor.extract(video, SECONDS)
        assert features.shape == (SECONDS, 512) and features.dtype == np.float32
    # Seeded, so plumbing runs are reproducible.
    np.testing.assert_array_equal(clip.extract(video, 2), again.extract(video, 2))


def test_sample_video(weights):
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"the LLP sample video {SAMPLE_VIDEO} is not there")
    for extractor in (ClipImage(weights), ClapAudio(weights)):
        features = extractor.extract(SAMPLE_VIDEO, 10)
        assert features.shape == (10, extractor.dim) and features.dtype == np.float32
        assert np.isfinite(features).all()


def test_missing_weights_say_what_and_where(tmp_path, weights):
    with pytest.raises(MissingWeightsError, match=r"--weights DIR.*openai/clip-vit-base-patch32"):
        ClipImage()
    with pytest.raises(MissingWeightsError, match=r"--weights DIR.*laion/clap-htsat-unfused"):
        ClapAudio()
    config = tmp_path / "clip" / "config.json"
    with pytest.raises(MissingWeightsError, match=rf"not found: {config} .*save_pretrained"):
        ClipImage(tmp_path)
    config.parent.mkdir()
    config.write_text((weights / "clip" / "config.json").read_text())
    missing = rf"no weights file \(model.safetensors or .*\) in {config.parent}"
    with pytest.raises(MissingWeightsError, match=missing):
        ClipImage(tmp_path)
    clap = tmp_path / "clap"
    transformers.ClapModel.from_pretrained(weights / "clap").save_pretrained(clap)
    with pytest.raises(
        MissingWeightsError, match=rf"{clap / 'preprocessor_config.json'} .*ClapProcessor"
    ):
        ClapAudio(tmp_path)
    # Both are FileNotFoundErrors: the CLI reports them in one line, exit code 2.
    assert issubclass(MissingWeightsError, FileNotFoundError)


def test_unloadable_checkpoint_and_bad_options(tmp_path, weights):
    clap = tmp_path / "clap"
    clap.mkdir()
    for name in ("config.json", "preprocessor_config.json", "model.safetensors"):
        (clap / name).write_text("{not json")
    with pytest.raises(ValueError, match=rf"clap: {clap} could not be loaded as a .*CLAP folder"):
        ClapAudio(tmp_path)
    with pytest.raises(ValueError, match="clip: frame_samples must be a positive integer, got 0"):
        ClipImage(weights, frame_samples=0)
    with pytest.raises(ValueError, match="clap: batch_size must be a positive integer"):
        ClapAudio(weights, batch_size=0)


def test_train_on_clip_and_clap_inputs(dataset, tmp_path):
    """CLIP as a visual and CLAP as an audio input, next to the LLP sets, read through features.*:
    every video gets the extractors' output of one 10-s video, plus noise."""
    source = write_video(tmp_path / "ten.mp4", 10, fps=4)
    names = [path.stem for path in (dataset / "feats" / "vggish").glob("*.npy")]
    rng = np.random.default_rng(0)
    dims = {}
    for extractor in (ClipImage(random_weights=True), ClapAudio(random_weights=True)):
        features = extractor.extract(source, 10)
        folder = dataset / "feats" / extractor.name
        folder.mkdir()
        for name in names:
            noise = rng.normal(0, 0.05, features.shape).astype(np.float32)
            np.save(folder / f"{name}.npy", features + noise)
        dims[extractor.name] = extractor.dim
    run = tmp_path / "run"
    overrides = [
        f"features.dims.clip={dims['clip']}",
        "features.frames.clip=1",
        f"features.dims.clap={dims['clap']}",
        "features.frames.clap=1",
        "features.visual=[res152,clip]",
        "features.audio=[vggish,clap]",
    ]
    flags = ["--data", str(dataset), "--out", str(run), *TINY_TRAINING, *overrides]
    assert main(["train", "--method", "han", *flags]) == 0
    state = torch.load(run / "best.pt", weights_only=False)["model"]
    assert state["visual_stem.projections.clip.weight"].shape == (32, dims["clip"])
    assert state["audio_stem.projections.clap.weight"].shape == (32, dims["clap"])
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["features"]["audio"] == ["vggish", "clap"]
    assert config["features"]["dims"]["clip"] == 512
