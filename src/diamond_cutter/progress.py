"""Progress bars: one helper so every long loop reports progress the same way (tqdm, on stderr)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def bar(iterable: Iterable[T], desc: str, *, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar when ``enabled`` (and leave no bar behind when it is not)."""
    if not enabled:
        return iter(iterable)
    return iter(tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True))
