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
