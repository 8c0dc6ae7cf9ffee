"""The ``avvp`` command line: ``main(argv) -> int``, one subcommand a verb.

Each verb lives in ``avvp.commands.<module>`` with ``add_arguments(parser)`` and
``run(args) -> int``; a verb's heavy imports happen inside ``run``, so ``avvp --help`` stays fast
and a missing optional dependency (e.g. CLIP) breaks only the verb that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from avvp import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "write a synthetic dataset in the LLP layout"),
    "cache": ("cache", "build the consolidated feature cache of a dataset"),
    "check": ("check", "validate a whole dataset and list what to fix before training"),
    "evaluate": ("evaluate", "score predictions (files or a trained run) with the exact protocol"),
    "train": ("train", "train a method (han, poibin, ppl, vplan, ...) on a dataset"),
    "predict": ("predict", "write a trained run's predictions as TSV and .npz"),
    "plot": ("plot", "draw a trained run's parse of one video as a timeline PNG"),
    "report": ("report", "write an HTML and markdown report of one or more trained runs"),
    "pseudo-labels": (
        "pseudo_labels",
        "make (CLIP PLG, simulated CLIP) and score segment-level pseudo-label files",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avvp", description="Weakly-supervised audio-visual video parsing."
    )
    parser.add_argument("--version", action="version", version=f"avvp {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        subparser.set_defaults(_module=module_name)
        _command_module(module_name).add_arguments(subparser)
    return parser


def _command_module(module_name: str):
    return importlib.import_module(f"avvp.commands.{module_name}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(_command_module(args._module).run(args) or 0)
    # ImportError: a verb's optional extra is missing; its message names the extra to install.
    except (FileNotFoundError, ValueError, KeyError, ImportError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"avvp {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
