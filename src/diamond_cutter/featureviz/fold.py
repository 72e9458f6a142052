"""A rendering copy of a network with eval-mode BatchNorm folded into the convolution before it.

Why: a feature visualization runs thousands of forward+backward passes through a
frozen network in eval mode, where a BatchNorm is a fixed per-channel affine map
``y = a·x + b``. Folded into the preceding convolution (``W' = a·W``,
``b' = a·bias + b``) it costs nothing, while as a separate layer it reads and
writes every activation twice more per step; on a CPU, where these layers are
bound by memory traffic, BatchNorm forward+backward is about a quarter of a
render step of EfficientNet-Lite0. The fold happens on a private deep copy (the
user's network is never touched), only for pairs where the BatchNorm reads the
convolution's very output, never for a convolution whose output an objective
reads, and the result is checked against the original on a probe image: if any
watched activation differs, the unfolded network is used instead.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from ..capture import capture, forward_hooks, preserved, resolve_modules
from .objectives import OUTPUT

#: Largest deviation of a watched activation (relative to its largest value) accepted after folding.
TOLERANCE = 1e-4


class AfterNorm(nn.Module):
    """What is left of a norm+activation layer (timm's ``BatchNormAct2d``) once its norm is folded away."""

    def __init__(self, drop: nn.Module, act: nn.Module):
        super().__init__()
        self.drop, self.act = drop, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


def conv_norm_pairs(module: nn.Module, probe: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, norm name) for every BatchNorm2d whose input is a Conv2d's output, seen in one forward."""
    convs = {name: m for name, m in module.named_modules() if isinstance(m, nn.Conv2d)}  # timm's Conv2dSame too
    norms = {name: m for name, m in module.named_modules() if isinstance(m, nn.BatchNorm2d) and foldable(m)}
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # keeps the tensors alive so ids stay unique
    pairs: list[tuple[str, str]] = []

    def on_conv(name: str):
        def hook(_m: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
            produced[id(out)] = (name, out)
        return hook

    def on_norm(name: str):
        def hook(_m: nn.Module, inputs: tuple, _out: torch.Tensor) -> None:
            source = produced.get(id(inputs[0]))
            if source is not None and source[1] is inputs[0]:
                pairs.append((source[0], name))
        return hook

    hooks = {name: on_conv(name) for name in convs} | {name: on_norm(name) for name in norms}
    with forward_hooks(module, hooks), torch.no_grad():
        module(probe)
    return pairs


def foldable(norm: nn.BatchNorm2d) -> bool:
    """Eval-mode BatchNorm with running statistics, plain or timm's norm+activation layer."""
    plain = type(norm) is nn.BatchNorm2d or (hasattr(norm, "act") and hasattr(norm, "drop"))
    return plain and norm.running_mean is not None and norm.running_var is not None


@torch.no_grad()
def fold_pair(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Module:
    """Fold ``norm`` into ``conv`` in place and return the module that replaces ``norm``."""
    assert norm.running_var is not None and norm.running_mean is not None  # foldable() checked
    scale = (norm.running_var + norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros_like(shift), requires_grad=False)
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    conv.bias.copy_(conv.bias * scale + shift)
    if type(norm) is nn.BatchNorm2d:
        return nn.Identity()
    return AfterNorm(cast(nn.Module, norm.drop), cast(nn.Module, norm.act))


def replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, child, new)


def folded_copy(module: nn.Module, probe: torch.Tensor, keep: Sequence[str]) -> nn.Module:
    """A frozen eval-mode copy of ``module`` with BatchNorms folded, or ``module`` itself when
    nothing folds or the folded copy does not reproduce the activations of ``keep`` (layer names)."""
    with preserved(module, freeze=True):
        pairs = [(c, n) for c, n in conv_norm_pairs(module, probe) if c not in keep]
        if not pairs:
            return module
        try:
            net = copy.deepcopy(module)
        except (TypeError, RuntimeError, copy.Error):  # a network that cannot be copied is rendered as it is
            return module
        convs, norms = resolve_modules(net, [c for c, _ in pairs]), resolve_modules(net, [n for _, n in pairs])
        for conv_name, norm_name in pairs:
            conv, norm = cast(nn.Conv2d, convs[conv_name]), cast(nn.BatchNorm2d, norms[norm_name])
            replace(net, norm_name, fold_pair(conv, norm))
        for sub in net.modules():  # in-place clamps cost an extra copy per activation, and nothing here needs them
            if getattr(sub, "inplace", False) is True:
                sub.inplace = False  # type: ignore[assignment]
        net.eval().requires_grad_(False)
        return net if same_activations(module, net, probe, keep) else module


def same_activations(original: nn.Module, folded: nn.Module, probe: torch.Tensor, keep: Sequence[str]) -> bool:
    """Whether the watched layers (and the final output) agree between the two networks."""
    outputs = []
    for net in (original, folded):
        with capture(net, keep, detach=True) as rec, torch.no_grad():
            out = net(probe)
            outputs.append([rec[name] for name in keep] + ([out] if isinstance(out, torch.Tensor) else []))
    for a, b in zip(*outputs):
        if a.shape != b.shape or (a - b).abs().max() > TOLERANCE * max(a.abs().max().item(), 1.0):
            return False
    return True


def rendering_network(model, keep: Sequence[str]) -> nn.Module:
    """The network a render should run: ``model.module`` with its BatchNorms folded where that is exact."""
    probe = model.normalize(torch.rand(1, *model.input_size, generator=torch.Generator().manual_seed(0)))
    return folded_copy(model.module, probe.to(model.device), [name for name in keep if name != OUTPUT])
