"""Robustness: does the map stay put when the image changes imperceptibly?

Max-sensitivity (Yeh et al. 2019): the largest relative change of the map,
‖Φ(x + δ) − Φ(x)‖ / ‖Φ(x)‖, over random δ uniform in ±``radius`` of the pixel
range. All noisy copies of all images are explained in one batched call.
"""

from __future__ import annotations

from typing import Any

import torch

from ...errors import DiamondCutterError
from ...images import as_batch
from ...model import Model
from ..api import LAYER_METHODS, attribute, method_class
from .inputs import target_classes
from .result import MetricResult


def max_sensitivity(
    model: Model, images: Any, method: str = "gradcam", target: Any = "top1", *,
    layer: str | None = None, samples: int = 8, radius: float = 0.05, seed: int = 0, **options: Any,
) -> MetricResult:
    """Max-sensitivity of ``method`` on ``images``: lower is better.

    ``samples`` noisy copies per image, noise uniform in ±``radius`` of the
    [0, 1] pixel range (drawn in pixel space, then normalised like the images);
    the class stays the one explained for the clean image. Maps are compared as
    the gallery shows them (magnitudes summed over colour channels).
    """
    if samples < 1 or radius < 0:
        raise DiamondCutterError(f"max-sensitivity needs samples >= 1 and radius >= 0, got {samples} and {radius}")
    name = method_class(method).name
    batch = as_batch(images, model)
    x = batch.tensor.detach().to(model.device)
    classes = target_classes(model, x, target).tolist()
    where = {"layer": layer} if name in LAYER_METHODS and layer is not None else {}
    clean = attribute(model, x, name, target=classes, **where, **options).heat(signed=False)
    noisy_x = (x[None] + sensitivity_noise(model, x, samples, radius, seed)).flatten(0, 1)
    noisy = attribute(model, noisy_x, name, target=classes * samples, **where, **options).heat(signed=False)
    noisy = noisy.view(samples, *clean.shape)
    change = (noisy - clean[None]).flatten(2).norm(dim=2) / clean.flatten(1).norm(dim=1).clamp_min(1e-12)
    return MetricResult(
        "max_sensitivity", name, change.max(0).values.double(), list(batch.ids), False,
        {"samples": samples, "radius": radius, "seed": seed},
    )


def sensitivity_noise(model: Model, x: torch.Tensor, samples: int, radius: float, seed: int) -> torch.Tensor:
    """samples×N×C×H×W perturbations in the network's input space: uniform ±radius pixels over the std.

    Every image gets the same draws, so an image scores the same alone or in a batch."""
    generator = torch.Generator().manual_seed(seed)
    pixels = (torch.rand((samples, 1, *x.shape[1:]), generator=generator, dtype=torch.float32) * 2 - 1) * radius
    pixels = pixels.expand(samples, *x.shape)
    std = torch.tensor(model.std, dtype=pixels.dtype).view(1, 1, -1, 1, 1)
    return (pixels / std).to(x.device, x.dtype)
