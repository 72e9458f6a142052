"""Channel attribution: against a finite-difference brute force, captum, and a wired model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import diamond_cutter as dc

from helpers import assert_unchanged, snapshot


def small_model(classes: int = 4) -> dc.Model:
    """conv → ReLU → conv (the attributed layer "2") → ReLU → conv → ReLU → pool → linear."""
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Conv2d(5, 7, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(7, classes),
    )
    return dc.Model(net.eval(), "small", (3, 12, 12), mean=(0.5,), std=(0.5,))


def finite_difference(model: dc.Model, x: torch.Tensor, cls: int) -> torch.Tensor:
    """N×C: d/dt logit(A + t·A_c) at t=0 per channel c — the channel's activation × gradient summed
    over space — by central differences on a float64 copy of the network (no hooks, no autograd)."""
    net = copy.deepcopy(model.module).double()
    head, tail = net[:3], net[3:]
    x = x.double()
    eps = 1e-6
    with torch.no_grad():
        acts = head(x)
        out = torch.zeros(len(x), acts.shape[1], dtype=torch.float64)
        for c in range(acts.shape[1]):
            bump = torch.zeros_like(acts)
            bump[:, c] = acts[:, c] * eps
            out[:, c] = (tail(acts + bump)[:, cls] - tail(acts - bump)[:, cls]) / (2 * eps)
    return out


def test_matches_finite_difference_brute_force():
    model = small_model()
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    ours = dc.channel_attribution(model, x, "2", target=1)
    expected = finite_difference(model, x, 1)
    assert ours.per_image.shape == (3, 5)
    torch.testing.assert_close(ours.per_image.double(), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.scores.double(), expected.mean(0), rtol=1e-4, atol=1e-6)
    assert ours.positive == [1, 1, 1] and ours.negative is None


def test_positive_minus_negative_is_the_difference_of_single_classes():
    model = small_model()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    both = dc.channel_attribution(model, x, "2", target=(2, 0))
    pos = dc.channel_attribution(model, x, "2", target=2)
    neg = dc.channel_attribution(model, x, "2", target=0)
    torch.testing.assert_close(both.per_image, pos.per_image - neg.per_image, rtol=1e-5, atol=1e-6)
    assert both.negative == [0, 0] and both.title == "class 2 − class 0"


def test_auto_is_top1_minus_top2(embedded, samples):
    auto = dc.channel_attribution(embedded, samples, "blocks.5", target="auto")
    top2 = dc.predict(embedded, samples, k=2).indices
    assert auto.positive == top2[:, 0].tolist() and auto.negative == top2[:, 1].tolist()
    assert "cat" in embedded.labels[auto.positive[0]]  # chelsea is a cat
    explicit = dc.channel_attribution(embedded, samples[0], "blocks.5", target=(auto.positive[0], auto.negative[0]))
    torch.testing.assert_close(explicit.per_image[0], auto.per_image[0], rtol=1e-4, atol=1e-5)


def test_agrees_with_captum_layer_gradient_x_activation(embedded, samples):
    from captum.attr import LayerGradientXActivation

    ours = dc.channel_attribution(embedded, samples, "blocks.5", target="tiger cat")
    method = LayerGradientXActivation(embedded.module, embedded.module.blocks[5])
    theirs = method.attribute(samples.tensor, target=embedded.class_index("tiger cat")).sum(dim=(2, 3))
    torch.testing.assert_close(ours.per_image, theirs.detach(), rtol=1e-3, atol=1e-4)


def test_wired_channel_is_on_top():
    """A class whose logit reads only channel 4 must rank channel 4 first and every other channel at 0."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, padding=1)
    fc = nn.Linear(6, 3)
    with torch.no_grad():
        conv.bias.fill_(0.5)
        fc.weight[0] = torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0, 0.0])
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()
    model = dc.Model(net, "wired", (3, 16, 16))
    x = torch.rand(4, 3, 16, 16)
    result = dc.channel_attribution(model, x, "1", target=0)
    assert result.top(1)[0].channel == 4
    assert result.top(1)[0].score > 0
    others = torch.cat([result.scores[:4], result.scores[5:]])
    assert torch.all(others.abs() < 1e-6)


def test_top_and_bottom_are_sorted_extremes():
    model = small_model()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    result = dc.channel_attribution(model, x, "2", target=(0, 3))
    top, bottom = result.top(3), result.bottom(2)
    assert [t.score for t in top] == sorted((t.score for t in top), reverse=True)
    assert top[0].channel == int(result.scores.argmax()) and bottom[0].channel == int(result.scores.argmin())


def test_model_left_unchanged_also_on_error(inplace_net):
    inplace_net.train()
    inplace_net.fc.weight.requires_grad_(False)
    model = dc.Model(inplace_net, "inplace", (3, 16, 16))
    before = snapshot(inplace_net)
    x = torch.rand(2, 3, 16, 16)
    dc.channel_attribution(model, x, "relu2", target=(1, 2))
    assert_unchanged(before, inplace_net)
    with pytest.raises(dc.UnknownNameError, match="did you mean"):
        dc.channel_attribution(model, x, "relu2", target="clas 1")
    assert_unchanged(before, inplace_net)


def test_bad_layers_are_clear_errors(inplace_net):
    model = dc.Model(inplace_net.eval(), "inplace", (3, 16, 16))
    with pytest.raises(dc.UnknownNameError, match="relu2"):
        dc.channel_attribution(model, torch.rand(1, 3, 16, 16), "relu3")
    with pytest.raises(dc.DiamondCutterError, match="not a C×H×W feature map"):
        dc.channel_attribution(model, torch.rand(1, 3, 16, 16), "fc")
    with pytest.raises(dc.DiamondCutterError, match="pair"):
        dc.channel_attribution(model, torch.rand(1, 3, 16, 16), "relu2", target=(0, 1, 2))


def test_only_negative_channels_count_against_and_the_page_says_when_none_do():
    model = small_model()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    result = dc.channel_attribution(model, x, "2", target=(0, 3))
    assert all(s.score > 0 for s in result.top(100)) and all(s.score < 0 for s in result.bottom(100))
    assert len(result.top(100)) + len(result.bottom(100)) == int((result.scores != 0).sum())
    positive = copy.copy(result)
    positive.scores = result.scores.abs() + 0.1
    assert positive.bottom(8) == [] and len(positive.top(8)) == len(result.scores)
    assert "no channel counts against" in positive._repr_html_()
