"""benchmarks/peer_ma.py: the harness around the official MA code, on a fake official tree.

The real checkout is not needed: a fake tree carries every line the harness patches, and its
main_avvp.py plays the three steps (a base checkpoint, need_to_change.pkl, printed metrics, and
through the patched-in line a retrained state dict of the real MMIL_Net shapes), so patching,
data preparation, resuming, parsing, re-scoring with avvp and the tables all run.
"""

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import peer_ma

from avvp.classes import CLASSES
from avvp.data.annotations import read_weak_labels
from avvp.official import KEY_MAP, han_config
from avvp.training.trainer import build_model

TEST_BLOCK = """

Audio  \t 61.2 \t 52.0
Visual \t 52.5 \t 48.0
AudVis \t 44.4 \t 40.1
Segment-levelType@Avg. F1: 52.7
Segment-level Event@Avg. F1: 55.2
Event-level Type@Avg. F1: 46.7
Event-level Event@Avg. F1: 47.3

"""
VAL_BLOCK = TEST_BLOCK.replace("61.2", "1.0").replace("55.2", "2.0")
TEST_METRICS = {
    "segment": {"audio": 61.2, "visual": 52.5, "audio_visual": 44.4, "type": 52.7, "event": 55.2},
    "event": {"audio": 52.0, "visual": 48.0, "audio_visual": 40.1, "type": 46.7, "event": 47.3},
}
AUTHORS_LABELS = b"the authors' LLP labels"

# One main_avvp.py for every step of the fake tree. Its comment holds the strings the CPU patches
# replace; the retrain block is the official one, so the line the harness adds runs.
FAKE_MAIN = """
import csv, json, pickle, sys
from pathlib import Path

import torch
from torchvision import transforms  # the stand-in where torchvision does not import

CLASSES = json.loads(CLASSES_JSON)
TEST, VAL = json.loads(PRINTED_JSON)
# what the harness patches: .to('cuda') num_workers=12 dtype=np.int)
argv = sys.argv
mode, seed = argv[argv.index("--mode") + 1], int(argv[argv.index("--seed") + 1])
transforms.Compose([])
with open("../calls.txt", "a") as calls:
    calls.write(f"{mode} {seed}\\n")


class Model:
    def state_dict(self):
        return torch.load("official_state.pt")


class Args:
    label_test = "data/AVVP_test_pd.csv"


def eval(model, loader, label):
    print(TEST)


def estimate_labels():
    # drops one label of some videos per stream, the visual ones depending on the seed
    checkpoint = argv[argv.index("--model_save_dir") + 1] + "MMIL_Net.pt"
    assert Path(checkpoint).read_text() == "base"
    with open("data/AVVP_train.csv") as table:
        rows = list(csv.DictReader(table, delimiter="\\t"))
    visual, audio = [[] for _ in CLASSES], [[] for _ in CLASSES]
    for index, row in enumerate(rows):
        first = CLASSES.index(row["event_labels"].split(",")[0])
        if (index + seed) % 2 == 0:
            visual[first].append(torch.tensor(index))
        if index % 5 == 0:
            audio[first].append(torch.tensor(index))
    with open("need_to_change.pkl", "wb") as out:
        pickle.dump([visual, audio], out)


def main():
    args = Args()
    if mode == "train":
        print(VAL)
        Path("models/MMIL_Net.pt").write_text("base")
    elif mode == "estimate_labels":
        estimate_labels()
    else:
        assert Path("need_to_change.pkl").read_bytes() != AUTHORS
        model, test_loader = Model(), None
        print(VAL)
        print("Test the latest model:")
        F=eval(model, test_loader, args.label_test)


main()
"""


def official_state_dict() -> dict:
    """A state dict with MA's MMIL_Net keys: avvp's HAN renamed, plus an MA-only module."""
    renamed = {}
    for key, value in build_model(han_config()).state_dict().items():
        official, ours = next((o, a) for o, a in KEY_MAP.items() if key.startswith(a + "."))
        renamed[official + key.removeprefix(ours)] = value
    renamed["fc1.weight"] = torch.zeros(256, 1024)  # MA's unused contrastive head
    return renamed


