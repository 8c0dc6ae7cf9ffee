"""CLIP visual scores (VPLAN's PLG): a tiny randomly initialised CLIP saved as a local checkpoint
and loaded back through the real loading code, checked against a slow per-frame, per-prompt
reference; frame selection on synthetic videos, frame folders and the real sample video;
precomputed frame features; error messages."""

from __future__ import annotations

import fractions
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avvp.classes import CLASSES, NUM_CLASSES
from avvp.clip_labels import (
    clip_frame_embeddings,
    clip_visual_scores,
    preprocess,
    segment_frames,
)

NOT_INSTALLED = "the clip extra is not installed (pip install 'avvp[clip]')"
transformers = pytest.importorskip("transformers", reason=NOT_INSTALLED)
av = pytest.importorskip("av", reason=NOT_INSTALLED)

LLP = Path(__file__).resolve().parents[2] / "shared" / "llp"
SAMPLE_VIDEO = LLP / "sample_video" / "BjCEufrlXm4.mp4"
# The LLP filename of the sample video (AVVP_train.csv), found through its YouTube id.
SAMPLE_FILENAME = "BjCEufrlXm4_20_30"
IMAGE_SIZE = 32
LOGIT_SCALE = 37.0  # not CLIP's initial 1/0.07, so that a scale left out shows
# Frames of the synthetic videos carry their index as 4 x 4 black or white blocks of 16 pixels.
CODE_SIDE, CODE_BLOCKS = 64, 4


