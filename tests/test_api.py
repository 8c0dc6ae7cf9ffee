"""The Python API: avvp.load_run, Run.predict on features shaped as on disk, avvp.evaluate."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING

import avvp
from avvp.api import Event, Parse
from avvp.cli import main
from avvp.registry import create

README = Path(__file__).resolve().parents[1] / "README.md"
SETS = ("vggish", "res152", "r2plus1d_18")


@pytest.fixture(scope="module")
def run_dir(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("api") / "han"
    flags = ["--data", str(dataset), "--out", str(run), *TINY_TRAINING]
    assert main(["train", "--method", "han", *flags]) == 0
    return run


@pytest.fixture(scope="module")
def predictions(run_dir, dataset, tmp_path_factory):
    """What `avvp predict` writes for the test split."""
    out = tmp_path_factory.mktemp("pred")
    assert main(["predict", "--run", str(run_dir), "--data", str(dataset), "--out", str(out)]) == 0
    return out


def split_videos(dataset, split="test"):
    """(filenames, YouTube ids) of a split, in CSV order."""
    lines = (dataset / f"AVVP_{split}_pd.csv").read_text().splitlines()[1:]
    filenames = [line.split("\t")[0] for line in lines]
    return filenames, [name[:11] for name in filenames]


def on_disk(dataset, video):
    return {name: np.load(dataset / "feats" / name / f"{video}.npy") for name in SETS}


def test_run_predicts_one_video_from_its_files_as_avvp_predict_does(run_dir, dataset, predictions):
    run = avvp.load_run(run_dir)
    assert run.path == run_dir and run.device == torch.device("cpu")
    assert run.config["method"]["name"] == "han"
    shapes = {name: feature.shape() for name, feature in run.features.items()}
    assert shapes == {"vggish": (10, 128), "res152": (80, 2048), "r2plus1d_18": (10, 512)}
    assert run.features["res152"].frames == 8 and run.features["vggish"].stream == "audio"

    _, videos = split_videos(dataset)
    saved = np.load(predictions / "probabilities.npz")
    for row in (0, 5):
        features = on_disk(dataset, videos[row])
        assert features["res152"].shape == (80, 2048)  # the LLP shape, as stored
        parse = run.predict(features)
        assert isinstance(parse, Parse) and parse.segments == 10
        assert parse.segment_prob_audio.shape == parse.pred_visual.shape == (10, 25)
        assert parse.video_prob.shape == (25,)
        np.testing.assert_allclose(
            parse.segment_prob_audio, saved["segment_prob_audio"][row], atol=1e-6
        )
        np.testing.assert_allclose(
            parse.segment_prob_visual, saved["segment_prob_visual"][row], atol=1e-6
        )
        np.testing.assert_allclose(parse.video_prob, saved["video_prob"][row], atol=1e-6)
        np.testing.assert_allclose(
            parse.video_prob_audio, saved["video_prob_audio"][row], atol=1e-6
        )


def test_batches_and_videos_of_other_lengths(run_dir, dataset):
    run = avvp.load_run(run_dir)
    _, videos = split_videos(dataset)
    single = [run.predict(on_disk(dataset, video)) for video in videos[:3]]
    batch = run.predict(
        {name: np.stack([on_disk(dataset, v)[name] for v in videos[:3]]) for name in SETS}
    )
    assert isinstance(batch, list) and len(batch) == 3
    for one, of_batch in zip(single, batch, strict=True):
        np.testing.assert_allclose(one.segment_prob_visual, of_batch.segment_prob_visual, atol=1e-6)
        assert np.array_equal(one.pred_audio, of_batch.pred_audio)

    # A 25-s video: 25 segments, res152 200 rows; a 3-s one.
    features = on_disk(dataset, videos[0])
    long = {
        name: np.concatenate([array, array, array[: len(array) // 2]])
        for name, array in features.items()
    }
    assert long["res152"].shape == (200, 2048)
    parse = run.predict(long)
    assert parse.segments == 25 and parse.segment_prob_audio.shape == (25, 25)
    assert all(0 <= event.onset < event.offset <= 25 for event in parse.events())
    short = run.predict({name: array[: 3 * len(array) // 10] for name, array in features.items()})
    assert short.pred_visual.shape == (3, 25)


def test_threshold_and_gate_override_the_runs_rule(run_dir, dataset):
    run = avvp.load_run(run_dir)
    features = on_disk(dataset, split_videos(dataset)[1][0])
    assert not run.predict(features, threshold=1.0).pred_audio.any()
    ungated = run.predict(features, threshold=0.0, gate="none")
    assert ungated.pred_audio.all() and ungated.gate == "none" and ungated.threshold == 0.0
    default = run.predict(features)
    assert default.threshold == 0.5 and default.gate == "global"
    expected = (default.segment_prob_audio >= 0.5) & (default.video_prob >= 0.5)
    assert np.array_equal(default.pred_audio, expected)
    with pytest.raises(ValueError, match="unknown gate 'both'"):
        run.predict(features, gate="both")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"res152": np.zeros((10, 2048), np.float32)},
            r"feature set 'res152': expected \(T \* 8, 2048\) for one video .* found shape "
            r"\(10, 2048\)",
        ),
        (
            {"vggish": np.zeros((10, 64), np.float32)},
            r"feature set 'vggish': expected \(T \* 1, 128\) for one video",
        ),
        (
            {"res152": np.zeros((40, 2048), np.float32)},
            r"disagree on videos x segments \(vggish 1 x 10, res152 1 x 5, r2plus1d_18 1 x 10\)",
        ),
        (
            {"r2plus1d_18": np.full((10, 512), np.nan, np.float32)},
            r"feature set 'r2plus1d_18': non-finite values",
        ),
        ({"r2plus1d_18": None}, r"feature sets r2plus1d_18 are missing: the model reads vggish, "),
    ],
)
def test_wrong_features_are_errors_naming_the_set_and_shape(run_dir, dataset, change, message):
    run = avvp.load_run(run_dir)
    features = on_disk(dataset, split_videos(dataset)[1][0]) | change
    features = {name: array for name, array in features.items() if array is not None}
    with pytest.raises(ValueError, match=message):
        run.predict(features)


def test_model_names_a_per_frame_feature_set_instead_of_a_torch_size_error():
    # Before: RuntimeError "Sizes of tensors must match except in dimension 2".
    dims = {"vggish": 128, "res152": 2048, "r2plus1d_18": 512}
    model = create("model", "han", feature_dims=dims, d_model=16, feedforward=16).eval()
    features = {
        "vggish": torch.zeros(1, 10, 128),
        "res152": torch.zeros(1, 80, 2048),
        "r2plus1d_18": torch.zeros(1, 10, 512),
    }
    with pytest.raises(ValueError, match=r"feature set 'res152': expected shape \(1, 10, 2048\)"):
        model(features)
    with pytest.raises(ValueError, match="feature sets r2plus1d_18 are missing"):
        model({name: features[name] for name in ("vggish", "res152")})


def test_events_are_the_audio_visual_and_audio_visual_runs_the_evaluation_counts():
    audio = np.zeros((6, 25), bool)
    visual = np.zeros((6, 25), bool)
    audio[0:4, 0] = True  # Speech audible 0-4 s
    visual[2:6, 0] = True  # and visible 2-6 s
    visual[1:3, 3] = True  # Dog visible 1-3 s
    zeros = np.zeros((6, 25), np.float32)
    parse = Parse(zeros, zeros, zeros[0], zeros[0], zeros[0], audio, visual, 0.5, "global")
    assert parse.events() == [
        Event("Speech", "audio", 0, 4),
        Event("Dog", "visual", 1, 3),
        Event("Speech", "visual", 2, 6),
        Event("Speech", "audio-visual", 2, 4),
    ]


def test_load_run_takes_seed_folders_and_needs_no_data_folder(seeds_run, run_dir, tmp_path):
    with pytest.raises(ValueError, match="holds one run per seed; pass seed=S"):
        avvp.load_run(seeds_run)
    assert avvp.load_run(seeds_run, seed=2).path == seeds_run / "seed-2"
    assert avvp.load_run(seeds_run / "seed-1").path == seeds_run / "seed-1"
    with pytest.raises(FileNotFoundError, match=r"has no seed-3/best\.pt"):
        avvp.load_run(seeds_run, seed=3)

    # A run copied to a machine without its training data still predicts.
    moved = tmp_path / "moved"
    moved.mkdir()
    checkpoint = torch.load(run_dir / "best.pt", weights_only=False)
    checkpoint["config"]["data"]["root"] = str(tmp_path / "gone")
    torch.save(checkpoint, moved / "best.pt")
    assert avvp.load_run(moved).config["data"]["root"] == str(tmp_path / "gone")


@pytest.mark.filterwarnings("ignore::avvp.evaluation.checks.EvaluationWarning")
def test_evaluate_gives_the_numbers_of_avvp_evaluate(dataset, predictions, tmp_path, capsys):
    json_path = tmp_path / "metrics.json"
    files = [str(predictions / "pred_audio.tsv"), str(predictions / "pred_visual.tsv")]
    assert (
        main(
            [
                "evaluate",
                "--pred-audio",
                files[0],
                "--pred-visual",
                files[1],
                "--annotations",
                str(dataset),
                "--json",
                str(json_path),
            ]
        )
        == 0
    )
    expected = json.loads(json_path.read_text())
    assert avvp.evaluate(*files, dataset) == expected

    from avvp.evaluation.io import read_predictions

    filenames, _ = split_videos(dataset)
    arrays = [read_predictions(path, filenames) for path in files]
    assert avvp.evaluate(*arrays, dataset, split="test") == expected
    exclusive = avvp.evaluate(*files, dataset, audio_gt="pre2024", iou="exclusive")
    assert set(exclusive) == {"segment", "event"}
    with pytest.raises(
        ValueError, match=rf"pred_audio has shape \(3, 10, 25\): expected \({len(filenames)},"
    ):
        avvp.evaluate(arrays[0][:3], arrays[1], dataset)


def python_block(section):
    """The first ```python block of a README section."""
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", body, re.DOTALL).group(1)


def test_readme_python_example_runs(run_dir, dataset, predictions, tmp_path, monkeypatch, capsys):
    # The names the example uses: runs/han, pred/ (avvp predict's output), LLP/ with the CSVs
    # and one video's features under the README's id.
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "han").symlink_to(run_dir)
    (tmp_path / "pred").symlink_to(predictions)
    llp = tmp_path / "LLP"
    llp.mkdir()
    for csv in dataset.glob("AVVP_*.csv"):
        (llp / csv.name).symlink_to(csv)
    video = split_videos(dataset)[1][0]
    for name in SETS:
        (llp / "feats" / name).mkdir(parents=True)
        shutil.copy(
            dataset / "feats" / name / f"{video}.npy", llp / "feats" / name / "BjCEufrlXm4.npy"
        )
    monkeypatch.chdir(tmp_path)
    exec(compile(python_block("Python API"), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "Run('runs/han', method='han', vggish (10, 128), res152 (80, 2048)" in out
    assert "(10, 25) (25,)" in out


def test_import_avvp_and_evaluate_stay_light(dataset):
    # Neither `import avvp` nor scoring predictions imports torch.
    code = (
        "import sys, numpy as np, avvp; "
        "assert {'load_run', 'evaluate', 'extract'} <= set(dir(avvp)); "
        "from avvp.data.annotations import LLPAnnotations; "
        f"videos = len(LLPAnnotations({str(dataset)!r}).weak('test').filenames); "
        "empty = np.zeros((videos, 10, 25), bool); "
        f"scores = avvp.evaluate(empty, empty, {str(dataset)!r}); "
        "print(sorted(scores), 'torch' in sys.modules)"
    )
    src = str(Path(avvp.__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == "['event', 'segment'] False"
