"""The small report the report tests share (built once per session: it costs a few seconds)."""

from __future__ import annotations

import shutil

import pytest

import diamond_cutter as dc
from diamond_cutter.images import sample_path
from diamond_cutter.report.icons import ICON_RENDER, IconSettings

EVIL = "<img src=x onerror=alert(1)>.png"
LAYER = "blocks.5"


@pytest.fixture(scope="session")
def tiny_report(embedded, tmp_path_factory):
    """A report on two images (one with a hostile file name) with tiny settings, and its HTML file."""
    folder = tmp_path_factory.mktemp("evil")
    shutil.copy(sample_path("chelsea"), folder / EVIL)
    images = dc.load_images([str(folder / EVIL), "coffee"], embedded)
    result = dc.report(
        embedded,
        images,
        LAYER,
        "auto",
        top_k=4,
        cell_k=3,
        groups=3,
        icons=IconSettings("patches", ICON_RENDER.replace(size=32)),
        saliency=("saliency",),
        tiles=4,
        progress=False,
    )
    path = result.save(tmp_path_factory.mktemp("report") / "report.html")
    return result, path