def make_fake_official(root: Path) -> Path:
    script = FAKE_MAIN.replace("CLASSES_JSON", repr(json.dumps(list(CLASSES))))
    script = script.replace("PRINTED_JSON", repr(json.dumps([TEST_BLOCK, VAL_BLOCK])))
    script = script.replace("!= AUTHORS", f"!= {AUTHORS_LABELS!r}")
    for step in peer_ma.STEPS:
        folder = root / step
        (folder / "nets").mkdir(parents=True)
        (folder / "data").mkdir()
        (folder / "data" / "AVVP_train.csv").write_text("filename\tevent_labels\nLLP\tSpeech\n")
        (folder / "main_avvp.py").write_text(script)
        (folder / "nets" / "net_audiovisual.py").write_text("mask = mask.cuda()\n")
    torch.save(official_state_dict(), root / peer_ma.STEP3 / "official_state.pt")
    (root / peer_ma.STEP3 / peer_ma.CHANGES).write_bytes(AUTHORS_LABELS)
    return root


@pytest.fixture(scope="module")
def fake_official(tmp_path_factory):
    return make_fake_official(tmp_path_factory.mktemp("official"))


@pytest.fixture
def no_interpreter_check(monkeypatch):
    # The official scripts need pandas < 3; the fake ones do not, and this venv has no pandas.
    monkeypatch.setattr(peer_ma, "check_interpreter", lambda python: None)


def test_patch_tree_changes_every_target_and_lists_each_change(fake_official, tmp_path):
    tree = tmp_path / "tree"
    for step in peer_ma.STEPS:
        (tree / step / "nets").mkdir(parents=True)
        (tree / step / "main_avvp.py").write_text(
            (fake_official / step / "main_avvp.py").read_text()
        )
        (tree / step / "nets" / "net_audiovisual.py").write_text("mask = mask.cuda()\n")
    lines = peer_ma.patch_tree(tree, workers=2)
    step1 = (tree / peer_ma.STEP1 / "main_avvp.py").read_text()
    step3 = (tree / peer_ma.STEP3 / "main_avvp.py").read_text()
    assert ".to('cpu') num_workers=2 dtype=int)" in step1
    assert "cuda" not in step1 and "np.int" not in step1
    assert 'torch.save(model.state_dict(), "retrained.pt")' in step3
    assert "retrained.pt" not in step1
    assert "mask.cpu()" in (tree / peer_ma.STEP2 / "nets" / "net_audiovisual.py").read_text()
    assert len(lines) == len(peer_ma.PATCHES)
    assert lines[0].startswith("main_avvp.py: `.to('cuda')` -> `.to('cpu')` (")
    assert "(step1_train_base_model 1x, step3_retrain 1x)" in lines[2]  # np.int: steps 1, 3
    assert lines[-1].startswith(
        'main_avvp.py: adds `torch.save(model.state_dict(), "retrained.pt")` after '
        "`F=eval(model, test_loader, args.label_test)` (step3_retrain 1x)"
    )


def test_patch_tree_refuses_code_it_does_not_know(fake_official, tmp_path):
    tree = tmp_path / "tree"
    for step in peer_ma.STEPS:
        (tree / step / "nets").mkdir(parents=True)
        (tree / step / "main_avvp.py").write_text("model = MMIL_Net().to('cuda')\n")
        (tree / step / "nets" / "net_audiovisual.py").write_text("mask = mask.cuda()\n")
    with pytest.raises(peer_ma.PatchError, match=r"step1_train_base_model/main_avvp.py: 'dtype"):
        peer_ma.patch_tree(tree, workers=1)


