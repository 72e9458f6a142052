"""Subcommands of ``diamond-cutter``: the registry of their names, modules, help lines and examples.

This module is light on purpose (it imports no PyTorch): ``diamond-cutter --help`` and
``--version`` read only this table, and a command's module, with everything it needs, is imported
only when that command runs. A command's module registers its parser with :func:`add_command`
(so every command's help carries its examples) and takes its shared flags from
:mod:`diamond_cutter.commands.options`. A new command adds one line to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..devices import MEMORY_ENV, parse_size

#: command -> (module under diamond_cutter.commands, one-line help, examples), in --help order.
COMMANDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "models": ("inventory", "list the models you can load (embedded first)", ("diamond-cutter models --all",)),
    "layers": (
        "inventory",
        "print a model's layer table, or the blocks you cut at",
        ("diamond-cutter layers efficientnet_lite0 --blocks", "diamond-cutter layers resnet50 --spatial --json"),
    ),
    "predict": (
        "predict",
        "classify images: top-k class names and probabilities",
        (
            "diamond-cutter predict efficientnet_lite0 chelsea coffee --top 3",
            "diamond-cutter predict efficientnet_lite0 photos/ --json --device cuda",
        ),
    ),
    "attribute": (
        "attribute",
        "saliency maps, CAMs, occlusion or LRP for images, saved as pictures",
        (
            "diamond-cutter attribute efficientnet_lite0 chelsea --method gradcam --layer blocks.6 --out maps/",
            "diamond-cutter attribute efficientnet_lite0 coffee --method integrated_gradients --style signed",
        ),
    ),
    "lens": (
        "lens",
        "write a static site: every channel's references, heatmaps, labels and icons",
        (
            "diamond-cutter lens efficientnet_lite0 --layers blocks.3,blocks.4 --images photos/ --out site/",
            "diamond-cutter lens runs/best --layers backbone.net.blocks.4,head.conv --images photos/",
        ),
    ),
    "evaluate": (
        "evaluate",
        "score attribution methods by faithfulness metrics: a methods × metrics table",
        (
            "diamond-cutter evaluate efficientnet_lite0 chelsea coffee --target top1 --methods gradcam,saliency",
            "diamond-cutter evaluate runs/tuned chelsea --metrics deletion,insertion --json",
        ),
    ),
    "visualize": (
        "visualize",
        "render feature visualizations of channels of a layer",
        ("diamond-cutter visualize efficientnet_lite0 --layer blocks.4 --channels 0-15 --schedule fast --out vis/",),
    ),
    "atlas": (
        "visualize",
        "build (or resume) cached spritemaps of every channel of layers",
        ("diamond-cutter atlas efficientnet_lite0 --layer blocks.3,blocks.4 --steps 64 --size 64 --out atlas/",),
    ),
    "report": (
        "report",
        "write a self-contained HTML report: channels, semantic map, groups, saliency",
        ("diamond-cutter report efficientnet_lite0 chelsea coffee --layer blocks.4 --out report.html",),
    ),
    "sweep": (
        "sweep",
        "find the model and layer to cut at for your labelled images",
        ("diamond-cutter sweep efficientnet_lite0 --data textures/ --out runs/sweep --heads linear,conv",),
    ),
    "demo": (
        "demo",
        "the main job, offline: where to cut on three real models, train, keep, reload, explain",
        ("diamond-cutter demo",),
    ),
}


def add_command(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """The parser of command ``name``, with its help line and examples from :data:`COMMANDS`."""
    _, help_line, examples = COMMANDS[name]
    return sub.add_parser(name, help=help_line, description=help_line[0].upper() + help_line[1:] + ".",
                          epilog="examples:\n  " + "\n  ".join(examples),
                          formatter_class=HelpWithDefaults)


class HelpWithDefaults(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written, and every option's default shown: a help line that does not already
    say its default gets ``(default: …)`` appended, so no default is hidden from ``--help``."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        hidden = action.default in (None, False, argparse.SUPPRESS) or not action.option_strings
        if hidden or "default" in text or action.help == argparse.SUPPRESS:
            return action.help
        return f"{text} (default: %(default)s)".lstrip()


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
