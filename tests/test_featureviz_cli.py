"""`diamond-cutter visualize` and `diamond-cutter atlas` end to end (tiny settings)."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

import diamond_cutter as dc
from diamond_cutter.cli import build_parser, main
from diamond_cutter.commands.visualize import announce, parse_channels
from diamond_cutter.errors import DiamondCutterError
from diamond_cutter.progress import clean_label, duration_text


def test_parse_channels():
    assert parse_channels("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_channels(None) is None
    with pytest.raises(DiamondCutterError, match="0-15"):
        parse_channels("a-b")


def test_visualize_writes_one_png_per_channel(tmp_path, capsys):
    out = tmp_path / "vis"
    code = main(["visualize", "efficientnet_lite0", "--layer", "blocks.1", "--channels", "0-2", "--steps", "3",
                 "--size", "32", "--out", str(out)])
    assert code == 0
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == ["blocks_1_0000.png", "blocks_1_0001.png", "blocks_1_0002.png"]
    assert Image.open(files[0]).size == (32, 32)
    assert "blocks.1 channel 2: mean activation" in capsys.readouterr().out


def test_fast_schedule_is_an_atlas_setting_of_its_own(tmp_path, capsys):
    common = ["atlas", "efficientnet_lite0", "--layers", "blocks.0", "--channels", "0", "--steps", "2", "--size", "32",
              "--store", str(tmp_path)]
    assert main(common) == 0 and main(common + ["--schedule", "fast"]) == 0
    settings = sorted((json.loads(m.read_text())["settings"]["lr"], json.loads(m.read_text())["settings"]["betas"])
                      for m in tmp_path.rglob("manifest.json"))
    assert settings == [(0.05, [0.9, 0.999]), (0.07, [0.5, 0.8])]
    with pytest.raises(SystemExit):
        main(common + ["--schedule", "slow"])
    assert "invalid choice: 'slow'" in capsys.readouterr().err


def test_atlas_command_resumes_and_reports_errors(tmp_path, capsys):
    args = ["atlas", "efficientnet_lite0", "--layers", "blocks.0,blocks.1", "--channels", "0-1", "--steps", "3",
            "--size", "32", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "png")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "blocks.0: 2/16 channels" in out and "blocks.1: 2/24 channels" in out
    assert Image.open(tmp_path / "png" / "blocks_1_atlas.png").size == (5 * 32, 5 * 32)
    manifests = list((tmp_path / "store").rglob("manifest.json"))
    assert len(manifests) == 2 and all(json.loads(m.read_text())["done"] == [0, 1] for m in manifests)
    assert main(args[:3] + ["blocks.1", "--channels", "0-3"] + args[6:]) == 0
    assert "blocks.1: 4/24 channels" in capsys.readouterr().out
    assert main(["atlas", "efficientnet_lite0", "--layers", "blocks.77", "--store", str(tmp_path)]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_notebook_html_escapes_and_embeds_pictures(embedded, tmp_path):
    import diamond_cutter as dc

    vis = dc.visualize(embedded, "blocks.0", [1, 2], steps=2, size=32, progress=False)
    html = vis._repr_html_()
    assert html.count("data:image/png;base64,") == 2 and "blocks.0 channel 2" in html
    atlas = dc.atlas(embedded, "blocks.0", [1], steps=2, size=32, store=tmp_path, progress=False)
    assert "1/16 channels" in atlas._repr_html_()


def test_visualize_says_what_it_will_do_and_how_long_before_it_starts(tmp_path, capsys):
    code = main(["visualize", "efficientnet_lite0", "--layer", "blocks.0", "--steps", "2", "--size", "32",
                 "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    plan = r"16 channels of blocks.0 × 2 steps at 32×32 px on cpu: (under 1 s|about \d+ s)"
    assert re.fullmatch(plan, out[0]), out[0]
    assert out[1] == "no --channels: rendering the whole layer (16 channels)"  # not a terminal: no question
    assert len(list(tmp_path.glob("*.png"))) == 16


def test_lucid_schedule_estimate_names_the_fast_one(tmp_path, capsys):
    args = build_parser().parse_args(["visualize", "efficientnet_lite0", "--layer", "blocks.0", "--channels", "0",
                                      "--size", "32", "--out", str(tmp_path)])
    announce(dc.load_model("efficientnet_lite0"), "blocks.0", [0], args)  # times 3 steps, renders nothing
    line = capsys.readouterr().out.strip()
    assert "× 512 steps at 32×32 px" in line and "; --schedule fast " in line


def test_progress_labels_are_short_and_clean():
    label = clean_label("direction in blocks.4; direction in blocks.4; direction in blocks.4")
    assert label == "direction in blocks.4"
    assert clean_label("channel 3 of blocks.4; channel 4 of blocks.4") == "channel 3 of blocks.4 (+1 more)"
    assert len(clean_label("x" * 100)) == 40
    assert (duration_text(0), duration_text(30), duration_text(24 * 60), duration_text(2.5 * 3600)) == (
        "under 1 s",
        "about 30 s",
        "about 24 min",
        "about 2.5 h",
    )
