"""The report links its semantic map's channels to a lens site and shows their conditional heatmaps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import diamond_cutter as dc
from diamond_cutter.report.icons import ICON_RENDER, IconSettings
from diamond_cutter.report.lens_links import lens_pages


def test_report_links_channels_to_the_lens_and_carries_their_conditional_heatmaps(
    embedded, samples, tmp_path, monkeypatch
):
    site = tmp_path / "site"
    (site / "data").mkdir(parents=True)
    (site / "data" / "lens.json").write_text(json.dumps({"layers": [{"name": "blocks.5"}]}))
    monkeypatch.chdir(tmp_path)
    options = {
        "top_k": 2,
        "cell_k": 2,
        "groups": 0,
        "icons": IconSettings("patches", ICON_RENDER.replace(size=32)),
        "saliency": (),
        "tiles": 2,
        "progress": False,
    }
    with pytest.raises(dc.DiamondCutterError, match="not a lens site"):
        dc.report(embedded, samples, "blocks.5", "auto", lens="elsewhere", **options)
    assert lens_pages("site", "blocks.4") is None  # a site without the layer gives no links
    result = dc.report(embedded, samples[:1], "blocks.5", "auto", lens="site", **options)
    assert result.lens_pages == "site/layer/blocks.5/"
    for section, heatmaps in zip(result.sections, result.conditional):
        listed = {c for cell in section.cells for kind in cell.values() for c, _ in kind}
        assert listed == set(heatmaps) and all(uri.startswith("data:image/png") for uri in heatmaps.values())
    data = json.loads(
        re.search(r'<script type="application/json" id="dc-data">(.*?)</script>', result.html(), re.DOTALL).group(1)
    )
    assert data["lens"] == "site/layer/blocks.5/" and len(data["conditional"]) == 1
    if CHROMIUM.exists():
        _hover_shows_heatmaps_and_links(result.save(tmp_path / "report.html"))


CHROMIUM = Path("/usr/bin/chromium")


def _hover_shows_heatmaps_and_links(path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(path.as_uri())
        page.locator('button.cell[data-image="0"]').nth(3).hover()
        items = page.locator("#panel-0 ol.act li")
        assert items.count() >= 1
        assert page.locator("#panel-0 ol.act li img.conditional").count() == items.count()
        href = page.locator("#panel-0 ol.act li a.lens").first.get_attribute("href")
        channel = items.first.get_attribute("data-channel")
        assert href == f"site/layer/blocks.5/{channel}.html"
        browser.close()
