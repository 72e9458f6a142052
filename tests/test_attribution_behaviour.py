"""Attribution semantics: targets, batching, frozen backbones, an untouched model, clear errors, LRP conservation."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import diamond_cutter as dc
from diamond_cutter.attribution import LRP, METHODS, GradCAM

from helpers import InplaceNet, assert_unchanged, snapshot

SIZE = 32
#: Options that keep every method cheap on a 32-pixel input.
FAST = {
    "smoothgrad": {"samples": 3},
    "integrated_gradients": {"steps": 4},
    "occlusion": {"window": 8, "stride": 8},
    "lrp": {"rule": "epsilon"},
}


def _perturbed(net: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so a fresh network is not near-linear."""
    with torch.no_grad():
        for bn in net.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.bias.uniform_(-0.3, 0.3)
    return net.eval()


@pytest.fixture(scope="module")
def small() -> dc.Model:
    torch.manual_seed(0)
    return dc.load_model(_perturbed(InplaceNet()), input_size=(3, SIZE, SIZE))


@pytest.fixture(scope="module")
def resnet() -> dc.Model:
    torch.manual_seed(0)
    return dc.load_model(
        _perturbed(torchvision.models.resnet18(weights=None, num_classes=7)), input_size=(3, SIZE, SIZE)
    )


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", [m for m in METHODS if m != "smoothgrad"])
def test_a_batch_gives_the_same_maps_as_single_calls(small, method):
    x = images()
    batch = dc.attribute(small, x, method, target=[0, 2, 4], **FAST.get(method, {})).maps
    singles = torch.cat(
        [
            dc.attribute(small, x[i : i + 1], method, target=t, **FAST.get(method, {})).maps
            for i, t in enumerate([0, 2, 4])
        ]
    )
    torch.testing.assert_close(batch, singles, rtol=1e-4, atol=1e-6)


def test_smoothgrad_does_not_depend_on_the_batch_size_and_zero_noise_is_saliency(small):
    x = images()
    one = dc.attribute(small, x, "smoothgrad", target=1, samples=4, batch_size=1).maps
    many = dc.attribute(small, x, "smoothgrad", target=1, samples=4, batch_size=64).maps
    torch.testing.assert_close(one, many, rtol=1e-4, atol=1e-7)
    quiet = dc.attribute(small, x, "smoothgrad", target=1, samples=2, noise=0.0).maps
    torch.testing.assert_close(quiet, dc.attribute(small, x, "saliency", target=1).maps)
    assert not torch.allclose(one, quiet)


@pytest.mark.parametrize("method", ["saliency", "gradcam", "occlusion"])
def test_one_target_broadcasts_and_a_list_is_per_image(small, method):
    x = images()
    options = FAST.get(method, {})
    broadcast = dc.attribute(small, x, method, target=3, **options)
    listed = dc.attribute(small, x, method, target=[3, 3, 3], **options)
    assert broadcast.targets == [3, 3, 3]
    torch.testing.assert_close(broadcast.maps, listed.maps)
    mixed = dc.attribute(small, x, method, target=[3, 0, 3], **options)
    torch.testing.assert_close(mixed.maps[[0, 2]], broadcast.maps[[0, 2]])
    assert not torch.allclose(mixed.maps[1], broadcast.maps[1])
    with pytest.raises(dc.DiamondCutterError, match="2 targets for 3 images"):
        dc.attribute(small, x, method, target=[3, 0], **options)


def test_top1_callable_and_several_targets_per_image(small):
    x = images()
    predicted = small(x).argmax(1).tolist()
    top1 = dc.attribute(small, x, "gradcam")
    assert top1.targets == predicted
    custom = dc.attribute(small, x, "gradcam", target=lambda logits: logits[:, 2] - logits[:, 0])
    direct = (
        dc.attribute(small, x, "gradcam", target=2, relu=False).maps
        - dc.attribute(small, x, "gradcam", target=0, relu=False).maps
    )
    torch.testing.assert_close(custom.maps, direct.clamp_min(0), rtol=1e-4, atol=1e-6)
    assert custom.targets is None
    pairs = dc.attribute(small, x, "saliency", target=[[1, 4]])
    assert pairs.targets == [1, 4] * 3 and len(pairs) == 6
    torch.testing.assert_close(pairs.maps[1::2], dc.attribute(small, x, "saliency", target=4).maps)
    with pytest.raises(dc.DiamondCutterError, match="one score per image"):
        dc.attribute(small, x, "saliency", target=lambda logits: logits)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_works_on_a_frozen_backbone_and_leaves_the_model_as_it_was(resnet, method):
    for name, p in resnet.module.named_parameters():
        p.requires_grad_(name.startswith("fc."))  # the transfer-learning case: a new head on a frozen backbone
    resnet.module.train()
    before = snapshot(resnet.module)
    try:
        result = dc.attribute(resnet, images(2), method, target=[1, 5], **FAST.get(method, {}))
        assert torch.isfinite(result.maps).all() and result.maps.abs().sum() > 0
        assert_unchanged(before, resnet.module)
    finally:
        resnet.module.eval()
        for p in resnet.module.parameters():
            p.requires_grad_(True)


@pytest.mark.parametrize("method", ["deconvnet", "gradcam", "integrated_gradients", "lrp", "scorecam"])
def test_the_model_is_unchanged_after_an_error_inside_a_method(resnet, method):
    before = snapshot(resnet.module)
    inplace = [m.inplace for m in resnet.module.modules() if isinstance(m, nn.ReLU)]
    bad_target = (lambda logits: logits) if method != "lrp" else "no such class"
    with pytest.raises(dc.DiamondCutterError):
        dc.attribute(resnet, images(2), method, target=bad_target, **FAST.get(method, {}))
    assert_unchanged(before, resnet.module)
    assert inplace == [m.inplace for m in resnet.module.modules() if isinstance(m, nn.ReLU)]


