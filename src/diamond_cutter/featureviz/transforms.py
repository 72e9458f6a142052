"""Random, differentiable image transformations applied before every optimization step.

A visualization that only excites a channel from one exact pixel alignment is
an adversarial pattern, not a feature; asking it to survive small random
shifts, zooms and rotations is Lucid's "transformation robustness". Here every
batch item draws its own randomness (from its own generator, so it does not
depend on its batch neighbours), sizes are fractions of the image side (12 px
of padding at 224 px is 1.7 px at 32 px, not 12), and consecutive geometric
transforms are fused into a single ``grid_sample`` per step.

Also here: Lucid's trick of letting gradient flow through ReLUs that are
inactive, early in the optimization, so a channel that starts dead can still
be woken up (:func:`redirected_relus`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import forward_hooks
from ..errors import UnknownNameError

#: Named transformation sets.
TRANSFORM_NAMES = ("standard", "maco", "none")

#: Lucid's standard transformations, defined at 224 px.
REFERENCE_SIDE = 224


class Randomness:
    """Per-item random numbers: row ``i`` comes from item ``i``'s own generator.

    ``progress`` (0 at the first step, 1 at the last) lets a transform follow a schedule.
    """

    def __init__(self, generators: Sequence[torch.Generator]):
        self.generators = list(generators)
        self.progress = 0.0

    def uniform(self, k: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        rows = torch.stack([torch.rand(k, generator=g) for g in self.generators])
        return low + (high - low) * rows

    def normal(self, k: int, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
        return mean + std * torch.stack([torch.randn(k, generator=g) for g in self.generators])

    def noise_like(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standard normal and uniform ``[-1/2, 1/2)`` noise shaped like ``x`` (N·k×…, k views per item,
        view-major), each view drawn from its item's generator."""
        n = len(self.generators)
        shape = (len(x) // n, *x.shape[1:])
        gauss = torch.stack([torch.randn(shape, generator=g) for g in self.generators], dim=1)
        flat = torch.stack([torch.rand(shape, generator=g) for g in self.generators], dim=1) - 0.5
        return gauss.flatten(0, 1).to(x.device, x.dtype), flat.flatten(0, 1).to(x.device, x.dtype)


class Transform:
    """A batched transform: ``(images N×C×H×W, randomness) -> images``."""

    def __call__(self, x: torch.Tensor, rng: Randomness) -> torch.Tensor:
        raise NotImplementedError


class Affine(Transform):
    """A transform expressible as a per-item 3×3 matrix in centred pixel coordinates (output → input)."""

    def matrices(self, n: int, height: int, width: int, rng: Randomness) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, rng: Randomness) -> torch.Tensor:
        return warp(x, self.matrices(len(x), x.shape[-2], x.shape[-1], rng))


def pixels(fraction: float, side: int) -> float:
    """A size given relative to the image side, in pixels at this side."""
    return fraction * side


@dataclass
class Pad(Transform):
    """Pad by a fraction of the side (Lucid: 12 px at 224) with a constant grey, or ``mode="reflect"``."""

    fraction: float = 12 / REFERENCE_SIDE
    value: float = 0.5
    mode: str = "constant"

    def __call__(self, x: torch.Tensor, rng: Randomness) -> torch.Tensor:
        p = max(1, round(pixels(self.fraction, max(x.shape[-2:]))))
        if self.mode == "constant":
            return F.pad(x, [p] * 4, mode="constant", value=self.value)
        return F.pad(x, [p] * 4, mode=self.mode)


@dataclass
class Jitter(Affine):
    """Shift each item by up to ``fraction`` of the side in x and y."""

    fraction: float = 8 / REFERENCE_SIDE

    def matrices(self, n: int, height: int, width: int, rng: Randomness) -> torch.Tensor:
        d = pixels(self.fraction, max(height, width)) / 2
        shift = rng.uniform(2, -d, d)
        m = torch.eye(3).repeat(n, 1, 1)
        m[:, :2, 2] = shift
        return m


