"""``diamond-cutter demo``: the main job on the embedded model and shipped sample images, offline:
the model summary, the predictions, then the full report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..images import DEMO_SAMPLES, load_images
from ..model import predict
from ..report import report
from ..report.icons import IconSettings
from ..zoo import EMBEDDED, load_model
from . import add_command
from .numbers import COUNT, OPTIONAL_COUNT, SIDE
from .inventory import summary
from .options import add_compute_options

#: The layer the demo analyses: 14×14 cells of 112 channels, a mid-level layer where channels
#: are parts and textures (Building Blocks' mixed4d plays the same role in GoogLeNet).
DEMO_LAYER = "blocks.4"
#: One-pass saliency methods (Integrated Gradients' many passes are left to `diamond-cutter report`).
DEMO_SALIENCY = ("saliency", "gradcam", "gradcam++", "guided_gradcam")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "demo")
    p.add_argument("--out", default="diamond-cutter-demo.html", help="the report to write (default diamond-cutter-demo.html)")
    p.add_argument("--icon-steps", type=COUNT, default=96, help="feature visualization steps per icon (few, for speed)")
    p.add_argument("--icon-size", type=SIDE, default=64, help="icon side in pixels (small, for speed)")
    p.add_argument("--icon-limit", type=OPTIONAL_COUNT, default=48, help="channels to visualize; the rest get dataset patches (for speed)")
    add_compute_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    model = load_model(EMBEDDED, device=args.device)
    print(summary(model))
    images = load_images(list(DEMO_SAMPLES), model)
    result = predict(model, images, k=5, progress=True)
    for entry in result.as_dicts():
        print(f"\n{entry['image']}")
        for rank, top in enumerate(entry["top"], 1):
            print(f"  {rank}. {top['name']:28s} {top['probability']:6.1%}")
    icons = IconSettings("featureviz", size=args.icon_size, steps=args.icon_steps, limit=args.icon_limit)
    analysis = report(model, images, DEMO_LAYER, "auto", icons=icons, saliency=DEMO_SALIENCY, progress=True,
                      batch_size=args.batch_size)
    analysis.settings["note"] = (
        f"demo settings, chosen for speed: icons of {args.icon_size} px after {args.icon_steps} steps, "
        f"at most {args.icon_limit} channels visualized"
    )
    path = analysis.save(args.out)
    print(f"\nreport: {Path(path).resolve()} ({time.perf_counter() - start:.0f} s)")
    return 0
