"""Deletion and ROAD speed against Quantus, side by side in one process.

Runs on the embedded EfficientNet-Lite0 at 224 px with sample images (16, or 2
with ``--quick``), Grad-CAM maps for the top-1 classes, and the same settings on
both sides:

- Deletion: 24 equal steps of pixels, most relevant first, replaced by
  the image's mean colour; Quantus's PixelFlipping with ``features_in_step`` set
  to one step's pixels (× 3 colour channels, the map given on every channel) and
  a perturb function that copies the same baseline image ours uses.
- ROAD (MoRF): 10%…90% removed, noisy linear imputation with noise 0.01. Quantus's
  ROAD indexes one channel's pixels with indices over all channels (it fails on
  RGB images), so its perturb function here maps the indices back to pixels and
  calls Quantus's own ``noisy_linear_imputation`` (a sparse direct solve); its
  loop and forwards are Quantus's.

Each prints images/s per side and ``ratio NAME: N.Nx`` (ours over Quantus).
``--device cuda`` runs ours on a GPU as well (Quantus stays on the CPU, where it
computes its perturbations in numpy).

    python benchmarks/metrics.py [--quick] [--repeat 1] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import numpy as np
import quantus
import torch
from quantus.functions.perturb_func import noisy_linear_imputation

import diamond_cutter as dc
from diamond_cutter.attribution import metrics as M
from diamond_cutter.attribution.metrics.perturb import baseline_images
from diamond_cutter.images import SAMPLES

from timing import images_per_second  # benchmarks/timing.py, beside this script

warnings.filterwarnings("ignore", module="quantus")


def copy_from(source: np.ndarray) -> Callable:
    """A Quantus perturb_func that puts ``source``'s values (our baseline images) at the chosen features."""
    flat = source.reshape(len(source), -1)

    def perturb(arr, indices, **_):
        out = arr.copy()
        rows = np.arange(len(arr))[:, None]
        out[rows, indices] = flat[rows, indices]
        return out

    return perturb


def road_pixels(pixels: int) -> Callable:
    """Quantus's imputation on the pixels behind Quantus's channel-wide indices."""

    def perturb(arr, indices, noise, **_):
        return noisy_linear_imputation(arr, np.unique(indices % pixels), noise=noise)

    return perturb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 images, 3 deletion steps, 2 ROAD fractions")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (best is kept)")
    parser.add_argument("--device", default="cpu", help="where ours runs (cpu or cuda)")
    args = parser.parse_args()
    n = 2 if args.quick else 16
    steps = 3 if args.quick else 24  # a multiple of 3: Quantus wants its step (3 channels × pixels) to divide H×W
    percentages = [30, 70] if args.quick else list(range(10, 100, 10))

    model = dc.load_model("efficientnet_lite0", device=args.device)
    batch = dc.load_images([list(SAMPLES)[i % len(SAMPLES)] for i in range(n)], model)
    targets = dc.predict(model, batch, k=1).indices[:, 0].tolist()
    cam = dc.attribute(model, batch, "gradcam", target=targets)
    heat = cam.upsampled()[:, 0]
    channel_tied = (heat[:, None] + torch.tensor([0.0, 1e-7, 2e-7]).view(1, 3, 1, 1)).numpy()
    x, y = batch.tensor.numpy(), np.array(targets)
    pixels = heat[0].numel()
    cpu = dc.load_model("efficientnet_lite0")
    net = cpu.module.eval()
    print(f"{n} images at 224 px, {torch.get_num_threads()} threads, ours on {args.device}, targets {targets}")

    mean = baseline_images(batch.tensor, "mean", cpu).numpy()
    flipping = quantus.PixelFlipping(
        features_in_step=3 * pixels // steps, normalise=False, perturb_func=copy_from(mean), disable_warnings=True
    )
    road = quantus.ROAD(percentages=percentages, noise=0.01, normalise=False, perturb_func=road_pixels(pixels),
                        disable_warnings=True)
    road.a_size = 3 * pixels  # count features over all three channels: int(pixels × p / 100) pixels, as ours
    pairs = {
        "deletion": (
            lambda: M.deletion(model, batch, cam, targets, steps=steps, baseline="mean"),
            lambda: flipping(
                model=net, x_batch=x, y_batch=y, a_batch=channel_tied, device="cpu", softmax=True, batch_size=16
            ),
        ),
        "road": (
            lambda: M.road(model, batch, cam, targets, fractions=tuple(p / 100 for p in percentages), noise=0.01),
            lambda: road(model=net, x_batch=x, y_batch=y, a_batch=channel_tied, device="cpu", batch_size=16),
        ),
    }
    M.deletion(model, batch[:1], heat[:1], targets[:1], steps=2)  # warm-up: the layer table, memory layouts
    for name, (ours, peer) in pairs.items():
        speed = {
            "diamond-cutter": images_per_second(ours, n, args.repeat),
            "quantus": images_per_second(peer, n, args.repeat),
        }
        print(f"{name}: " + ", ".join(f"{k} {v:.3f} img/s" for k, v in speed.items()), flush=True)
        print(f"ratio {name}: {speed['diamond-cutter'] / speed['quantus']:.1f}x", flush=True)


if __name__ == "__main__":
    main()
