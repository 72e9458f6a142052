"""The renderer on the real embedded model: channel-specific pictures, diversity, seeds, truncation, safety."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
import torch
from torch import nn

import diamond_cutter as dc
from diamond_cutter import objectives as obj
from diamond_cutter.capture import capture, preserved
from diamond_cutter.featureviz import optimize
from diamond_cutter.featureviz.fold import rendering_network
from diamond_cutter.featureviz.optimize import FAST_SCHEDULE, forward_fn, render_objective
from diamond_cutter.images import SAMPLES

from helpers import assert_unchanged, snapshot

FAST = dict(steps=40, size=64, progress=False)
CHANNELS = {"blocks.3": [7, 22, 41, 66], "blocks.4": [3, 30, 58, 97]}


def layer_means(model: dc.Model, layer: str, pixels: torch.Tensor) -> torch.Tensor:
    """Mean activation of every channel of ``layer`` for each image (N×C)."""
    with ExitStack() as stack, torch.no_grad():
        stack.enter_context(preserved(model.module))
        act = forward_fn(model, [layer], stack)(model.normalize(pixels))[layer]
    return act.mean(dim=(2, 3))


@pytest.fixture(scope="module")
def natural_max(embedded) -> dict[str, torch.Tensor]:
    photos = dc.load_images(list(SAMPLES), embedded).pixels
    return {layer: layer_means(embedded, layer, photos).max(dim=0).values for layer in CHANNELS}


@pytest.mark.parametrize("layer", list(CHANNELS))
def test_each_channel_fires_more_for_its_picture_than_for_photos_and_other_pictures(embedded, natural_max, layer):
    channels = CHANNELS[layer]
    vis = dc.visualize(embedded, layer, channels, **FAST)
    assert vis.tensor.shape == (4, 3, 64, 64) and len(vis.images) == 4
    means = layer_means(embedded, layer, vis.tensor)[:, channels]  # row: picture, column: channel
    assert torch.allclose(means.diagonal(), vis.scores, rtol=1e-3, atol=1e-3)
    for i, ch in enumerate(channels):
        others = torch.cat([means[:i, i], means[i + 1 :, i]])
        assert means[i, i] > natural_max[layer][ch], (
            f"channel {ch}: {means[i, i]:.2f} vs photos {natural_max[layer][ch]:.2f}"
        )
        assert means[i, i] > others.max(), f"channel {ch} fires more for another channel's picture"


def test_diversity_spreads_a_batch_apart(embedded):
    layer = "blocks.3"
    base = obj.channel(layer, [10, 10, 10])
    quick = dict(steps=30, size=48, progress=False)
    plain = render_objective(embedded, base, keys=[0, 1, 2], **quick)
    diverse = render_objective(embedded, base + 20 * obj.diversity(layer), keys=[0, 1, 2], **quick)

    def spread(images: torch.Tensor) -> float:
        flat = images.flatten(1)
        return torch.pdist(flat).mean().item()

    assert spread(diverse.tensor) > 1.05 * spread(plain.tensor)

    def style_diversity(images: torch.Tensor) -> float:
        with ExitStack() as stack, torch.no_grad():
            stack.enter_context(preserved(embedded.module))
            acts = forward_fn(embedded, [layer], stack)(embedded.normalize(images))
        return obj.diversity(layer)(acts).mean().item()

    assert style_diversity(diverse.tensor) > style_diversity(plain.tensor) + 0.05
    # Diversity is a trade: the channel still fires far above natural images.
    assert diverse.scores.min() > 0


def test_seeds_thresholds_and_batch_independence(embedded):
    small = dict(steps=12, size=48, progress=False)
    a = render_objective(embedded, obj.channel("blocks.2", [1, 5]), keys=[1, 5], thresholds=(4, 8), **small)
    b = render_objective(embedded, obj.channel("blocks.2", [5]), keys=[5], **small)
    c = render_objective(embedded, obj.channel("blocks.2", [1, 5]), keys=[1, 5], seed=1, **small)
    assert sorted(a.intermediate) == [4, 8] and a.intermediate[4].shape == (2, 3, 48, 48)
    assert not torch.allclose(a.intermediate[4], a.tensor)
    # A channel's picture does not depend on its batch (up to float rounding that Adam amplifies a little);
    # another seed gives another picture.
    same = (a.tensor[1] - b.tensor[0]).abs().mean()
    other = (a.tensor - c.tensor).abs().mean()
    assert same < 0.005 and other > 0.01 and other > 5 * same


def test_forward_stops_after_the_deepest_layer_and_model_is_unchanged(embedded, monkeypatch):
    before = snapshot(embedded.module)
    watching = ExitStack()
    counts = []

    def watched_network(model, keep):  # count the calls on the network the renderer actually runs
        net = rendering_network(model, keep)
        counts.append(watching.enter_context(capture(net, ["blocks.2", "conv_head"])))
        return net

    monkeypatch.setattr(optimize, "rendering_network", watched_network)
    with watching:
        render_objective(embedded, obj.channel("blocks.2", 0) + obj.channel("blocks.1", 1), steps=2, size=32,
                         progress=False, redirect_steps=1)
        assert counts[0].calls["blocks.2"] == 3 and counts[0].calls["conv_head"] == 0
    with pytest.raises(dc.DiamondCutterError, match="out of range"):
        dc.visualize(embedded, "blocks.2", [0, 999], steps=2, size=32, progress=False)
    with pytest.raises(dc.UnknownNameError, match="did you mean"):
        render_objective(embedded, obj.channel("blocks.22", 0), steps=2, size=32, progress=False)
    assert_unchanged(before, embedded.module)
    assert all(m.inplace for m in embedded.module.modules() if isinstance(m, nn.ReLU6))


@pytest.mark.parametrize("layer", list(CHANNELS))
def test_fast_schedule_climbs_faster_than_lucids(embedded, layer):
    channels = CHANNELS[layer]
    same_steps = dict(keys=channels, steps=32, size=64, progress=False)
    lucid = render_objective(embedded, obj.channel(layer, channels), **same_steps).scores.mean()
    fast = render_objective(embedded, obj.channel(layer, channels), FAST_SCHEDULE, **same_steps).scores.mean()
    assert fast > 1.05 * lucid
    with pytest.raises(dc.DiamondCutterError, match="betas"):
        render_objective(embedded, obj.channel(layer, 0), steps=1, size=32, betas=(0.9, 1.0), progress=False)


def test_class_objective_runs_the_full_network_and_raises_the_logit(embedded):
    target = obj.class_logit("tabby")
    start = render_objective(embedded, target, steps=1, size=64, lr=0.0, progress=False)
    end = render_objective(embedded, target, steps=25, size=64, progress=False)
    assert end.scores[0] > start.scores[0] + 5


def test_grayscale_small_input_model_with_maco_and_pixel():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    model = dc.Model(net, "gray", (1, 32, 32), mean=(0.5,), std=(0.25,))
    for param in ("fft", "pixel", "maco"):
        first = dc.visualize(model, "2", [0, 3, 5], steps=1, lr=0.0, param=param, progress=False)
        vis = dc.visualize(model, "2", [0, 3, 5], steps=30, param=param, progress=False)
        assert vis.tensor.shape == (3, 1, 32, 32) and vis.images[0].mode == "L"
        assert (vis.scores > first.scores).all(), param
