"""avvp: weakly-supervised audio-visual video parsing in one library."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Names served lazily so that ``import avvp`` (the CLI, evaluation-only use) does not import torch.
_LAZY = {"poisson_binomial_pmf": "avvp.poisson_binomial"}

__all__ = ["__version__", "poisson_binomial_pmf"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
