"""Bootstrap intervals: how sure a sweep is of each number it prints.

A test split of 60 images moves accuracy in steps of 1.7 points, so two cuts
a few points apart may not differ at all. Every compared score therefore comes
with a percentile bootstrap interval over the images (resampled with
replacement, seeded so a rerun prints the same interval), and two pairs are
compared *paired*: the same resampled images score both, so what varies is
only their difference, which is far tighter than two separate intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

#: Bootstrap resamples per interval (the percentiles of a 95% interval move by ~0.5 point between seeds).
RESAMPLES = 1000
CONFIDENCE = 0.95


class Bootstrap(TypedDict):
    """The keyword arguments every interval here takes, so one settings object can pass them all."""

    resamples: int
    confidence: float
    seed: int


@dataclass(frozen=True)
class Interval:
    """A score and its bootstrap interval (``low``, ``high``) at ``confidence``."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.1%} [{self.low:.1%}, {self.high:.1%}]"

    def as_list(self) -> list[float]:
        return [self.value, self.low, self.high]


def resample(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``resamples``×``n`` indices drawn with replacement (seeded)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _percentiles(samples: np.ndarray, value: float, confidence: float) -> Interval:
    tail = (1 - confidence) / 2 * 100
    if np.isnan(samples).all():  # e.g. a rank correlation of constant scores
        return Interval(float(value), float("nan"), float("nan"))
    low, high = np.nanpercentile(samples, [tail, 100 - tail])
    return Interval(float(value), float(low), float(high))


def accuracy(y: np.ndarray, pred: np.ndarray, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
             seed: int = 0) -> Interval:
    """Accuracy of ``pred`` against ``y`` with a bootstrap interval over the images."""
    correct = (np.asarray(y) == np.asarray(pred)).astype(np.float64)
    return _percentiles(correct[resample(len(correct), resamples, seed)].mean(axis=1), correct.mean(), confidence)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                      seed: int = 0) -> Interval:
    """Mean per-class recall with a bootstrap interval (a class missing from a resample is left out of it)."""
    y, pred = np.asarray(y), np.asarray(pred)
    idx = resample(len(y), resamples, seed)

    def score(yy: np.ndarray, pp: np.ndarray) -> np.ndarray:
        recalls = []
        for c in np.unique(y):
            members = yy == c
            with np.errstate(invalid="ignore", divide="ignore"):
                recalls.append(((pp == c) & members).sum(axis=-1) / members.sum(axis=-1))
        return np.nanmean(np.stack(recalls), axis=0)

    return _percentiles(score(y[idx], pred[idx]), float(score(y[None], pred[None])[0]), confidence)


def paired_difference(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, resamples: int = RESAMPLES,
                      confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """Accuracy of ``a`` minus accuracy of ``b`` on the same images, with a paired bootstrap interval."""
    diff = (np.asarray(pred_a) == y).astype(np.float64) - (np.asarray(pred_b) == y).astype(np.float64)
    return _percentiles(diff[resample(len(diff), resamples, seed)].mean(axis=1), diff.mean(), confidence)


def statistic(values: tuple[np.ndarray, ...], fn: Callable[..., float], resamples: int = RESAMPLES,
              confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """Any statistic of aligned arrays (e.g. Kendall τ of two score lists) with a bootstrap interval."""
    n = len(values[0])
    samples = np.array([fn(*(v[i] for v in values)) for i in resample(n, resamples, seed)])
    return _percentiles(samples, fn(*values), confidence)
