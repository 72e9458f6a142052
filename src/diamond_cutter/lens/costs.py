"""What a lens site is about to compute and about how long it will take, said before the scan starts.

Why: a cold site over a few layers renders every channel's atlas icon and diversity variants and
computes hundreds of conditional heatmaps, which can take from seconds to hours. Each part is timed on
one image or over a few render steps (icons the store already holds are not counted) and scaled up.
"""

from __future__ import annotations

from typing import Any

from ..atlas import atlas
from ..blocks.examples import image_batches
from ..featureviz.optimize import estimate_seconds
from ..images import ImageBatch, source_ids
from ..progress import duration_text, seconds_per_call
from ..store import Store
from .crp import Relevance, channel_heatmaps
from .references import ScanSettings


def lens_plan(model: Any, images: Any, layers: list[str], settings: Any, store: Store) -> str:
    """One line: images, layers, icons still to render and the estimated time of the site.

    ``settings`` is the site's :class:`~.site.LensSettings`. Counted: the scan (one forward and backward
    per image), the missing atlas icons, ``detail`` channels' diversity variants per layer, and the
    conditional heatmaps: ``heatmaps`` per ranking and channel, and the class pages' (at most one class
    per image).
    """
    sources = images if isinstance(images, ImageBatch) else source_ids(images)
    x = next(iter(image_batches(sources[:1], model, 1))).tensor.to(model.device)
    engine = Relevance(model, settings.crp)
    scan = seconds_per_call(lambda: engine.signal(x, layers, ScanSettings().target))
    heatmap = seconds_per_call(lambda: channel_heatmaps(engine, x, layers[0], [0], [(0, 0)])) - scan
    icons = settings.icon_render
    seconds, missing = len(sources) * scan, 0
    for layer in layers:
        channels = model.layers.resolve(layer).shape[0]
        todo = atlas(model, layer, None, icons, store=store, progress=False, fill=False).missing()
        missing += len(todo)
        seconds += estimate_seconds(model, layer, todo, icons) if todo else 0.0
        if settings.variants and settings.detail:
            variants = estimate_seconds(model, layer, settings.variants, settings.variant_render)
            seconds += min(settings.detail, channels) * variants
        heatmaps = channels * 2 * settings.heatmaps + len(sources) * settings.class_channels * settings.class_images
        seconds += heatmaps * max(heatmap, 0.0)
    return (f"lens of {len(sources)} images at {', '.join(layers)} on {model.device.type}: {missing} atlas icons "
            f"to render: {duration_text(seconds)}")
