"""The ``diamond-cutter`` command.

Each subcommand lives in its own module under :mod:`diamond_cutter.commands`
and exposes ``register(subparsers)``, which adds its parser and sets ``run``.
Errors from bad input print one line (no traceback) and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .commands import attribute, demo, inventory, predict, report, sweep, visualize
from .commands.options import memory_budget_from
from .errors import DiamondCutterError

#: The subcommands' modules, in the order their commands are listed in --help.
COMMAND_MODULES = (inventory, predict, attribute, visualize, report, sweep, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diamond-cutter",
        description="Look inside convolutional networks and find where to cut them for transfer learning.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = logging.getLogger("diamond_cutter")
    said = logging.StreamHandler(sys.stderr)  # choices the library makes for the user (a default layer) are printed
    said.setFormatter(logging.Formatter("diamond-cutter: %(message)s"))
    level = log.level
    log.addHandler(said)
    log.setLevel(logging.INFO)
    try:
        with memory_budget_from(args):
            return int(args.run(args) or 0)
    except DiamondCutterError as err:
        print(f"diamond-cutter: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diamond-cutter: interrupted", file=sys.stderr)
        return 130
    finally:
        log.removeHandler(said)
        log.setLevel(level)


if __name__ == "__main__":
    raise SystemExit(main())
