"""The flags every computing command shares, declared once so they read the same everywhere.

A command calls :func:`add_compute_options` in ``register`` and :func:`load_model_from` in
``run``; the CLI runs every command inside :func:`memory_budget_from`, so the device and the
memory budget reach the library the same way for every command.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..devices import MEMORY_ENV, parse_size
from ..model import Model
from ..zoo import load_model


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
