"""Training callbacks in a plain loop and in train_head: what they write, and that training is
exactly the same with and without them (parameters, modes, hooks, the global random stream)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist

import diamond_cutter as dc
from diamond_cutter import callbacks as cb
from diamond_cutter.transfer.data import load_labelled, make_colour_dataset
from diamond_cutter.visuallog import StoreSink, TensorBoardSink, VisualLogSink

from callback_fixtures import TAGS, callback_set, stored_panels, tensorboard_images
from helpers import InplaceNet, assert_unchanged, snapshot

EPOCHS = 2


def fit(callbacks=(), model_for=None) -> InplaceNet:
    """Two epochs of SGD on random data; the batches and their order come from the global generator."""
    torch.manual_seed(0)
    net = InplaceNet()
    model = model_for(net) if model_for else None
    data, labels = torch.rand(24, 3, 16, 16), torch.randint(0, 5, (24,))
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    for epoch in range(EPOCHS):
        net.train()
        for idx in torch.randperm(len(data)).split(8):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(data[idx]), labels[idx]).backward()
            opt.step()
        before = snapshot(net)
        for callback in callbacks:
            callback.on_epoch_end(epoch, model)
        assert_unchanged(before, net)  # modes (still training), flags, hooks and parameters
    return net


def tiny(net) -> dc.Model:
    return dc.Model(net, "tiny", (3, 16, 16), mean=(0.5,) * 3, std=(0.5,) * 3)


def test_every_callback_in_a_plain_loop(tmp_path):
    log = VisualLogSink(path=tmp_path / "log.html")
    board = TensorBoardSink(tmp_path / "tb")
    callbacks = callback_set(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)),
                             [log, board, StoreSink(tmp_path / "store")])
    watched = fit(callbacks, tiny)
    board.close()
    assert stored_panels(tmp_path / "store") == {tag: [1, 2] for tag in TAGS}
    assert tensorboard_images(tmp_path / "tb") == {tag: [1, 2] for tag in TAGS}
    sections = log.log.sections()
    assert [len(stages) for _, stages in sections] == [EPOCHS] * len(TAGS)
    assert sections[0][0] == "Grad-CAM at relu2" and [s.name for s in sections[0][1]] == ["epoch 1", "epoch 2"]
    cams = [np.asarray(s.images[0]) for s in sections[0][1]]
    assert not np.array_equal(cams[0], cams[1])  # the network learned in between
    assert (tmp_path / "log.html").read_text().count("<h3>epoch 2</h3>") == len(TAGS)
    plain = fit()
    for key, value in plain.state_dict().items():
        assert torch.equal(value, watched.state_dict()[key]), key  # the callbacks changed nothing


def test_callbacks_explain_inside_inference_mode_and_no_grad(inplace_net, tmp_path):
    """What Lightning's evaluation hooks do: inference mode, gradients off, the network in eval mode."""
    model = tiny(inplace_net)
    sink = StoreSink(tmp_path)
    callbacks = [cb.GradCAMCallback(torch.rand(1, 3, 16, 16), layer="relu2", sinks=[sink], model=model),
                 cb.FeatureVisualizationCallback("conv2", channels=[3], steps=2, size=16, sinks=[sink], model=model)]
    before = snapshot(inplace_net)
    with torch.inference_mode():
        assert [c.on_epoch_end(0) for c in callbacks] == [True, True]
    with torch.no_grad():
        assert [c.on_epoch_end(1) for c in callbacks] == [True, True]
    assert_unchanged(before, inplace_net)
    assert stored_panels(tmp_path) == {"gradcam/relu2": [1, 2], "featureviz/conv2": [1, 2]}


class Draws(cb.ExplanationCallback):
    """A callback that draws from the global random generator while explaining."""

    name, label = "draws", "Random draws"

    def explain(self, model):
        return [dc.render.to_pil(torch.rand(3, 4, 4))], ["noise"]


def test_the_global_random_stream_is_untouched(inplace_net, tmp_path):
    callback = Draws(None, sinks=[StoreSink(tmp_path)], model=tiny(inplace_net))
    state = torch.random.get_rng_state()
    assert callback.on_epoch_end(0)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_every_n_epochs_and_only_rank_zero(inplace_net, tmp_path, monkeypatch):
    sink = StoreSink(tmp_path)
    callback = cb.VanillaGradientsCallback(torch.rand(1, 3, 16, 16), sinks=[sink], model=tiny(inplace_net), every=2)
    assert [callback.on_epoch_end(e) for e in range(4)] == [False, True, False, True]
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    assert not callback.on_epoch_end(5)
    assert stored_panels(tmp_path) == {"saliency": [2, 4]}


def test_train_head_takes_callbacks(tmp_path):
    data = load_labelled(make_colour_dataset(tmp_path / "colours", per_class=6, size=16))
    model = dc.load_model("resnet18", weights=None, input_size=(3, 32, 32))
    images = data.pixels(data.val[:2], model)
    settings = dict(head="conv", epochs=EPOCHS, batch_size=8, progress=False, width=8)
    log = VisualLogSink()
    callbacks = [cb.GradCAMCallback(images, layer="head.conv", sinks=[log]),
                 cb.ChannelAttributionCallback(images, "head.conv", sinks=[log]),
                 cb.FeatureVisualizationCallback("head.conv", channels=[0, 1], steps=4, size=32, sinks=[log], every=2)]
    before = snapshot(model.module)
    trained = dc.train_head(model, data, "layer1", callbacks=callbacks, **settings)
    assert_unchanged(before, model.module)
    assert [(heading, len(stages)) for heading, stages in log.log.sections()] == [
        ("Grad-CAM at head.conv", 2),
        ("Channel attribution at head.conv", 2),
        ("Feature visualization at head.conv", 1),
    ]
    plain = dc.train_head(model, data, "layer1", **settings)
    for key, value in plain.net.head.state_dict().items():
        assert torch.equal(value, trained.net.head.state_dict()[key]), key


def test_bad_callback_settings(inplace_net):
    model = tiny(inplace_net)
    sinks = [VisualLogSink()]
    with pytest.raises(dc.DiamondCutterError, match="every"):
        cb.GradCAMCallback(None, layer="relu2", sinks=sinks, model=model, every=0)
    with pytest.raises(dc.DiamondCutterError, match="sink"):
        cb.GradCAMCallback(None, layer="relu2", sinks=[], model=model)
    with pytest.raises(dc.UnknownNameError, match="relu2"):
        cb.ActivationsCallback(None, "relu3", sinks=sinks, model=model)
    with pytest.raises(dc.DiamondCutterError, match="explains images"):
        cb.GradCAMCallback(None, sinks=sinks, model=model).on_epoch_end(0)
    with pytest.raises(dc.DiamondCutterError, match="no model"):
        cb.GradCAMCallback(torch.rand(1, 3, 16, 16), sinks=sinks).on_epoch_end(0)
    with pytest.raises(dc.DiamondCutterError, match="log_dir"):
        TensorBoardSink().write(cb.Panel("t", "t", 1, [dc.render.to_pil(torch.rand(3, 4, 4))], ["x"]))
