"""One registry for everything created by name: models, poolings, methods, feature extractors.

``register("model")`` is a decorator; ``create("model", name, **kwargs)`` builds; ``available``
lists names, optionally filtered by a glob.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

KINDS = ("model", "pooling", "method", "extractor")
BUILTIN_MODULES = (
    "avvp.models",
    "avvp.methods.han",
    "avvp.methods.ma",
    "avvp.methods.poibin",
    "avvp.methods.ppl",
    "avvp.methods.vplan",
    "avvp.methods.jomold",
    "avvp.extraction.vggish",
    "avvp.extraction.visual",
    "avvp.extraction.embeddings",
)
_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in KINDS}

F = TypeVar("F", bound=Callable[..., Any])


def _table(kind: str) -> dict[str, Callable[..., Any]]:
    if kind not in _REGISTRY:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {', '.join(KINDS)}")
    return _REGISTRY[kind]


def register(kind: str, name: str | None = None) -> Callable[[F], F]:
    """Decorator registering a builder (function or class) under ``name`` (default: its name)."""

    def decorator(builder: F) -> F:
        key = name or builder.__name__
        table = _table(kind)
        if key in table and table[key] is not builder:
            warnings.warn(f"{kind} {key!r} registered twice; the later one wins", stacklevel=2)
        table[key] = builder
        return builder

    return decorator


def unknown_name_message(what: str, name: object, known: Iterable[str]) -> str:
    """'unknown WHAT NAME (did you mean X?); available: ...', the close match from difflib."""
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {name!r}{hint}; available: {', '.join(known) or 'none'}"


def get(kind: str, name: str) -> Callable[..., Any]:
    _import_builtins()
    table = _table(kind)
    if name not in table:
        raise KeyError(unknown_name_message(kind, name, table))
    return table[name]


def create(kind: str, name: str, **kwargs: Any) -> Any:
    return get(kind, name)(**kwargs)


def available(kind: str, pattern: str = "*") -> list[str]:
    _import_builtins()
    return sorted(n for n in _table(kind) if fnmatch.fnmatch(n, pattern))


def _import_builtins() -> None:
    # Registration happens at import; importing here means a caller never sees an empty registry.
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
