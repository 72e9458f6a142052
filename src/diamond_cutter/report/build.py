"""``report(model, images, layer=...)``: everything Diamond Cutter can say about a set of
images at one layer, gathered into one :class:`Report` that saves as one HTML file.

One forward + backward pass gives the layer's activations and attributions; the
channel attribution, semantic maps, heatmaps and neuron groups are all views of
it, so they agree with each other by construction.
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch
from PIL import Image

from ..attribution import attribute
from ..attribution.api import LAYER_METHODS
from ..attribution.metrics import MetricSettings
from ..blocks import channels as channel_blocks
from ..blocks import spatial as spatial_blocks
from ..blocks.groups import NeuronGroups, factor_groups
from ..blocks.linear import linear_attribution
from ..errors import DiamondCutterError
from ..html import HtmlPage, from_template, image_uri
from ..images import as_batch
from ..model import Prediction, batch_for, predict
from ..progress import bar
from ..render import activation_tiles
from ..targets import UNSET, TargetSpec, legacy_classes
from ..version import __version__
from .costs import report_plan
from .icons import IconSettings, channel_icons, group_icons
from .lens_links import conditional_icons, lens_pages
from .scores import REPORT_SCORES, GalleryScores, gallery_scores

#: Saliency methods shown side by side in the gallery (names of ``diamond_cutter.attribute``).
SALIENCY_METHODS = ("saliency", "integrated_gradients", "gradcam", "guided_gradcam")


@dataclass
class ImageSection:
    """What the report shows for one image."""

    index: int
    image_id: str
    picture: Image.Image
    semantic: spatial_blocks.SemanticMap
    heatmap: Image.Image
    cells: list[dict[str, list[tuple[int, float]]]]
    groups: list[Image.Image]
    activation_grid: list[tuple[int, float, Image.Image]]
    saliency: list[tuple[str, Image.Image | None, str]] = field(default_factory=list)

    @property
    def heatmap_cell(self) -> int:
        """Row-major index of the cell with the largest attribution (the panel's first cell)."""
        row, col = self.semantic.heatmap().argmax()
        return row * self.semantic.grid[1] + col


@dataclass
class Report(HtmlPage):
    """The gathered results; :meth:`save` writes them as one self-contained HTML file.

    ``before``: HTML sections (made by Diamond Cutter's own templates, so already escaped)
    that open the report, such as the sweep that chose the model.
    """

    model_name: str
    layer: str
    predictions: Prediction
    channels: channel_blocks.ChannelAttribution
    sections: list[ImageSection]
    groups: NeuronGroups | None
    icons: dict[int, Image.Image]
    group_icons: list[Image.Image]
    layer_rows: list[dict[str, Any]]
    settings: dict[str, Any]
    top_k: int
    before: list[str] = field(default_factory=list)
    scores: GalleryScores | None = None
    block_rows: list[dict[str, Any]] = field(default_factory=list)
    #: link prefix of the layer's channel pages in a lens site, and per image each listed channel's conditional heatmap
    lens_pages: str | None = None
    conditional: list[dict[int, str]] = field(default_factory=list)

    def html(self) -> str:
        """The report as one HTML document (images inline, no external resources)."""
        return from_template(
            "report.html.j2", report=self, icon_uris={c: image_uri(i) for c, i in self.icons.items()}, uri=image_uri
        )


def report(
    model,
    images: Any,
    layer: str | None = None,
    target: TargetSpec = "auto",
    *,
    top_k: int = 8,
    cell_k: int = 3,
    groups: int = 6,
    icons: IconSettings | None = None,
    saliency: tuple[str, ...] = SALIENCY_METHODS,
    tiles: int = 16,
    batch_size: int | None = None,
    scores: MetricSettings | None = REPORT_SCORES,
    progress: bool = True,
    lens: str | None = None,
    classes: TargetSpec = UNSET,
    plan: Callable[[str], Any] | None = None,
) -> Report:
    """Analyse ``images`` at ``layer`` for ``target`` (``"auto"``: each image's top-1 minus its top-2).

    ``layer`` defaults to the last spatial layer before global pooling (logged);
    ``target`` follows the one target grammar (``classes=`` is its deprecated name);
    ``top_k`` channels are listed each way, ``cell_k`` per semantic-map cell,
    ``groups`` neuron groups (0 for none); ``icons`` sets how channel icons are
    made (feature visualization settings or dataset patches); ``tiles`` activation maps per image;
    ``batch_size`` images per pass (default: what fits the memory budget, which also bounds the
    saliency methods' passes).
    ``scores`` sets how the saliency maps are scored (deletion, insertion, randomization; None for none).
    ``lens`` is the folder of a lens site (as the saved report will reach it): channels
    in the semantic map's panel then link to their lens pages and show their
    concept-conditional heatmaps for the report's class. ``plan`` (e.g. ``print``) is told, once the
    cheap first part has run, what the slow rest will do and about how long it takes
    (:func:`~diamond_cutter.report.costs.report_plan`).
    """
    target = legacy_classes(target, classes, "report")
    layer = model.spatial_layer(layer).name
    icons = icons or IconSettings()
    batch_size = batch_for(model, batch_size)
    pages = lens_pages(lens, layer) if lens else None  # a wrong folder fails before any work
    batch = as_batch(images, model)
    pictures = batch.images()
    prediction = predict(model, batch, k=5, batch_size=batch_size)
    la = linear_attribution(model, batch, layer, target, batch_size=batch_size, progress=progress)
    attribution = channel_blocks.from_layer_gradients(model, la)
    semantic = [spatial_blocks.from_layer_gradients(model, la, i, pictures[i]) for i in range(len(batch))]
    cells = [_cells(sm, cell_k) for sm in semantic]
    found = _groups(model, la, groups, pictures)
    listed = Counter(c for image in cells for cell in image for kind in cell.values() for c, _ in kind)
    wanted = [s.channel for s in attribution.top(top_k) + attribution.bottom(top_k)] + [
        c for c, _ in listed.most_common()
    ]
    if plan is not None:
        plan(report_plan(model, batch, layer, list(la.positive), wanted, icons, saliency, scores))
    icon_images = channel_icons(model, layer, wanted, la.activations, pictures, icons, progress)
    g_icons = group_icons(model, layer, found.directions, found.spatial, pictures, icons, progress) if found else []
    sections = [
        ImageSection(
            i,
            batch.ids[i],
            pictures[i],
            sm,
            sm.heatmap().overlay(),
            cells[i],
            found.overlays(i) if found else [],
            activation_tiles(la.activations[i], pictures[i].size, tiles),
        )
        for i, sm in enumerate(semantic)
    ]
    maps = _saliency(model, batch, la.positive, layer, saliency, sections, progress)
    scored = gallery_scores(model, batch, la.positive, layer, maps, scores) if scores and maps else None
    settings = _settings(model, batch, layer, attribution, top_k, cell_k, groups, icons, saliency)
    if scored:
        used = scored.table.settings  # what the gallery's scores were computed with
        settings["saliency scores"] = (
            f"deletion ({used.deletion_baseline} fill) and insertion (into {used.insertion_baseline}) over "
            f"{used.steps} steps; model randomization in {used.randomization_steps} steps"
        )
    return Report(
        model.name, layer, prediction, attribution, sections, found, icon_images, g_icons,
        [row.as_dict() for row in model.layers], settings, top_k, scores=scored,
        block_rows=[block.as_dict() for block in model.layers.blocks()],
        lens_pages=pages, conditional=conditional_icons(model, batch, layer, list(la.positive), cells) if pages else [],
    )


def _cells(sm: spatial_blocks.SemanticMap, k: int) -> list[dict[str, list[tuple[int, float]]]]:
    """Per cell (row-major) its top channels by activation and by attribution."""
    return [{"act": sm.top_channels(c, k), "attr": sm.top_channels(c, k, by="attribution")} for c in sm.cells()]


def _groups(model, la, k: int, pictures: list[Image.Image]) -> NeuronGroups | None:
    """Neuron groups of the report's attribution: their attribution is to the report's score."""
    return factor_groups(model, [la], min(k, la.activations.shape[1]), pictures) if k > 0 else None


def _saliency(
    model, batch, targets: list[int], layer: str, methods: tuple[str, ...], sections: list[ImageSection], progress: bool
) -> dict[str, Any]:
    """Each saliency method's overlays for each image and its positive class; CAM methods look
    at the report's layer. A method that fails is listed with the reason instead of stopping the report.
    Returns the Attributions that were computed, by method."""
    found = {}
    for method in bar(methods, "saliency", enabled=progress):
        where = {"layer": layer} if method in LAYER_METHODS else {}
        overlays: Sequence[Image.Image | None]
        try:
            result = attribute(model, batch, method=method, target=targets, **where)
            found[result.method] = result
            overlays = result.render()
        except DiamondCutterError as err:
            overlays = [None] * len(sections)
            problem = str(err)
        else:
            problem = ""
        for s, image in zip(sections, overlays):
            s.saliency.append((method, image, problem))
    return found


def _settings(model, batch, layer, attribution, top_k, cell_k, groups, icons: IconSettings, saliency) -> dict[str, Any]:
    return {
        "model": f"{model.name} (weights: {model.weights or 'random'})",
        "layer": f"{layer} {tuple(model.layer(layer).shape)}",
        "images": ", ".join(batch.ids),
        "attributed score": f"logit of {attribution.title}",
        "channels listed": f"top {top_k} each way; {cell_k} per semantic-map cell",
        "neuron groups": f"{groups} (NMF of the layer's activations clipped at 0)" if groups else "off",
        "icons": icons.made_by,
        "saliency methods": ", ".join(saliency) or "off",
        "made": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} with Diamond Cutter {__version__}, "
        f"torch {torch.__version__}, Python {platform.python_version()}",
    }
