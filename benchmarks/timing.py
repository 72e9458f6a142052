"""What the benchmarks share: the best-of-``repeat`` throughput of a call."""

from __future__ import annotations

import time
from collections.abc import Callable


def images_per_second(fn: Callable[[], object], n: int, repeat: int) -> float:
    """Best of ``repeat`` runs, so a busy machine penalises both sides alike."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best