def test_prepare_official_puts_the_dataset_in_and_the_authors_labels_out(
    fake_official, dataset, tmp_path
):
    scratch = tmp_path / "seed-1"
    peer_ma.prepare_official(fake_official, dataset, scratch, workers=1)
    for step in peer_ma.STEPS:
        for name in peer_ma.DATA_FILES:
            assert (scratch / step / "data" / name).read_bytes() == (dataset / name).read_bytes()
    assert not (scratch / peer_ma.STEP3 / peer_ma.CHANGES).exists()
    assert (scratch / peer_ma.STEP1 / "models").is_dir()
    assert (fake_official / peer_ma.STEP1 / "main_avvp.py").read_text().count("cuda") == 1
    # prepared once: a second call keeps what the steps wrote there
    (scratch / peer_ma.STEP1 / "models" / "MMIL_Net.pt").write_text("trained")
    peer_ma.prepare_official(fake_official, dataset, scratch, workers=1)
    assert (scratch / peer_ma.STEP1 / "models" / "MMIL_Net.pt").read_text() == "trained"


def test_check_data_names_what_is_missing(dataset, tmp_path):
    peer_ma.check_data(dataset)
    with pytest.raises(FileNotFoundError, match=r"--data .*: no AVVP_train.csv; give an LLP"):
        peer_ma.check_data(tmp_path)
    for name in peer_ma.DATA_FILES:
        (tmp_path / name).write_text("")
    with pytest.raises(FileNotFoundError, match=r"--data .*: no feats/vggish/"):
        peer_ma.check_data(tmp_path)


def test_parse_official_metrics_reads_the_test_block_after_the_marker():
    text = VAL_BLOCK + "Test the latest model:\nsome warning\n" + TEST_BLOCK
    assert peer_ma.parse_official_metrics(text) == TEST_METRICS
    with pytest.raises(ValueError, match="did not finish"):
        peer_ma.parse_official_metrics(VAL_BLOCK)
    cut = "Test the latest model:" + TEST_BLOCK.split("Event-level Type")[0]
    with pytest.raises(ValueError, match=r"lacks event.type, event.event"):
        peer_ma.parse_official_metrics(cut)


def test_official_labels_drop_the_listed_pairs_of_each_stream(tmp_path):
    train = tmp_path / "AVVP_train.csv"
    train.write_text(
        "filename\tevent_labels\naaaaaaaaaaa_0_10\tSpeech,Dog\nbbbbbbbbbbb_0_10\tDog\n"
    )
    speech, dog = CLASSES.index("Speech"), CLASSES.index("Dog")
    visual, audio = [[] for _ in CLASSES], [[] for _ in CLASSES]
    visual[dog] = [torch.tensor(0), torch.tensor(1)]
    audio[speech] = [torch.tensor(0)]
    changes = tmp_path / "need_to_change.pkl"
    changes.write_bytes(pickle.dumps([visual, audio]))
    labels = peer_ma.official_labels(changes, train)
    expected_audio = np.zeros((2, 25), bool)
    expected_audio[0, dog] = expected_audio[1, dog] = True
    expected_visual = np.zeros((2, 25), bool)
    expected_visual[0, speech] = True
    np.testing.assert_array_equal(labels["audio"], expected_audio)
    np.testing.assert_array_equal(labels["visual"], expected_visual)


def test_agreement_and_kappa_over_the_weak_pairs():
    # observed 3/4, each side keeps 1/2 and 3/4: chance 1/2 * 3/4 + 1/2 * 1/4 = 1/2, kappa 1/2
    assert peer_ma.cohen_kappa([1, 1, 0, 0], [1, 1, 1, 0]) == pytest.approx(0.5)
    assert np.isnan(peer_ma.cohen_kappa([1, 1], [1, 1]))
    weak = np.array([[1, 1, 0], [1, 1, 0]])
    first = {"audio": np.array([[1, 1, 0], [0, 0, 0]]), "visual": weak.astype(bool)}
    second = {"audio": np.array([[1, 1, 1], [1, 0, 1]]), "visual": weak.astype(bool)}
    result = peer_ma.agreement(first, second, weak)
    assert result["audio"] == {
        "pairs": 4,
        "dropped_first": 2,
        "dropped_second": 1,
        "agreement": 0.75,
        "kappa": pytest.approx(0.5),
    }
    assert result["visual"]["agreement"] == 1.0 and np.isnan(result["visual"]["kappa"])


