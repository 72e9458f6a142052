"""``diamond-cutter demo``: the main job on the embedded model and shipped sample images, offline."""

from __future__ import annotations

import argparse

from ..images import DEMO_SAMPLES, load_images
from ..model import predict
from ..zoo import EMBEDDED, load_model
from .inventory import summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job on the embedded model and sample images (offline)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(EMBEDDED)
    print(summary(model))
    images = load_images(list(DEMO_SAMPLES), model)
    result = predict(model, images, k=5, progress=True)
    for entry in result.as_dicts():
        print(f"\n{entry['image']}")
        for rank, top in enumerate(entry["top"], 1):
            print(f"  {rank}. {top['name']:28s} {top['probability']:6.1%}")
    return 0
