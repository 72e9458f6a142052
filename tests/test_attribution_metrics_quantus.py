"""Our metrics against Quantus's on the same small CNN, inputs and maps (Quantus is a test-only peer)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import diamond_cutter as dc
from diamond_cutter.attribution import metrics as M
from diamond_cutter.attribution.metrics.perturb import baseline_images
from diamond_cutter.attribution.metrics.robustness import sensitivity_noise

quantus = pytest.importorskip("quantus")
warnings.filterwarnings("ignore", module="quantus")

SIDE = 12


@pytest.fixture
def net(inplace_net) -> dc.Model:
    return dc.load_model(inplace_net, input_size=(3, SIDE, SIDE))


@pytest.fixture
def inputs(net):
    g = torch.Generator().manual_seed(0)
    x = torch.randn((3, 3, SIDE, SIDE), generator=g)
    maps = torch.rand((3, SIDE, SIDE), generator=g)  # distinct values: no ties for either side's sort
    with torch.no_grad():
        y = net(x).argmax(1)
    return x, maps, y


def _from_array(source: np.ndarray):
    """A Quantus perturb_func that takes the chosen features from ``source`` (our baseline images)."""
    flat = source.reshape(len(source), -1)

    def perturb(arr, indices, **_):
        chosen = np.zeros(arr.shape, dtype=bool)
        np.put_along_axis(chosen, indices, True, axis=1)
        return np.where(chosen, flat, arr)

    return perturb


def _channel_tied(maps: torch.Tensor) -> np.ndarray:
    """The map on every colour channel, offset so a pixel's channels stay adjacent in a descending sort."""
    offsets = torch.tensor([0.0, 1e-7, 2e-7]).view(1, 3, 1, 1)
    return (maps[:, None] + offsets).double().numpy()


def _pixel_flipping(net, x, y, a, baseline, step):
    metric = quantus.PixelFlipping(
        features_in_step=3 * step, normalise=False, abs=False, perturb_func=_from_array(baseline),
        disable_warnings=True,
    )
    return np.array(
        metric(model=net.module.eval(), x_batch=x, y_batch=y.numpy(), a_batch=a, device="cpu", softmax=True)
    )


@pytest.mark.parametrize("baseline", ["mean", "blur"])
def test_deletion_equals_quantus_pixel_flipping(net, inputs, baseline):
    x, maps, y = inputs
    ours = M.deletion(net, x, maps, y, steps=SIDE, baseline=baseline)
    base = baseline_images(x, baseline, net).numpy()
    theirs = _pixel_flipping(net, x.numpy(), y, _channel_tied(maps), base, SIDE)
    assert theirs.shape == (3, SIDE)
    np.testing.assert_allclose(ours.curves[:, 1:].numpy(), theirs, atol=1e-5)


def test_insertion_equals_quantus_pixel_flipping_from_the_baseline(net, inputs):
    """Insertion is pixel flipping that starts from the baseline and flips pixels back to the image."""
    x, maps, y = inputs
    ours = M.insertion(net, x, maps, y, steps=SIDE, baseline="blur")
    base = baseline_images(x, "blur", net).numpy()
    theirs = _pixel_flipping(net, base, y, _channel_tied(maps), x.numpy(), SIDE)
    np.testing.assert_allclose(ours.curves[:, 1:].numpy(), theirs, atol=1e-5)


