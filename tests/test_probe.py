"""The one probe: readings equal a plain forward, gradients start where asked, the forward stops where asked."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

import diamond_cutter as dc
from diamond_cutter.capture import capture, probe, read_layers, truncated

from helpers import assert_unchanged, snapshot


def plain(net, x, names):
    """Layer outputs and logits of an unhooked-style forward (a capture with no probe involved)."""
    with torch.no_grad(), capture(net, names, detach=True) as rec:
        logits = net(x)
    return {name: rec[name] for name in names}, logits


def test_readings_without_gradients_equal_a_plain_forward(inplace_net):
    x = torch.randn(3, 3, 16, 16)
    expected, logits = plain(inplace_net, x, ["bn1", "relu2"])
    reading = read_layers(inplace_net, x, ["relu2", "bn1"])
    for name, value in expected.items():
        torch.testing.assert_close(reading[name], value)  # channels-last on CPU: equal up to rounding
        assert not reading[name].requires_grad
    torch.testing.assert_close(reading.logits, logits)
    assert (reading["bn1"] < 0).any(), "an in-place ReLU after bn1 must not overwrite the reading"


def test_gradients_start_at_the_layer_and_nothing_below_records_history(inplace_net):
    x = torch.randn(2, 3, 16, 16)
    for p in inplace_net.parameters():
        p.requires_grad_(True)  # even with trainable weights below the layer, no history is kept there
    reading = read_layers(inplace_net, x, ["bn2"], grad="layers")
    score = reading.logits[:, 1]
    assert reading["bn2"].is_leaf and reading["bn2"].requires_grad
    (below,) = torch.autograd.grad(score.sum(), [inplace_net.conv1.weight], retain_graph=True, allow_unused=True)
    assert below is None
    grad = reading.gradients(score)["bn2"]
    b = reading["bn2"].detach().requires_grad_(True)  # by hand: d score / d bn2 from bn2 onwards
    out = inplace_net.fc(inplace_net.pool(torch.relu(b)).flatten(1))[:, 1]
    (expected,) = torch.autograd.grad(out.sum(), b)
    torch.testing.assert_close(grad, expected)


def test_gradients_through_reach_the_input(inplace_net):
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    with torch.enable_grad():
        reading = read_layers(inplace_net, x, ["relu1"], grad="through", stop=True)
        (ours,) = torch.autograd.grad(reading["relu1"][:, 2].sum(), x)
        (expected,) = torch.autograd.grad(torch.relu(inplace_net.bn1(inplace_net.conv1(x)))[:, 2].sum(), x)
    torch.testing.assert_close(ours, expected)


def test_stop_skips_everything_after_the_last_layer_and_hooks_go_away(inplace_net):
    before = snapshot(inplace_net)
    x = torch.randn(2, 3, 16, 16)
    with capture(inplace_net, ["bn2", "fc"]) as watch, probe(inplace_net, ["relu1", "conv1"], stop=True) as read:
        for _ in range(2):
            reading = read(x)
            assert reading.logits is None and reading["relu1"].shape == (2, 8, 16, 16)
        assert watch.calls == {"bn2": 0, "fc": 0}
    assert not any(m._forward_hooks for m in inplace_net.modules())
    assert_unchanged(before, inplace_net)


def test_bad_probe_options(inplace_net):
    with pytest.raises(dc.DiamondCutterError, match="grad must be one of"):
        read_layers(inplace_net, torch.randn(1, 3, 8, 8), ["bn1"], grad="input")
    with pytest.raises(dc.DiamondCutterError, match="at least one layer"):
        read_layers(inplace_net, torch.randn(1, 3, 8, 8), [], stop=True)
    with pytest.raises(dc.UnknownNameError, match="did you mean"):
        read_layers(inplace_net, torch.randn(1, 3, 8, 8), ["bn3"])


def test_linear_attribution_records_no_history_below_its_layer(embedded, samples):
    """Building Blocks differentiates from the layer up: the stem's output carries no autograd history."""
    recorded = []
    handle = embedded.module.conv_stem.register_forward_hook(lambda _m, _i, out: recorded.append(out.requires_grad))
    try:
        result = dc.channel_attribution(embedded, samples, "blocks.4", target=("tabby", "tiger cat"))
    finally:
        handle.remove()
    assert recorded and not any(recorded) and result.per_image.shape == (2, 112)
    singles = [
        dc.channel_attribution(embedded, samples, "blocks.4", target=t).per_image for t in ("tabby", "tiger cat")
    ]
    torch.testing.assert_close(result.per_image, singles[0] - singles[1], rtol=1e-4, atol=1e-4)


class Leaky(torch.nn.Module):
    """A network whose forward makes a temporary tensor and tells the test where it is."""

    def __init__(self):
        super().__init__()
        self.first, self.second = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(4, 4, 1)
        self.temporaries: list[weakref.ref] = []

    def forward(self, x):
        temporary = x * 2
        self.temporaries.append(weakref.ref(temporary))
        return self.second(self.first(temporary))


def test_stopped_forwards_leave_no_frames_behind():
    """A stop that reused one exception grew its traceback on every run, keeping each run's tensors."""
    net = Leaky().eval()
    with probe(net, ["first"], stop=True) as read:
        for _ in range(3):
            read(torch.randn(1, 3, 4, 4))
        gc.collect()
        assert all(ref() is None for ref in net.temporaries)
    with truncated(net, "first") as run:
        for _ in range(3):
            run(torch.randn(1, 3, 4, 4))
        gc.collect()
        assert len(net.temporaries) == 6 and all(ref() is None for ref in net.temporaries)
