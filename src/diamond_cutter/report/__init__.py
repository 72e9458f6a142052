"""One self-contained HTML report (images as data URIs, CSS and JS inline, no network at view time)."""

from .build import Report, report

__all__ = ["Report", "report"]
