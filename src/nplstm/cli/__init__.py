"""The ``nplstm`` command. The library never prints; this package owns the terminal.

Each subcommand lives in its own module with two functions:

* ``register(subparsers)`` adds its parser (with ``set_defaults(func=run)``);
* ``run(args) -> int`` does the work and returns the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping

# Subcommand name -> module (under nplstm.cli). Order is the order in --help.
SUBCOMMANDS = {
    "demo": "demo",
    "verify": "verify",
    "trace": "trace",
    "card": "card",
    "convert": "convert",
    "bench": "bench",
    "compile": "compile",
    "train": "train",
}


class CLIError(Exception):
    """A user error the CLI reports in one line and exits 2 on."""


def seed(text):
    """argparse type of ``--seed``: an integer >= 0 (what NumPy's generators take).

    Checked while parsing, so the error names ``--seed`` and comes before any output.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def check_output(option, path, formats):
    """Before any work: ``path`` ends in one of ``formats`` and its folder exists."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in formats:
        raise CLIError(f"{option} {path}: expected a file name ending in {', '.join(formats)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CLIError(f"{option} {path}: there is no folder {folder}")


def need_matplotlib(option):
    """Before any work: a CLIError naming ``option`` and the extra if matplotlib is absent."""
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise CLIError(f"{option} needs matplotlib: pip install 'nplstm[plot]'") from None


def fit_families(sd, prefix):
    """Which cell families the layer at ``prefix`` of a weights file can be.

    Returns ``{cell: layer}`` for each of LSTM, GRU, RNN whose gate rows (4, 3,
    1 x H) the state_dict's shapes fit, and ``{cell: why not}`` for the others.
    ``nplstm verify --weights`` and ``nplstm trace --weights`` read the family
    off the file with it (:func:`no_family` says why none fits).
    """
    from ..demo import LAYERS

    fits, errors = {}, {}
    for cell, cls in LAYERS.items():  # from_state_dict checks the gate rows
        try:
            fits[cell] = cls.from_state_dict(sd, prefix)
        except ValueError as exc:
            errors[cell] = str(exc)
    return fits, errors


def no_family(path, errors):
    """The CLIError for a weights file whose layer fits no family: why not, for each."""
    return CLIError(f"--weights {path}: these are no LSTM's, GRU's or RNN's weights:\n  "
                    + "\n  ".join(dict.fromkeys(errors.values())))


class Parser(argparse.ArgumentParser):
    """The ``nplstm`` parser, which knows its subcommands' parsers by name."""

    subcommands: Mapping[str, argparse.ArgumentParser] = {}


def build_parser() -> Parser:
    from .. import __version__

    parser = Parser(
        prog="nplstm",
        description="LSTM, GRU and RNN layers in plain NumPy: exact to PyTorch, "
        "every gate in sight.",
    )
    parser.add_argument("--version", action="version", version=f"nplstm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        try:
            mod = importlib.import_module(f".{module}", __name__)
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name != f"{__name__}.{module}":
                raise
            continue
        mod.register(sub)
    parser.subcommands = sub.choices  # name -> its parser, for errors in its own words
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # name the subcommand whose options these are not, with its usage
        target = parser.subcommands.get(getattr(args, "command", None) or "", parser)
        target.error(f"unrecognized arguments: {' '.join(unknown)}")
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"nplstm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `nplstm trace | head`; before OSError, its base class
        # Python's recipe: point stdout at devnull so the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, TypeError, OSError, NotImplementedError) as exc:
        print(f"nplstm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"nplstm {args.command}: error: not enough memory for these sizes",
              file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
