"""Options several commands share, spelled and parsed the same way everywhere."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..targets import parse_target

log = logging.getLogger("diamond_cutter")


def add_target_option(p: argparse.ArgumentParser, default: str, help: str, *, classes_alias: bool = False) -> None:
    """``--target`` (repeatable: one per image), parsed by :func:`diamond_cutter.targets.parse_target`;
    ``classes_alias`` also accepts the deprecated ``--classes`` spelling."""
    p.add_argument("--target", action="append", default=None, help=help)
    if classes_alias:
        p.add_argument("--classes", dest="classes", action="append", default=None, help="deprecated name of --target")
    p.set_defaults(target_default=default)


def target_of(args: argparse.Namespace) -> Any:
    """The target the ``--target`` options give (the command's default when there are none)."""
    texts = (args.target or []) + (getattr(args, "classes", None) or [])
    if getattr(args, "classes", None):
        log.warning("--classes is deprecated and will be removed in the next release; use --target")
    return parse_target(texts or [args.target_default])
