"""Dataset examples: which images (and which patches of them) drive a channel, and which
images look alike to the network at the same spatial position.

A feature visualization shows what a channel wants in isolation; the images of
a real collection that excite it most show what it responds to in practice.
Images stream through in batches, so a folder larger than memory works, and
only the current top ``k`` are kept. On Ray (``executor="ray"``) the images are
cut into shards of ``shard_size`` (rounded up to whole batches, so every batch
is the one a single stream would see, float rounding included): each shard's
top ``k`` is found by the same scan on some worker, and the shards' results, merged in shard order, keep ties
in image order exactly as one stream does, so the result is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from PIL import Image

from ..capture import preserved, read_layers
from ..errors import DiamondCutterError
from ..executors import Ray, ray_executor
from ..html import from_template, short_repr
from ..images import ImageBatch, load_batches, source_ids
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
#: Images per job of a scan on Ray.
SHARD_SIZE = 256


@dataclass(frozen=True)
class ScanOptions:
    """How a scan runs: images per batch, patch width in cells, progress bar, and where: in this
    process (``executor=None``) or on Ray (``"ray"``, at ``ray_address``) in shards of ``shard_size``."""

    batch_size: int = 16
    patch_cells: float = 3.0
    progress: bool = False
    executor: str | Ray | None = None
    ray_address: str | None = None
    shard_size: int = SHARD_SIZE


def dataset_examples(model, images: Any, layer: str, channel: int, k: int = 8, **options: Any) -> DatasetExamples:
    """The ``k`` images of ``images`` (files, folders, an ImageBatch...) where ``channel`` of ``layer``
    peaks highest, each with the patch (``patch_cells`` cells wide) around its peak. ``options``
    are :class:`ScanOptions` (``batch_size``, ``patch_cells``, ``progress``, ``executor``, ...)."""
    info = model.spatial_layer(layer)
    if not 0 <= channel < info.channels:
        raise DiamondCutterError(f"channel {channel} is out of range: {layer} has {info.channels} channels")

    return _search(model, images, layer, f"channel {channel}", partial(channel_peak, channel), k,
                   ScanOptions(**options))


def channel_peak(channel: int, acts: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """A channel's peak in each image and the cell where it is (a top-level function, so it ships)."""
    values, where = acts[:, channel].flatten(1).max(dim=1)
    return values, [divmod(int(p), acts.shape[3]) for p in where]


def shared_position_examples(model, query: Any, cell: tuple[int, int], images: Any, layer: str, k: int = 8,
                             **options: Any) -> DatasetExamples:
    """The ``k`` images whose activation vector at ``cell`` is closest (cosine) to the query image's
    at the same cell: images the network sees alike in that spatial position (``options``: see
    :class:`ScanOptions`)."""
    info = model.spatial_layer(layer)
    if not (0 <= cell[0] < info.height and 0 <= cell[1] < info.width):
        raise DiamondCutterError(f"cell {cell} is outside {layer}'s {info.height}×{info.width} grid")
    target = layer_activations(model, _as_sources_batch(query, model), layer)[0][:, cell[0], cell[1]]

    def score(acts: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        vectors = acts[:, :, cell[0], cell[1]]
        where = (int(cell[0]), int(cell[1]))
        return torch.nn.functional.cosine_similarity(vectors, target[None], dim=1), [where] * len(acts)

    return _search(model, images, layer, f"cell {tuple(cell)} of the query image", score, k, ScanOptions(**options))


def _search(model, images: Any, layer: str, query: str, score: Scorer, k: int, options: ScanOptions) -> DatasetExamples:
    """One stream over ``images``, or shards of it on Ray merged into the same top ``k``."""
    ray = ray_executor(options.executor, options.ray_address)
    if ray is None:
        return _scan(model, images, layer, query, score, k, options)
    ids = source_ids(images)
    size = -(-options.shard_size // options.batch_size) * options.batch_size  # whole batches: the stream's own
    shards = [ids[i : i + size] for i in range(0, len(ids), size)]
    scan = partial(_scan_shard, model, layer, query, score, k, options)  # the model ships once, by reference
    parts = list(bar(ray.map(scan, shards), f"examples {layer}", enabled=options.progress, total=len(shards)))
    ranked = sorted((e for part in parts for e in part.examples), key=lambda e: -e.score)  # stable: shard order
    return DatasetExamples(layer, query, parts[0].grid, ranked[:k])


def _scan_shard(
    model, layer: str, query: str, score: Scorer, k: int, options: ScanOptions, shard: list[str]
) -> DatasetExamples:
    return _scan(model, shard, layer, query, score, k, options)


def _scan(model, images: Any, layer: str, query: str, score: Scorer, k: int, options: ScanOptions) -> DatasetExamples:
    best: list[tuple[float, str, tuple[int, int], Image.Image]] = []
    grid = (0, 0)
    show = options.progress and options.executor is None
    for batch in bar(image_batches(images, model, options.batch_size), f"examples {layer}", enabled=show):
        acts = layer_activations(model, batch, layer)
        grid = (int(acts.shape[2]), int(acts.shape[3]))
        values, cells = score(acts)
        pictures = batch.images()
        best += [(float(v), batch.ids[i], cells[i], pictures[i]) for i, v in enumerate(values)]
        best = sorted(best, key=lambda e: -e[0])[:k]
    examples = [Example(i, s, c, p, crop_cell(p, c, grid, options.patch_cells)) for s, i, c, p in best]
    return DatasetExamples(layer, query, grid, examples)


def layer_activations(model, batch: ImageBatch, layer: str) -> torch.Tensor:
    """The layer's output for a batch; the forward stops at the layer."""
    with preserved(model.module):
        return read_layers(model.module, batch.tensor.to(model.device), [layer], stop=True)[layer].float().cpu()


def image_batches(images: Any, model, batch_size: int) -> Iterator[ImageBatch]:
    """Batches of ``images``: slices of an ImageBatch, or sources (files, folders, globs...)
    decoded ``batch_size`` at a time."""
    if isinstance(images, ImageBatch):
        for start in range(0, len(images), batch_size):
            yield images[start : start + batch_size]
        return
    yield from load_batches(images, model, batch_size=batch_size)


def _as_sources_batch(images: Any, model) -> ImageBatch:
    return next(image_batches(images, model, 1))