def test_rescoring_check_flags_numbers_beyond_the_rounding():
    close = {level: {k: v + 0.04 for k, v in m.items()} for level, m in TEST_METRICS.items()}
    far = {level: {k: v + 0.3 for k, v in m.items()} for level, m in TEST_METRICS.items()}
    assert "up to the print's rounding" in peer_ma.rescoring_check({1: TEST_METRICS}, {1: close})
    assert "look into it" in peer_ma.rescoring_check({1: TEST_METRICS}, {1: far})


def test_avvp_command_has_the_official_schedule_and_the_overrides_last(tmp_path):
    settings = {"epochs": 12, "batch_size": 16, "lr": 3e-4}
    command = peer_ma.avvp_train_command(tmp_path, tmp_path / "run", 2, settings, ["seed=5"])
    assert command[1:5] == ["-m", "avvp.cli", "train", "--method"]
    tail = command[command.index("--no-progress") + 1 :]
    assert tail == [
        "seed=2",
        "optim.epochs=12",
        "optim.batch_size=16",
        "optim.lr=0.0003",
        "optim.lr_step=10",
        "optim.lr_gamma=0.1",
        "seed=5",
    ]


def test_harness_runs_the_three_steps_rescores_tables_and_resumes(
    fake_official, dataset, tmp_path, monkeypatch, no_interpreter_check
):
    monkeypatch.setattr(peer_ma, "avvp_available", lambda: False)
    monkeypatch.setattr(peer_ma, "needs_shim", lambda python: True)
    work, out = tmp_path / "work", tmp_path / "results" / "peer_ma"
    argv = ["--official", str(fake_official), "--data", str(dataset), "--seeds", "1,2"]
    argv += ["--epochs", "3", "--work", str(work), "--out", str(out)]
    said = []
    assert peer_ma.main(argv, echo=said.append) == 0
    calls = (work / "official" / "seed-2" / "calls.txt").read_text().splitlines()
    assert calls == ["train 2", "estimate_labels 3", "retrain 2"]  # step 2 gets seed + 1
    assert "avvp's side: skipped, the `ma` method is not registered in this avvp." in said
    page = out.with_suffix(".md").read_text()
    numbers = json.loads(out.with_suffix(".json").read_text())
    assert numbers["official_printed"]["1"] == TEST_METRICS
    # avvp's evaluation of the retrained weights, not the fake's printed numbers
    modality = numbers["official"]["modality"]["1"]
    assert modality != TEST_METRICS and modality["segment"].keys() == TEST_METRICS["segment"].keys()
    assert f"| official MA, seed 1 | {modality['segment']['audio']:.1f} |" in page
    assert "| **official MA, mean ± std** |" in page
    assert "look into it" in page  # the fake printed numbers its model does not give
    # seeds 1 and 2 drop different visual labels and the same audio ones
    weak = read_weak_labels(dataset / "AVVP_train.csv").labels
    visual = numbers["agreement"]["official, seed 1 vs 2"]["visual"]
    assert visual["pairs"] == int(weak.sum()) and visual["agreement"] < 1.0
    assert numbers["agreement"]["official, seed 1 vs 2"]["audio"]["agreement"] == 1.0
    assert "| official, seed 1 | " in page  # label quality against the hidden train labels
    assert "`num_workers=12` -> `num_workers=1`" in page
    assert "torchvision: replaced by a stand-in" in page  # the fake imports it: the shim works
    assert "--epochs 3" in page and "official seed 2: step1 " in page
    # a second call finds every step done and runs none again
    assert peer_ma.main([*argv, "--no-avvp"], echo=said.append) == 0
    assert (work / "official" / "seed-2" / "calls.txt").read_text().splitlines() == calls
    assert "avvp's side: not run (--no-avvp)." in out.with_suffix(".md").read_text()
    # a step killed before its .done file is written runs again, the others do not
    (work / "official" / "seed-1" / f"{peer_ma.STEP3}.done").unlink()
    assert peer_ma.main(argv, echo=said.append) == 0
    calls = (work / "official" / "seed-1" / "calls.txt").read_text().splitlines()
    assert calls == ["train 1", "estimate_labels 2", "retrain 1", "retrain 1"]
    # other settings in the same folder would mix two schedules
    other = [*argv[:-4], "--epochs", "4", "--work", str(work), "--out", str(out)]
    with pytest.raises(ValueError, match=r"settings.json: its runs were made with other epochs"):
        peer_ma.main(other)