def test_bad_input_gets_clear_errors(small):
    x = images(1)
    with pytest.raises(dc.UnknownNameError, match="did you mean 'relu2'"):
        dc.attribute(small, x, "gradcam", layer="relu22")
    with pytest.raises(dc.DiamondCutterError, match="not a C×H×W feature map"):
        dc.attribute(small, x, "gradcam", layer="fc")
    with pytest.raises(dc.UnknownNameError, match="did you mean 'gradcam'"):
        dc.attribute(small, x, "gradcamm")
    with pytest.raises(dc.DiamondCutterError, match="out of range"):
        dc.attribute(small, x, "saliency", target=99)
    with pytest.raises(dc.DiamondCutterError, match="expected images shaped"):
        dc.attribute(small, torch.randn(1, 4, SIZE, SIZE), "saliency")
    with pytest.raises(dc.DiamondCutterError, match="baseline must be"):
        dc.attribute(small, x, "integrated_gradients", baseline=torch.zeros(1, 3, SIZE + 2, SIZE))
    with pytest.raises(dc.DiamondCutterError, match="larger than"):
        dc.attribute(small, x, "occlusion", window=SIZE * 2)
    with pytest.raises(dc.DiamondCutterError, match="works on the input"):
        dc.attribute(small, x, "saliency", layer="relu2")


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam", "guided_gradcam"])
def test_a_list_of_layers_for_a_one_layer_method(small, method):
    x = images(1)
    with pytest.raises(
        dc.DiamondCutterError, match=re.escape(f"method {method!r} works at one layer, got 2; only layercam")
    ):
        dc.attribute(small, x, method, layer=["relu1", "relu2"])
    one = dc.attribute(small, x, method, layer=["relu2"]).maps
    torch.testing.assert_close(one, dc.attribute(small, x, method, layer="relu2").maps)
    fused = dc.attribute(small, x, "layercam", layer=["relu1", "relu2"])
    assert fused.layer == "relu1+relu2"
    with pytest.raises(dc.DiamondCutterError, match="a layer is named by a string"):
        GradCAM(small, layer=["relu2"])


def test_a_class_name_resolves_and_a_typo_suggests(small):
    small_named = dc.load_model(
        small.module, input_size=(3, SIZE, SIZE), labels=["cat", "dog", "tabby cat", "car", "bus"]
    )
    result = dc.attribute(small_named, images(1), "saliency", target="tabby cat")
    assert result.targets == [2] and result.target_names == ["tabby cat"]
    with pytest.raises(dc.UnknownNameError, match="did you mean 'tabby cat'"):
        dc.attribute(small_named, images(1), "saliency", target="taby cat")


class FunctionalRelu(nn.Module):
    """Applies relu as a function, as DenseNet and Inception blocks do (next to a ReLU6 module)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU6()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.act(self.conv(x))).mean((2, 3)))


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "guided_gradcam"])
def test_functional_relu_is_reported_not_silently_wrong(method):
    model = dc.load_model(FunctionalRelu(), input_size=(3, 16, 16))
    with pytest.raises(dc.DiamondCutterError, match="applies relu as a function"):
        dc.attribute(model, torch.randn(1, 3, 16, 16), method)


def _vgg_style() -> nn.Module:
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5),
    )
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.zeros_(m.bias)
    return net


def _resnet_no_bias() -> nn.Module:
    torch.manual_seed(4)
    net = torchvision.models.resnet18(weights=None, num_classes=5)
    nn.init.zeros_(net.fc.bias)
    return net


@pytest.mark.parametrize(
    "build, rule",
    [(_vgg_style, rule) for rule in ("epsilon", "gamma", "alpha_beta", "epsilon_plus_flat", "epsilon_gamma_box")]
    + [(_resnet_no_bias, rule) for rule in ("epsilon", "epsilon_plus_flat")],
)
def test_lrp_relevance_at_the_input_sums_to_the_target_logit(build, rule):
    """Conservation within 2 % of the logit on bias-free networks (biases absorb relevance by design).

    BatchNorm variances and scales are perturbed (means and shifts stay 0, so
    merging BN into the convolutions adds no bias) to keep the check non-trivial.
    """
    net = build().eval()
    with torch.no_grad():
        for bn in net.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
    model = dc.load_model(net, input_size=(3, SIZE, SIZE))
    x = images(2, seed=5)
    logits = net(x).detach()
    targets = logits.argmax(1)
    relevance = LRP(model, rule=rule).attribute(x, target=targets.tolist()).maps
    totals = relevance.sum((1, 2, 3))
    expected = logits.gather(1, targets[:, None])[:, 0]
    assert torch.allclose(totals, expected, rtol=0.02, atol=1e-5), (totals, expected)


def test_integrated_gradients_baselines_average_and_are_reproducible(small):
    x = images(2)
    run = lambda baseline, seed=0: dc.attribute(  # noqa: E731
        small, x, "integrated_gradients", target=1, steps=6, baseline=baseline, seed=seed
    ).maps
    black, blurred, uniform = run("black"), run("blurred"), run("uniform")
    torch.testing.assert_close(run(["black", "blurred", "uniform"]), (black + blurred + uniform) / 3)
    torch.testing.assert_close(run("uniform"), uniform)
    assert not torch.allclose(run("uniform", seed=1), uniform)
    assert not torch.allclose(black, blurred)
    custom = small.normalize(torch.zeros(3, SIZE, SIZE))  # black, given as a tensor
    torch.testing.assert_close(run(custom), black)
    with pytest.raises(dc.UnknownNameError, match="did you mean 'blurred'"):
        run("blured")
