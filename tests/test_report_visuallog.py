"""VisualLog pages and the training monitor (plain loop and the Lightning callback's wiring)."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import diamond_cutter as dc
from diamond_cutter import render, visuallog
from helpers import snapshot


def test_stages_of_a_pipeline(tmp_path):
    log = dc.VisualLog(title="pipeline <b>")
    log.add("loaded", Image.new("RGB", (40, 30), "red"), ["<script>x</script>"])
    log.add("resized", torch.rand(3, 3, 16, 16), step=1)
    log.add("gray", torch.rand(1, 8, 8))
    html = log.save(tmp_path / "log.html").read_text()
    assert [s.name for s in log.stages] == ["loaded", "resized", "gray"]
    assert [len(s.images) for s in log.stages] == [1, 3, 1]
    assert html.count("data:image/png;base64,") == 5
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "pipeline &lt;b&gt;" in html


def test_tensor_images_round_trip():
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0] = 1.0
    (picture,) = render.pictures(x)
    assert np.asarray(picture)[0, 0].tolist() == [255, 0, 0]
    with pytest.raises(dc.DiamondCutterError, match="N×C×H×W"):
        render.pictures(torch.rand(2, 5, 4, 4))
    with pytest.raises(dc.DiamondCutterError, match="cannot show"):
        render.pictures("picture.png")


def train_epoch(net: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net.train()
    for _ in range(3):
        x, y = torch.rand(8, 3, 16, 16, generator=g), torch.randint(0, 5, (8,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()


def test_monitor_logs_every_n_epochs_in_a_plain_loop(inplace_net):
    model = dc.Model(inplace_net, "inplace", (3, 16, 16))
    monitor = visuallog.TrainingMonitor(model, torch.rand(2, 3, 16, 16), "relu2", every=2, target=1, tiles=2)
    logged = []
    for epoch in range(4):
        train_epoch(inplace_net, epoch)
        before = snapshot(inplace_net)
        logged.append(monitor.on_epoch_end(epoch))
        assert snapshot(inplace_net)["modes"] == before["modes"]  # still training
    assert logged == [False, True, False, True]
    names = [s.name for s in monitor.log.stages]
    assert names == ["validation images", "Grad-CAM, epoch 2", "activations of relu2, epoch 2", "Grad-CAM, epoch 4", "activations of relu2, epoch 4"]
    cams = [s.images[0] for s in monitor.log.stages if s.name.startswith("Grad-CAM")]
    assert not np.array_equal(np.asarray(cams[0]), np.asarray(cams[1]))  # the network learned in between
    assert len(monitor.log.stages[2].images) == 2 * 2


def test_lightning_callback(inplace_net, monkeypatch):
    model = dc.Model(inplace_net.eval(), "inplace", (3, 16, 16))
    monitor = visuallog.TrainingMonitor(model, torch.rand(1, 3, 16, 16), "relu2", every=1)
    if importlib.util.find_spec("lightning") is None and importlib.util.find_spec("pytorch_lightning") is None:
        with pytest.raises(dc.DiamondCutterError, match="not installed"):
            monitor.lightning_callback()
        monkeypatch.setattr(visuallog, "_lightning_callback_base", lambda: object)
    callback = monitor.lightning_callback()
    callback.on_validation_epoch_end(SimpleNamespace(current_epoch=0, sanity_checking=True), None)
    assert len(monitor.log.stages) == 1  # Lightning's sanity check is not an epoch
    callback.on_validation_epoch_end(SimpleNamespace(current_epoch=0, sanity_checking=False), None)
    assert [s.step for s in monitor.log.stages] == [None, 1, 1]


def test_bad_monitor_settings(inplace_net):
    model = dc.Model(inplace_net, "inplace", (3, 16, 16))
    with pytest.raises(dc.DiamondCutterError, match="every"):
        visuallog.TrainingMonitor(model, torch.rand(1, 3, 16, 16), "relu2", every=0)
    with pytest.raises(dc.UnknownNameError):
        visuallog.TrainingMonitor(model, torch.rand(1, 3, 16, 16), "relu9")
