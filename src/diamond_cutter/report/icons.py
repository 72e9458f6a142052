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
from ..featureviz.optimize import FAST_SCHEDULE, Settings, render_objective
from ..render import crop_cell

#: How icons are rendered unless told otherwise: small, with the fast optimizer (a report has few steps to
#: spare). With 48 such icons the whole demo takes about 22 s on an idle 2-core CPU.
ICON_RENDER = FAST_SCHEDULE.replace(steps=96, size=64)


@dataclass
class IconSettings:
    """How icons are made: ``source`` is "featureviz" (feature visualizations) or "patches"
    (dataset examples: fast); ``render`` the feature visualization settings (their size is also the
    patches' size), ``store`` for the atlas cache, ``limit`` the most channels to visualize (None: all
    that the report shows)."""

    source: str = "featureviz"
    render: Settings = ICON_RENDER
    store: Any = None
    limit: int | None = None
    made_by: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.render = self.render.replace(size=self.render.size or ICON_RENDER.size)

    @property
    def size(self) -> int:
        """The icons' side in pixels."""
        return self.render.size[0]  # type: ignore[index]

    def visualized(self, channels: Sequence[int]) -> list[int]:
        """Which of ``channels`` (most important first, repeats allowed) get a feature visualization:
        none with patches, else the first ``limit`` distinct ones."""
        return [] if self.source == "patches" else [int(c) for c in dict.fromkeys(channels)][: self.limit]


def patch_icon(strength: torch.Tensor, pictures: list[Image.Image], size: int) -> Image.Image:
    """The patch (3 cells wide) around the strongest cell of ``strength`` (N×H×W) in ``pictures``."""
    n, h, w = strength.shape
    flat = int(strength.reshape(-1).argmax())
    index, rest = divmod(flat, h * w)
    return crop_cell(pictures[index], divmod(rest, w), (h, w), 3.0, size)


def channel_icons(
    model,
    layer: str,
    channels: Sequence[int],
    activations: torch.Tensor,
    pictures: list[Image.Image],
    settings: IconSettings,
    progress: bool = False,
) -> dict[int, Image.Image]:
    """An icon per channel, ``channels`` listed most important first; records in ``settings.made_by``
    what the icons show.

    Feature visualizations come from the channel atlas, so channels rendered
    once (by this report or ``diamond-cutter atlas``) are reused from its store.
    With ``settings.limit`` only that many channels (the first) are visualized
    and the rest get patches, which bounds the time a report takes.
    """
    channels = [int(c) for c in dict.fromkeys(channels)]
    rendered = settings.visualized(channels)
    icons = {c: patch_icon(activations[:, c], pictures, settings.size) for c in channels[len(rendered) :]}
    settings.made_by = "the patch of these images where the channel fires most"
    if rendered:
        found = atlas(model, layer, sorted(rendered), settings.render, store=settings.store, progress=progress)
        icons.update({c: found.icon(c) for c in rendered})
        settings.made_by = (
            f"feature visualizations ({settings.render.steps} steps, {settings.size} px, from the channel atlas)"
        )
        if len(rendered) < len(channels):
            settings.made_by += (
                f" of the {len(rendered)} most important channels; for the other {len(channels) - len(rendered)}, "
                + ("the patch of these images where the channel fires most")
            )
    return icons


def group_icons(
    model,
    layer: str,
    directions: torch.Tensor,
    spatial: torch.Tensor,
    pictures: list[Image.Image],
    settings: IconSettings,
    progress: bool = False,
) -> list[Image.Image]:
    """An icon per neuron group: its direction visualized (one batched render for all groups),
    or with ``source="patches"`` the patch where the group is strongest."""
    if settings.source == "patches":
        return [patch_icon(spatial[:, g], pictures, settings.size) for g in range(len(directions))]
    objective = objectives.batched([objectives.direction(layer, d) for d in directions])
    return render_objective(model, objective, settings.render, n=len(directions), progress=progress).images
