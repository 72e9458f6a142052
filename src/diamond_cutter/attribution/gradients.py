"""Gradient attributions: saliency, input × gradient, guided backprop, deconvnet, SmoothGrad, Integrated Gradients.

All of them differentiate a score with respect to the network input. The input
is made a fresh leaf that requires grad (parameters stay frozen), so the
transfer-learning case of a frozen backbone works and no parameter gradient is
ever computed. Maps are returned raw and signed, N×3×H×W.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torch import nn
from torch.overrides import TorchFunctionMode

from ..capture import forward_hooks
from ..errors import DiamondCutterError, UnknownNameError
from ..model import Model
from ..small import small
from ..targets import Selector
from .base import Method
from .common import chunks, input_gradient

#: Activation modules whose backward pass guided backprop and deconvnet rewrite.
RELU_MODULES = (nn.ReLU, nn.ReLU6)
_FUNCTIONAL_RELUS = {
    torch.nn.functional.relu,
    torch.nn.functional.relu_,
    torch.nn.functional.relu6,
    torch.relu,
    torch.relu_,
    torch.Tensor.relu,
    torch.Tensor.relu_,
}


class _PositiveGradient(torch.autograd.Function):
    """Identity whose backward keeps only positive gradients (guided backprop's extra ReLU).

    Applied to a ReLU's output, the ReLU's own backward still masks by the
    forward sign, giving ``relu(g) * (x > 0)``.
    """

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor) -> torch.Tensor:
        return y.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


class _DeconvGradient(torch.autograd.Function):
    """Passes a ReLU's output forward but sends ``relu(g)`` straight to its input (deconvnet).

    The ReLU's forward mask is bypassed entirely, which is what separates the
    deconvnet from guided backprop.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.clamp(min=0), None


class _ReluCounter(TorchFunctionMode):
    """Counts relu calls made as functions, to tell apart module ReLUs from functional ones."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in _FUNCTIONAL_RELUS:
            self.calls += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def relu_rule(module: nn.Module, rule: str) -> Iterator[None]:
    """Rewrite the backward pass of every ReLU module: ``"guided"`` or ``"deconvnet"``.

    Built on forward hooks that wrap each ReLU's output in a custom autograd
    function. Deconvnet needs the ReLU's input untouched, so in-place ReLUs run
    out of place for the duration (restored in ``finally``). A network that
    applies relu as a function (``F.relu`` in DenseNet or Inception blocks)
    cannot be rewritten that way; it is reported instead of giving a silently
    wrong map.
    """
    relus = {name: m for name, m in module.named_modules() if isinstance(m, RELU_MODULES)}
    if not relus:
        raise DiamondCutterError(f"{rule} needs ReLU modules (nn.ReLU/nn.ReLU6); this network has none")
    module_calls = [0]

    def hook(m: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        module_calls[0] += isinstance(m, nn.ReLU)  # nn.ReLU calls F.relu (counted); nn.ReLU6 calls hardtanh
        if rule == "guided":
            return _PositiveGradient.apply(output)
        return _DeconvGradient.apply(inputs[0], output)

    inplace = [(m, m.inplace) for m in relus.values()]
    counter = _ReluCounter()
    try:
        if rule == "deconvnet":
            for m, _ in inplace:
                m.inplace = False
        with forward_hooks(module, {name: hook for name in relus}), counter:
            yield
    finally:
        for m, flag in inplace:
            m.inplace = flag
    if counter.calls > module_calls[0]:
        raise DiamondCutterError(
            f"{rule} is not supported for this network: it applies relu as a function "
            f"({counter.calls - module_calls[0]} calls outside ReLU modules), which cannot be rewritten"
        )


class GradientMethod(Method):
    """A method whose map for a batch is a function of the input gradient; SmoothGrad can wrap it."""

    def compute(self, x: torch.Tensor, selector: Selector) -> torch.Tensor:
        rows = torch.arange(len(x))
        return torch.cat([self.batch(x[s], selector, rows[s]) for s in chunks(len(x), self.batch_size)])

    def batch(self, x: torch.Tensor, selector: Selector, rows: torch.Tensor) -> torch.Tensor:
        """Maps for one chunk; ``rows`` names the image (target) of each row."""
        return input_gradient(self.model, x, lambda logits: selector.score(logits, rows))


class Saliency(GradientMethod):
    """Vanilla backprop: the raw, signed gradient of the target score (Simonyan et al. 2014)."""

    name = "saliency"


class InputXGradient(GradientMethod):
    """Gradient times input (in the network's normalised input space, as captum's InputXGradient)."""

    name = "input_x_gradient"

    def batch(self, x: torch.Tensor, selector: Selector, rows: torch.Tensor) -> torch.Tensor:
        return x * super().batch(x, selector, rows)


class GuidedBackprop(GradientMethod):
    """Guided backpropagation (Springenberg et al. 2015): only positive gradients pass each ReLU."""

    name = "guided_backprop"
    rule = "guided"

    def context(self) -> AbstractContextManager:
        return relu_rule(self.model.module, self.rule)


class Deconvnet(GuidedBackprop):
    """Deconvnet (Zeiler & Fergus 2014): ReLUs pass positive gradients regardless of the forward sign."""

    name = "deconvnet"
    rule = "deconvnet"


GRADIENT_BASES: dict[str, type[GradientMethod]] = {
    cls.name: cls for cls in (Saliency, InputXGradient, GuidedBackprop, Deconvnet)
}


class SmoothGrad(GradientMethod):
    """SmoothGrad (Smilkov et al. 2017): the mean map over noisy copies of each image.

    ``noise`` is σ as a fraction of each image's value range (max − min of the
    normalised input), as in the paper, so the same setting suits any
    normalisation. ``seed`` makes the noise reproducible; each image draws its
    ``samples`` noise tensors in one call from its own generator.
    """

    name = "smoothgrad"
    multipass = True

    def __init__(
        self, model: Model, *, base: str = "saliency", samples: int = 25, noise: float = 0.15, seed: int = 0,
        squared: bool = False, batch_size: int | None = None,
    ):
        super().__init__(model, batch_size=batch_size)
        if base not in GRADIENT_BASES:
            raise UnknownNameError("SmoothGrad base method", base, GRADIENT_BASES)
        if samples < 1 or noise < 0:
            raise DiamondCutterError(f"SmoothGrad needs samples >= 1 and noise >= 0, got {samples} and {noise}")
        self.base_method = GRADIENT_BASES[base](model, batch_size=self.batch_size)
        samples = small(samples, 2)
        self.base, self.samples, self.noise, self.seed, self.squared = (
            base,
            int(samples),
            float(noise),
            int(seed),
            squared,
        )

    def context(self) -> AbstractContextManager:
        return self.base_method.context()

    def compute(self, x: torch.Tensor, selector: Selector) -> torch.Tensor:
        out = torch.zeros_like(x)
        per_group = max(1, self.batch_size // self.samples)
        for group in chunks(len(x), per_group):
            images = torch.arange(len(x))[group]
            noisy = torch.cat([self._noisy(x[i], int(i)) for i in images])
            rows = images.repeat_interleave(self.samples)
            for s in chunks(len(noisy), self.batch_size):
                maps = self.base_method.batch(noisy[s], selector, rows[s])
                out.index_add_(0, rows[s].to(x.device), maps.square() if self.squared else maps)
        return out / self.samples

    def _noisy(self, image: torch.Tensor, index: int) -> torch.Tensor:
        sigma = self.noise * (image.max() - image.min())  # a tensor: no sync with the device
        generator = torch.Generator(device=image.device).manual_seed(self.seed + index)
        std = sigma.expand(self.samples, *image.shape)
        return image.unsqueeze(0) + torch.normal(0.0, std, generator=generator)


def path_weights(steps: int, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Points α in [0, 1] and quadrature weights for the integral of Integrated Gradients.

    Gauss–Legendre reaches 0.1–2 % completeness error at 8–32 steps where the
    trapezoid rule needs many more, because it is exact for polynomials of
    degree 2·steps − 1 along the path.
    """
    if steps < 2:
        raise DiamondCutterError(f"Integrated Gradients needs at least 2 steps, got {steps}")
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return torch.tensor((nodes + 1) / 2), torch.tensor(weights / 2)
    if rule == "trapezoid":
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return torch.linspace(0, 1, steps, dtype=torch.float64), torch.tensor(weights)
    raise UnknownNameError("integration rule", rule, ["gausslegendre", "trapezoid"])


