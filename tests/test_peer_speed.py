"""benchmarks/peer_speed.py and timed_run.py on fake sources: no official checkout needed.

The patcher is run on a fake main_avvp.py carrying the lines it changes; preparing a copy must
leave the fake checkout untouched; timed_run must time every call of a wrapped function.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import peer_speed
import timed_run

FAKE_MAIN = """\
model = MMIL_Net().to('cuda')
audio = sample['audio'].to('cuda')
train_loader = DataLoader(d, batch_size=16, shuffle=True, num_workers=12, pin_memory = True)
val_loader = DataLoader(d, batch_size=1, shuffle=False, num_workers=1, pin_memory = True)
"""


def fake_checkout(root: Path) -> Path:
    (root / "nets").mkdir(parents=True)
    (root / "utils").mkdir()
    (root / "main_avvp.py").write_text(FAKE_MAIN)
    (root / "dataloader.py").write_text("import torch\n")
    (root / "nets" / "net_audiovisual.py").write_text("class MMIL_Net: pass\n")
    (root / "utils" / "eval_metrics.py").write_text("import numpy\n")
    (root / "models").mkdir()
    (root / "models" / "MMIL_Net.pt").write_bytes(b"weights")  # not needed, not copied
    return root


def fake_dataset(root: Path) -> Path:
    root.mkdir()
    for name in peer_speed.DATA_FILES:
        (root / name).write_text(f"filename\t{name}\n")
    return root


def test_patch_text_makes_the_cpu_copy_and_lists_every_change():
    text, done = peer_speed.patch_text(FAKE_MAIN, peer_speed.PATCHES, "main_avvp.py")
    assert "cuda" not in text
    assert text.count(".to('cpu')") == 2
    assert "num_workers=12" not in text and "num_workers=1," not in text
    assert text.count("num_workers=0") == 2
    assert "pin_memory = True" not in text
    assert len(done) == len(peer_speed.PATCHES)
    assert any("(2x)" in line and ".to('cuda')" in line for line in done)
    # Patches for other files leave this one alone.
    assert peer_speed.patch_text(FAKE_MAIN, peer_speed.PATCHES, "dataloader.py") == (FAKE_MAIN, [])


def test_a_missing_pattern_is_a_clear_error():
    changed = FAKE_MAIN.replace("num_workers=12", "num_workers=8")
    with pytest.raises(peer_speed.PatchError, match=r"main_avvp.py: 'num_workers=12' not found"):
        peer_speed.patch_text(changed, peer_speed.PATCHES, "main_avvp.py")


def test_prepare_official_patches_a_copy_and_never_the_checkout(tmp_path):
    official = fake_checkout(tmp_path / "checkout")
    before = {path: path.read_bytes() for path in official.rglob("*") if path.is_file()}
    data = fake_dataset(tmp_path / "data")
    scratch = tmp_path / "work" / "official"
    done = peer_speed.prepare_official(official, data, scratch)
    assert {path: path.read_bytes() for path in official.rglob("*") if path.is_file()} == before
    assert "cuda" not in (scratch / "main_avvp.py").read_text()
    assert (scratch / "nets" / "net_audiovisual.py").is_file()
    assert not (scratch / "models" / "MMIL_Net.pt").exists()  # an empty folder to save into
    assert (scratch / "models").is_dir()
    for name in peer_speed.DATA_FILES:
        assert (scratch / "data" / name).read_text() == (data / name).read_text()
    assert len(done) == len(peer_speed.PATCHES)


def test_check_official_names_what_is_missing(tmp_path):
    (tmp_path / "main_avvp.py").write_text(FAKE_MAIN)
    with pytest.raises(FileNotFoundError, match=r"dataloader\.py, nets, utils"):
        peer_speed.check_official(tmp_path)


def test_timed_run_times_every_call_and_reports_peak_rss(tmp_path):
    (tmp_path / "fake_entry.py").write_text(
        "import sys\n\n"
        "def work(x):\n    return sum(range(x))\n\n"
        "def main():\n"
        "    for _ in range(int(sys.argv[1])):\n        work(1000)\n"
        "    return 0\n"
    )
    out = tmp_path / "times.json"
    status = timed_run.main(
        [
            "--out",
            str(out),
            "--path",
            str(tmp_path),
            "--time",
            "work=fake_entry:work",
            "fake_entry:main",
            "--",
            "3",
        ]
    )
    assert status == 0
    times = json.loads(out.read_text())
    assert len(times["calls"]["work"]) == 3
    assert all(wall >= 0 and cpu >= 0 for wall, cpu in times["calls"]["work"])
    assert times["peak_rss_mib"] > 0


def test_summary_skips_the_first_epoch_and_later_test_scoring():
    times = {
        "calls": {
            "train": [[9.0, 9.0], [2.0, 1.0], [4.0, 3.0]],
            "eval": [[5.0, 5.0], [1.0, 0.5], [3.0, 1.5], [70.0, 70.0]],  # the last: test
        },
        "peak_rss_mib": 500.0,
    }
    summary = peer_speed.summarize(times, epochs=3)
    assert summary == {
        "train_wall_s": 3.0,
        "train_cpu_s": 2.0,
        "val_wall_s": 2.0,
        "val_cpu_s": 1.0,
        "peak_rss_mib": 500.0,
    }


def test_bad_precision_list_is_rejected():
    with pytest.raises(SystemExit):
        peer_speed.parse_args(["--official", "x", "--avvp-precision", "fp16"])
    assert peer_speed.parse_args(["--official", "x"]).precisions == ["fp32", "bf16"]
