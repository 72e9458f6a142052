"""The main job end to end, at token sizes: sweep, keep, save, reload and one report that names its images."""

from __future__ import annotations

import re

from diamond_cutter.cli import main
from diamond_cutter.small import SMALL_ENV


def test_the_demo_runs_offline_and_its_report_names_images_by_the_data_set(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(SMALL_ENV, "1")
    out = tmp_path / "demo.html"
    code = main(["demo", "--out", str(out), "--per-class", "6", "--crop", "64", "--cuts", "2", "--epochs", "2",
                 "--icon-steps", "2", "--icon-size", "32", "--icon-limit", "2", "--cache", str(tmp_path / "cache")])
    printed = capsys.readouterr().out
    assert code == 0 and out.exists() and (tmp_path / "demo-model" / "manifest.json").exists()
    assert "recommend" in printed.lower() and "kept:" in printed and "held-out accuracy" in printed
    html = out.read_text(encoding="utf-8")
    assert re.search(r"(brick|grass|gravel)/\d{3}\.png", html)
    assert "/textures/" not in html  # the data set's temporary folder, gone after the run, is named nowhere
