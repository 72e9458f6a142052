"""What a report is about to do and about how long it will take, said before the slow part starts.

Why here: the slow parts of :func:`~diamond_cutter.report.build.report` are the channel icons (feature
visualizations), the saliency maps and their scores, and which icons must be rendered is known only once
the report's cheap first part (prediction and channel attribution) has run. So the report calls
:func:`report_plan` at that point: the icons still missing from the atlas are timed over a few render steps,
and each saliency method over one call on the first image, which is also what the scores repeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..atlas import atlas
from ..attribution import attribute
from ..attribution.api import LAYER_METHODS
from ..attribution.metrics import MetricSettings
from ..featureviz.optimize import estimate_seconds
from ..images import ImageBatch
from ..model import predict
from ..progress import duration_text, seconds_per_call
from .icons import IconSettings


def icons_to_render(model: Any, layer: str, channels: Sequence[int], icons: IconSettings) -> list[int]:
    """The channels whose icons :func:`~.icons.channel_icons` will render: those it visualizes
    (:meth:`~.icons.IconSettings.visualized`) that the atlas in ``icons.store`` does not hold yet."""
    chosen = icons.visualized(channels)
    if not chosen:
        return []
    held = atlas(model, layer, chosen, icons.render, store=icons.store, progress=False, fill=False)
    return held.missing(chosen)


def method_seconds(model: Any, first: ImageBatch, target: int, layer: str, method: str) -> float:
    """Seconds one saliency ``method`` takes on one image (timed after a first call)."""
    where = {"layer": layer} if method in LAYER_METHODS else {}
    return seconds_per_call(lambda: attribute(model, first, method=method, target=[target], **where))


def report_plan(model: Any, batch: ImageBatch, layer: str, targets: Sequence[int], channels: Sequence[int],
                icons: IconSettings, saliency: Sequence[str], scores: MetricSettings | None) -> str:
    """One line: the icons to render, the saliency maps and their scores, and the estimated time.

    Scores: deletion and insertion run ``scores.steps`` forwards per map each (for every method and a
    random reference map), model randomization ``scores.randomization_steps`` calls of the method.
    """
    rendered = icons_to_render(model, layer, channels, icons)
    seconds = estimate_seconds(model, layer, rendered, icons.render) if rendered else 0.0
    first = batch[:1]
    per_method = [method_seconds(model, first, targets[0], layer, m) for m in saliency]
    seconds += len(batch) * sum(per_method)
    parts = [f"{len(rendered)} channel icons to render ({icons.render.steps} steps at {icons.size} px)",
             f"{len(saliency)} saliency maps per image"]
    if scores is not None and saliency:
        forward = seconds_per_call(lambda: predict(model, first, k=1))
        curves = 2 * scores.steps * forward * (len(saliency) + 1)
        randomization = (scores.randomization_steps or 1) * sum(per_method)
        seconds += len(batch) * (curves + randomization)
        parts[-1] += " with their scores"
    images = f"{len(batch)} image" + ("s" if len(batch) != 1 else "")
    return (f"report of {images} at {layer} on {model.device.type}: " + ", ".join(parts)
            + f": {duration_text(seconds)}")