@dataclass
class Scale(Affine):
    """Zoom each item by a factor drawn from ``[low, high]`` (Lucid: 0.9–1.1)."""

    low: float = 0.9
    high: float = 1.1

    def matrices(self, n: int, height: int, width: int, rng: Randomness) -> torch.Tensor:
        s = rng.uniform(1, self.low, self.high)[:, 0]
        m = torch.eye(3).repeat(n, 1, 1)
        m[:, 0, 0] = 1 / s
        m[:, 1, 1] = 1 / s
        return m


@dataclass
class Rotate(Affine):
    """Rotate each item by an angle drawn from ``±degrees`` (Lucid: ±10°)."""

    degrees: float = 10.0

    def matrices(self, n: int, height: int, width: int, rng: Randomness) -> torch.Tensor:
        a = rng.uniform(1, -self.degrees, self.degrees)[:, 0] * math.pi / 180
        m = torch.eye(3).repeat(n, 1, 1)
        m[:, 0, 0], m[:, 0, 1] = torch.cos(a), -torch.sin(a)
        m[:, 1, 0], m[:, 1, 1] = torch.sin(a), torch.cos(a)
        return m


@dataclass
class Blur(Transform):
    """Gaussian blur with sigma as a fraction of the side: damps the pixel parameterization's noise."""

    fraction: float = 0.5 / REFERENCE_SIDE

    def __call__(self, x: torch.Tensor, rng: Randomness) -> torch.Tensor:
        return gaussian_blur(x, pixels(self.fraction, max(x.shape[-2:])))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel (reflect-padded, shape kept)."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    x = F.pad(x, [radius] * 4, mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def warp(x: torch.Tensor, matrices: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Resample ``x`` through per-item output→input matrices given in centred pixel coordinates.

    ``size`` (default: the input's) is the output side; a smaller one is a centred crop done in the same pass.
    """
    n, c, h, w = x.shape
    out_h, out_w = size or (h, w)
    to_pixels = torch.diag(torch.tensor([out_w / 2, out_h / 2, 1.0]))
    to_normal = torch.diag(torch.tensor([2 / w, 2 / h, 1.0]))
    theta = (to_normal @ matrices @ to_pixels)[:, :2].to(x.device, x.dtype)
    grid = F.affine_grid(theta, [n, c, out_h, out_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass
class MacoCrops(Transform):
    """MACO's augmentation (Fel et al. 2023): ``crops`` random square crops of every image per step,
    each resized to the image's size, plus Gaussian and uniform noise.

    The published recipe: crop centres at 0.5 + N(0, 0.15) of the side, each
    crop's side drawn from N(mean, 0.05) and clipped to [0.05, 1], the mean
    shrinking linearly over the run from ``largest`` to ``smallest`` (Xplique:
    0.5 to 0.05 on a 512 px canvas seen at 224 px; the paper quotes boxes of
    0.05–0.35), and noise of spread ``noise`` (0.08 on a [-1, 1] input, so
    0.04 on [0, 1] pixels). The output holds ``crops`` views per image,
    view-major (view ``j`` of item ``i`` at ``j·N + i``); the objective is
    averaged over the views.
    """

    crops: int = 6
    largest: float = 0.35
    smallest: float = 0.05
    noise: float = 0.04

    def __call__(self, x: torch.Tensor, rng: Randomness) -> torch.Tensor:
        n, _, h, w = x.shape
        mean = self.largest + (self.smallest - self.largest) * rng.progress
        side = rng.normal(self.crops, mean, 0.05).clamp(0.05, 1.0)
        cx, cy = rng.normal(self.crops, 0.0, 0.15), rng.normal(self.crops, 0.0, 0.15)
        m = torch.eye(3).repeat(n * self.crops, 1, 1)
        m[:, 0, 0] = m[:, 1, 1] = view_major(side)
        m[:, 0, 2], m[:, 1, 2] = view_major(cx) * w, view_major(cy) * h
        views = warp(x.repeat(self.crops, 1, 1, 1), m)
        gauss, flat = rng.noise_like(views)
        return views + self.noise * (gauss + flat)


def view_major(rows: torch.Tensor) -> torch.Tensor:
    """Per-item rows (N×k) flattened view-major: entry ``j·N + i`` is item ``i``'s ``j``-th value."""
    return rows.T.reshape(-1)


class Compose(Transform):
    """Apply transforms in order, fusing each run of consecutive affine transforms into one resampling."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, rng: Randomness) -> torch.Tensor:
        """Transformed images; a chain that ends in geometric transforms ends at the input size
        (Lucid's jitter crops what the padding added), so the network never sees more pixels than asked for."""
        pending: list[Affine] = []
        size = (x.shape[-2], x.shape[-1])
        for t in self.transforms + [None]:
            if isinstance(t, Affine):
                pending.append(t)
                continue
            if pending:
                x = warp(x, fused(pending, x.shape[-2], x.shape[-1], len(x), rng), size if t is None else None)
                pending = []
            if t is not None:
                x = t(x, rng)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def fused(transforms: Sequence[Affine], height: int, width: int, n: int, rng: Randomness) -> torch.Tensor:
    """One matrix per item for a chain: output of the last samples the first's input at A1·A2·…·Ak·p."""
    m = torch.eye(3).repeat(n, 1, 1)
    for t in transforms:
        m = m @ t.matrices(n, height, width, rng)
    return m


def standard_transforms() -> Compose:
    """Lucid's default set, relative to the side: pad 12, jitter 8, scale 0.9–1.1, rotate ±10°, jitter 4 (at 224 px)."""
    return Compose([Pad(12 / REFERENCE_SIDE), Jitter(8 / REFERENCE_SIDE), Scale(0.9, 1.1), Rotate(10.0),
                    Jitter(4 / REFERENCE_SIDE)])


def make_transforms(spec: str | Transform | Sequence[Transform] | None, blur: float = 0.0) -> Compose:
    """``"standard"`` (Lucid's), ``"maco"`` (MACO's crops and noise), ``"none"``/None, a Transform or a list;
    ``blur`` (fraction of side) is appended."""
    if spec == "standard":
        chain = standard_transforms().transforms
    elif spec == "maco":
        chain = [MacoCrops()]
    elif spec is None or spec == "none":
        chain = []
    elif isinstance(spec, Transform):
        chain = [spec]
    elif isinstance(spec, str):
        raise UnknownNameError("transform set", spec, TRANSFORM_NAMES)
    else:
        chain = list(spec)
    if blur:
        chain.append(Blur(blur))
    return Compose(chain)


class RedirectedClamp(torch.autograd.Function):
    """A ReLU (or ReLU6) whose backward also lets gradient reach inactive units when it would wake them up.

    Lucid's ``redirected_relu_grad``: where the unit is off (x < lower), gradient
    that asks for a *larger* x passes through instead of being zeroed; for an
    item whose ordinary ReLU gradient is entirely zero, this is the only
    gradient it gets. Applied only early in the optimization, so the final
    image is optimized against the true network.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, upper: float | None) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.upper = upper
        return x.clamp(min=0.0, max=upper)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        active = x > 0
        if ctx.upper is not None:
            active = active & (x < ctx.upper)
        relu_grad = grad * active
        # grad < 0 means "increase x" for a loss that is minimized.
        redirected = torch.where((x <= 0) & (grad > 0), torch.zeros_like(grad), grad)
        if ctx.upper is not None:
            redirected = torch.where(x >= ctx.upper, relu_grad, redirected)
        dead = relu_grad.flatten(1).norm(dim=1) == 0
        return torch.where(dead.view(-1, *[1] * (grad.ndim - 1)), redirected, relu_grad), None


@contextmanager
def redirected_relus(module: nn.Module) -> Iterator[None]:
    """Swap the gradient of every ReLU/ReLU6 in ``module`` for :class:`RedirectedClamp` inside the block.

    In-place activations are switched to out-of-place for the block (and back
    in ``finally``) because the redirected gradient needs the pre-activation.
    """
    relus = {name: m for name, m in module.named_modules() if isinstance(m, (nn.ReLU, nn.ReLU6))}
    inplace = {name: m.inplace for name, m in relus.items()}

    def hook_for(upper: float | None):
        return lambda _m, inputs, _out: RedirectedClamp.apply(inputs[0], upper)

    hooks = {name: hook_for(6.0 if isinstance(m, nn.ReLU6) else None) for name, m in relus.items()}
    try:
        for m in relus.values():
            m.inplace = False
        with forward_hooks(module, hooks):
            yield
    finally:
        for name, m in relus.items():
            m.inplace = inplace[name]
