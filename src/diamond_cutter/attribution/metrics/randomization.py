"""Model-parameter randomization as a score per method, from :func:`~diamond_cutter.attribution.sanity_check`.

The score of an image is the rank correlation between its map on the trained
model and on the fully randomized one: near 0 means the map depends on what
the model learned (good); near 1 means it would look the same for any weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...model import Model
from ..sanity import SanityResult, sanity_check
from .result import MetricResult


def randomization(
    model: Model, images: Any, methods: Sequence[str] = ("gradcam",), target: Any = "top1", *,
    layer: str | None = None, steps: int | None = 4, seed: int = 0, threshold: float = 0.5, init: str = "scaled",
) -> dict[str, MetricResult]:
    """Per method, each image's Spearman correlation after randomizing every layer (lower is better).

    Arguments as :func:`~diamond_cutter.attribution.sanity_check`, which this runs
    once for all ``methods``; ``settings["passes"]`` says whether the mean is
    below ``threshold`` and ``settings["sanity"]`` holds the whole cascade.
    """
    check = sanity_check(model, images, methods, target, layer, steps, seed, threshold, init)
    return from_sanity(check)


def from_sanity(check: SanityResult) -> dict[str, MetricResult]:
    """One randomization MetricResult per method of a finished sanity check."""
    return {
        m: MetricResult(
            "randomization",
            m,
            torch.tensor(check.per_image[m][-1], dtype=torch.float64),
            list(check.image_ids),
            False,
            {
                "passes": check.depends_on_weights(m),
                "threshold": check.threshold,
                "sanity": check.as_dict()["methods"][m],
                "steps": check.steps,
            },
        )
        for m in check.methods
    }
