"""Peak memory of a large sweep: 3 models × 10 cuts × 10,000 images hold nothing larger than the pooled features.

A fresh process loads three small random-weight networks (ResNet-18, EfficientNet-Lite0's architecture,
MobileNetV3-Small) at a tiny input size, so the run takes minutes rather than hours, and a labelled set
of synthetic images written to disk; it warms up with a small sweep, notes its peak resident set, sweeps
the three models over ``--cuts`` cuts with linear heads and every estimator, and notes the peak again.
The growth is compared with the float32 pooled features of every (model, cut), which is what a sweep
must keep (one model's at a time); spatial maps, pixels, k-NN distances and float64 copies must not add
to it, only a few D×D matrices of the widest cut (covariances, Gram matrices and their decompositions). Prints

    peak sweep memory: N MiB (pooled features N MiB)

then a JSON line with the figures (``tests/test_transfer_memory.py`` reads it). ``--quick`` is a smoke
run (600 images, 3 cuts, 2 epochs).

    python benchmarks/sweep_memory.py [--images 10000] [--cuts 10] [--size 32] [--epochs 30] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

#: Three architectures the zoo builds without weights, with different widths and depths.
MODELS = ("resnet18", "efficientnet_lite0", "mobilenet_v3_small")
CLASSES = 4

CHILD = r"""
import json, resource, sys
import diamond_cutter as dc
from diamond_cutter.transfer.data import load_labelled
from diamond_cutter.transfer.sweep import sweep
from diamond_cutter.transfer.train import TrainConfig

images, warm, store, cuts, size, epochs = sys.argv[1:7]
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
models = [dc.load_model(name, weights=None, input_size=(3, int(size), int(size))) for name in sys.argv[7:]]
config = TrainConfig(epochs=int(epochs))
# warm up (imports, thread pools, allocator): the same sweep on a few images counts towards the baseline
sweep(models, load_labelled(warm, folds=None), cuts=int(cuts), train=config, store=store + "/warm", progress=False)
data = load_labelled(images, folds=None)
base = peak()
result = sweep(models, data, cuts=int(cuts), train=config, store=store + "/sweep", progress=False)
grown = peak() - base
by_model = {}
for row in result.rows:
    by_model[row["model"]] = by_model.get(row["model"], 0) + row["feature_dim"] * len(data) * 4
print(json.dumps({"images": len(data), "pairs": len(result.rows), "peak_growth": grown,
                  "features": sum(by_model.values()), "largest_model_features": max(by_model.values()),
                  "widest_cut": max(row["feature_dim"] for row in result.rows)}))
"""


def write_images(root: Path, count: int, size: int, seed: int) -> Path:
    """``count`` noise images in :data:`CLASSES` classes, each class tinted its own colour (PNG, ``size`` px)."""
    rng = np.random.default_rng(seed)
    tints = rng.uniform(0, 1, (CLASSES, 3))
    for i in range(count):
        c = i % CLASSES
        pixels = 0.6 * rng.uniform(0, 1, (size, size, 3)) + 0.4 * tints[c]
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 255).round().astype(np.uint8)).save(folder / f"{i:05d}.png")
    return root


def measure(images: int, cuts: int, size: int, epochs: int) -> dict:
    """Run the child on fresh images and a fresh store; its figures (bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_images(Path(tmp) / "images", images, size, seed=0)
        warm = write_images(Path(tmp) / "warm", 40 * CLASSES, size, seed=1)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder), str(warm), str(Path(tmp) / "store"), str(cuts), str(size),
             str(epochs), *MODELS], capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-4000:])
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--cuts", type=int, default=10)
    parser.add_argument("--size", type=int, default=32, help="input side in pixels")
    parser.add_argument("--epochs", type=int, default=30, help="linear head epochs")
    parser.add_argument("--quick", action="store_true", help="smoke run: 600 images, 3 cuts, 2 epochs")
    args = parser.parse_args()
    if args.quick:
        args.images, args.cuts, args.epochs = 600, 3, 2
    out = measure(args.images, args.cuts, args.size, args.epochs)
    mib = 2**20
    print(f"{len(MODELS)} models x {args.cuts} cuts x {out['images']} images at {args.size} px ({out['pairs']} pairs)")
    print(f"peak sweep memory: {out['peak_growth'] / mib:.0f} MiB (pooled features {out['features'] / mib:.0f} MiB)")
    print(f"largest model's pooled features: {out['largest_model_features'] / mib:.0f} MiB; "
          f"widest cut: {out['widest_cut']} dimensions ({out['widest_cut'] ** 2 * 8 / mib:.0f} MiB per D×D matrix)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
