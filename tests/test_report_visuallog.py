"""VisualLog pages and the training monitor in a plain loop (Lightning: test_callbacks_lightning.py)."""

from __future__ import annotations

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
    (_, inputs), (cam_heading, cams), (act_heading, acts) = monitor.log.sections()
    assert [s.name for s in inputs] == ["validation images"]
    assert (cam_heading, act_heading) == ("Grad-CAM at relu2", "Activations at relu2")
    assert [s.step for s in cams] == [s.step for s in acts] == [2, 4]
    assert not np.array_equal(
        np.asarray(cams[0].images[0]), np.asarray(cams[1].images[0])
    )  # the network learned in between
    assert len(acts[0].images) == 2 * 2


def test_grouped_stages_share_a_section(tmp_path):
    log = dc.VisualLog()
    for step in (1, 2):
        log.add(f"epoch {step}", torch.rand(1, 3, 8, 8), step=step, group="Grad-CAM <i>")
        log.add("loss curve", torch.rand(3, 8, 8), step=step)
    assert [(heading, [s.step for s in stages]) for heading, stages in log.sections()] == [
        ("Grad-CAM <i>", [1, 2]), ("loss curve", [1]), ("loss curve", [2])]
    html = log.save(tmp_path / "log.html").read_text()
    assert html.count("Grad-CAM &lt;i&gt;") == 1 and html.count("<h3>epoch") == 2


def test_bad_monitor_settings(inplace_net):
    model = dc.Model(inplace_net, "inplace", (3, 16, 16))
    with pytest.raises(dc.DiamondCutterError, match="every"):
        visuallog.TrainingMonitor(model, torch.rand(1, 3, 16, 16), "relu2", every=0)
    with pytest.raises(dc.UnknownNameError):
        visuallog.TrainingMonitor(model, torch.rand(1, 3, 16, 16), "relu9")
