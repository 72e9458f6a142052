"""Atlas: spritemap layout, on-demand icons, name-independent cache keys, and resuming after SIGKILL."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import diamond_cutter as dc
from diamond_cutter.atlas import layer_atlas as atlas_module
from diamond_cutter.atlas import layer_fingerprint
from diamond_cutter.store import Store

QUICK = dict(steps=6, size=32, progress=False)


class Transferred(nn.Module):
    """A frozen backbone (its first blocks) under a new name, with a new layer on top."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.new = nn.Conv2d(24, 6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.blocks[1](b.blocks[0](b.bn1(b.conv_stem(x))))
        return self.new(x).mean(dim=(2, 3))


def test_spritemap_grid_manifest_and_icons_on_demand(embedded, tmp_path):
    a = dc.atlas(embedded, "blocks.1", [0, 1, 2], store=tmp_path, batch_size=2, **QUICK)
    assert a.grid == 5 and a.spritemap.size == (5 * 32, 5 * 32)  # 24 channels -> 5×5
    assert a.done == [0, 1, 2] and set(a.scores) == {0, 1, 2}
    manifest = json.loads((Path(a.store.path(a.key)) / "manifest.json").read_text())
    assert manifest["layer"] == "blocks.1" and manifest["settings"]["steps"] == 6 and manifest["grid"] == 5
    assert manifest["fingerprint"] == layer_fingerprint(embedded, "blocks.1")
    icon = a.icon(7)  # not rendered yet: rendered now and saved
    assert icon.size == (32, 32)
    again = dc.atlas(embedded, "blocks.1", store=tmp_path, fill=False, **QUICK)
    assert again.done == [0, 1, 2, 7]
    assert np.array_equal(np.asarray(again.icon(7)), np.asarray(icon))
    vis = dc.visualize(embedded, "blocks.1", [7], **QUICK)
    assert np.abs(np.asarray(vis.images[0], dtype=float) - np.asarray(icon, dtype=float)).mean() < 1.0
    cell = np.asarray(a.spritemap)[32:64, 64:96]  # channel 7: row 1, column 2
    assert np.array_equal(cell, np.asarray(icon))
    assert (np.asarray(a.spritemap)[-32:, -32:] == 128).all()  # untouched cells stay grey


def test_transferred_backbone_reuses_the_atlas_and_new_layers_get_their_own(embedded, tmp_path):
    dc.atlas(embedded, "blocks.1", [0, 1], store=tmp_path, **QUICK)
    transferred = dc.Model(
        Transferred(embedded.module), "transferred", embedded.input_size, embedded.mean, embedded.std
    )
    reused = dc.atlas(transferred, "backbone.blocks.1", store=tmp_path, fill=False, **QUICK)
    assert reused.done == [0, 1]
    own = dc.atlas(transferred, "new", store=tmp_path, fill=False, **QUICK)
    assert own.done == [] and own.key != reused.key
    other_settings = dc.atlas(embedded, "blocks.1", store=tmp_path, fill=False, steps=7, size=32, progress=False)
    assert other_settings.done == []


def test_fingerprint_follows_upstream_content_not_names(inplace_net):
    model = dc.Model(inplace_net, "tiny", (3, 16, 16))
    base = layer_fingerprint(model, "relu1")
    changed_down = copy.deepcopy(inplace_net)
    with torch.no_grad():
        changed_down.conv2.weight.add_(1.0)
    assert layer_fingerprint(dc.Model(changed_down, "tiny", (3, 16, 16)), "relu1") == base
    assert layer_fingerprint(dc.Model(changed_down, "tiny", (3, 16, 16)), "relu2") != layer_fingerprint(model, "relu2")
    changed_up = copy.deepcopy(inplace_net)
    with torch.no_grad():
        changed_up.bn1.running_mean.add_(0.1)
    assert layer_fingerprint(dc.Model(changed_up, "tiny", (3, 16, 16)), "relu1") != base
    wrapped = dc.Model(nn.Sequential(inplace_net), "wrapped", (3, 16, 16))
    assert layer_fingerprint(wrapped, "0.relu1") == base
    renormalised = dc.Model(inplace_net, "tiny", (3, 16, 16), mean=(0.5, 0.5, 0.5))
    assert layer_fingerprint(renormalised, "relu1") != base


def test_remote_store_and_errors(embedded):
    a = dc.atlas(embedded, "blocks.0", [0], store="memory://dc-atlas-test", **QUICK)
    assert Store("memory://dc-atlas-test").exists(f"{a.key}/spritemap.png")
    with pytest.raises(dc.UnknownNameError, match="did you mean"):
        dc.atlas(embedded, "blocks.9", store="memory://dc-atlas-test", **QUICK)
    with pytest.raises(dc.DiamondCutterError, match="out of range"):
        a.icon(500)


CHILD = textwrap.dedent(
    """
    import sys, time
    import diamond_cutter as dc
    from diamond_cutter.atlas.layer_atlas import Atlas

    original = Atlas._add

    def slow_add(self, *args):
        original(self, *args)
        time.sleep(0.5)  # leave the parent time to kill us between chunks

    Atlas._add = slow_add
    model = dc.load_model("efficientnet_lite0")
    dc.atlas(model, "blocks.1", range(16), store=sys.argv[1], batch_size=2, steps=12, size=32, progress=False)
    """
)


def test_killed_run_resumes_to_the_same_atlas(embedded, tmp_path, monkeypatch):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    settings = dict(steps=12, size=32, progress=False)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(killed)])
    probe = dc.atlas(embedded, "blocks.1", store=killed, fill=False, **settings)
    manifest = Path(probe.store.path(probe.key)) / "manifest.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        if manifest.exists() and len(json.loads(manifest.read_text())["done"]) >= 4:
            break
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL

    partial = dc.atlas(embedded, "blocks.1", store=killed, fill=False, **settings)
    assert 4 <= len(partial.done) < 16, "the run was not killed mid-layer"
    rendered: list[int] = []
    real = atlas_module.visualize

    def counting(*args, **kwargs):
        vis = real(*args, **kwargs)
        rendered.extend(vis.channels)
        return vis

    monkeypatch.setattr(atlas_module, "visualize", counting)
    resumed = dc.atlas(embedded, "blocks.1", range(16), store=killed, batch_size=2, **settings)
    assert sorted(rendered) == sorted(set(range(16)) - set(partial.done))
    assert resumed.done == list(range(16))

    uninterrupted = dc.atlas(embedded, "blocks.1", range(16), store=clean, batch_size=2, **settings)
    a = np.asarray(resumed.spritemap, dtype=float)
    b = np.asarray(uninterrupted.spritemap, dtype=float)
    assert np.abs(a - b).max() <= 2  # same pictures (up to rounding of a last bit)
    assert resumed.scores == pytest.approx(uninterrupted.scores, rel=1e-3)
