"""The :class:`MetricResult` every metric returns: one value per image, a summary with an interval."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Summary:
    """The mean over images with a percentile-bootstrap interval (``level`` coverage)."""

    mean: float
    low: float
    high: float
    level: float = 0.95

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "level": self.level}


def bootstrap(values: torch.Tensor, samples: int = 1000, seed: int = 0, level: float = 0.95) -> Summary:
    """Mean of ``values`` (NaNs left out) with a bootstrap interval over them.

    Images are the unit that varies, so they are what is resampled; with one
    image the interval collapses to the value.
    """
    v = values.detach().double().cpu().numpy()
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return Summary(float("nan"), float("nan"), float("nan"), level)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(samples, len(v)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Summary(float(v.mean()), float(low), float(high), level)


@dataclass
class MetricResult:
    """One metric of one explanation on a batch of images.

    ``values`` holds one number per image (NaN where undefined, e.g. an image
    without a region); ``higher_is_better`` says which way is good. Curve metrics
    also keep ``curves`` (images × points) over ``fractions`` of the image removed
    or inserted; ``details`` holds extra per-image tensors (e.g. ROAD's accuracy).
    """

    metric: str
    method: str
    values: torch.Tensor
    image_ids: list[str]
    higher_is_better: bool
    settings: dict[str, Any] = field(default_factory=dict)
    fractions: torch.Tensor | None = None
    curves: torch.Tensor | None = None
    details: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.values)

    def summary(self, samples: int = 1000, seed: int = 0, level: float = 0.95) -> Summary:
        """The mean over images with a bootstrap interval."""
        return bootstrap(self.values, samples, seed, level)

    def __repr__(self) -> str:
        way = "higher" if self.higher_is_better else "lower"
        return (f"MetricResult({self.metric!r}, method={self.method!r}, images={len(self)}, "
                f"mean={self.summary()} ({way} is better))")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metric": self.metric,
            "method": self.method,
            "higher_is_better": self.higher_is_better,
            "summary": self.summary().as_dict(),
            "per_image": dict(zip(self.image_ids, _floats(self.values))),
            "settings": self.settings,
        }
        if self.curves is not None and self.fractions is not None:
            out["fractions"] = _floats(self.fractions)
            out["curves"] = dict(zip(self.image_ids, (_floats(c) for c in self.curves)))
        return out


def _floats(t: torch.Tensor) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in t.detach().double().cpu().tolist()]
