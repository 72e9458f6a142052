"""Where a layer's cell looks in the input: its receptive field, measured on the network itself.

A fixed crop of "three cells" is too small for deep layers and too large for
early ones. The receptive field follows from the layer's geometry (kernels,
strides, padding, dilation on every path to the input); rather than parse the
graph, it is read off the gradient of one centre cell with respect to random
inputs: the pixels with a non-zero gradient are exactly the ones that cell sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..capture import capture, preserved, truncated


@dataclass(frozen=True)
class Geometry:
    """A layer's grid (rows, columns), input size (height, width) and receptive field (height, width) in pixels."""

    grid: tuple[int, int]
    input: tuple[int, int]
    field: tuple[int, int]

    def box(self, cell: tuple[int, int]) -> tuple[int, int, int, int]:
        """The receptive field of ``cell`` as (left, top, right, bottom), clamped to the image."""
        (rows, cols), (height, width) = self.grid, self.input
        cy, cx = (cell[0] + 0.5) * height / rows, (cell[1] + 0.5) * width / cols
        fh, fw = min(self.field[0], height), min(self.field[1], width)
        top = round(min(max(cy - fh / 2, 0), height - fh))
        left = round(min(max(cx - fw / 2, 0), width - fw))
        return left, top, left + fw, top + fh


def layer_geometry(model, layer: str, probes: int = 3) -> Geometry:
    """Measure ``layer``'s receptive field with ``probes`` random inputs (union of the non-zero gradients)."""
    x = torch.randn(probes, *model.input_size, generator=torch.Generator().manual_seed(0)).to(model.device)
    x.requires_grad_(True)
    with preserved(model.module, freeze=True), capture(model.module, [layer]) as rec:
        with truncated(model.module, layer) as run:
            run(x)
        acts = rec[layer]
        rows, cols = acts.shape[2], acts.shape[3]
        (grad,) = torch.autograd.grad(acts[:, :, rows // 2, cols // 2].abs().sum(), x)
    seen = grad.abs().sum((0, 1)) > 0
    ys, xs = seen.any(1).nonzero(), seen.any(0).nonzero()
    field = (int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)) if len(ys) else (1, 1)
    return Geometry((int(rows), int(cols)), tuple(model.input_size[1:]), field)