class GreyNet(nn.Module):
    """A one-channel CNN: Quantus's ROAD indexes pixels of one channel only."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24, 4)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def test_road_accuracy_equals_quantus_without_noise():
    grey = dc.load_model(GreyNet().eval(), input_size=(1, 16, 16), mean=(0.0,), std=(1.0,))
    g = torch.Generator().manual_seed(1)
    x = torch.randn((6, 1, 16, 16), generator=g)
    maps = torch.rand((6, 16, 16), generator=g)
    with torch.no_grad():
        y = grey(x).argmax(1)
    percentages = [10, 30, 50, 70, 90]
    ours = M.road(grey, x, maps, y, fractions=tuple(p / 100 for p in percentages), noise=0.0, iterations=2000)
    metric = quantus.ROAD(percentages=percentages, noise=0.0, normalise=False, disable_warnings=True)
    theirs = metric(
        model=grey.module, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(), device="cpu"
    )
    assert list(theirs) == percentages
    np.testing.assert_allclose(ours.details["accuracy"].double().mean(0).numpy(), [theirs[p] for p in percentages])


def test_imputation_equals_quantus_noisy_linear_imputation():
    from quantus.functions.perturb_func import noisy_linear_imputation

    g = torch.Generator().manual_seed(2)
    x = torch.randn((2, 3, 20, 24), generator=g)
    removed = torch.rand((2, 1, 20, 24), generator=g) < torch.tensor([0.3, 0.8]).view(2, 1, 1, 1)
    ours = M.noisy_linear_imputation(x, removed, tol=1e-8, max_iter=2000)
    for i in range(2):
        theirs = noisy_linear_imputation(x[i].double().numpy(), np.flatnonzero(removed[i, 0].numpy()), noise=0.0)
        np.testing.assert_allclose(ours[i].numpy(), theirs, atol=1e-5)


def test_max_sensitivity_equals_quantus_on_the_same_noise(net, inputs):
    x, _, y = inputs
    samples, radius = 3, 0.1
    ours = M.max_sensitivity(net, x, "saliency", y, samples=samples, radius=radius, seed=5)
    noise = iter(sensitivity_noise(net, x, samples, radius, 5).numpy())

    def perturb(arr, **_):
        return arr + next(noise).reshape(arr.shape)

    def explain(model, inputs, targets, **_):
        wrapped = dc.load_model(model, input_size=(3, SIDE, SIDE))
        return (
            dc.attribute(wrapped, torch.as_tensor(inputs), "saliency", target=list(targets)).heat(signed=False).numpy()
        )

    metric = quantus.MaxSensitivity(nr_samples=samples, perturb_func=perturb, disable_warnings=True)
    theirs = metric(
        model=net.module, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, explain_func=explain, device="cpu"
    )
    np.testing.assert_allclose(ours.values.numpy(), theirs, rtol=1e-4)


def test_pointing_games_equal_quantus(inputs):
    _, maps, _ = inputs
    masks = torch.zeros((3, SIDE, SIDE), dtype=torch.bool)
    masks[:, 2:7, 3:9] = True
    masks[1, :, :] = False
    masks[1, 5:, 5:] = True
    a, s = maps[:, None].numpy(), masks[:, None].numpy().astype(float)
    kw = {
        "model": None,
        "x_batch": np.zeros((3, 3, SIDE, SIDE)),
        "y_batch": np.zeros(3, int),
        "a_batch": a,
        "s_batch": s,
    }
    theirs_pg = quantus.PointingGame(disable_warnings=True, normalise=False)(**kw)
    theirs_energy = quantus.RelevanceMassAccuracy(disable_warnings=True, normalise=False)(**kw)
    np.testing.assert_allclose(M.pointing_game(maps, masks).values.numpy(), np.array(theirs_pg, dtype=float))
    np.testing.assert_allclose(M.energy_pointing_game(maps, masks).values.numpy(), theirs_energy, rtol=1e-6)


def test_randomization_equals_quantus_mprt(net, inputs):
    """The cascade re-initialised layer by layer (reset_parameters, Quantus's seeding): same correlations."""
    x, _, y = inputs

    def explain(model, inputs, targets, **_):
        wrapped = dc.load_model(model, input_size=(3, SIDE, SIDE))
        return (
            dc.attribute(wrapped, torch.as_tensor(inputs), "saliency", target=list(targets)).heat(signed=False).numpy()
        )

    metric = quantus.MPRT(seed=42, disable_warnings=True, normalise=False, abs=False)
    theirs = metric(
        model=net.module, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, explain_func=explain, device="cpu"
    )
    theirs = {k: v for k, v in theirs.items() if k != "original"}
    check = dc.sanity_check(net, x, ["saliency"], y, steps=None, seed=42, init="reset")
    assert check.steps == list(theirs)
    for step, layer in enumerate(check.steps):
        np.testing.assert_allclose(check.per_image["saliency"][step], theirs[layer], atol=1e-6)
