"""``diamond-cutter demo``: the main job, offline, on the three embedded models and real photographs.

Where to cut: the three EfficientNet-Lite models are swept over their cuts on
crops of scikit-image's brick, grass and gravel photographs (installed with the
package); the table and the recommendation with its intervals are printed; the
recommended transferred model is trained, saved and loaded back; and one HTML
report opens with the sweep (table and plot) followed by what the transferred
model looks at: predictions, channel attribution, semantic map and heatmap.

The sweep ranks every pair by the same linear head (cheap on cached features).
The kept model puts classic transfer learning's new convolution layer on the
recommended cut instead (:data:`KEPT_HEAD`; its held-out accuracy is printed
beside the sweep's), and the report explains that new layer, ``head.conv``: its
channels are new, so their icons are rendered for this model, while a frozen
layer (``backbone.net.…``) would take its icons from the backbone's atlas,
which the content fingerprint shares with the original network.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from ..images import load_images
from ..report import report, sweep_section
from ..report.icons import ICON_RENDER, IconSettings
from ..transfer.data import load_labelled, make_texture_dataset
from ..transfer.intervals import accuracy
from ..transfer.result import SweepResult
from ..transfer.saved import load_transferred
from ..transfer.sweep import sweep
from ..transfer.train import TrainConfig, TrainedHead
from ..zoo import EMBEDDED_STAGES
from . import add_command
from .numbers import COUNT, OPTIONAL_COUNT, SIDE
from .options import add_compute_options
from .report import icon_render

#: The head of the kept model: a new 3×3 convolution (then BN, ReLU, pooling and a linear layer) on the cut.
KEPT_HEAD = "conv"
#: The layer the report explains: the kept head's new convolution.
KEPT_LAYER = "head.conv"
#: One-pass saliency methods (Integrated Gradients' many passes are left to `diamond-cutter report`).
DEMO_SALIENCY = ("saliency", "gradcam", "gradcam++", "guided_gradcam")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "demo")
    p.add_argument(
        "--out", default="diamond-cutter-demo.html", help="the report to write (default diamond-cutter-demo.html)"
    )
    p.add_argument("--per-class", type=COUNT, default=24, help="texture crops per class (default 24)")
    p.add_argument("--crop", type=SIDE, default=112, help="crop side in pixels (default 112)")
    p.add_argument("--cuts", type=COUNT, default=6, help="cuts per model, spread by depth (default 6)")
    p.add_argument("--epochs", type=COUNT, default=20, help="head training epochs (default 20)")
    p.add_argument("--cache", help="feature/result cache (default: a temporary folder)")
    p.add_argument(
        "--icon-steps", type=COUNT, help=f"feature visualization steps per icon (default {ICON_RENDER.steps})"
    )
    p.add_argument("--icon-size", type=SIDE, help=f"icon side in pixels (default {IconSettings().size})")
    p.add_argument(
        "--icon-limit", type=OPTIONAL_COUNT, default=32, help="channels to visualize; the rest get dataset patches"
    )
    add_compute_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_texture_dataset(Path(tmp) / "textures", per_class=args.per_class, size=args.crop)
        data = load_labelled(root)
        result = sweep(list(EMBEDDED_STAGES), data, cuts=args.cuts, train=TrainConfig(epochs=args.epochs),
                       store=args.cache or str(Path(tmp) / "cache"), progress=True, device=args.device)
        print(result)
        folder = out.parent / f"{out.stem}-model"
        kept = result.train_best(head=KEPT_HEAD)
        print(kept_line(kept, result))
        kept.save(str(folder))
        tuned = load_transferred(str(folder), device=args.device)
        print(f"\nsaved the kept model to {folder} and loaded it back as {tuned.name}")
        held_out = [int(data.test[np.flatnonzero(data.labels[data.test] == c)[0]]) for c in range(len(data.classes))]
        images = load_images([data.paths[i] for i in held_out], tuned)
        # named as in the data set (brick/005.png), not by the temporary folder that is gone after the run
        images = dataclasses.replace(images, ids=[Path(i).relative_to(root).as_posix() for i in images.ids])
        icons = IconSettings("featureviz", icon_render(args), limit=args.icon_limit)
        analysis = report(tuned, images, KEPT_LAYER, "auto", groups=3, icons=icons, saliency=DEMO_SALIENCY,
                          progress=True, batch_size=args.batch_size)
    analysis.before.append(sweep_section(result))
    analysis.settings["note"] = (
        f"demo settings, chosen for speed: {args.per_class} crops per class, {args.cuts} cuts per model, "
        f"{args.epochs} epochs; icons of {icons.size} px after {icons.render.steps} steps, at most "
        f"{args.icon_limit} channels visualized; the layer shown is the kept model's new {KEPT_HEAD} layer "
        f"({KEPT_LAYER}), whose icons are rendered for it"
    )
    path = analysis.save(out)
    print(f"\nreport: {Path(path).resolve()} ({time.perf_counter() - start:.0f} s)")
    return 0


def kept_line(kept: TrainedHead, result: SweepResult) -> str:
    """What was kept and how it does on the first split's test images (its epoch chosen on validation)."""
    split = result.data.folds[0]
    held_out = accuracy(result.data.labels[split.test], kept.test_predictions, **result.select.bootstrap())
    return (f"\nkept: {kept.model.name} cut at {kept.cut} with a new {KEPT_HEAD} head (the sweep ranked "
            f"{result.head} heads): held-out accuracy {held_out} on the first split's {len(split.test)} test images")
