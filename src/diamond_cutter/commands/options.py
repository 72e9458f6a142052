"""Options several commands share, spelled and parsed the same way everywhere.

A computing command calls :func:`add_compute_options` in ``register`` and :func:`load_model_from`
in ``run``; the CLI runs every command inside :func:`~diamond_cutter.commands.memory_budget_from`,
so the device and the memory budget reach the library the same way for every command.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ..devices import MEMORY_ENV
from ..errors import DiamondCutterError
from ..model import Model
from ..targets import parse_target
from ..transfer.saved import MANIFEST, load_transferred
from ..zoo import load_model
from .numbers import COUNT

log = logging.getLogger("diamond_cutter")


def add_images_argument(p: argparse.ArgumentParser) -> None:
    """The images a command reads: one or more files, folders, globs, URLs or sample names."""
    p.add_argument("images", nargs="+", help="files, folders, globs, URLs or sample names (chelsea, coffee, ...)")


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


#: The flags every computing command takes, spelled the same everywhere (tests hold every command to it).
SHARED_FLAGS = ("--device", "--memory", "--batch-size")


def add_compute_options(p: argparse.ArgumentParser, batch_size: str | bool | None = None) -> None:
    """``--device``, ``--memory`` and ``--batch-size`` (``batch_size`` is its help where the command
    already means something particular by it; by default: images per pass, from the budget; False: none)."""
    if batch_size is not False:
        p.add_argument(
            "--batch-size",
            type=COUNT,
            default=None,
            metavar="N",
            help=batch_size if isinstance(batch_size, str) else
            "images (or perturbed copies) per pass (default: what fits the memory budget)",
        )
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto (CUDA if available, else the CPU), cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--memory", default=None, metavar="SIZE",
                   help=f"memory budget for batches, e.g. 2G or 512M (default ${MEMORY_ENV}, "
                        "else a safe share of free RAM or GPU memory)")


def add_layer_option(p: argparse.ArgumentParser, help: str, *, required: bool = False,
                     aliases: tuple[str, ...] = ()) -> None:
    """``--layer``, repeatable or comma-separated (``--layer a --layer b`` = ``--layer a,b``)."""
    p.add_argument("--layer", *aliases, dest="layer", action="append", required=required, metavar="LAYER", help=help)


def layers_of(args: argparse.Namespace) -> list[str]:
    """Every layer the ``--layer`` options name, in order."""
    return [name.strip() for text in (args.layer or []) for name in text.split(",") if name.strip()]


def one_layer(args: argparse.Namespace) -> str | None:
    """The single layer a command that reads one takes (None when not given)."""
    names = layers_of(args)
    if len(names) > 1:
        raise DiamondCutterError(f"this command reads one layer, got {len(names)}: {', '.join(names)}")
    return names[0] if names else None


def add_weights_option(p: argparse.ArgumentParser) -> None:
    """``--weights``, with ImageNet as the default for every command."""
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (default), 'none' for random weights, or a checkpoint path")


def weights_from(args: argparse.Namespace) -> str | None:
    """What ``load_model`` takes for ``--weights``."""
    weights = getattr(args, "weights", "imagenet")
    return None if weights == "none" else weights


def load_model_from(args: argparse.Namespace, name: str | None = None) -> Model:
    """The model named on the command line, with ``--weights`` and ``--device`` applied."""
    return load_model(name or args.model, weights=weights_from(args), device=args.device)


def load_model_or_saved(args: argparse.Namespace) -> Model:
    """``load_model_from``, or the saved transferred model when ``args.model`` is its folder (it holds a manifest)."""
    if (Path(args.model) / MANIFEST).is_file():
        return load_transferred(args.model, device=args.device)
    return load_model_from(args)
