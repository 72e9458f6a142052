"""The report in a real browser (Debian's chromium, driven by Playwright): hovering a
semantic-map cell updates the panel, nothing leaves the page, hostile names stay text."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def page(tiny_report):
    from playwright.sync_api import sync_playwright

    _, path = tiny_report
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.requests, page.dialogs, page.errors = [], [], []
        page.on("request", lambda r: page.requests.append(r.url))
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(path.as_uri())
        yield page
        browser.close()


def panel_channels(page, image: int, kind: str) -> list[int]:
    items = page.locator(f"#panel-{image} ol.{kind} li")
    return [int(items.nth(i).get_attribute("data-channel")) for i in range(items.count())]


def differing_cell(cells: list[dict], current: list[int]) -> int:
    return next(i for i, cell in enumerate(cells) if [c for c, _ in cell["act"]] != current)


def test_hover_shows_the_cells_channels(page, tiny_report):
    result, _ = tiny_report
    cells = result.sections[0].cells
    before = panel_channels(page, 0, "act")
    assert before == [c for c, _ in cells[result.sections[0].heatmap_cell]["act"]]
    target = differing_cell(cells, before)
    page.locator('button.cell[data-image="0"]').nth(target).hover()
    after = panel_channels(page, 0, "act")
    assert after != before
    assert after == [c for c, _ in cells[target]["act"]]
    assert panel_channels(page, 0, "attr") == [c for c, _ in cells[target]["attr"]]
    row, col = divmod(target, result.sections[0].semantic.grid[1])
    assert page.locator("#panel-0 .cell-name").text_content() == f"cell {row}, {col}"
    assert page.locator("#panel-0 ol.act li img").count() == len(after)  # every listed channel has its icon
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#semantic").screenshot(path=str(ARTIFACTS / "report-semantic-map.png"))
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)


def test_tap_works_on_the_second_image(page, tiny_report):
    result, _ = tiny_report
    cells = result.sections[1].cells
    target = differing_cell(cells, panel_channels(page, 1, "act"))
    page.locator('button.cell[data-image="1"]').nth(target).click()
    assert panel_channels(page, 1, "act") == [c for c, _ in cells[target]["act"]]


def test_no_request_leaves_the_page(page):
    page.wait_for_load_state("load")
    outside = [url for url in page.requests if not url.startswith(("file:", "data:"))]
    assert outside == []
    assert page.errors == []


def test_hostile_file_name_stays_text(page):
    assert page.dialogs == []
    assert page.locator('img[src="x"]').count() == 0
    assert page.get_by_text("<img src=x onerror=alert(1)>.png").count() >= 1


def test_gallery_shows_each_maps_scores_and_curves(page):
    gallery = page.locator("#saliency")
    assert gallery.locator(".scores").count() == 2 and gallery.locator(".verdicts li").count() == 2
    assert gallery.locator("img.curve").first.evaluate("i => i.complete && i.naturalWidth") == 160
    ARTIFACTS.mkdir(exist_ok=True)
    gallery.screenshot(path=str(ARTIFACTS / "report-gallery-scores.png"))