def test_check_interpreter_names_the_way_out(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 3.0.1\n")
    fake.chmod(0o755)
    with pytest.raises(OSError, match=r"pandas 3.0.1: .* install pandas < 3 there"):
        peer_ma.check_interpreter(str(fake))
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: pandas' >&2; exit 1\n")
    with pytest.raises(OSError, match=r"cannot import numpy, torch and pandas \(Module"):
        peer_ma.check_interpreter(str(fake))
    with pytest.raises(OSError, match=r"--python .*missing-python: cannot run it"):
        peer_ma.check_interpreter(str(tmp_path / "missing-python"))


AVVP_STAND_IN = """
import sys
import numpy as np
from avvp.cli import main
from avvp.data.annotations import read_weak_labels

data, out, seed = sys.argv[1:4]
flags = ["--data", data, "--out", out, f"seed={seed}", *sys.argv[4:]]
assert main(["train", "--method", "han", *flags]) == 0
train = read_weak_labels(data + "/AVVP_train.csv")
audio = train.labels.astype(float)
audio[:, 0] = 0  # drops every Speech audio label
np.savez(out + "/ma_labels.npz", video_ids=np.array(train.video_ids), audio=audio,
         visual=train.labels.astype(float))
"""


def test_harness_runs_avvp_with_the_same_schedule_and_compares_the_labels(
    fake_official, dataset, tmp_path, monkeypatch, no_interpreter_check
):
    # avvp's ma may not be registered yet: a tiny HAN run that writes ma_labels.npz stands in
    monkeypatch.setattr(peer_ma, "avvp_available", lambda: True)
    given = []

    def stand_in(data, out, seed, settings, overrides=()):
        if seed != "S":  # "S": the command shown in the results note
            given.append((seed, settings["epochs"], list(overrides)))
        tiny = [flag for flag in TINY_TRAINING if flag != "--no-progress"]
        return [sys.executable, "-c", AVVP_STAND_IN, str(data), str(out), str(seed), *tiny]

    monkeypatch.setattr(peer_ma, "avvp_train_command", stand_in)
    work, out = tmp_path / "work", tmp_path / "peer_ma"
    argv = ["--official", str(fake_official), "--data", str(dataset), "--seeds", "3"]
    argv += ["--epochs", "2", "--work", str(work), "--out", str(out), "method.x=1"]
    assert peer_ma.main(argv, echo=lambda line: None) == 0
    assert given == [(3, 2, ["method.x=1"])]
    numbers = json.loads(out.with_suffix(".json").read_text())
    run = work / "avvp" / "seed-3"
    assert numbers["avvp"]["global"]["3"] == json.loads((run / "test_metrics.json").read_text())
    assert (work / "avvp" / "seed-3-modality.json").is_file()
    weak = read_weak_labels(dataset / "AVVP_train.csv").labels
    audio = numbers["agreement"]["official vs avvp, seed 3"]["audio"]
    assert audio["dropped_second"] == int(weak[:, 0].sum())
    page = out.with_suffix(".md").read_text()
    assert "| avvp ma, seed 3 |" in page and "| avvp, seed 3 |" in page
    assert "avvp's side, per seed S: `avvp " in page
    # finished: a second call trains nothing; other avvp arguments would mix two settings
    assert peer_ma.main(argv, echo=lambda line: None) == 0
    assert len(given) == 1
    with pytest.raises(ValueError, match=r"avvp/settings.json: .*avvp_overrides; give another"):
        peer_ma.main([*argv[:-1], "method.x=2"], echo=lambda line: None)