BASELINES = ("black", "white", "zero", "blurred", "uniform")


class IntegratedGradients(Method):
    """Integrated Gradients (Sundararajan et al. 2017), batched over images × path points.

    ``baseline`` is a name (``black``, ``white``: pixel colours; ``zero``: zeros
    in the network's input space; ``blurred``: a Gaussian-blurred copy;
    ``uniform``: seeded uniform noise pixels), a tensor (1 or N × C×H×W, network
    input space) or a list of those, whose attributions are averaged. Maps
    satisfy completeness: they sum to f(x) − f(baseline) up to the quadrature error.
    """

    name = "integrated_gradients"
    multipass = True

    def __init__(
        self,
        model: Model,
        *,
        steps: int = 32,
        rule: str = "gausslegendre",
        baseline: str | torch.Tensor | Sequence[str | torch.Tensor] = "black",
        seed: int = 0,
        batch_size: int | None = None,
    ):
        super().__init__(model, batch_size=batch_size)
        steps = small(steps, 4)
        self.alphas, self.weights = path_weights(int(steps), rule)
        self.steps, self.rule, self.seed = int(steps), rule, int(seed)
        self.baselines: list[str | torch.Tensor] = (
            [baseline] if isinstance(baseline, (str, torch.Tensor)) else list(baseline)
        )
        for b in self.baselines:
            if isinstance(b, str) and b not in BASELINES:
                raise UnknownNameError("baseline", b, BASELINES)
        self.baseline = ",".join(b if isinstance(b, str) else "custom" for b in self.baselines)

    def compute(self, x: torch.Tensor, selector: Selector) -> torch.Tensor:
        total = torch.zeros_like(x)
        for spec in self.baselines:
            total += self._integrate(x, self.baseline_for(spec, x), selector)
        return total / len(self.baselines)

    def baseline_for(self, spec: str | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The baseline batch (network input space) for one baseline spec."""
        if isinstance(spec, torch.Tensor):
            b = spec.to(x.device, x.dtype)
            b = b.unsqueeze(0) if b.ndim == 3 else b
            if b.shape[1:] != x.shape[1:] or len(b) not in (1, len(x)):
                raise DiamondCutterError(
                    f"a baseline must be C×H×W or N×C×H×W like the input {tuple(x.shape)}, got {tuple(b.shape)}"
                )
            return b.expand_as(x)
        if spec == "zero":
            return torch.zeros_like(x)
        pixels = self.model.denormalize(x)
        if spec == "blurred":
            side = max(3, (min(x.shape[-2:]) // 8) | 1)
            pixels = TF.gaussian_blur(pixels, [side, side], [side / 3.0, side / 3.0])
        elif spec == "uniform":
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
            pixels = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        else:
            pixels = torch.full_like(pixels, 0.0 if spec == "black" else 1.0)
        return self.model.normalize(pixels)

    def _integrate(self, x: torch.Tensor, baseline: torch.Tensor, selector: Selector) -> torch.Tensor:
        steps = len(self.alphas)
        alphas = self.alphas.to(x.device, x.dtype)
        weights = self.weights.to(x.device, x.dtype)
        rows = torch.arange(len(x)).repeat_interleave(steps)  # on the CPU, like the selector's classes
        step = torch.arange(steps, device=x.device).repeat(len(x))
        summed = torch.zeros_like(x)
        for s in chunks(len(rows), self.batch_size):
            r, on_device, a = rows[s], rows[s].to(x.device), alphas[step[s]].view(-1, 1, 1, 1)
            points = baseline[on_device] + a * (x[on_device] - baseline[on_device])
            grads = input_gradient(self.model, points, partial(selector.score, rows=r))
            summed.index_add_(0, on_device, grads * weights[step[s]].view(-1, 1, 1, 1))
        return (x - baseline) * summed

