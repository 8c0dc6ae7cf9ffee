"""Atomic file writes: a crash leaves the old file or the new one, never half of either."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch


@functools.cache
def _umask() -> int:
    # The only way to read the umask is to set it; set it straight back, once per process (a
    # thread creating a file meanwhile would get the wrong mode).
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(handle)`` on a temporary file ``.NAME.*.tmp`` beside ``path``, then rename it
    into place. An OSError (e.g. a full disk) names ``path``, whatever step failed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise _naming(error, path) from error
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            # mkstemp makes the file private (0600); give it the mode an ordinary write would.
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _naming(error, path) from error
        raise
    return path


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` (same type and errno) as 'cannot write PATH: reason'."""
    named = type(error)(f"cannot write {path}: {error.strerror or error}")
    named.errno = error.errno
    return named


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in blocks (weight files are hundreds of MB)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_json(path: str | Path, value: Any) -> Path:
    return atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(value: Any, path: str | Path) -> Path:
    return atomic_write(path, lambda handle: torch.save(value, handle))
