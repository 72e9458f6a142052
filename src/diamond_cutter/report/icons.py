"""Icons for channels and neuron groups: feature visualizations when the atlas and
feature visualization are available, otherwise the patch of the report's own images
where the channel (or group) fires most.

The fallback keeps a report useful (and fast) on any install: a dataset-example
patch is Building Blocks' other way of showing what a channel detects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from ..blocks.examples import crop_cell


@dataclass
class IconSettings:
    """How icons are made: ``source`` is "auto" (feature visualization if installed, else patches),
    "featureviz" or "patches"; ``size`` in pixels, ``steps`` of optimization, ``store`` for the atlas cache."""

    source: str = "auto"
    size: int = 64
    steps: int = 64
    store: Any = None
    made_by: str = field(default="", init=False)


def patch_icon(strength: torch.Tensor, pictures: list[Image.Image], size: int) -> Image.Image:
    """The patch (3 cells wide) around the strongest cell of ``strength`` (N×H×W) in ``pictures``."""
    n, h, w = strength.shape
    flat = int(strength.reshape(-1).argmax())
    index, rest = divmod(flat, h * w)
    return crop_cell(pictures[index], divmod(rest, w), (h, w), 3.0, size)


def channel_icons(model, layer: str, channels: Iterable[int], activations: torch.Tensor, pictures: list[Image.Image], settings: IconSettings, progress: bool = False) -> dict[int, Image.Image]:
    """An icon per channel; records in ``settings.made_by`` what the icons show."""
    channels = sorted(set(int(c) for c in channels))
    if settings.source != "patches":
        atlas_fn = _atlas()
        if atlas_fn is not None:
            atlas = atlas_fn(model, layer, channels=channels, steps=settings.steps, size=settings.size, store=settings.store)
            settings.made_by = f"feature visualizations ({settings.steps} steps, {settings.size} px)"
            return {c: atlas.icon(c) for c in channels}
    settings.made_by = "the patch of these images where the channel fires most (feature visualization not installed)"
    return {c: patch_icon(activations[:, c], pictures, settings.size) for c in channels}


def group_icons(model, layer: str, directions: torch.Tensor, spatial: torch.Tensor, pictures: list[Image.Image], settings: IconSettings) -> list[Image.Image]:
    """An icon per neuron group: its direction visualized, or the patch where the group is strongest."""
    if settings.source != "patches":
        visualize = _direction_visualizer()
        if visualize is not None:
            return visualize(model, layer, directions, settings)
    return [patch_icon(spatial[:, g], pictures, settings.size) for g in range(len(directions))]


def _atlas():
    """The atlas builder when the feature-visualization part of Diamond Cutter is installed."""
    import diamond_cutter

    fn = getattr(diamond_cutter, "atlas", None)
    return fn if callable(fn) else None


def _direction_visualizer():
    """A function rendering one image per direction, when feature visualization is installed."""
    import diamond_cutter

    visualize = getattr(diamond_cutter, "visualize", None)
    try:
        from ..featureviz.objectives import direction
    except ImportError:
        return None
    if not callable(visualize):
        return None

    def run(model, layer: str, directions: torch.Tensor, settings: IconSettings) -> list[Image.Image]:
        return [_first_image(visualize(model, direction(layer, d), steps=settings.steps, size=settings.size)) for d in directions]

    return run


def _first_image(result: Any) -> Image.Image:
    if isinstance(result, Image.Image):
        return result
    images = result.images() if callable(getattr(result, "images", None)) else result
    return images[0]
