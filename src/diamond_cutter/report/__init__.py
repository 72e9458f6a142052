"""One self-contained HTML report (images as data URIs, CSS and JS inline, no network at view time).

Presentation: the report consumes results of the analysis packages and draws
them through the ground floor (:mod:`~diamond_cutter.render` for pictures,
:mod:`~diamond_cutter.html` for the page); nothing below imports it.
"""

from .build import Report, report
from .sweep import SweepPage, sweep_section

__all__ = ["Report", "SweepPage", "report", "sweep_section"]
