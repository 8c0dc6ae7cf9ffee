"""avvp: weakly-supervised audio-visual video parsing in one library.

The Python API (README, "Python API"): ``avvp.load_run(path)`` -> a run whose ``predict`` parses
features shaped as on disk, ``avvp.evaluate(...)`` scores predictions with the exact protocol,
``avvp.extract(...)`` writes LLP-layout features of video files.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Names served lazily so that ``import avvp`` (the CLI, evaluation-only use) does not import torch.
_LAZY = {
    "poisson_binomial_pmf": "avvp.poisson_binomial",
    "load_run": "avvp.api",
    "evaluate": "avvp.api",
    "Run": "avvp.api",
    "Parse": "avvp.api",
    "Event": "avvp.api",
    "extract": "avvp.extraction",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
