"""Small settings: with ``DIAMOND_CUTTER_SMALL=1`` every optimization, path integral, noise average
and training loop runs at a token size, so documentation can be executed end to end in seconds (the
README test does). The numbers are then meaningless; nothing else changes.
"""

from __future__ import annotations

import os

#: The environment variable that turns small settings on (value ``1``).
SMALL_ENV = "DIAMOND_CUTTER_SMALL"


def small(value: int, token: int) -> int:
    """``value``, or at most ``token`` under small settings."""
    return min(int(value), token) if os.environ.get(SMALL_ENV) == "1" else int(value)
