"""The rendering copy with BatchNorm folded into convolutions: same activations, never the user's network."""

from __future__ import annotations

from contextlib import ExitStack

import torch
import torchvision
from torch import nn

import diamond_cutter as dc
from diamond_cutter import objectives as obj
from diamond_cutter.capture import capture, preserved
from diamond_cutter.featureviz import optimize
from diamond_cutter.featureviz.fold import conv_norm_pairs, folded_copy, rendering_network
from diamond_cutter.featureviz.optimize import forward_fn, render_objective

from helpers import assert_unchanged, snapshot


def batchnorms(module: nn.Module) -> list[str]:
    return [name for name, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)]


def outputs(module: nn.Module, layers: list[str], x: torch.Tensor) -> list[torch.Tensor]:
    with capture(module, layers, detach=True) as rec, torch.no_grad():
        logits = module(x)
    return [rec[name] for name in layers] + [logits]


def randomized_statistics(module: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine terms, so that a wrong fold cannot go unnoticed."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return module.eval()


def test_embedded_model_folds_every_norm_and_keeps_its_activations(embedded):
    before = snapshot(embedded.module)
    layers = ["blocks.2", "blocks.4.1"]
    net = rendering_network(embedded, layers + [obj.OUTPUT])
    assert net is not embedded.module
    assert len(batchnorms(embedded.module)) == 49 and batchnorms(net) == []
    x = embedded.normalize(dc.load_images(["chelsea", "coffee"], embedded).pixels)
    for a, b in zip(outputs(embedded.module, layers, x), outputs(net, layers, x)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * a.abs().max().item())
    assert not any(getattr(m, "inplace", False) for m in net.modules())
    assert_unchanged(before, embedded.module)


def test_resnet_with_inplace_relu_folds_exactly():
    module = randomized_statistics(torchvision.models.resnet18(weights=None))
    x = torch.randn(2, 3, 64, 64)
    net = folded_copy(module, x[:1], ["layer2.0.bn2"])
    assert batchnorms(net) == [] and isinstance(net.layer2[0].downsample[1], nn.Identity)
    for a, b in zip(outputs(module, ["layer2.0.bn2"], x), outputs(net, ["layer2.0.bn2"], x)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * a.abs().max().item())


def test_a_convolution_the_objective_reads_is_left_as_it_is():
    module = randomized_statistics(torchvision.models.resnet18(weights=None))
    x = torch.randn(1, 3, 64, 64)
    net = folded_copy(module, x, ["layer1.0.conv1"])
    assert isinstance(net.layer1[0].bn1, nn.BatchNorm2d) and torch.equal(
        net.layer1[0].conv1.weight, module.layer1[0].conv1.weight
    )
    assert isinstance(net.layer1[0].bn2, nn.Identity)


class Tapped(nn.Module):
    """The convolution's output is used twice: folding its norm would change the second use."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_a_fold_that_changes_the_result_falls_back_to_the_original():
    module = randomized_statistics(Tapped())
    x = torch.randn(1, 3, 16, 16)
    assert conv_norm_pairs(module, x) == [("conv", "bn")]
    assert folded_copy(module, x, []) is module


def test_norm_without_running_statistics_is_not_folded():
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    assert folded_copy(module, torch.randn(2, 3, 8, 8), []) is module


def test_render_scores_are_those_of_the_true_network(embedded):
    result = render_objective(embedded, obj.channel("blocks.3", [4, 9]), keys=[4, 9], steps=6, size=64, progress=False)
    with ExitStack() as stack, torch.no_grad():
        stack.enter_context(preserved(embedded.module))
        act = forward_fn(embedded, ["blocks.3"], stack)(embedded.normalize(result.tensor))["blocks.3"]
    true_scores = act[torch.arange(2), torch.tensor([4, 9])].mean(dim=(1, 2))
    assert torch.allclose(result.scores, true_scores, rtol=1e-3, atol=1e-4)


def test_visualize_folds_once_for_all_its_batches(embedded, monkeypatch):
    made = []
    monkeypatch.setattr(
        optimize, "rendering_network", lambda model, keep: made.append(keep) or rendering_network(model, keep)
    )
    vis = dc.visualize(embedded, "blocks.1", range(6), batch_size=2, steps=1, size=32, progress=False)
    assert len(vis.channels) == 6 and made == [["blocks.1"]]
