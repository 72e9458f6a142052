"""What the benchmarks share: the best-of-``repeat`` time (or throughput) of a call."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def seconds(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best of ``repeat`` runs (a busy machine penalises both sides alike) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def images_per_second(fn: Callable[[], object], n: int, repeat: int) -> float:
    """Best of ``repeat`` runs, so a busy machine penalises both sides alike."""
    return n / seconds(fn, repeat)[0]
