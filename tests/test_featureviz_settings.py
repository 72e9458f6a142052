"""Render settings are one object: validated where made, passed whole, their precision part of the cache key,
and every default in one place."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest
import torch

import diamond_cutter as dc
from diamond_cutter.featureviz import FAST_SCHEDULE, LUCID_SCHEDULE, Settings, render_objective
from diamond_cutter.featureviz import objectives as obj
from diamond_cutter.report.icons import ICON_RENDER, IconSettings

TINY = dict(steps=2, size=32, progress=False)


def test_schedules_are_settings_and_changes_are_checked():
    assert isinstance(LUCID_SCHEDULE, Settings) and isinstance(FAST_SCHEDULE, Settings)
    assert (LUCID_SCHEDULE.steps, LUCID_SCHEDULE.lr, LUCID_SCHEDULE.betas) == (512, 0.05, (0.9, 0.999))
    assert (FAST_SCHEDULE.steps, FAST_SCHEDULE.lr, FAST_SCHEDULE.betas) == (144, 0.07, (0.5, 0.8))
    quick = FAST_SCHEDULE.replace(steps=64, size=48)
    assert quick.size == (48, 48) and quick.lr == FAST_SCHEDULE.lr and FAST_SCHEDULE.steps == 144
    with pytest.raises(dc.UnknownNameError, match="did you mean 'steps'"):
        FAST_SCHEDULE.replace(step=64)
    with pytest.raises(dc.DiamondCutterError, match="betas"):
        Settings(betas=(0.9, 1.0))
    with pytest.raises(dc.DiamondCutterError, match="steps"):
        Settings(steps=0)
    with pytest.raises(dc.UnknownNameError, match="did you mean 'maco'"):
        Settings(param="macco")
    with pytest.raises(dc.UnknownNameError, match="did you mean 'bfloat16'"):
        Settings(precision="bf16")
    with pytest.raises(dc.DiamondCutterError, match="too small"):
        Settings(size=4)
    for blur in (0.5, -0.1):  # 0.5 once crashed inside reflect padding
        with pytest.raises(dc.DiamondCutterError, match="blur is a fraction of the image side"):
            Settings(blur=blur)


def test_the_largest_blur_renders(embedded):
    result = dc.featureviz.render_objective(embedded, dc.featureviz.objectives.channel("blocks.0", [0]),
                                            FAST_SCHEDULE, steps=2, size=32, blur=0.24, progress=False)
    assert result.tensor.shape == (1, 3, 32, 32) and torch.isfinite(result.tensor).all()


def test_precision_auto_is_named_for_the_device_it_runs_on():
    gpu = SimpleNamespace(device=torch.device("cuda"), input_size=(3, 224, 224))
    cpu = SimpleNamespace(device=torch.device("cpu"), input_size=(3, 224, 224))
    assert LUCID_SCHEDULE.for_model(gpu).precision == "bfloat16"
    assert LUCID_SCHEDULE.for_model(cpu).precision == "float32"
    assert LUCID_SCHEDULE.replace(precision="float32").for_model(gpu).precision == "float32"
    assert LUCID_SCHEDULE.for_model(cpu).size == (224, 224)


def test_precision_enters_the_atlas_key(embedded, tmp_path):
    auto = dc.atlas(embedded, "blocks.0", store=tmp_path, fill=False, **TINY)
    float32 = dc.atlas(embedded, "blocks.0", store=tmp_path, fill=False, precision="float32", **TINY)
    bf16 = dc.atlas(embedded, "blocks.0", [0], store=tmp_path, precision="bfloat16", **TINY)
    assert auto.key == float32.key != bf16.key  # on a CPU, "auto" is float32
    assert auto.manifest["settings"]["precision"] == "float32"
    assert bf16.manifest["settings"]["precision"] == "bfloat16" and bf16.done == [0]


def test_the_atlas_passes_its_settings_whole(embedded, tmp_path, monkeypatch):
    from diamond_cutter.atlas import layer_atlas

    seen = []
    real = layer_atlas.visualize
    monkeypatch.setattr(layer_atlas, "visualize", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    settings = FAST_SCHEDULE.replace(steps=2, size=32, blur=0.02, redirect_steps=1, seed=3)
    result = dc.atlas(embedded, "blocks.0", [0, 1], settings, store=tmp_path, progress=False)
    assert seen and all(s == settings.for_model(embedded) for s in seen)
    assert result.manifest["settings"] == settings.for_model(embedded).describe()


def test_n_that_disagrees_with_the_objective_is_an_error(embedded):
    with pytest.raises(dc.DiamondCutterError, match="the objective 2, n 3"):
        render_objective(embedded, obj.channel("blocks.0", [0, 1]), n=3, **TINY)
    with pytest.raises(dc.DiamondCutterError, match="n 2, keys 3"):
        render_objective(embedded, obj.channel("blocks.0", 0), n=2, keys=[0, 1, 2], **TINY)
    result = render_objective(embedded, obj.channel("blocks.0", 0), n=2, **TINY)
    assert len(result.tensor) == 2


def test_icon_defaults_live_in_one_place():
    from diamond_cutter.commands import demo, report

    def parsed(module, argv):
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        module.register(sub)
        return parser.parse_args(argv)

    from_report = report.icon_render(parsed(report, ["report", "m", "img.png", "--layer", "x"]))
    from_demo = report.icon_render(parsed(demo, ["demo"]))
    assert from_report == from_demo == IconSettings().render == ICON_RENDER
    assert (ICON_RENDER.lr, ICON_RENDER.betas) == (FAST_SCHEDULE.lr, FAST_SCHEDULE.betas)
    assert report.icon_render(parsed(report, ["report", "m", "i", "--layer", "x", "--icon-steps", "7"])).steps == 7
