"""``diamond-cutter lens MODEL --layers L1,L2 --images DIR --out site/``: a static site to browse channels."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..lens.crp import CRPSettings
from ..lens.site import LensSettings, lens
from ..transfer.saved import MANIFEST, load_transferred
from . import add_command
from .options import add_compute_options, add_weights_option, load_model_from


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "lens")
    p.add_argument("model", help="model name (see `diamond-cutter models`) or the folder of a saved transferred model")
    p.add_argument("--layers", required=True, help="comma-separated layers with a C×H×W output")
    p.add_argument("--images", required=True, nargs="+", help="folders, globs, files or sample names to scan")
    p.add_argument("--out", default="lens", help="the folder to write (default lens/)")
    add_weights_option(p)
    p.add_argument(
        "--method",
        default="auto",
        choices=("auto", "lrp", "gradient"),
        help="relevance: LRP rules or gradient × activation",
    )
    p.add_argument("-k", type=int, default=8, help="references per channel and ranking (default 8)")
    p.add_argument(
        "--heatmaps", type=int, default=3, help="references per ranking with a conditional heatmap (default 3)"
    )
    p.add_argument("--detail", type=int, default=8, help="channels per layer with diversity variants (default 8)")
    p.add_argument("--icon-size", type=int, default=48, help="atlas icon side in pixels (default 48)")
    p.add_argument("--icon-steps", type=int, default=64, help="feature visualization steps per icon (default 64)")
    p.add_argument("--store", default=None, help="where scans, labels and atlases are cached (a folder or fsspec URL)")
    add_compute_options(p, batch_size=f"images per pass (default {LensSettings().batch_size})")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (Path(args.model) / MANIFEST).exists():
        model = load_transferred(args.model, device=args.device)
    else:
        model = load_model_from(args)
    settings = LensSettings(k=args.k, heatmaps=args.heatmaps, detail=args.detail, icon_size=args.icon_size,
                            icon_steps=args.icon_steps, crp=CRPSettings(method=args.method),
                            batch_size=args.batch_size or LensSettings().batch_size)
    print(lens(model, args.images, args.layers, args.out, settings, store=args.store))
    return 0
