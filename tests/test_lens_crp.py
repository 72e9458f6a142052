"""Concept-conditional heatmaps: conservation against plain LRP, the gradient variant, a wired synthetic CNN."""

from __future__ import annotations

import importlib

import pytest
import timm
import torch
import torchvision

import diamond_cutter as dc
from diamond_cutter.lens import CRPSettings, conditional_heatmaps
from diamond_cutter.lens.crp import Relevance, choose_method, concept_weights
from lens_nets import BLUE, RED, square, vgg_style, wired_net

from helpers import assert_unchanged, snapshot

#: A layer's channel heatmaps must add up to the plain LRP map within this fraction of its largest value.
CONSERVATION_TOLERANCE = 1e-4


def _close(total: torch.Tensor, reference: torch.Tensor) -> None:
    scale = reference.abs().max()
    assert scale > 0
    assert (total - reference).abs().max() <= CONSERVATION_TOLERANCE * scale


@pytest.fixture(scope="module")
def vgg() -> dc.Model:
    return dc.load_model(vgg_style(), input_size=(3, 32, 32))


@pytest.mark.parametrize("layer", ["features.3", "features.10"])
def test_channel_heatmaps_sum_to_the_lrp_heatmap_on_a_vgg(vgg, layer):
    model = vgg
    x = model.normalize(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    crp = conditional_heatmaps(model, x, layer, target=3, channels=None)
    plain = dc.attribute(model, x, "lrp", target=3).maps.sum(1)
    assert crp.method == "lrp" and crp.maps.shape[:2] == (2, 16 if layer == "features.10" else 8)
    _close(crp.maps.sum(1), plain)
    # one channel alone is not the whole map: conservation is not trivially met
    assert (crp.maps[:, 0] - plain).abs().max() > 0.01 * plain.abs().max()


def test_channel_heatmaps_sum_to_the_lrp_heatmap_on_a_canonized_resnet():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    model = dc.load_model(net, input_size=(3, 32, 32))
    before = snapshot(net)
    x = model.normalize(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    crp = conditional_heatmaps(model, x, "layer2", target="top1", channels=None, settings=CRPSettings(batch_size=64))
    plain = dc.attribute(model, x, "lrp", target="top1").maps.sum(1)
    assert crp.method == "lrp" and crp.maps.shape == (2, 128, 32, 32)
    _close(crp.maps.sum(1), plain)
    assert_unchanged(before, net)


def test_gradient_variant_serves_timm_efficientnet_and_sums_to_input_x_gradient():
    torch.manual_seed(0)
    net = timm.create_model("efficientnet_b0", pretrained=False, num_classes=5).eval()
    model = dc.load_model(net, input_size=(3, 64, 64))
    assert choose_method(model, "auto") == "gradient"
    x = model.normalize(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)))
    crp = conditional_heatmaps(model, x, "blocks.2", target=2, channels=None)
    assert crp.method == "gradient" and "gradient" in repr(crp)
    reference = dc.attribute(model, x, "input_x_gradient", target=2).maps.sum(1)
    _close(crp.maps.sum(1), reference)


def test_a_channel_wired_to_the_class_ranks_first_and_its_heatmap_sits_on_the_feature():
    model = wired_net()
    image = square(BLUE, 4, 18) + square(RED, 20, 2)
    crp = conditional_heatmaps(model, image[None], "3", target="blue", channels=3)
    assert crp.concepts[0] == "channel 2"
    assert crp.channel_relevance[0, 2] > 0 and crp.channel_relevance[0, [0, 1]].abs().max() < 1e-6
    heat = crp.maps[0, 0].clamp(min=0)
    inside = heat[4:12, 18:26].sum()
    assert inside > 0.95 * heat.sum()
    # the red square's channel carries nothing for this class
    red = conditional_heatmaps(model, image[None], "3", target="blue", channels=[0])
    assert red.maps.abs().max() < 1e-6


def test_directions_and_bad_channels():
    model = wired_net()
    image = square(BLUE, 4, 18)[None]
    both = conditional_heatmaps(model, image, "3", target="blue", directions=torch.tensor([[0.0, 0, 1], [0.5, 0, 0.5]]))
    assert both.concepts == ["direction 0", "direction 1"]
    assert torch.allclose(both.maps[0, 1], 0.5 * both.maps[0, 0], atol=1e-6)
    with pytest.raises(dc.DiamondCutterError, match="out of range"):
        conditional_heatmaps(model, image, "3", target="blue", channels=[7])
    with pytest.raises(dc.DiamondCutterError, match="a count or None"):  # True is an int to Python, not a count
        conditional_heatmaps(model, image, "3", target="blue", channels=True)
    with pytest.raises(dc.UnknownNameError):
        CRPSettings(method="lrpp")


@pytest.mark.parametrize("batch_size", [1, 2])
def test_uneven_rows_equal_one_row_at_a_time(vgg, batch_size):
    """Images with different numbers of concepts share forwards: every row still gets its own heatmap."""
    x = vgg.normalize(torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3)))
    engine = Relevance(vgg, CRPSettings(batch_size=batch_size))
    signal = engine.signal(x, ["features.10"], 3).signals["features.10"]
    weights, _ = concept_weights(list(range(16)), None, 16)
    rows = [(2, 5), (0, 1), (2, 0), (1, 7), (2, 9), (0, 3)]
    together = engine.heatmaps(x, "features.10", signal, weights, rows)
    alone = torch.cat([engine.heatmaps(x, "features.10", signal, weights, [row]) for row in rows])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-6 * float(alone.abs().max()))
    assert (together[0] - together[2]).abs().max() > 0.01 * together.abs().max()  # different concepts differ


def test_rules_keeping_their_forwards_give_the_same_maps(monkeypatch):
    """Kept rule forwards (one per forward, reused by every concept's backward) change no value."""
    torch.manual_seed(0)
    model = dc.load_model(torchvision.models.resnet18(weights=None, num_classes=10).eval(), input_size=(3, 32, 32))
    x = model.normalize(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4)))
    engine = Relevance(model, CRPSettings(batch_size=2))
    signal = engine.signal(x, ["layer2"], "top1").signals["layer2"]
    weights, _ = concept_weights(list(range(0, 128, 9)), None, 128)
    kept = engine.heatmaps(x, "layer2", signal, weights)
    monkeypatch.setattr(importlib.import_module("diamond_cutter.lens.crp"), "_keep_rule_forwards", lambda c: None)
    recomputed = engine.heatmaps(x, "layer2", signal, weights)
    torch.testing.assert_close(kept, recomputed, rtol=1e-4, atol=1e-6 * float(recomputed.abs().max()))
    assert (kept[0] - kept[1]).abs().max() > 0.1 * kept[:2].abs().max()  # two concepts, two maps
