"""Dataset examples: which images (and which patches of them) drive a channel, and which
images look alike to the network at the same spatial position.

A feature visualization shows what a channel wants in isolation; the images of
a real collection that excite it most show what it responds to in practice.
Images stream through in batches, so a folder larger than memory works, and
only the current top ``k`` are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from ..capture import preserved, read_layers
from ..errors import DiamondCutterError
from ..html import from_template, short_repr
from ..images import ImageBatch, load_batches
from ..progress import bar
from ..render import crop_cell


@dataclass
class Example:
    """One image with its score, the cell (row, column) where it peaks, and the patch around it."""

    image_id: str
    score: float
    cell: tuple[int, int]
    image: Image.Image
    patch: Image.Image


@dataclass
class DatasetExamples:
    """The ``k`` best examples for ``query`` (a channel, or a position of a query image), best first."""

    layer: str
    query: str
    grid: tuple[int, int]
    examples: list[Example] = field(default_factory=list)

    def __repr__(self) -> str:
        return short_repr(self)

    def _repr_html_(self) -> str:
        return from_template("examples_fragment.html.j2", examples=self)


#: Scores a batch: activations N×C×H×W -> (N scores, N cells as (row, column)).
Scorer = Callable[[torch.Tensor], tuple[torch.Tensor, list[tuple[int, int]]]]


def dataset_examples(
    model, images: Any, layer: str, channel: int, k: int = 8, *, batch_size: int = 16, patch_cells: float = 3.0, progress: bool = False
) -> DatasetExamples:
    """The ``k`` images of ``images`` (files, folders, an ImageBatch...) where ``channel`` of ``layer``
    peaks highest, each with the patch (``patch_cells`` cells wide) around its peak."""
    info = model.spatial_layer(layer)
    if not 0 <= channel < info.channels:
        raise DiamondCutterError(f"channel {channel} is out of range: {layer} has {info.channels} channels")

    def score(acts: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        flat = acts[:, channel].flatten(1)
        values, where = flat.max(dim=1)
        return values, [divmod(int(p), acts.shape[3]) for p in where]

    return _search(model, images, layer, f"channel {channel}", score, k, batch_size, patch_cells, progress)


def shared_position_examples(
    model, query: Any, cell: tuple[int, int], images: Any, layer: str, k: int = 8, *, batch_size: int = 16, patch_cells: float = 3.0, progress: bool = False
) -> DatasetExamples:
    """The ``k`` images whose activation vector at ``cell`` is closest (cosine) to the query image's
    at the same cell: images the network sees alike in that spatial position."""
    info = model.spatial_layer(layer)
    if not (0 <= cell[0] < info.height and 0 <= cell[1] < info.width):
        raise DiamondCutterError(f"cell {cell} is outside {layer}'s {info.height}×{info.width} grid")
    target = layer_activations(model, _as_sources_batch(query, model), layer)[0][:, cell[0], cell[1]]

    def score(acts: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        vectors = acts[:, :, cell[0], cell[1]]
        return torch.nn.functional.cosine_similarity(vectors, target[None], dim=1), [tuple(cell)] * len(acts)

    return _search(model, images, layer, f"cell {tuple(cell)} of the query image", score, k, batch_size, patch_cells, progress)


def _search(model, images: Any, layer: str, query: str, score: Scorer, k: int, batch_size: int, patch_cells: float, progress: bool) -> DatasetExamples:
    best: list[tuple[float, str, tuple[int, int], Image.Image]] = []
    grid = (0, 0)
    for batch in bar(_batches(images, model, batch_size), f"examples {layer}", enabled=progress):
        acts = layer_activations(model, batch, layer)
        grid = (int(acts.shape[2]), int(acts.shape[3]))
        values, cells = score(acts)
        pictures = batch.images()
        best += [(float(v), batch.ids[i], cells[i], pictures[i]) for i, v in enumerate(values)]
        best = sorted(best, key=lambda e: -e[0])[:k]
    examples = [Example(i, s, c, p, crop_cell(p, c, grid, patch_cells)) for s, i, c, p in best]
    return DatasetExamples(layer, query, grid, examples)


def layer_activations(model, batch: ImageBatch, layer: str) -> torch.Tensor:
    """The layer's output for a batch; the forward stops at the layer."""
    with preserved(model.module):
        return read_layers(model.module, batch.tensor.to(model.device), [layer], stop=True)[layer].float().cpu()


def _batches(images: Any, model, batch_size: int) -> Iterator[ImageBatch]:
    """Batches of ``images``: slices of an ImageBatch, or sources (files, folders, globs...)
    decoded ``batch_size`` at a time."""
    if isinstance(images, ImageBatch):
        for start in range(0, len(images), batch_size):
            yield images[start : start + batch_size]
        return
    yield from load_batches(images, model, batch_size=batch_size)


def _as_sources_batch(images: Any, model) -> ImageBatch:
    return next(_batches(images, model, 1))
