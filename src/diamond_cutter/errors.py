"""Errors Diamond Cutter raises on bad input.

Every error a user can trigger with a typo or a bad file derives from
:class:`DiamondCutterError`, so a script can catch them in one place, and names
the thing that was wrong (a file, a layer, a class) with the closest valid choices.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DiamondCutterError(Exception):
    """Base class of every error raised for bad user input.

    ``cli`` is the same message phrased for the command line (``--weights none`` where the
    message says ``weights=None``); the ``diamond-cutter`` command prints :meth:`cli_text`.
    """

    def __init__(self, *args: object, cli: str | None = None):
        super().__init__(*args)
        self.cli = cli

    def cli_text(self) -> str:
        return self.cli or str(self)


class UnknownNameError(DiamondCutterError, ValueError):
    """A model, layer, class or cut name that does not exist."""

    def __init__(self, kind: str, name: object, choices: Iterable[str]):
        self.kind, self.name = kind, name
        self.suggestions = suggest(str(name), choices)
        hint = f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown {kind} {name!r}{hint}")


class ImageError(DiamondCutterError, ValueError):
    """An image source that cannot be read or decoded."""


class CheckpointError(DiamondCutterError, ValueError):
    """A checkpoint or saved model that is not what it claims to be."""


class StaleCacheWarning(UserWarning):
    """A cached file that no longer matches its seal or does not parse: it is recomputed."""


class WeightsUnavailableError(DiamondCutterError, RuntimeError):
    """Pretrained weights that cannot be fetched (typically: no network)."""


def suggest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The closest valid names to ``name``, best first (prefix matches count too)."""
    choices = list(dict.fromkeys(choices))
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    lowered = name.lower()
    for choice in choices:
        if len(close) >= n:
            break
        if choice not in close and lowered and (choice.lower().startswith(lowered) or lowered in choice.lower()):
            close.append(choice)
    return close
