"""The report's saliency gallery carries each map's deletion/insertion scores, curves and randomization verdict."""

from __future__ import annotations

import re

import torch

import diamond_cutter as dc
from diamond_cutter.report.icons import ICON_RENDER, IconSettings
from diamond_cutter.report.scores import GALLERY_METRICS


def test_gallery_scores_match_the_evaluation_of_the_shown_maps(tiny_report):
    result, path = tiny_report
    table = result.scores.table
    assert table.methods == ["saliency", "random"] and table.metrics == list(GALLERY_METRICS)
    cell = result.scores.cell("saliency", 1)
    assert cell["deletion"] == float(table.results["saliency"]["deletion"].values[1])
    assert cell["plot"].size == (160, 80) and cell["passes"] in (True, False)
    html = path.read_text()
    assert html.count('class="scores"') == 2 and html.count('class="curve"') == 2
    assert re.search(r"deletion \d\.\d{3}</span> <span class=\"note\">\(random \d\.\d{3}\)", html)
    assert "randomization: passes" in html or "randomization: FAILS" in html
    assert table.verdicts["saliency"] in html.replace("&#39;", "'")


def test_scores_can_be_turned_off(inplace_net):
    model = dc.Model(inplace_net.eval(), "inplace", (3, 32, 32))
    report = dc.report(model, torch.rand(2, 3, 32, 32), "relu2", 0, groups=0, saliency=("gradcam",), scores=None,
                       icons=IconSettings("patches", ICON_RENDER.replace(size=16)), progress=False)
    assert report.scores is None and 'class="scores"' not in report.html()
