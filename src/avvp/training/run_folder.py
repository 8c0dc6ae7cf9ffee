"""Claiming a run folder: one process at a time, checked before any long work.

:func:`claim_run_folder` makes sure ``--out`` can be a run folder (not a file, writable), takes an
exclusive lock on it (``filelock``; released by the OS when a process dies), records who holds it,
removes the temporaries a killed process left from its atomic writes, and, when the claim ends in
an error before any epoch was saved, removes the folders it created, so that a failed start
leaves nothing behind. A second process claiming the same folder fails at once, naming the holder;
processes training other seeds of one ``--out`` (``OUT/seed-S``) hold one folder each.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from avvp.io_utils import atomic_write_text

LOCK_FILE = ".avvp.lock"
HOLDER_FILE = ".avvp.lock.holder"  # pid, host, command and start time of the holder (JSON)
# A folder holding this file (at any depth) has a saved epoch: never removed on a failed start.
SAVED_EPOCH_FILE = "last.pt"

# Folders this process holds, with how many nested claims hold each (the train command claims
# --out before loading data, the trainer claims its run folder again).
_held: dict[Path, int] = {}


class RunFolderInUse(ValueError):
    """Another process holds the run folder."""


def _is_secondary_rank() -> bool:
    # torchrun's other ranks write nothing into the folder; rank 0 alone holds the lock.
    return os.environ.get("RANK", "0") != "0"


@contextlib.contextmanager
def claim_run_folder(
    path: str | Path, files: Iterable[str] = (), flag: str = "--out"
) -> Iterator[Path]:
    """Hold ``path`` as a run folder for the ``with`` block; yields it.

    ``files`` are the names this process writes atomically into the folder: their leftover
    temporaries (``.NAME.*.tmp``) are removed once the lock is held. ``flag`` names the option
    the path came from, for error messages.
    """
    path = Path(path)
    key = path.resolve()
    if _is_secondary_rank():
        yield path
        return
    if key in _held:
        _held[key] += 1
        try:
            yield path
        finally:
            _held[key] -= 1
        return
    refuse_foreign_folder(path, (LOCK_FILE, *files), flag)
    created = _create_folders(path, flag)
    try:
        _check_writable(path, flag)
        lock = FileLock(path / LOCK_FILE, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RunFolderInUse(
                f"{flag} {path} is in use by {_holder(path)}; wait for it to finish, or choose "
                "another folder"
            ) from None
    except BaseException:
        _remove(created)
        raise
    _held[key] = 1
    try:
        atomic_write_text(path / HOLDER_FILE, json.dumps(_holder_record()) + "\n")
        _remove_temporaries(path, [*files, HOLDER_FILE])
        yield path
    except BaseException:
        if not any(path.rglob(SAVED_EPOCH_FILE)):
            _remove(created)
        raise
    finally:
        del _held[key]
        (path / HOLDER_FILE).unlink(missing_ok=True)
        lock.release()


def refuse_foreign_folder(path: str | Path, markers: Iterable[str], flag: str = "--out") -> None:
    """An error unless ``path`` is missing, empty, or holds one of ``markers`` (glob patterns of
    what avvp writes there): a run never writes into a folder of the user's own."""
    path = Path(path)
    if not path.is_dir() or next(path.iterdir(), None) is None:
        return
    if any(next(path.glob(pattern), None) is not None for pattern in markers):
        return
    raise FileExistsError(
        f"{flag} {path} is not empty and holds no avvp run; choose a new folder (avvp writes "
        "only into an empty folder or one it made)"
    )


def _create_folders(path: Path, flag: str) -> list[Path]:
    """Create ``path`` and its missing parents; returns the folders created, outermost first."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"{flag} {path} is a file; give a folder (a new one, or a run folder to resume)"
        )
    missing = [folder for folder in (path, *path.parents) if not folder.exists()][::-1]
    try:
        for folder in missing:
            folder.mkdir(exist_ok=True)  # another process may make it meanwhile
    except OSError as error:
        _remove(missing)
        raise type(error)(
            f"{flag} {path}: cannot create {folder} ({error.strerror or error}); choose a "
            "folder you can write to"
        ) from None
    return missing


def _check_writable(path: Path, flag: str) -> None:
    try:
        descriptor, probe = tempfile.mkstemp(dir=path, prefix=".avvp.probe.")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise type(error)(
            f"{flag} {path}: cannot write there ({error.strerror or error}); choose a folder "
            "you can write to"
        ) from None


def _holder_record() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _holder(path: Path) -> str:
    """'pid P on host H since T (command)' from the holder file, or why it is unknown."""
    try:
        record = json.loads((path / HOLDER_FILE).read_text(encoding="utf-8"))
        return (
            f"pid {record['pid']} on {record['host']} since {record['since']} ({record['command']})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return f"another process (it holds {path / LOCK_FILE})"


def _remove_temporaries(path: Path, files: Iterable[str]) -> None:
    """Delete ``.NAME.*.tmp`` left by a killed atomic write of one of ``files`` (see
    :func:`avvp.io_utils.atomic_write`); nothing else."""
    leftovers = sorted({temporary for name in files for temporary in path.glob(f".{name}.*.tmp")})
    for temporary in leftovers:
        temporary.unlink(missing_ok=True)
    if leftovers:
        names = ", ".join(temporary.name for temporary in leftovers)
        print(f"removed what a killed run left half-written in {path}: {names}")


def _remove(created: list[Path]) -> None:
    """Remove the folders a claim created (outermost first in ``created``): the run folder with
    what this process wrote into it, its parents only while empty (another process may be
    using one for its own run folder, e.g. OUT/seed-2 beside OUT/seed-1)."""
    for folder in reversed(created):
        if folder == created[-1]:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        with contextlib.suppress(OSError):
            folder.rmdir()
