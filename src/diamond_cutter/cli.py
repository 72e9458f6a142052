"""The ``diamond-cutter`` command.

Each subcommand lives in a module under :mod:`diamond_cutter.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``run``; the registry in
:mod:`diamond_cutter.commands` names them. Only the module of the command being run is
imported, so ``--help`` and ``--version`` answer without loading PyTorch. Errors from bad
input (a bad argument or a bad file) print one line, no traceback, and exit with status 2.
Commands run inside :func:`~diamond_cutter.heap.fast_cpu`: the process is theirs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from .commands import COMMANDS, add_command, memory_budget_from
from .errors import DiamondCutterError
from .heap import fast_cpu
from .version import __version__


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``diamond-cutter COMMAND: error: ...`` and exit status 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command registered in full, or only ``command``'s (``""``: none) and the
    others as their help line, which is all ``--help`` shows."""
    parser = Parser(
        prog="diamond-cutter",
        description="Look inside convolutional networks and find where to cut them for transfer learning.",
        epilog="Run `diamond-cutter COMMAND --help` for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"diamond-cutter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    full = list(dict.fromkeys(module for module, _, _ in COMMANDS.values())) if command is None else (
        [COMMANDS[command][0]] if command in COMMANDS else [])
    for module in full:
        importlib.import_module(f"{__package__}.commands.{module}").register(sub)
    for name in COMMANDS:
        if name not in sub.choices:
            add_command(sub, name)
    return parser


def command_in(argv: Sequence[str]) -> str:
    """The command named in ``argv`` (its first word that is not an option), or ``""``."""
    return next((word for word in argv if not word.startswith("-")), "")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(command_in(argv)).parse_args(argv)
    log = logging.getLogger("diamond_cutter")
    said = logging.StreamHandler(sys.stderr)  # choices the library makes for the user (a default layer) are printed
    said.setFormatter(logging.Formatter("diamond-cutter: %(message)s"))
    level = log.level
    log.addHandler(said)
    log.setLevel(logging.INFO)
    try:
        with memory_budget_from(args):
            with fast_cpu():  # a command owns its process, so it may keep large CPU tensors on the heap
                return int(args.run(args) or 0)
    except DiamondCutterError as err:
        print(f"diamond-cutter: error: {err.cli_text()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diamond-cutter: interrupted", file=sys.stderr)
        return 130
    finally:
        log.removeHandler(said)
        log.setLevel(level)


if __name__ == "__main__":
    raise SystemExit(main())
