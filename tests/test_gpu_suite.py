"""benchmarks/gpu_suite.sh --dry-run: every step of the GPU suite runs on the CPU at tiny sizes.

The suite waits for the day a GPU is lent; this keeps it from rotting meanwhile (a renamed flag,
a method that needs a new option). It must not write into benchmarks/results.
"""

import os
import subprocess
import sys
from pathlib import Path

from avvp.registry import available

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"


def run_suite(*arguments: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
        # This checkout's avvp, whatever the interpreter has installed.
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    return subprocess.run(
        ["bash", str(SUITE), *arguments], capture_output=True, text=True, env=environment
    )


def test_dry_run_runs_every_step_into_its_own_folder(tmp_path):
    results = ROOT / "benchmarks" / "results"
    before = {path.name: path.stat().st_mtime_ns for path in results.iterdir()}
    finished = run_suite("--dry-run", "--out", str(tmp_path))
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert {path.name: path.stat().st_mtime_ns for path in results.iterdir()} == before
    for name in ("gpu_han_speed_fp32", "gpu_ppl_cost", "gpu_poibin_speed"):
        assert (tmp_path / f"{name}.md").is_file(), name
        assert (tmp_path / f"{name}.json").is_file(), name
    methods = (tmp_path / "gpu_methods_epoch.md").read_text()
    for method in available("method"):
        assert f"| {method} | " in methods and "failed" not in methods, method
    summary = (tmp_path / "gpu_suite.md").read_text()
    assert "--dry-run" in summary
    for step in (
        "HAN speed fp32",
        "one epoch of every method",
        "PPL pseudo-labelling share",
        "PoiBin pooling",
    ):
        assert f"| {step} | " in summary, step
    assert "failed" not in summary
    # bf16 runs where han_speed.py has the flag, and says it is skipped where not.
    assert "| HAN speed bf16 | " in summary


def test_unknown_argument_is_refused(tmp_path):
    finished = run_suite("--dryrun")
    assert finished.returncode == 2
    assert "unknown argument --dryrun" in finished.stderr
