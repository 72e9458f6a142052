"""What every map-based metric shares: checked inputs, the class scored, budgeted batched forwards.

A metric compares an explanation with what the model does when the image
changes. The explanation arrives as an :class:`Attribution` or a raw tensor;
both become one relevance value per input pixel, ranked the way the gallery
shows it (magnitudes summed over colour channels, CAMs kept signed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ...capture import fast_layout, preserved
from ...devices import memory_budget
from ...errors import DiamondCutterError
from ...images import ImageBatch, as_batch
from ...model import Model, batched_logits
from ...targets import is_nested, needs_logits, resolve_targets, split
from ..result import Attribution

#: On a CPU a batch whose largest activation outgrows the cache runs slower per image.
CPU_ACTIVATION_BUDGET = 40 << 20


@dataclass
class Scored:
    """Images, the relevance of each of their pixels (N×H×W) and the class each explanation is for."""

    model: Model
    batch: ImageBatch
    x: torch.Tensor
    relevance: torch.Tensor
    classes: torch.Tensor
    method: str

    def __len__(self) -> int:
        return len(self.x)


def prepare(model: Model, images: Any, maps: Attribution | torch.Tensor, target: Any = None) -> Scored:
    """Check and align ``images``, ``maps`` and ``target``; see :class:`Scored`.

    ``target`` defaults to the classes the Attribution explains (or ``"top1"``).
    """
    batch = as_batch(images, model)
    x = batch.tensor.detach().to(model.device)
    relevance = relevance_map(maps, len(batch), (int(x.shape[-2]), int(x.shape[-1]))).to(model.device)
    if target is None:
        target = maps.targets if isinstance(maps, Attribution) and maps.targets is not None else "top1"
    classes = target_classes(model, x, target)
    method = maps.method if isinstance(maps, Attribution) else "maps"
    return Scored(model, batch, x, relevance, classes, method)


def target_classes(model: Model, x: torch.Tensor, target: Any) -> torch.Tensor:
    """Class indices for ``target`` (``"topK"`` from the clean images' logits); metrics score classes."""
    if callable(target) or is_nested(target) or split(target)[1] is not None:
        raise DiamondCutterError(
            f"metrics score one class's probability per image: give a class index or name, 'topK', or one per image; "
            f"not {target!r} (a callable, a contrast, 'auto' or several targets per image has no probability)"
        )
    logits = batched_logits(model, x, forward_batch_size(model)) if needs_logits(target) else None
    return resolve_targets(model, target, len(x), logits)


def relevance_map(maps: Attribution | torch.Tensor, n: int, size: tuple[int, int]) -> torch.Tensor:
    """N×H×W relevance at the images' size: the Attribution's map as rendered, upsampled bilinearly.

    A raw tensor (N×H×W or N×C×H×W) must already have the images' size, since
    nothing says how its grid lies on the image.
    """
    if isinstance(maps, Attribution):
        heat = maps.heat(signed=False).float()
        if tuple(heat.shape[-2:]) != size:
            heat = F.interpolate(heat[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    elif isinstance(maps, torch.Tensor):
        heat = _tensor_heat(maps.detach().float(), size)
    else:
        raise DiamondCutterError(f"maps must be an Attribution or a tensor, not {type(maps).__name__}")
    if len(heat) != n:
        raise DiamondCutterError(f"got {len(heat)} maps for {n} images: give one map per image")
    return heat


def _tensor_heat(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if maps.ndim == 4:
        maps = maps[:, 0] if maps.shape[1] == 1 else maps.abs().sum(1)
    if maps.ndim != 3:
        raise DiamondCutterError(f"maps must be N×H×W or N×C×H×W, got shape {tuple(maps.shape)}")
    if tuple(maps.shape[-2:]) != size:
        raise DiamondCutterError(
            f"maps are {maps.shape[-2]}×{maps.shape[-1]} but the images are {size[0]}×{size[1]}: pass the "
            "Attribution itself (it is upsampled to the images), or resize the maps (Attribution.upsampled())"
        )
    return maps


def forward_batch_size(model: Model, requested: int | None = None) -> int:
    """Images per gradient-free forward: the model's activations against the memory budget.

    On a CPU the largest activation is also held to :data:`CPU_ACTIVATION_BUDGET`.
    """
    if requested is not None:
        if requested < 1:
            raise DiamondCutterError(f"batch_size must be at least 1, got {requested}")
        return int(requested)
    sizes = [4 * int(torch.Size(layer.shape).numel()) for layer in model.layers if layer.shape and layer.leaf] or [4]
    per_image = 3 * max(sizes) + 4 * int(torch.Size(model.input_size).numel())
    batch = memory_budget(model.device) // per_image
    if model.device.type == "cpu":
        batch = min(batch, CPU_ACTIVATION_BUDGET // max(sizes))
    return int(max(1, min(batch, 256 if model.device.type == "cuda" else 64)))


def class_probabilities(
    model: Model, rows: int, make: Callable[[slice], tuple[torch.Tensor, torch.Tensor]], batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probability of each row's class, and whether it is still the top class.

    ``make(slice)`` builds the perturbed inputs of those rows and their classes,
    so only one batch of perturbed images exists at a time.
    """
    probs, tops = [], []
    with torch.inference_mode(), preserved(model.module):
        for start in range(0, rows, batch_size):
            x, classes = make(slice(start, min(rows, start + batch_size)))
            logits = model(fast_layout(x)).float()
            p = logits.softmax(1)
            probs.append(p.gather(1, classes.view(-1, 1)).squeeze(1).cpu())
            tops.append((logits.argmax(1) == classes).cpu())
    return torch.cat(probs), torch.cat(tops)
