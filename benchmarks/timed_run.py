"""Run a Python entry point with some of its functions timed; a child process of peer_speed.py.

    python benchmarks/timed_run.py --out TIMES.json [--path DIR] \
        --time LABEL=module:qualified.name [...] -- module:function [ARG ...]

Imports ``module`` (with DIR first on sys.path), replaces each timed function by a wrapper that
records the wall time (``time.perf_counter``) and the CPU time of the whole process
(``time.process_time``: with one thread and no loader workers, all the work) of every call, then
calls ``function()`` with ``sys.argv = [module, ARG ...]``. At exit, even a failing one, writes
``{"calls": {LABEL: [[wall_s, cpu_s], ...]}, "peak_rss_mib": ...}`` to TIMES.json. The peak RSS
is the process's (``ru_maxrss``), which the wrappers do not change.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def resolve(target: str) -> tuple[Any, str]:
    """``module:a.b.c`` -> (the object holding ``c``, ``"c"``)."""
    module_name, _, qualified = target.partition(":")
    if not qualified:
        raise SystemExit(f"timed_run: {target!r} is not module:name")
    owner: Any = importlib.import_module(module_name)
    *parents, name = qualified.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    if not hasattr(owner, name):
        raise SystemExit(f"timed_run: {target} does not exist")
    return owner, name


def timed(function: Callable, record: list[list[float]]) -> Callable:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            record.append([time.perf_counter() - wall, time.process_time() - cpu])

    return wrapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--path", type=Path, help="put this folder first on sys.path")
    parser.add_argument("--time", action="append", default=[], metavar="LABEL=module:name")
    parser.add_argument("entry", help="module:function to call")
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.path is not None:
        sys.path.insert(0, str(args.path))
    calls: dict[str, list[list[float]]] = {}
    for spec in args.time:
        label, _, target = spec.partition("=")
        owner, name = resolve(target)
        calls[label] = []
        setattr(owner, name, timed(getattr(owner, name), calls[label]))
    owner, name = resolve(args.entry)
    arguments = args.arguments[1:] if args.arguments[:1] == ["--"] else args.arguments
    sys.argv = [args.entry.partition(":")[0], *arguments]
    status: Any = 0
    try:
        status = getattr(owner, name)()
    finally:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        args.out.write_text(json.dumps({"calls": calls, "peak_rss_mib": peak_mib}) + "\n")
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
