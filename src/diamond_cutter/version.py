"""The installed version of Diamond Cutter, read from the package's metadata.

A ground-floor module, so that what records the version (the report, saved
models) need not import the package root, which imports everything.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diamond-cutter")
except PackageNotFoundError:  # a source tree on sys.path without an installed distribution
    __version__ = "0+unknown"
