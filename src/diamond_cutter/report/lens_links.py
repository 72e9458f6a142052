"""The report's bridge to a lens site: channel links and concept-conditional heatmaps.

When the report is given the folder of a lens site that covers its layer, every
channel in the semantic map's panel links to that channel's lens page, and
hovering a cell shows, next to each listed channel, the channel's conditional
heatmap for the report's class on that image. Without a lens (or when the site
lacks the layer) the report is unchanged and costs nothing more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DiamondCutterError
from ..html import image_uri
from ..lens.crp import Relevance, channel_heatmaps
from ..lens.site import slug
from ..render import relevance_picture

ICON = 64


def lens_pages(lens: str, layer: str) -> str | None:
    """The link prefix of ``layer``'s channel pages in the site at ``lens``, or ``None`` when it lacks the layer.

    ``lens`` is the site's folder as the saved report will reach it (relative to the
    report's folder, or absolute); it is read from the current directory to check it.
    """
    summary = Path(lens) / "data" / "lens.json"
    if not summary.exists():
        raise DiamondCutterError(f"{lens} is not a lens site (no data/lens.json); write one with `diamond-cutter lens`")
    layers = [entry["name"] for entry in json.loads(summary.read_text(encoding="utf-8"))["layers"]]
    if layer not in layers:
        return None
    base = Path(lens).as_uri() if Path(lens).is_absolute() else str(lens).rstrip("/")
    return f"{base}/layer/{slug(layer)}/"


def conditional_icons(
    model, batch, layer: str, classes: list[int], cells: list[list[dict[str, Any]]]
) -> list[dict[int, str]]:
    """Per image, the conditional heatmap (a small data URI) of every channel its panel lists."""
    rows = sorted(
        {(i, c) for i, image in enumerate(cells) for cell in image for kind in cell.values() for c, _ in kind}
    )
    maps = channel_heatmaps(Relevance(model), batch.tensor.to(model.device), layer, classes, rows)
    pictures = batch.images()
    return [
        {
            c: image_uri(relevance_picture(pictures[i], maps[(i, c)]).resize((ICON, ICON)))
            for (j, c) in rows
            if j == i
        }
        for i in range(len(cells))
    ]
