"""Transforms: shapes, gradients, per-item randomness, sizes relative to the image; ReLU gradient redirection."""

from __future__ import annotations

import torch
from torch import nn

from diamond_cutter.featureviz.transforms import (
    Blur,
    Compose,
    Jitter,
    Pad,
    Randomness,
    RedirectedClamp,
    Rotate,
    Scale,
    redirected_relus,
    standard_transforms,
)

from helpers import assert_unchanged, snapshot


def rng(*seeds: int) -> Randomness:
    return Randomness([torch.Generator().manual_seed(s) for s in seeds])


def test_standard_transforms_keep_batch_and_channels_and_pass_gradients():
    for c, side in [(3, 64), (1, 32), (4, 20)]:
        x = torch.rand(3, c, side, side, requires_grad=True)
        y = standard_transforms()(x, rng(1, 2, 3))
        assert y.shape == (3, c, side, side)  # padded, moved, then cropped back in the same resampling
        (g,) = torch.autograd.grad(y.pow(2).sum(), x)
        assert g.shape == x.shape and torch.isfinite(g).all()
        assert (g.flatten(1).abs().sum(dim=1) > 0).all()


def test_each_item_draws_its_own_randomness_independent_of_the_batch():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    chain = standard_transforms()
    together = chain(x, rng(7, 8))
    alone = chain(x[1:], rng(8))
    assert torch.allclose(together[1], alone[0], atol=1e-6)
    assert not torch.allclose(chain(x[:1], rng(7)), chain(x[:1], rng(9)))


def test_sizes_are_relative_to_the_image_side():
    assert Pad()(torch.rand(1, 3, 224, 224), rng(0)).shape[-1] == 224 + 24
    assert Pad()(torch.rand(1, 3, 32, 32), rng(0)).shape[-1] == 32 + 4
    # A jitter of 8/224 of the side moves a 224 image by at most 4 px each way.
    m = Jitter().matrices(50, 224, 224, rng(*range(50)))
    assert m[:, :2, 2].abs().max() <= 4 and m[:, :2, 2].abs().max() > 2


def test_identity_settings_leave_the_image_unchanged_and_fusion_matches_sequential():
    x = torch.rand(2, 3, 16, 16)
    same = Compose([Jitter(0.0), Scale(1.0, 1.0), Rotate(0.0)])(x, rng(1, 2))
    assert torch.allclose(same, x, atol=1e-5)
    # A pure translation by a whole pixel moves content by one pixel.
    class Shift(Jitter):
        def matrices(self, n, h, w, r):
            m = torch.eye(3).repeat(n, 1, 1)
            m[:, 0, 2] = 1.0
            return m

    shifted = Compose([Shift()])(x, rng(1, 2))
    assert torch.allclose(shifted[..., :-1], x[..., 1:], atol=1e-5)
    fused = Compose([Scale(), Rotate()])(x, rng(3, 4))
    r = rng(3, 4)
    sequential = Rotate()(Scale()(x, r), r)
    # One resampling instead of two: the same geometry with less interpolation blur.
    assert (fused - sequential).abs().mean() < 0.1


def test_blur_keeps_shape_and_mean_and_removes_noise():
    x = torch.rand(1, 3, 32, 32)
    y = Blur(2 / 32)(x, rng(0))
    assert y.shape == x.shape
    assert torch.isclose(y.mean(), x.mean(), atol=0.01)
    assert y.std() < x.std() / 2


def test_redirected_clamp_lets_gradient_wake_dead_units_only_when_all_are_dead():
    x = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    (g,) = torch.autograd.grad((RedirectedClamp.apply(x, None) * torch.tensor([1.0, -1.0])).sum(), x)
    # loss gradient +1 would push x lower (blocked); -1 asks for a larger x (passes).
    assert g.tolist() == [[0.0, -1.0]]
    y = torch.tensor([[1.0, -2.0]], requires_grad=True)
    (g,) = torch.autograd.grad((RedirectedClamp.apply(y, None) * torch.tensor([1.0, -1.0])).sum(), y)
    assert g.tolist() == [[1.0, 0.0]]  # one unit active: the ordinary ReLU gradient


def test_redirected_relus_restore_inplace_flags_and_hooks(inplace_net):
    before = snapshot(inplace_net)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with redirected_relus(inplace_net):
        assert not inplace_net.relu1.inplace
        out = inplace_net(x)
    assert inplace_net.relu1.inplace and inplace_net.relu2.inplace
    assert_unchanged(before, inplace_net)
    assert torch.allclose(out, inplace_net(x), atol=1e-6)  # forward values are the true network's
    assert isinstance(inplace_net.relu1, nn.ReLU)
