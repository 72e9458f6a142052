"""Options several commands share, spelled and parsed the same way everywhere."""

from __future__ import annotations

import argparse
from typing import Any

from ..targets import parse_target


def add_target_option(p: argparse.ArgumentParser, default: str, help: str) -> None:
    """``--target`` (repeatable: one per image), parsed by :func:`diamond_cutter.targets.parse_target`."""
    p.add_argument("--target", action="append", default=None, help=help)
    p.set_defaults(target_default=default)


def target_of(args: argparse.Namespace) -> Any:
    """The target the ``--target`` options give (the command's default when there are none)."""
    return parse_target(args.target or [args.target_default])
