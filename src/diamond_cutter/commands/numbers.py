"""Argument types for numbers: every numeric option is checked when it is parsed.

A count of zero or a negative batch size would otherwise reach the library and
end in a traceback (or, for ``-k 0``, print nothing); here it is a one-line
usage error with exit status 2, like any other bad argument.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

#: The largest seed every random generator involved accepts (numpy's).
MAX_SEED = 2**32 - 1


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]`` (no upper bound when ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_range(low, high)}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def real(
    low: float, high: float | None = None, *, open_low: bool = False, open_high: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite number between ``low`` and ``high`` (bounds excluded where asked)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= low if open_low else value < low
        too_high = high is not None and (value >= high if open_high else value > high)
        if not math.isfinite(value) or too_low or too_high:
            lo = f"{'above' if open_low else 'at least'} {low:g}"
            hi = "" if high is None else f" and {'below' if open_high else 'at most'} {high:g}"
            raise argparse.ArgumentTypeError(f"must be {lo}{hi}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def _range(low: int, high: int | None) -> str:
    return f"at least {low}" if high is None else f"between {low} and {high}"


COUNT = integer(1)
OPTIONAL_COUNT = integer(0)
SIDE = integer(16, 4096)
SEED = integer(0, MAX_SEED)
FRACTION = real(0.0, 1.0)
