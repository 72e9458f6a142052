"""Faithfulness: does removing what the map calls important change the prediction?

Deletion and insertion (Petsiuk et al. 2018) remove or insert pixels in the
map's order and integrate the class probability over the fraction changed.
ROAD (Rong et al. 2022) fills removed pixels by noisy linear imputation instead
of a constant, so the shape of the hole cannot itself tell the model the class,
and removes most-relevant-first (MoRF) or least-relevant-first (LeRF).

All images × steps are built as one index computation and scored in budgeted
batches of gradient-free forwards.
"""

from __future__ import annotations

from typing import Any

import torch

from ...errors import DiamondCutterError
from ...model import Model
from ..result import Attribution
from .inputs import Scored, class_probabilities, forward_batch_size, prepare
from .perturb import BASELINES, baseline_images, noisy_linear_imputation, ranks
from .result import MetricResult

#: ROAD's fractions removed (Rong et al. 2022 report 10%…90%).
ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ROAD_ORDERS = ("morf", "lerf")


def deletion(
    model: Model, images: Any, maps: Attribution | torch.Tensor, target: Any = None, *,
    steps: int = 20, baseline: str = "mean", blur: float = 0.025, seed: int = 0, batch_size: int | None = None,
) -> MetricResult:
    """Area under the class probability as the most relevant pixels are replaced by ``baseline`` first.

    Lower is better. ``steps`` equal steps go from the whole image (fraction 0) to
    all pixels removed; ``baseline`` is ``"mean"`` (the image's mean colour, the
    default), ``"blur"``, ``"noise"`` or ``"black"``; ``blur`` is the blur's σ
    relative to the image side.
    """
    return curve_metric(prepare(model, images, maps, target), "deletion", steps, baseline, blur, seed, batch_size)


def insertion(
    model: Model, images: Any, maps: Attribution | torch.Tensor, target: Any = None, *,
    steps: int = 20, baseline: str = "blur", blur: float = 0.025, seed: int = 0, batch_size: int | None = None,
) -> MetricResult:
    """Area under the class probability as the most relevant pixels are put back into ``baseline`` first.

    Higher is better. Starts from the baseline (a blurred image by default, as
    Petsiuk et al.) and ends at the whole image; settings as :func:`deletion`.
    """
    return curve_metric(prepare(model, images, maps, target), "insertion", steps, baseline, blur, seed, batch_size)


def curve_metric(
    s: Scored, kind: str, steps: int, baseline: str, blur: float, seed: int, batch_size: int | None
) -> MetricResult:
    """Deletion or insertion on prepared inputs (see :func:`deletion`)."""
    if steps < 1:
        raise DiamondCutterError(f"steps must be at least 1, got {steps}")
    base = baseline_images(s.x, baseline, s.model, seed, blur)
    order = ranks(s.relevance)[:, None]
    pixels = order[0].numel()
    counts = (torch.arange(steps + 1, dtype=torch.float64) * pixels / steps).round().long().to(s.x.device)
    first, second = (base, s.x) if kind == "deletion" else (s.x, base)
    points = steps + 1

    def make(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.arange(rows.start, rows.stop, device=s.x.device)
        image, step = r // points, r % points
        changed = order[image] < counts[step].view(-1, 1, 1, 1)
        return torch.where(changed, first[image], second[image]), s.classes.to(s.x.device)[image]

    probs, _ = class_probabilities(s.model, len(s) * points, make, forward_batch_size(s.model, batch_size))
    curves = probs.view(len(s), points)
    fractions = counts.cpu().double() / pixels
    return MetricResult(
        kind, s.method, torch.trapezoid(curves.double(), fractions), list(s.batch.ids), kind == "insertion",
        {"steps": steps, "baseline": baseline, "blur": blur, "seed": seed}, fractions, curves.double(),
    )


def road(
    model: Model, images: Any, maps: Attribution | torch.Tensor, target: Any = None, *,
    order: str = "morf", fractions: tuple[float, ...] = ROAD_FRACTIONS, noise: float = 0.01,
    iterations: int = 20, seed: int = 0, batch_size: int | None = None,
) -> MetricResult:
    """ROAD: the class probability after removing ``fractions`` of the pixels by noisy linear imputation.

    ``order="morf"`` removes the most relevant first (lower is better), ``"lerf"``
    the least relevant first (higher is better). The value per image is the mean
    probability over ``fractions``; ``details["accuracy"]`` says whether the
    class stayed the top prediction at each fraction (ROAD's original measure).
    ``iterations`` bounds the imputation's solver steps per resolution level.
    """
    return road_metrics(prepare(model, images, maps, target), (order,), fractions, noise, iterations, seed, batch_size)[
        order
    ]


def road_metrics(
    s: Scored, orders: tuple[str, ...], fractions: tuple[float, ...], noise: float, iterations: int, seed: int,
    batch_size: int | None,
) -> dict[str, MetricResult]:
    """ROAD for several orders at once: all images × orders × fractions imputed and scored together."""
    for o in orders:
        if o not in ROAD_ORDERS:
            raise DiamondCutterError(f"ROAD order must be one of {', '.join(ROAD_ORDERS)}, got {o!r}")
    if not fractions or not all(0 <= f <= 1 for f in fractions):
        raise DiamondCutterError(f"ROAD fractions must lie in [0, 1], got {fractions}")
    pixels = s.relevance[0].numel()
    counts = torch.tensor([int(pixels * f + 1e-9) for f in fractions], device=s.x.device)
    order = torch.stack([ranks(s.relevance, descending=o == "morf") for o in orders], 1)[:, :, None]
    per_image = len(orders) * len(fractions)
    batch = forward_batch_size(s.model, batch_size)

    def make(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.arange(rows.start, rows.stop, device=s.x.device)
        image, which, step = r // per_image, (r % per_image) // len(fractions), r % len(fractions)
        removed = order[image, which] < counts[step].view(-1, 1, 1, 1)
        fill = torch.stack([road_noise(s.x.shape[1:], noise, seed, int(k)) for k in r % per_image])
        filled = noisy_linear_imputation(s.x[image], removed, fill, max_iter=iterations)
        return filled, s.classes.to(s.x.device)[image]

    probs, tops = class_probabilities(s.model, len(s) * per_image, make, batch)
    probs = probs.view(len(s), len(orders), len(fractions)).double()
    tops = tops.view(len(s), len(orders), len(fractions))
    settings = {"fractions": list(fractions), "noise": noise, "iterations": iterations, "seed": seed}
    return {
        o: MetricResult(
            f"road_{o}", s.method, probs[:, j].mean(1), list(s.batch.ids), o == "lerf", {**settings, "order": o},
            torch.tensor(fractions, dtype=torch.float64), probs[:, j], {"accuracy": tops[:, j]},
        )
        for j, o in enumerate(orders)
    }


def road_noise(shape: torch.Size, std: float, seed: int, key: int) -> torch.Tensor:
    """The imputation noise of one (order, fraction): seeded by its position, not by the batch it runs in,
    so an image scores the same alone or among others."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed * 100_003 + key)) * std


__all__ = ["BASELINES", "ROAD_FRACTIONS", "deletion", "insertion", "road"]
