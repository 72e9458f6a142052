"""Occlusion sensitivity (Zeiler & Fergus 2014), with every patched image run in batches.

A square patch filled with ``fill`` slides over the image; each pixel's value is
the mean drop of the target score over the patches that cover it (captum's
Occlusion convention), so a positive value means hiding that region hurts the
prediction.
"""

from __future__ import annotations

import itertools

import torch

from ..capture import fast_layout
from ..errors import DiamondCutterError
from ..model import Model
from ..targets import Selector
from .base import Method
from .common import chunks


class Occlusion(Method):
    """Occlusion with a ``window``×``window`` patch moved by ``stride`` pixels.

    ``fill`` is the patch value in the network's input space (0 is the mean
    colour for networks normalised with the dataset mean). ``batch_size``
    patched images go through the network per forward, without gradients.
    Returns N×1×H×W maps.
    """

    name = "occlusion"
    backward = False
    multipass = True

    def __init__(
        self, model: Model, *, window: int = 32, stride: int = 16, fill: float = 0.0, batch_size: int | None = None
    ):
        super().__init__(model, batch_size=batch_size)
        if window < 1 or stride < 1:
            raise DiamondCutterError(f"occlusion needs window >= 1 and stride >= 1, got {window} and {stride}")
        self.window, self.stride, self.fill = int(window), int(stride), float(fill)

    def masks(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """P×H×W boolean masks, one per patch position (patches that would overhang are not used)."""
        if self.window > min(height, width):
            raise DiamondCutterError(f"occlusion window {self.window} is larger than the {height}×{width} input")
        tops = range(0, height - self.window + 1, self.stride)
        lefts = range(0, width - self.window + 1, self.stride)
        masks = torch.zeros(len(tops) * len(lefts), height, width, dtype=torch.bool, device=device)
        for i, (top, left) in enumerate(itertools.product(tops, lefts)):
            masks[i, top : top + self.window, left : left + self.window] = True
        return masks

    def compute(self, x: torch.Tensor, selector: Selector) -> torch.Tensor:
        masks = self.masks(x.shape[-2], x.shape[-1], x.device)
        positions = len(masks)
        rows = torch.arange(len(x)).repeat_interleave(positions)
        patch = torch.arange(positions).repeat(len(x))
        drops = torch.empty(len(rows), device=x.device)
        with torch.inference_mode():
            clean = torch.cat(
                [
                    selector.score(self.model(fast_layout(x[s])), torch.arange(len(x))[s])
                    for s in chunks(len(x), self.batch_size)
                ]
            )
            for s in chunks(len(rows), self.batch_size):
                m = masks[patch[s]].unsqueeze(1)
                occluded = torch.where(m, torch.full_like(x[:1], self.fill), x[rows[s]])
                drops[s] = clean[rows[s]] - selector.score(self.model(fast_layout(occluded)), rows[s])
        coverage = masks.flatten(1).float()
        summed = drops.view(len(x), positions).float() @ coverage
        counts = coverage.sum(0)
        maps = torch.where(counts > 0, summed / counts.clamp_min(1), torch.zeros_like(summed))
        return maps.view(len(x), 1, *x.shape[-2:])
