"""Icons for channels and neuron groups: feature visualizations (from the channel atlas,
and a batched render of the groups' directions), or the patch of the report's own
images where the channel (or group) fires most.

Patches are the fast choice (no optimization at all) and Building Blocks' other
way of showing what a channel detects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from ..atlas import atlas
from ..featureviz import objectives
from ..featureviz.optimize import FAST_SCHEDULE, render_objective
from ..render import crop_cell


@dataclass
class IconSettings:
    """How icons are made: ``source`` is "featureviz" (feature visualizations) or "patches"
    (dataset examples: fast); ``size`` in pixels, ``steps`` of optimization, ``store`` for the atlas cache,
    ``limit`` the most channels to visualize (None: all that the report shows). Icons are rendered
    with the fast optimizer settings (``FAST_SCHEDULE``'s lr and betas): a report has few steps to spare."""

    source: str = "featureviz"
    size: int = 64
    steps: int = 64
    store: Any = None
    limit: int | None = None
    made_by: str = field(default="", init=False)

    @property
    def optimizer(self) -> dict[str, Any]:
        return {"lr": FAST_SCHEDULE["lr"], "betas": FAST_SCHEDULE["betas"]}


def patch_icon(strength: torch.Tensor, pictures: list[Image.Image], size: int) -> Image.Image:
    """The patch (3 cells wide) around the strongest cell of ``strength`` (N×H×W) in ``pictures``."""
    n, h, w = strength.shape
    flat = int(strength.reshape(-1).argmax())
    index, rest = divmod(flat, h * w)
    return crop_cell(pictures[index], divmod(rest, w), (h, w), 3.0, size)


def channel_icons(model, layer: str, channels: Sequence[int], activations: torch.Tensor, pictures: list[Image.Image], settings: IconSettings, progress: bool = False) -> dict[int, Image.Image]:
    """An icon per channel, ``channels`` listed most important first; records in ``settings.made_by``
    what the icons show.

    Feature visualizations come from the channel atlas, so channels rendered
    once (by this report or ``diamond-cutter atlas``) are reused from its store.
    With ``settings.limit`` only that many channels (the first) are visualized
    and the rest get patches, which bounds the time a report takes.
    """
    channels = [int(c) for c in dict.fromkeys(channels)]
    rendered = [] if settings.source == "patches" else channels[: settings.limit]
    icons = {c: patch_icon(activations[:, c], pictures, settings.size) for c in channels[len(rendered) :]}
    settings.made_by = "the patch of these images where the channel fires most"
    if rendered:
        found = atlas(model, layer, channels=sorted(rendered), steps=settings.steps, size=settings.size,
                      store=settings.store, progress=progress, **settings.optimizer)
        icons.update({c: found.icon(c) for c in rendered})
        settings.made_by = f"feature visualizations ({settings.steps} steps, {settings.size} px, from the channel atlas)"
        if len(rendered) < len(channels):
            settings.made_by += f" of the {len(rendered)} most important channels; for the other {len(channels) - len(rendered)}, " + (
                "the patch of these images where the channel fires most"
            )
    return icons


def group_icons(model, layer: str, directions: torch.Tensor, spatial: torch.Tensor, pictures: list[Image.Image], settings: IconSettings, progress: bool = False) -> list[Image.Image]:
    """An icon per neuron group: its direction visualized (one batched render for all groups),
    or with ``source="patches"`` the patch where the group is strongest."""
    if settings.source == "patches":
        return [patch_icon(spatial[:, g], pictures, settings.size) for g in range(len(directions))]
    objective = objectives.batched([objectives.direction(layer, d) for d in directions])
    return render_objective(model, objective, n=len(directions), steps=settings.steps, size=settings.size,
                            progress=progress, **settings.optimizer).images
