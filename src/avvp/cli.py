"""The ``avvp`` command line: ``main(argv) -> int``, one subcommand a verb.

Each verb lives in ``avvp.commands.<module>`` with ``add_arguments(parser)`` and
``run(args) -> int``; a verb's heavy imports happen inside ``run``, so ``avvp --help`` stays fast
and a missing optional dependency (e.g. CLIP) breaks only the verb that needs it.

Conventions every verb shares, set here: config overrides are positional ``key=value`` arguments
allowed anywhere among the flags; ``--help`` shows each option's default; an error a user can fix
(a bad file, flag or config value) is one line ``avvp VERB: error: ...`` and exit code 2; Ctrl-C
is one line ``avvp VERB: interrupted...`` and exit code 130; warnings are one line each.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
import warnings
from collections.abc import Sequence

from avvp import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "write a synthetic dataset in the LLP layout"),
    "cache": ("cache", "build the consolidated feature cache of a dataset"),
    "extract": ("extract", "write LLP-layout features (VGGish, ResNet-152, ...) of video files"),
    "parse": ("parse", "parse video files with a trained run: events as TSV and JSON, a timeline"),
    "check": ("check", "validate a whole dataset and list what to fix before training"),
    "evaluate": ("evaluate", "score predictions (files or a trained run) with the exact protocol"),
    "train": ("train", "train a method (han, poibin, ppl, vplan, ...) on a dataset"),
    "predict": ("predict", "write a trained run's predictions as TSV and .npz"),
    "plot": ("plot", "draw a trained run's parse of one video as a timeline PNG"),
    "report": ("report", "write an HTML and markdown report of one or more trained runs"),
    "import-han": ("import_han", "convert a checkpoint of the official HAN code into a run"),
    "pseudo-labels": (
        "pseudo_labels",
        "make (CLIP PLG, simulated CLIP) and score segment-level pseudo-label files",
    ),
}
# Exit status of a command stopped with Ctrl-C, as shells report a process killed by SIGINT.
INTERRUPTED = 130
# Errors a user can act on: a file, a flag, a config value, a missing extra, a numeric failure.
USER_ERRORS = (OSError, ValueError, KeyError, ImportError, ArithmeticError)
# What to do about an OSError, by errno, when its message alone does not say.
OS_ERROR_HINTS = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.ENOSPC: "the disk is full; free some space or choose another path",
}


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already names its default.

    Unlike argparse.ArgumentDefaultsHelpFormatter it says nothing for options whose default is
    "not given" (None, False, an empty list): their help text says what happens then.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == [] or default is argparse.SUPPRESS
        if action.option_strings and not unset and "default" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose verbs accept their positionals anywhere among the flags.

    ``avvp train --out R --no-progress optim.epochs=2`` and ``avvp train optim.epochs=2 --out R``
    parse alike. argparse's intermixed parsing does exactly this but refuses parsers with
    subcommands, so only a parser without them (a verb, or an action of ``pseudo-labels``)
    parses intermixed; the parsers above it hand the verb its arguments as usual.
    """

    _intermixing = False

    def __init__(self, *args, formatter_class: type = HelpFormatter, **kwargs) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        # parse_known_intermixed_args calls parse_known_args itself (Python 3.11): the flag
        # routes those inner calls to argparse's own parsing.
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="avvp", description="Weakly-supervised audio-visual video parsing.")
    parser.add_argument("--version", action="version", version=f"avvp {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        subparser.set_defaults(_module=module_name)
        _command_module(module_name).add_arguments(subparser)
    return parser


def _command_module(module_name: str):
    return importlib.import_module(f"avvp.commands.{module_name}")


def error_message(error: BaseException) -> str:
    """The one line ``main`` prints for ``error``; an OSError's names the file it concerns."""
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])  # str() of a KeyError would quote its message
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        names = " -> ".join(str(name) for name in (error.filename, error.filename2) if name)
        hint = OS_ERROR_HINTS.get(error.errno)
        return f"{names}: {error.strerror}" + (f"; {hint}" if hint else "")
    return str(error) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    prefix = f"avvp {args.command}"
    format_warning = warnings.formatwarning
    # One line per warning instead of Python's file, line number and source line: a user of the
    # command line acts on the message, not on where in avvp it was raised.
    warnings.formatwarning = lambda message, *_, **__: f"{prefix}: warning: {message}\n"
    try:
        return int(_command_module(args._module).run(args) or 0)
    except KeyboardInterrupt as interrupt:
        detail = f": {interrupt}" if interrupt.args else ""
        print(f"{prefix}: interrupted{detail}", file=sys.stderr)
        return INTERRUPTED
    # ImportError: a verb's optional extra is missing; its message names the extra to install.
    except USER_ERRORS as error:
        print(f"{prefix}: error: {error_message(error)}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = format_warning


if __name__ == "__main__":
    sys.exit(main())
