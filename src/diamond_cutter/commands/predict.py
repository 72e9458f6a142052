"""``diamond-cutter predict MODEL IMAGES...``: top-k classes per image, read a batch at a time."""

from __future__ import annotations

import argparse
import json

from ..images import load_batches
from ..model import Prediction, predict
from . import add_command
from .numbers import COUNT
from .options import add_compute_options, add_images_argument, add_weights_option, load_model_from


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "predict")
    p.add_argument("model", help="model name (see `diamond-cutter models`)")
    add_images_argument(p)
    p.add_argument("--top", "-k", dest="top", type=COUNT, default=5, help="how many classes per image (default 5)")
    add_weights_option(p)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images with a warning")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_compute_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = load_model_from(args)
    batch = args.batch_size or 32  # images decoded, classified and let go at a time: memory stays flat
    batches = load_batches(args.images, model, batch_size=batch, skip_bad=args.skip_bad)
    result = Prediction.join([predict(model, images, k=args.top, batch_size=batch) for images in batches])
    print(json.dumps(result.as_dicts(), indent=2) if args.json else result)
    return 0
