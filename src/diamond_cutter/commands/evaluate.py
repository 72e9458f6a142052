"""``diamond-cutter evaluate MODEL IMAGES... --target top1``: which attribution map to trust, as a table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..attribution.metrics import DEFAULT_METHODS, DEFAULT_METRICS, METRICS, MetricSettings, evaluate_methods
from ..attribution.metrics.perturb import BASELINES
from ..errors import DiamondCutterError
from ..images import load_images
from . import add_command
from .numbers import COUNT
from .options import (
    add_compute_options,
    add_images_argument,
    add_layer_option,
    add_target_option,
    add_weights_option,
    load_model_or_saved,
    one_layer,
    target_of,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "evaluate")
    p.add_argument("model", help="model name (see `diamond-cutter models`) or a saved transferred model's folder")
    add_images_argument(p)
    add_target_option(p, "top1", "class index or name, top1/top2/...; repeat for one per image (default top1)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated attribution methods, or 'all'")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help=f"comma-separated, from: {', '.join(METRICS)}")
    add_layer_option(p, "layer for CAM methods (default: the last spatial layer)")
    p.add_argument("--steps", type=COUNT, default=MetricSettings.steps,
                   help=f"deletion/insertion steps (default {MetricSettings.steps})")
    p.add_argument("--deletion-baseline", choices=BASELINES, default=MetricSettings.deletion_baseline,
                   help="what deleted pixels become")
    p.add_argument("--insertion-baseline", choices=BASELINES, default=MetricSettings.insertion_baseline,
                   help="the image pixels are inserted into")
    p.add_argument("--boxes", default=None,
                   help="JSON file: one [x0, y0, x1, y1] box (or a list of boxes) per image, for the pointing games")
    add_weights_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output (per-image values and curves too)")
    add_compute_options(p, batch_size="perturbed images per forward pass (default: what fits the memory budget)")
    p.set_defaults(run=run)


def _boxes(path: str | None) -> list | None:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise DiamondCutterError(f"cannot read boxes from {path}: {err}") from err


def run(args: argparse.Namespace) -> int:
    model = load_model_or_saved(args)
    images = load_images(args.images, model)
    methods = "all" if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    table = evaluate_methods(
        model,
        images,
        target=target_of(args),
        methods=methods,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
        layer=one_layer(args),
        regions=_boxes(args.boxes),
        settings=MetricSettings(
            steps=args.steps,
            deletion_baseline=args.deletion_baseline,
            insertion_baseline=args.insertion_baseline,
            batch_size=args.batch_size,
        ),
        progress=not args.json,
    )
    print(json.dumps(table.as_dict(), indent=2) if args.json else table)
    return 0
