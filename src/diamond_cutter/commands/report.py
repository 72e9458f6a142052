"""``diamond-cutter report MODEL IMAGES... [--layer L]``: the full analysis as one HTML file."""

from __future__ import annotations

import argparse

from ..featureviz.optimize import Settings
from ..images import load_images
from ..report import report
from ..report.build import SALIENCY_METHODS
from ..report.icons import ICON_RENDER, IconSettings
from ..report.scores import REPORT_SCORES
from ..store import Store
from . import add_command
from .numbers import COUNT, OPTIONAL_COUNT, SIDE
from .options import (
    add_compute_options,
    add_images_argument,
    add_layer_option,
    add_target_option,
    add_weights_option,
    load_model_from,
    one_layer,
    target_of,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "report")
    p.add_argument("model", help="model name (see `diamond-cutter models`)")
    add_images_argument(p)
    add_layer_option(
        p,
        "a layer with a C×H×W output (default: the last spatial layer before global pooling; see `diamond-cutter "
        "layers MODEL --spatial`)",
    )
    add_target_option(
        p,
        "auto",
        "'auto' (top-1 minus top-2 per image, the default), a class index or name, topK, or POSITIVE,NEGATIVE; repeat "
        "for one per image",
        classes_alias=True,
    )
    p.add_argument("--out", default="report.html", help="the HTML file to write (default report.html)")
    add_weights_option(p)
    add_icon_options(p)
    p.add_argument("--groups", type=OPTIONAL_COUNT, default=6, help="neuron groups to factor (0 for none; default 6)")
    p.add_argument("--top", type=COUNT, default=8, help="channels listed each way (default 8)")
    p.add_argument(
        "--lens",
        default=None,
        help="a lens site folder (relative to the report): channels link to it and show conditional heatmaps",
    )
    p.add_argument(
        "--saliency",
        default=",".join(SALIENCY_METHODS),
        help="saliency methods for the gallery, comma-separated, or 'none'",
    )
    p.add_argument(
        "--scores", action=argparse.BooleanOptionalAction, default=True,
        help="score each saliency map (deletion, insertion, model randomization) under it in the gallery (default on)",
    )
    add_compute_options(p)
    p.set_defaults(run=run)


def add_icon_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--icons", choices=("featureviz", "patches"), default="featureviz", help="how channel icons are made"
    )
    p.add_argument("--icon-size", type=SIDE, help=f"icon side in pixels (default {IconSettings().size})")
    p.add_argument(
        "--icon-steps", type=COUNT, help=f"feature visualization steps per icon (default {ICON_RENDER.steps})"
    )
    p.add_argument("--store", default=None, help="where rendered icons are cached (a folder or fsspec URL)")


def icon_render(args: argparse.Namespace) -> Settings:
    """The icons' render settings: the defaults with ``--icon-size`` and ``--icon-steps`` where given."""
    given = {"size": args.icon_size, "steps": args.icon_steps}
    return ICON_RENDER.replace(**{k: v for k, v in given.items() if v is not None})


def icon_settings(args: argparse.Namespace) -> IconSettings:
    return IconSettings(args.icons, icon_render(args), Store(args.store) if args.store else None)


def run(args: argparse.Namespace) -> int:
    model = load_model_from(args)
    images = load_images(args.images, model)
    result = report(
        model,
        images,
        one_layer(args),
        target_of(args),
        top_k=args.top,
        batch_size=args.batch_size,
        groups=args.groups,
        icons=icon_settings(args),
        saliency=() if args.saliency == "none" else tuple(m.strip() for m in args.saliency.split(",") if m.strip()),
        scores=REPORT_SCORES if args.scores else None,
        lens=args.lens,
        plan=lambda line: print(line, flush=True),
    )
    print(result.save(args.out))
    return 0
