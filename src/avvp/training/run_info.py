"""What a run records about the code and machine that produced it."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import avvp


def code_version() -> dict[str, Any]:
    """Package version, and the git commit and dirty flag when run from a checkout."""
    version: dict[str, Any] = {"avvp": avvp.__version__}
    source = Path(avvp.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        version.update(git_commit=commit, git_dirty=bool(status.strip()))
    except (OSError, subprocess.CalledProcessError):
        version.update(git_commit=None, git_dirty=None)
    return version


def run_metadata(resumed_from_epoch: int | None = None) -> dict[str, Any]:
    return {
        "code": code_version(),
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumed_from_epoch": resumed_from_epoch,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }
