"""Progress bars and cost estimates: one helper so every long loop reports progress the same way
(tqdm, on stderr), with short labels, and long jobs can say up front how long they will take."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

#: Progress labels are cut to this many characters.
LABEL_WIDTH = 40


def clean_label(text: str, width: int = LABEL_WIDTH) -> str:
    """A short progress label: repeated parts (``"channel 3 of x; channel 4 of x"``) collapse to the
    first and a count, and the rest is cut with an ellipsis instead of mid-word garbage."""
    parts = list(dict.fromkeys(p.strip() for p in text.split(";") if p.strip()))
    label = parts[0] + (f" (+{len(parts) - 1} more)" if len(parts) > 1 else "") if parts else text.strip()
    return label if len(label) <= width else label[: width - 1] + "…"


def bar(iterable: Iterable[T], desc: str, *, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar when ``enabled`` (and leave no bar behind when it is not)."""
    if not enabled:
        return iter(iterable)
    return iter(tqdm(iterable, desc=clean_label(desc), total=total, leave=False, dynamic_ncols=True))


@contextmanager
def overall(total: int, desc: str, *, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """One bar with an ETA for a job made of many inner loops; yields ``tick(*_)``, which advances it by
    one (its arguments are ignored, so it can serve as a per-step callback)."""
    if not enabled:
        yield lambda *_: None
        return
    with tqdm(total=total, desc=clean_label(desc), dynamic_ncols=True) as progress:
        yield lambda *_: progress.update(1)


def duration_text(seconds: float) -> str:
    """``under 1 s``, ``about 40 s``, ``about 24 min`` or ``about 2.1 h``."""
    if seconds < 0.5:
        return "under 1 s"
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def seconds_per_call(fn: Callable[[], Any], repeats: int = 1) -> float:
    """Seconds one call of ``fn`` takes: the mean of ``repeats`` timed calls after an untimed one, which
    builds kernels and fills caches and would overstate every later call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / max(1, repeats)


def chain(*callbacks: Callable[..., Any] | None) -> Callable[..., None]:
    """One callback calling each given one in turn (None ones skipped)."""
    present = [c for c in callbacks if c is not None]

    def call(*args: Any) -> None:
        for callback in present:
            callback(*args)

    return call
