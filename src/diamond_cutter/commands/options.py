"""Options several commands share, spelled and parsed the same way everywhere.

A computing command calls :func:`add_compute_options` in ``register`` and :func:`load_model_from`
in ``run``; the CLI runs every command inside :func:`memory_budget_from`, so the device and the
memory budget reach the library the same way for every command.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..devices import MEMORY_ENV, parse_size
from ..model import Model
from ..targets import parse_target
from ..zoo import load_model

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


def add_compute_options(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--memory``."""
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto (CUDA if available, else the CPU), cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--memory", default=None, metavar="SIZE",
                   help=f"memory budget for batches, e.g. 2G or 512M (default ${MEMORY_ENV}, "
                        "else a safe share of free RAM or GPU memory)")


@contextmanager
def memory_budget_from(args: argparse.Namespace) -> Iterator[None]:
    """Hand ``--memory`` to the library through its environment variable for the command's run,
    and put the variable back afterwards (the CLI may be called in-process)."""
    memory = getattr(args, "memory", None)
    if not memory:
        yield
        return
    before = os.environ.get(MEMORY_ENV)
    os.environ[MEMORY_ENV] = str(parse_size(memory))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MEMORY_ENV, None)
        else:
            os.environ[MEMORY_ENV] = before


def load_model_from(args: argparse.Namespace, name: str | None = None) -> Model:
    """The model named on the command line, with ``--weights`` and ``--device`` applied."""
    weights = getattr(args, "weights", "imagenet")
    return load_model(name or args.model, weights=None if weights == "none" else weights, device=args.device)
