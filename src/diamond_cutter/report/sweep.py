"""The sweep's section of a report: the recommendation with its intervals, the plot and the table.

The same fragment opens the demo's report (above the views of the transferred
model) and makes up ``diamond-cutter sweep --report FILE`` on its own.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image

from ..html import HtmlPage, from_template, image_uri
from ..transfer.plots import plot_accuracy
from ..transfer.result import TRUST_NOTE, SweepResult


def sweep_section(result: SweepResult) -> str:
    """HTML of the sweep section (every string escaped by the template)."""
    plot = image_uri(Image.open(io.BytesIO(plot_accuracy(result))))
    rec = result.recommendation
    kendall = {e: t for e, t in result.kendall.get(result.head, {}).items() if not math.isnan(t[0])}
    return from_template("sweep_fragment.html.j2", sweep=result, plot=plot, table=result.table(),
                         recommended=(rec["model"], rec["cut"]), kendall=kendall, note=TRUST_NOTE)


@dataclass
class SweepPage(HtmlPage):
    """The sweep section as a page of its own."""

    result: SweepResult

    def html(self) -> str:
        return from_template("sweep.html.j2", section=sweep_section(self.result))
