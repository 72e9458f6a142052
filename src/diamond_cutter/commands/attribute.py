"""``diamond-cutter attribute MODEL IMAGES... --method gradcam``: write attribution renders to a folder."""

from __future__ import annotations

import argparse

from ..attribution.api import METHODS, attribute
from ..images import load_images
from ..render import STYLES
from . import add_command
from .numbers import FRACTION
from .options import (
    add_compute_options,
    add_images_argument,
    add_layer_option,
    add_target_option,
    add_weights_option,
    layers_of,
    load_model_from,
    target_of,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "attribute")
    p.add_argument("model", help="model name (see `diamond-cutter models`)")
    add_images_argument(p)
    p.add_argument("--method", default="gradcam", help=f"one of: {', '.join(METHODS)} (default gradcam)")
    add_layer_option(
        p, "layer for CAM methods, several for layercam (default: the last spatial layer before global pooling)"
    )
    add_target_option(
        p,
        "top1",
        "class index or name, top1/top2/..., auto (top-1 minus top-2) or POSITIVE,NEGATIVE; repeat for one per image "
        "(default top1)",
    )
    p.add_argument("--out", default="attributions", help="output folder or fsspec URL (default ./attributions)")
    add_weights_option(p)
    p.add_argument("--style", choices=("auto", *STYLES), default="auto",
                   help="overlay: colour map over the image; heatmap: the colours alone; signed: red for, blue "
                        "against, over a greyed image; magnitude: grey. auto (default): overlay for layer maps "
                        "(CAMs, occlusion), magnitude for pixel-space maps. All clip at the 99th percentile")
    p.add_argument("--cmap", default="jet", help="matplotlib colour map for overlay and heatmap (default jet)")
    p.add_argument("--alpha", type=FRACTION, default=0.5, help="overlay opacity 0..1 (default 0.5)")
    add_compute_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = load_model_from(args)
    images = load_images(args.images, model)
    result = attribute(
        model,
        images,
        method=args.method,
        target=target_of(args),
        layer=_layer_argument(args),
        batch_size=args.batch_size,
    )
    keys = result.save(args.out, cmap=args.cmap, alpha=args.alpha, style=args.style)
    for caption, key in zip(result.captions(), keys):
        print(f"{caption}: {args.out.rstrip('/')}/{key}")
    return 0


def _layer_argument(args: argparse.Namespace) -> str | list[str] | None:
    """None, one layer, or several (layercam fuses them)."""
    names = layers_of(args)
    return names[0] if len(names) == 1 else names or None
