"""Atomic writes: the new file replaces the old whole, with the mode an ordinary write gives."""

from __future__ import annotations

import os
import stat

from avvp.io_utils import atomic_write_text


def test_an_atomic_write_gets_the_mode_of_an_ordinary_write(tmp_path):
    ordinary = tmp_path / "ordinary.txt"
    ordinary.write_text("x")
    written = atomic_write_text(tmp_path / "atomic.txt", "x")
    # mkstemp's private 0600 made every run file unreadable to the rest of a shared group.
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(ordinary.stat().st_mode)
    assert written.read_text() == "x"
    assert not [path for path in os.listdir(tmp_path) if path.endswith(".tmp")]
