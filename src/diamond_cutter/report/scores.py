"""The saliency gallery's scores: under each map, its deletion and insertion AUCs, the
randomization verdict and a small plot of both curves (computed by
:func:`~diamond_cutter.attribution.evaluate_methods` on the maps the gallery shows)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone
from PIL import Image

from ..attribution.api import method_class
from ..attribution.metrics import MethodTable, MetricSettings, evaluate_methods

#: What the report computes by default: few enough steps that the gallery's scores cost seconds.
REPORT_SCORES = MetricSettings(steps=10, randomization_steps=2, bootstrap=200)
GALLERY_METRICS = ("deletion", "insertion", "randomization")


@dataclass
class GalleryScores:
    """The evaluation of the gallery's methods on the report's images, and one curve plot per map."""

    table: MethodTable
    plots: dict[tuple[str, int], Image.Image]

    def cell(self, method: str, index: int) -> dict[str, Any] | None:
        """What the gallery prints under ``method``'s map of image ``index`` (None if it was not scored)."""
        method = method_class(method).name
        results = self.table.results.get(method)
        if not results or "deletion" not in results:
            return None
        random = self.table.results.get("random", {})
        randomization = results.get("randomization")
        return {
            "deletion": float(results["deletion"].values[index]),
            "insertion": float(results["insertion"].values[index]),
            "random_deletion": float(random["deletion"].values[index]) if "deletion" in random else None,
            "random_insertion": float(random["insertion"].values[index]) if "insertion" in random else None,
            "rho": float(randomization.values[index]) if randomization else None,
            "passes": randomization.settings["passes"] if randomization else None,
            "plot": self.plots[(method, index)],
        }


def gallery_scores(model, batch, targets: list[int], layer: str, maps: dict, settings: MetricSettings) -> GalleryScores:
    """Score the gallery's ``maps`` (Attributions by method) for ``targets``; CAM methods sit at ``layer``."""
    table = evaluate_methods(
        model, batch, target=targets, methods=list(maps), metrics=GALLERY_METRICS, layer=layer, settings=settings,
        maps=maps,
    )
    plots = {
        (m, i): curve_plot(table, m, i)
        for m in table.methods
        if "deletion" in table.results[m]
        for i in range(len(batch))
    }
    return GalleryScores(table, plots)


def curve_plot(table: MethodTable, method: str, index: int) -> Image.Image:
    """Deletion (falling) and insertion (rising) probability curves of one map, 160×80 px."""
    results = table.results[method]
    fig = Figure(figsize=(1.6, 0.8), dpi=100)
    ax = fig.add_subplot()
    for name, colour in (("deletion", "#c0392b"), ("insertion", "#2471a3")):
        result = results[name]
        if result.fractions is None or result.curves is None:  # deletion and insertion always keep their curves
            raise ValueError(f"the {name} scores of {method} kept no curves to plot")
        ax.plot(result.fractions, result.curves[index], color=colour, lw=1.2, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.tick_params(labelsize=5, length=2, pad=1)
    fig.subplots_adjust(left=0.16, right=0.98, top=0.95, bottom=0.2)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
