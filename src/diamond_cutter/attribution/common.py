"""Plumbing every attribution method shares: inputs, batches and input gradients.

Methods differ in what they compute, not in how they read images or reach the
gradient of a score; the score itself comes from the shared target selector
(:class:`diamond_cutter.targets.Selector`) and layers are read with the probe
(:func:`diamond_cutter.capture.probe`), so every method treats targets, frozen
backbones and bad input the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..capture import fast_layout
from ..errors import DiamondCutterError
from ..images import ImageBatch, as_batch
from ..model import Model


def prepare(model: Model, images: Any) -> tuple[ImageBatch, torch.Tensor]:
    """The image batch and the network input on the model's device (no gradient history)."""
    batch = as_batch(images, model)
    x = batch.tensor.detach().to(model.device)
    model.check_input(x)
    return batch, x


def chunks(n: int, size: int) -> Iterator[slice]:
    if size < 1:
        raise DiamondCutterError(f"batch_size must be at least 1, got {size}")
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def input_gradient(model: Model, x: torch.Tensor, score: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """d score(model(x)).sum() / dx for a batch, with ``x`` made a fresh leaf (frozen models work)."""
    x = fast_layout(x.detach()).requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(score(model(x)).sum(), x)
    return grad

