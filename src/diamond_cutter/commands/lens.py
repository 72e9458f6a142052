"""``diamond-cutter lens MODEL --layer L1,L2 --images DIR --out site/``: a static site to browse channels."""

from __future__ import annotations

import argparse

from ..lens.crp import CRPSettings
from ..lens.site import LensSettings, lens
from . import add_command
from .numbers import COUNT, OPTIONAL_COUNT, SIDE
from .options import add_compute_options, add_layer_option, add_weights_option, layers_of, load_model_or_saved


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "lens")
    p.add_argument("model", help="model name (see `diamond-cutter models`) or the folder of a saved transferred model")
    add_layer_option(p, "layers with a C×H×W output, repeatable or comma-separated (--layers also works)",
                     required=True, aliases=("--layers",))
    p.add_argument("--images", required=True, nargs="+", help="folders, globs, files or sample names to scan")
    p.add_argument("--out", default="lens", help="the folder to write (default lens/)")
    add_weights_option(p)
    p.add_argument(
        "--method",
        default="auto",
        choices=("auto", "lrp", "gradient"),
        help="relevance: LRP rules or gradient × activation",
    )
    p.add_argument("--top", "-k", dest="top", type=COUNT, default=8,
                   help="references per channel and ranking (default 8)")
    p.add_argument("--heatmaps", type=OPTIONAL_COUNT, default=3,
                   help="references per ranking with a conditional heatmap (default 3)")
    p.add_argument("--detail", type=OPTIONAL_COUNT, default=8,
                   help="channels per layer with diversity variants (default 8)")
    p.add_argument("--icon-size", type=SIDE, default=48, help="atlas icon side in pixels (default 48)")
    p.add_argument("--icon-steps", type=COUNT, default=64, help="feature visualization steps per icon (default 64)")
    p.add_argument("--store", default=None, help="where scans, labels and atlases are cached (a folder or fsspec URL)")
    add_compute_options(p, batch_size=f"images per pass (default {LensSettings().batch_size})")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = load_model_or_saved(args)
    settings = LensSettings(k=args.top, heatmaps=args.heatmaps, detail=args.detail, icon_size=args.icon_size,
                            icon_steps=args.icon_steps, crp=CRPSettings(method=args.method),
                            batch_size=args.batch_size or LensSettings().batch_size)
    print(lens(model, args.images, layers_of(args), args.out, settings, store=args.store,
               plan=lambda text: print(text, flush=True)))
    return 0
