"""What several verbs share: their config-override arguments and checks of where they write.

The checks run before a verb starts its work (loading a model, scoring a split), so a typo in
``--out`` costs a second, not a whole evaluation, and never replaces a file the user had.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def add_overrides(parser: argparse.ArgumentParser, example: str = "eval.threshold=0.4") -> None:
    """Positional ``key=value`` config overrides, as ``avvp train`` takes them.

    ``--set KEY=VALUE`` is the older spelling of ``avvp evaluate``, kept for existing scripts.
    """
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help=f"config overrides for this command, anywhere among the flags, e.g. {example}",
    )
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help=argparse.SUPPRESS)


def check_output_file(path: Path, flag: str, suffix: str) -> None:
    """Raise unless ``path`` can take the ``suffix`` file a verb writes there (``flag`` names it).

    An existing file is replaced only when it has that suffix, i.e. it is an earlier output, so a
    slip such as ``--json pred_audio.tsv`` cannot destroy the user's data.
    """
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a folder; give a file, e.g. {path}/out{suffix}")
    if path.exists() and path.suffix != suffix:
        raise FileExistsError(
            f"{flag} {path} exists and is not a {suffix} file; not overwriting it, give a new "
            f"path ending in {suffix}"
        )
    check_writable_folder(path.parent, flag)


def check_output_folder(path: Path, flag: str) -> None:
    """Raise unless ``path`` is a folder, or can be made one, that this process may write in."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"{flag} {path} is a file; give a folder (it is created if it does not exist)"
        )
    check_writable_folder(path, flag)


def check_writable_folder(path: Path, flag: str) -> None:
    """Raise unless ``path`` or, if it does not exist yet, its nearest existing parent is a
    folder in which a file can be created (tried, not inferred from permission bits)."""
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    if not existing.is_dir():
        raise NotADirectoryError(f"{flag} {path}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise PermissionError(
            f"{flag} {path}: cannot write in {existing} ({error.strerror}); choose another place"
        ) from None
