"""The one way benchmarks write their results: ``OUT.json`` (numbers) and ``OUT.md`` (table)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def write_results(out: Path, title: str, table: str, note: str, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON and the table with its note as markdown, beside each other."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    command = f"python benchmarks/{Path(sys.argv[0]).name}"
    out.with_suffix(".md").write_text(f"# {title}\n\n`{command}`\n\n{table}\n\n{note}\n")


def machine() -> dict[str, Any]:
    """What the numbers were measured on; CPU rows depend on the load as much as on the code."""
    import os
    import platform

    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average": os.getloadavg()[0],
    }


def machine_sentence(facts: dict[str, Any]) -> str:
    device = f"GPU {facts['cuda']}" if facts["cuda"] else "no GPU"
    return (
        f"torch {facts['torch']}, {facts['platform']}, {facts['cpus']} CPUs, "
        f"{facts['torch_threads']} torch thread(s), {device}, load average "
        f"{facts['load_average']:.2f} at the end."
    )
