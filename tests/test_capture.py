"""Capture hooks: exact activations and gradients, and a model left exactly as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import diamond_cutter as dc
from diamond_cutter.capture import capture, forward_hooks, preserved, truncated

from helpers import assert_unchanged, snapshot


def clean_activations(net, x):
    """Recompute the conv/BN/ReLU outputs of InplaceNet by hand, with out-of-place ops."""
    a = net.bn1(net.conv1(x))
    r = torch.relu(a)
    b = net.bn2(net.conv2(r))
    return {"bn1": a, "relu1": r, "bn2": b, "relu2": torch.relu(b)}


def test_inplace_relu_does_not_corrupt_captured_activations(inplace_net):
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = clean_activations(inplace_net, x)
        with capture(inplace_net, ["bn1", "relu1", "bn2", "relu2"]) as rec:
            logits = inplace_net(x)
    for name, value in expected.items():
        assert torch.allclose(rec[name], value, atol=1e-6), name
    assert (rec["bn1"] < 0).any(), "bn1 must keep its negative values although relu1 runs in place"
    with torch.no_grad():
        assert torch.allclose(logits, inplace_net(x))


def test_gradients_at_layers_match_autograd_and_leave_parameter_grads_empty(inplace_net):
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    with capture(inplace_net, ["bn2"]) as rec:
        score = inplace_net(x)[:, 1]
    grad = rec.gradients(score)["bn2"]
    # independent computation: d score / d bn2 via a hand-written forward from bn2 onwards
    b = rec["bn2"].detach().requires_grad_(True)
    out = inplace_net.fc(inplace_net.pool(torch.relu(b)).flatten(1))[:, 1]
    (expected,) = torch.autograd.grad(out.sum(), b)
    assert torch.allclose(grad, expected, atol=1e-6)
    assert all(p.grad is None for p in inplace_net.parameters())


def test_model_unchanged_after_success_and_after_error(inplace_net):
    inplace_net.train()
    inplace_net.fc.weight.requires_grad_(False)
    before = snapshot(inplace_net)
    with preserved(inplace_net, freeze=True), capture(inplace_net, ["relu1", "fc"]):
        assert not inplace_net.training and not any(p.requires_grad for p in inplace_net.parameters())
        inplace_net(torch.randn(1, 3, 8, 8))
    assert_unchanged(before, inplace_net)
    with pytest.raises(RuntimeError, match="boom"):
        with preserved(inplace_net, freeze=True), capture(inplace_net, ["relu1"]):
            inplace_net(torch.randn(1, 3, 8, 8))
            raise RuntimeError("boom")
    assert_unchanged(before, inplace_net)
    with pytest.raises(dc.UnknownNameError, match="did you mean 'relu1'"):
        with capture(inplace_net, ["relu1", "relu_1"]):
            pass
    assert_unchanged(before, inplace_net)


def test_truncated_forward_skips_everything_after_the_layer(inplace_net):
    calls = []
    with forward_hooks(inplace_net, {"conv2": lambda m, i, o: calls.append("conv2")}):
        with capture(inplace_net, ["relu1"]) as rec, truncated(inplace_net, "relu1") as run:
            run(torch.randn(1, 3, 8, 8))
    assert rec["relu1"].shape == (1, 8, 8, 8)
    assert calls == []


def test_shared_module_and_non_tensor_outputs_are_reported():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.split = Split()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            a, b = self.split(self.conv(self.conv(x)))
            return self.fc((a + b).mean((2, 3)))

    class Split(nn.Module):
        def forward(self, x):
            return x, -x

    model = dc.load_model(Shared().eval(), input_size=(3, 8, 8))
    table = model.layers
    assert table["conv"].calls == 2 and "runs 2x" in table["conv"].note
    assert table["split"].output == "tuple" and table["split"].channels is None
    assert "returns tuple" in table["split"].note
    assert table.names == ["conv", "split", "fc"]


def test_dict_outputs_need_and_accept_an_output_selector():
    class DictNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return {"scores": self.conv(x).mean((2, 3)), "aux": x}

    with pytest.raises(dc.DiamondCutterError, match="output=lambda out"):
        dc.load_model(DictNet().eval(), input_size=(3, 8, 8))
    model = dc.load_model(DictNet().eval(), input_size=(3, 8, 8), output=lambda out: out["scores"])
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4) and len(model.labels) == 4


def test_truncations_nest_so_a_cut_backbone_can_be_read_at_its_cut():
    """A transferred model analysed at its own cut: the outer stop must not be taken for the inner one."""
    from diamond_cutter.transfer.cuts import CutBackbone

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    outer = nn.Sequential(CutBackbone(net, "1"), nn.Flatten())
    x = torch.rand(1, 3, 8, 8)
    with capture(outer, ["0.net.1"]) as rec, truncated(outer, "0.net.1") as run:
        run(x)
    assert torch.allclose(rec["0.net.1"], net[1](net[0](x)), atol=1e-6)  # the probe runs channels-last
    assert outer(x).shape == (1, 4 * 6 * 6)  # and the cut backbone alone still stops at its cut
