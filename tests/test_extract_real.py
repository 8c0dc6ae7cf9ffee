"""The real extractors (vggish, res152, r2plus1d_18) through the whole pipeline.

The other extraction tests use fast fake extractors; here the registered ones run on the real
sample video with random weights (plumbing only), as a user without weights would try it first:
`avvp parse` with a HAN run trained on the standard LLP feature sets, and `avvp.extract` writing
the LLP layout with the weight files it used recorded by sha256.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING
from media_fixtures import SAMPLE

import avvp
from avvp.cli import main
from avvp.extraction import extract as pipeline_extract
from avvp.registry import create

pytestmark = pytest.mark.skipif(
    not SAMPLE.is_file(), reason=f"the real sample video is not at {SAMPLE} (../shared absent)"
)
LLP_SHAPES = {"vggish": (10, 128), "res152": (80, 2048), "r2plus1d_18": (10, 512)}


def test_the_python_api_extract_is_the_pipeline():
    assert avvp.extract is pipeline_extract


@pytest.mark.slow
@pytest.mark.real_data
def test_parse_the_sample_video_with_the_real_extractors(dataset, tmp_path, capsys):
    run = tmp_path / "han"
    assert main(["train", "--data", str(dataset), "--out", str(run), *TINY_TRAINING]) == 0
    out = tmp_path / "parsed"
    assert (
        main(["parse", str(SAMPLE), "--run", str(run), "--out", str(out), "--random-weights"]) == 0
    )
    folder = out / SAMPLE.stem
    names = ["events.json", "pred_audio.tsv", "pred_visual.tsv", "probabilities.npz"]
    assert sorted(path.name for path in folder.iterdir()) == sorted([*names, "timeline.png"])
    events = json.loads((folder / "events.json").read_text())
    assert events["seconds"] == 10 and events["random_weights"] is True
    assert set(events["features"]) == set(LLP_SHAPES)
    probabilities = np.load(folder / "probabilities.npz")
    assert probabilities["segment_prob_audio"].shape[-2:] == (10, 25)
    assert "--random-weights" in capsys.readouterr().err


def save_random_weights(name: str, weights, filename: str) -> None:
    extractor = create("extractor", name, random_weights=True)
    network = extractor.network if name == "vggish" else extractor.net
    torch.save(network.state_dict(), weights / filename)


@pytest.mark.slow
@pytest.mark.real_data
def test_extract_records_the_weight_files_it_loaded(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    files = {
        "vggish": "vggish-10086976.pth",
        "res152": "resnet152-394f9c45.pth",
        "r2plus1d_18": "r2plus1d_18-91a641e6.pth",
    }
    for name, filename in files.items():
        save_random_weights(name, weights, filename)
    out = tmp_path / "data"
    pipeline_extract([SAMPLE], out, features=list(files), weights=weights, progress=False)
    for name, shape in LLP_SHAPES.items():
        array = np.load(out / "feats" / name / f"{SAMPLE.stem}.npy")
        assert array.shape == shape and array.dtype == np.float32
    record = json.loads((out / "extraction.json").read_text())
    for name, filename in files.items():
        path = weights / filename
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert record["features"][name]["weights"] == {str(path): digest}
