"""Where in the image: the semantic map (top channels per spatial cell) and the heatmap
(per-cell attribution of a class, or of a positive minus a negative class).

A layer with an H×W output splits the input into H×W cells; cell (i, j) covers
the input rows ``i·S/H … (i+1)·S/H`` (S the input side). That is the cell's
centre of receptive field, not its whole receptive field, which is the
convention of Building Blocks' semantic dictionaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from ..errors import DiamondCutterError, UnknownNameError
from ..html import image_tag, short_repr
from ..images import as_batch
from ..render import tint
from ..targets import UNSET, TargetSpec, legacy_classes
from .linear import LayerGradients, linear_attribution


@dataclass
class SemanticMap:
    """Per-cell channels of one image at one layer.

    ``activations`` (C×H×W) and, when a class was given, ``attributions`` (C×H×W,
    activation × gradient). ``image`` is the network's view of the picture.
    """

    layer: str
    image_id: str
    image: Image.Image
    activations: torch.Tensor
    attributions: torch.Tensor | None = None
    title: str = ""

    def __repr__(self) -> str:
        return short_repr(self)

    def _repr_html_(self) -> str:
        """The picture with its cell grid tinted by total activation (by attribution when there is one)."""
        values = (self.attributions if self.attributions is not None else self.activations).sum(0)
        return image_tag(tint(self.image, values), f"semantic map at {self.layer}: {self.title or self.image_id}")

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.activations.shape[1]), int(self.activations.shape[2])

    def cells(self) -> list[tuple[int, int]]:
        h, w = self.grid
        return [(i, j) for i in range(h) for j in range(w)]

    def top_channels(self, cell: tuple[int, int], k: int = 5, by: str = "activation") -> list[tuple[int, float]]:
        """The ``k`` strongest channels at ``cell`` as (channel, value), by activation or attribution."""
        if by not in ("activation", "attribution"):
            raise UnknownNameError("ranking", by, ["activation", "attribution"])
        source = self.activations if by == "activation" else self._attributions()
        values = source[:, cell[0], cell[1]]
        top = values.topk(min(k, len(values)))
        return [(int(c), float(v)) for c, v in zip(top.indices, top.values)]

    def cell_box(self, cell: tuple[int, int]) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) in the network-view image's pixels."""
        h, w = self.grid
        width, height = self.image.size
        i, j = cell
        return (j * width // w, i * height // h, (j + 1) * width // w, (i + 1) * height // h)

    def heatmap(self) -> Heatmap:
        """The per-cell attribution summed over channels (needs attributions)."""
        return Heatmap(self.layer, self.image_id, self.image, self._attributions().sum(0), self.title)

    def _attributions(self) -> torch.Tensor:
        if self.attributions is None:
            raise DiamondCutterError("this semantic map has no attributions: pass target= to semantic_map")
        return self.attributions


@dataclass
class Heatmap:
    """Per-cell attribution (H×W) of ``title``'s score; positive cells are evidence for it."""

    layer: str
    image_id: str
    image: Image.Image
    values: torch.Tensor
    title: str = ""

    def __repr__(self) -> str:
        return short_repr(self)

    def argmax(self) -> tuple[int, int]:
        """The cell with the largest attribution."""
        flat = int(self.values.argmax())
        return divmod(flat, int(self.values.shape[1]))

    def overlay(self, alpha: float = 0.75) -> Image.Image:
        """The image with positive cells tinted orange and negative ones blue, by magnitude."""
        return tint(self.image, self.values, alpha)

    def _repr_html_(self) -> str:
        return image_tag(self.overlay(), f"heatmap: {self.title}")


def from_layer_gradients(
    model, la: LayerGradients, index: int, picture: Image.Image, with_attribution: bool = True
) -> SemanticMap:
    """The semantic map of image ``index`` from a computed :class:`LayerGradients`."""
    return SemanticMap(
        la.layer,
        la.image_ids[index],
        picture,
        la.activations[index],
        la.attributions[index] if with_attribution else None,
        la.title(model, index),
    )


def semantic_map(
    model, image: Any, layer: str | None = None, target: TargetSpec | None = None, *, classes: TargetSpec = UNSET
) -> SemanticMap:
    """Top channels per cell of ``layer`` for one image (the first, if several are given).

    With ``target`` (see :func:`~diamond_cutter.blocks.channels.channel_attribution`)
    the map also ranks each cell's channels by attribution to that class.
    """
    target = legacy_classes(target, classes, "semantic_map")
    batch = as_batch(image, model)[0]
    la = linear_attribution(model, batch, layer, target if target is not None else "top1")
    return from_layer_gradients(model, la, 0, batch.images()[0], with_attribution=target is not None)


def heatmap(
    model, image: Any, layer: str | None = None, target: TargetSpec = "top1", *, classes: TargetSpec = UNSET
) -> Heatmap:
    """Per-cell attribution of one class (``target="tabby"``) or of two (``("tabby", "tiger cat")``):
    positive cells (orange) are evidence for the first, negative (blue) for the second."""
    target = legacy_classes(target, classes, "heatmap")
    batch = as_batch(image, model)[0]
    return from_layer_gradients(model, linear_attribution(model, batch, layer, target), 0, batch.images()[0]).heatmap()
