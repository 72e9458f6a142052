"""``diamond-cutter evaluate MODEL IMAGES... --target top1``: which attribution map to trust, as a table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..attribution.metrics import DEFAULT_METHODS, DEFAULT_METRICS, METRICS, MetricSettings, evaluate_methods
from ..attribution.metrics.perturb import BASELINES
from ..errors import DiamondCutterError
from ..images import load_images
from ..model import Model
from ..transfer import load_transferred
from ..zoo import load_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score attribution methods by faithfulness metrics: a methods × metrics table")
    p.add_argument("model", help="model name (see `diamond-cutter models`) or a saved transferred model's folder")
    p.add_argument("images", nargs="+", help="files, folders, globs, URLs or sample names (chelsea, coffee, ...)")
    p.add_argument(
        "--target", action="append", default=None,
        help="class index or name, or top1/top2/...; repeat for one per image (default top1)",
    )
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated attribution methods, or 'all'")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help=f"comma-separated, from: {', '.join(METRICS)}")
    p.add_argument("--layer", default=None, help="layer for CAM methods (default: the last spatial layer)")
    p.add_argument("--steps", type=int, default=MetricSettings.steps, help="deletion/insertion steps (default 20)")
    p.add_argument("--deletion-baseline", choices=BASELINES, default=MetricSettings.deletion_baseline)
    p.add_argument("--insertion-baseline", choices=BASELINES, default=MetricSettings.insertion_baseline)
    p.add_argument("--boxes", default=None, help="JSON file: one [x0, y0, x1, y1] box (or a list of boxes) per image, for the pointing games")
    p.add_argument("--weights", default="imagenet", help="'imagenet' (default), 'none', or a checkpoint path")
    p.add_argument("--json", action="store_true", help="machine-readable output (per-image values and curves too)")
    p.set_defaults(run=run)


def model_from(name: str, weights: str) -> Model:
    """A model name, or the folder of a saved transferred model (it holds manifest.json)."""
    if (Path(name) / "manifest.json").is_file():
        return load_transferred(name)
    return load_model(name, weights=None if weights == "none" else weights)


def _boxes(path: str | None) -> list | None:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise DiamondCutterError(f"cannot read boxes from {path}: {err}") from err


def run(args: argparse.Namespace) -> int:
    model = model_from(args.model, args.weights)
    images = load_images(args.images, model)
    targets = [int(t) if t.lstrip("-").isdigit() else t for t in (args.target or ["top1"])]
    methods = "all" if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    table = evaluate_methods(
        model, images, target=targets[0] if len(targets) == 1 else targets, methods=methods,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()], layer=args.layer, regions=_boxes(args.boxes),
        settings=MetricSettings(steps=args.steps, deletion_baseline=args.deletion_baseline, insertion_baseline=args.insertion_baseline),
        progress=not args.json,
    )
    print(json.dumps(table.as_dict(), indent=2) if args.json else table)
    return 0