def byte_alphabet() -> list[str]:
    """The printable character CLIP's byte-level BPE uses for each byte value 0..255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    characters, unprintable = [], 0
    for byte in range(256):
        if byte in printable:
            characters.append(chr(byte))
        else:
            characters.append(chr(256 + unprintable))
            unprintable += 1
    return characters


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random CLIP in the Hugging Face folder layout, with a character-level tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-clip")
    alphabet = byte_alphabet()
    tokens = [*alphabet, *(character + "</w>" for character in alphabet)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    start, end = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    config = transformers.CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "bos_token_id": start,
            "eos_token_id": end,
            "pad_token_id": end,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(config)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(LOGIT_SCALE))
    model.save_pretrained(folder)
    return folder


def reference_scores(checkpoint: Path, images: list[Image.Image]) -> np.ndarray:
    """Per frame: transformers' own image processor, then for each class separately the full
    model on (prompt, frame), whose logits_per_image is logit scale x cosine; softmax."""
    model = transformers.CLIPModel.from_pretrained(checkpoint).eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(checkpoint)
    processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    scores = np.zeros((len(images), NUM_CLASSES))
    with torch.no_grad():
        for row, image in enumerate(images):
            pixels = processor(images=image, return_tensors="pt")["pixel_values"]
            logits = []
            for name in CLASSES:
                prompt = "This photo contains the " + name.replace("_", " ")
                tokens = tokenizer(prompt, return_tensors="pt")["input_ids"]
                output = model(input_ids=tokens, pixel_values=pixels)
                logits.append(float(output.logits_per_image[0, 0]))
            weights = np.exp(np.array(logits) - max(logits))
            scores[row] = weights / weights.sum()
    return scores


def noise_image(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def code_image(index: int) -> np.ndarray:
    """A (64, 64, 3) frame whose blocks spell ``index`` in binary (robust to lossy codecs)."""
    block = CODE_SIDE // CODE_BLOCKS
    pixels = np.zeros((CODE_SIDE, CODE_SIDE, 3), dtype=np.uint8)
    for bit in range(CODE_BLOCKS * CODE_BLOCKS):
        if index >> bit & 1:
            row, column = divmod(bit, CODE_BLOCKS)
            pixels[row * block : (row + 1) * block, column * block : (column + 1) * block] = 255
    return pixels


def read_code(image: Image.Image) -> int:
    pixels = np.asarray(image.convert("L"), dtype=np.float64)
    block = CODE_SIDE // CODE_BLOCKS
    index = 0
    for bit in range(CODE_BLOCKS * CODE_BLOCKS):
        row, column = divmod(bit, CODE_BLOCKS)
        if (
            pixels[row * block : (row + 1) * block, column * block : (column + 1) * block].mean()
            > 127
        ):
            index |= 1 << bit
    return index


def write_video(path: Path, times: np.ndarray) -> None:
    """An MPEG-4 video whose frame i, ``code_image(i)``, is shown at ``times[i]`` seconds."""
    millisecond = fractions.Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = CODE_SIDE
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = millisecond
        for index, time in enumerate(times):
            frame = av.VideoFrame.from_ndarray(code_image(index), format="rgb24")
            frame.pts, frame.time_base = round(time * 1000), millisecond
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def irregular_times(rng: np.random.Generator, duration: float) -> np.ndarray:
    """Frame times from 0 with gaps of 50..450 ms, so that nearest frames are not on a grid."""
    gaps = rng.uniform(0.05, 0.45, size=int(duration / 0.05) + 1)
    times = np.round(np.concatenate([[0.0], np.cumsum(gaps)]), 3)
    return times[times < duration]


def nearest_frames(times: np.ndarray, clip_start: float, segments: int = 10) -> list[int]:
    """Per segment, the index of the frame nearest to its middle (checked to be unambiguous)."""
    chosen = []
    for segment in range(segments):
        gaps = np.abs(times - (clip_start + segment + 0.5))
        order = np.argsort(gaps)
        assert gaps[order[1]] - gaps[order[0]] > 0.002, "ambiguous test video"
        chosen.append(int(order[0]))
    return chosen


def write_frame_folder(folder: Path, images: list[Image.Image]) -> None:
    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        image.save(folder / f"frame_{index + 1}.png")  # unpadded: sorting must be numeric


def test_scores_equal_a_slow_per_frame_reference(checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    sizes = [(48, 40), (37, 61), (32, 32)]
    frames_of = {}
    for video, (height, width) in enumerate(sizes):
        # 10 images for 10 segments: segment t gets image t.
        frames_of[f"vid{video}"] = [noise_image(rng, height, width) for _ in range(10)]
        write_frame_folder(tmp_path / f"vid{video}", frames_of[f"vid{video}"])
    video_ids = list(frames_of)

    scores = clip_visual_scores(
        video_ids, checkpoint=checkpoint, frames=tmp_path, batch_size=7, progress=False
    )

    assert scores.shape == (3, 10, NUM_CLASSES) and scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(axis=-1), 1.0, atol=1e-5)
    assert np.ptp(scores, axis=-1).min() > 1e-3  # far from uniform: the scores say something
    for video, name in enumerate(video_ids):
        reference = reference_scores(checkpoint, frames_of[name])
        np.testing.assert_allclose(scores[video], reference, atol=1e-5)
    again = clip_visual_scores(
        video_ids, checkpoint=checkpoint, frames=tmp_path, batch_size=64, progress=False
    )
    np.testing.assert_allclose(again, scores, atol=1e-6)


def test_a_weights_file_loads_its_folder(checkpoint, tmp_path):
    write_frame_folder(tmp_path / "vid", [noise_image(np.random.default_rng(1), 40, 40)] * 10)
    from_folder = clip_visual_scores(
        ["vid"], checkpoint=checkpoint, frames=tmp_path, progress=False
    )
    from_file = clip_visual_scores(
        ["vid"], checkpoint=checkpoint / "model.safetensors", frames=tmp_path, progress=False
    )
    np.testing.assert_array_equal(from_file, from_folder)


def test_a_custom_prompt_changes_the_scores(checkpoint, tmp_path):
    write_frame_folder(tmp_path / "vid", [noise_image(np.random.default_rng(2), 40, 40)] * 10)
    default = clip_visual_scores(["vid"], checkpoint=checkpoint, frames=tmp_path, progress=False)
    other = clip_visual_scores(
        ["vid"], checkpoint=checkpoint, frames=tmp_path, prompt="A photo of a {}", progress=False
    )
    assert np.abs(other - default).max() > 1e-3
    with pytest.raises(ValueError, match=re.escape("no {} for the class name")):
        clip_visual_scores(["vid"], checkpoint=checkpoint, frames=tmp_path, prompt="A photo")


@pytest.mark.parametrize("size", [32, 224])
def test_preprocess_equals_the_transformers_image_processor(size):
    rng = np.random.default_rng(size)
    processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    for height, width in [(240, 320), (61, 37), (33, 100), (size, size), (20, 25), (401, 300)]:
        image = noise_image(rng, height, width)
        expected = processor(images=image, return_tensors="np")["pixel_values"][0]
        np.testing.assert_allclose(preprocess(image, size), expected, atol=1e-6)


def test_video_frames_are_the_nearest_to_the_segment_middles(tmp_path):
    times = irregular_times(np.random.default_rng(3), 10.3)
    write_video(tmp_path / "abcdefghijk_30_40.mp4", times)

    chosen = segment_frames("abcdefghijk_30_40", tmp_path)

    assert [read_code(image) for image in chosen] == nearest_frames(times, clip_start=0.0)


def test_a_long_video_found_by_youtube_id_is_the_whole_youtube_video(tmp_path):
    times = irregular_times(np.random.default_rng(4), 17.0)
    write_video(tmp_path / "abcdefghijk.mp4", times)

    chosen = segment_frames("abcdefghijk_5_15", tmp_path)
    assert [read_code(image) for image in chosen] == nearest_frames(times, clip_start=5.0)

    # The same file named by the LLP filename is the clip itself: it starts at 0.
    (tmp_path / "abcdefghijk.mp4").rename(tmp_path / "abcdefghijk_5_15.mp4")
    chosen = segment_frames("abcdefghijk_5_15", tmp_path)
    assert [read_code(image) for image in chosen] == nearest_frames(times, clip_start=0.0)


def test_frame_folder_frames_are_picked_by_index_at_the_segment_middles(tmp_path):
    images = [Image.fromarray(code_image(index)) for index in range(25)]
    write_frame_folder(tmp_path / "abcdefghijk_0_10", images)

    chosen = segment_frames("abcdefghijk_0_10", tmp_path)

    # 25 images over 10 s: segment t's middle, t + 0.5 s, is image floor(2.5 (t + 0.5)).
    assert [read_code(image) for image in chosen] == [1, 3, 6, 8, 11, 13, 16, 18, 21, 23]


def test_a_frame_folder_is_found_by_youtube_id(tmp_path):
    images = [Image.fromarray(code_image(index)) for index in range(10)]
    write_frame_folder(tmp_path / "abcdefghijk", images)
    chosen = segment_frames("abcdefghijk_0_10", tmp_path)
    assert [read_code(image) for image in chosen] == list(range(10))


@pytest.mark.real_data
def test_real_sample_video(checkpoint):
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"the LLP sample video {SAMPLE_VIDEO} is not there")
    with av.open(str(SAMPLE_VIDEO)) as container:
        stream = container.streams.video[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        decoded = [
            (frame.time - start, frame.to_ndarray(format="rgb24"))
            for frame in container.decode(stream)
        ]
    times = np.array([time for time, _ in decoded])

    chosen = segment_frames(SAMPLE_FILENAME, SAMPLE_VIDEO.parent)

    for image, index in zip(chosen, nearest_frames(times, clip_start=0.0), strict=True):
        np.testing.assert_array_equal(np.asarray(image), decoded[index][1])
    assert len({np.asarray(image).tobytes() for image in chosen}) == 10
    scores = clip_visual_scores(
        [SAMPLE_FILENAME], checkpoint=checkpoint, frames=SAMPLE_VIDEO.parent, progress=False
    )
    assert scores.shape == (1, 10, NUM_CLASSES)
    np.testing.assert_allclose(scores.sum(axis=-1), 1.0, atol=1e-5)
    assert np.abs(np.diff(scores[0], axis=0)).max() > 1e-4  # different frames, different scores


def test_precomputed_frame_features_give_the_image_scores(checkpoint, tmp_path):
    rng = np.random.default_rng(5)
    video_ids = ["abcdefghijk_0_10", "bcdefghijkl_10_20"]
    frames = tmp_path / "frames"
    for name in video_ids:
        write_frame_folder(frames / name, [noise_image(rng, 40, 50) for _ in range(10)])
    from_images = clip_visual_scores(
        video_ids, checkpoint=checkpoint, frames=frames, progress=False
    )
    embeddings = clip_frame_embeddings(
        video_ids, checkpoint=checkpoint, frames=frames, progress=False
    )
    assert embeddings.shape == (2, 10, 16)

    stacked = tmp_path / "stacked.npz"
    np.savez(stacked, video_ids=np.array(video_ids), features=embeddings)
    # One array a video; the second keyed by its YouTube id.
    keyed = tmp_path / "keyed.npz"
    np.savez(keyed, **{video_ids[0]: embeddings[0], "bcdefghijkl": embeddings[1]})
    for path in (stacked, keyed):
        scores = clip_visual_scores(video_ids, checkpoint=checkpoint, frame_features=path)
        np.testing.assert_allclose(scores, from_images, atol=1e-6)


def test_importing_the_module_imports_no_heavy_dependency():
    code = (
        "import sys, avvp.clip_labels; "
        "print([name for name in ('torch', 'transformers', 'av') if name in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_missing_optional_dependency_says_what_to_install(checkpoint, tmp_path, monkeypatch):
    write_video(tmp_path / "vid.mp4", np.arange(0, 10.0, 0.5))
    monkeypatch.setitem(sys.modules, "av", None)  # what an uninstalled package looks like
    with pytest.raises(ImportError, match=r"'av'.*install avvp\[clip\]"):
        segment_frames("vid", tmp_path)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"'transformers'.*install avvp\[clip\]"):
        clip_visual_scores(["vid"], checkpoint=checkpoint, frames=tmp_path)


# Error cases: each message names the file or the video.


def test_exactly_one_frame_source(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        clip_visual_scores(["vid"], checkpoint=checkpoint)
    with pytest.raises(ValueError, match="exactly one"):
        clip_visual_scores(
            ["vid"], checkpoint=checkpoint, frames=tmp_path, frame_features=tmp_path / "f.npz"
        )


def test_missing_checkpoint(tmp_path):
    missing = tmp_path / "no-such-clip"
    with pytest.raises(FileNotFoundError, match=re.escape(f"CLIP checkpoint {missing}")):
        clip_visual_scores(["vid"], checkpoint=missing, frames=tmp_path)


def test_checkpoint_that_does_not_load(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{broken} could not be loaded")):
        clip_visual_scores(["vid"], checkpoint=broken, frames=tmp_path)
    openai_file = tmp_path / "ViT-B-32.pt"
    openai_file.write_bytes(b"\0")
    with pytest.raises(ValueError, match=re.escape(f"{openai_file}: expected a Hugging Face")):
        clip_visual_scores(["vid"], checkpoint=openai_file, frames=tmp_path)


def test_missing_video(checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        clip_visual_scores(
            ["abcdefghijk_0_10"], checkpoint=checkpoint, frames=tmp_path, progress=False
        )
    assert "video abcdefghijk_0_10" in str(raised.value)
    assert f"abcdefghijk_0_10 or abcdefghijk in {tmp_path}" in str(raised.value)
    with pytest.raises(FileNotFoundError, match=re.escape(f"frames folder {tmp_path / 'no'}")):
        clip_visual_scores(["vid"], checkpoint=checkpoint, frames=tmp_path / "no")


def test_unreadable_video_file(tmp_path):
    path = tmp_path / "abcdefghijk_0_10.mp4"
    path.write_bytes(b"this is not a video")
    expected = f"video abcdefghijk_0_10: cannot read video file {path}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        segment_frames("abcdefghijk_0_10", tmp_path)


def test_unreadable_image(tmp_path):
    write_frame_folder(tmp_path / "vid", [Image.fromarray(code_image(i)) for i in range(10)])
    broken = tmp_path / "vid" / "frame_4.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=re.escape(f"video vid: cannot read image {broken}")):
        segment_frames("vid", tmp_path)


def test_video_shorter_than_the_segments(tmp_path):
    path = tmp_path / "abcdefghijk_0_10.mp4"
    write_video(path, np.arange(0, 8.0, 0.25))
    expected = f"video abcdefghijk_0_10: {path} has no frame in second 8 of the clip"
    with pytest.raises(ValueError, match=re.escape(expected)):
        segment_frames("abcdefghijk_0_10", tmp_path)


def test_frame_folder_with_too_few_images(tmp_path):
    write_frame_folder(tmp_path / "vid", [Image.fromarray(code_image(i)) for i in range(6)])
    expected = f"video vid: frame folder {tmp_path / 'vid'} has 6 images"
    with pytest.raises(ValueError, match=re.escape(expected)):
        segment_frames("vid", tmp_path)


def test_missing_frame_features_file(checkpoint, tmp_path):
    missing = tmp_path / "features.npz"
    with pytest.raises(FileNotFoundError, match=re.escape(f"frame features file {missing}")):
        clip_visual_scores(["vid"], checkpoint=checkpoint, frame_features=missing)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"vid": np.ones((10, 15))}, "have shape (10, 15), expected (10, 16)"),
        ({"vid": np.ones((9, 16))}, "have shape (9, 16), expected (10, 16)"),
        ({"vid": np.where(np.eye(10, 16) > 0, np.nan, 1.0)}, "contain NaN"),
        ({"vid": np.zeros((10, 16))}, "contain a zero vector"),
        ({"other": np.ones((10, 16))}, "not in frame features file"),
    ],
)
def test_bad_frame_features(checkpoint, tmp_path, arrays, message):
    path = tmp_path / "features.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        clip_visual_scores(["vid"], checkpoint=checkpoint, frame_features=path)
    assert "video vid" in str(raised.value) and str(path) in str(raised.value)


def test_bad_frame_features_files(checkpoint, tmp_path):
    stacked = tmp_path / "stacked.npz"
    np.savez(stacked, video_ids=np.array(["vid", "other"]), features=np.ones((1, 10, 16)))
    with pytest.raises(ValueError, match=re.escape(f"frame features file {stacked}: 'features'")):
        clip_visual_scores(["vid"], checkpoint=checkpoint, frame_features=stacked)
    single = tmp_path / "features.npy"
    np.save(single, np.ones((1, 10, 16)))
    with pytest.raises(ValueError, match=re.escape(f"{single} holds one array, not an .npz")):
        clip_visual_scores(["vid"], checkpoint=checkpoint, frame_features=single)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match=re.escape(f"cannot read frame features file {garbage}")):
        clip_visual_scores(["vid"], checkpoint=checkpoint, frame_features=garbage)
