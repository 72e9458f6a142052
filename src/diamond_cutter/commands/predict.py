"""``diamond-cutter predict MODEL IMAGES...``: top-k classes per image, read a batch at a time."""

from __future__ import annotations

import argparse
import json

from ..images import load_batches
from ..model import Prediction, predict
from ..zoo import load_model
from .numbers import COUNT


#: Images decoded, classified and let go at a time: memory stays flat however many files are given.
BATCH = 32


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify images: top-k class names and probabilities")
    p.add_argument("model", help="model name (see `diamond-cutter models`)")
    p.add_argument("images", nargs="+", help="files, folders, globs, URLs or sample names (chelsea, coffee, ...)")
    p.add_argument("-k", type=COUNT, default=5, help="how many classes per image (default 5)")
    p.add_argument("--weights", default="imagenet", help="'imagenet' (default), 'none', or a checkpoint path")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images with a warning")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model, weights=None if args.weights == "none" else args.weights)
    batches = load_batches(args.images, model, batch_size=BATCH, skip_bad=args.skip_bad)
    result = Prediction.join([predict(model, batch, k=args.k, batch_size=BATCH) for batch in batches])
    print(json.dumps(result.as_dicts(), indent=2) if args.json else result)
    return 0
