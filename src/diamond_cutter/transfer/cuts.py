"""Where a network can be cut: candidate layers, their cost, and the backbone that stops there.

A cut is only honest if the rest of the network would see nothing but the cut's
output. Inside a residual block the shortcut bypasses the layer; after a NASNet
cell the next cell also reads the previous cell's output. Rather than trusting
module names, :func:`list_cuts` tests this directly: with two different images
in one batch, it replaces the second image's output at the layer by the first
image's; if the network's logits then agree for both images, the layer carries
the full state, otherwise it is listed with a note and never cut at silently.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..capture import forward_hooks, preserved, read_layers
from ..errors import DiamondCutterError, UnknownNameError
from ..layers import macs
from ..model import Model

#: Global pooling layers: their output is what pooling the layer before already gives, so never a cut.
GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

#: How many cuts ``cuts="auto"`` picks, spread evenly by depth.
DEFAULT_CUTS = 10


@dataclass(frozen=True)
class Cut:
    """A layer to cut at, with what it costs to run the network up to it.

    ``macs`` counts multiply-accumulates of convolutions and linear layers up
    to the cut at the model's input size; ``parameters`` counts the weights of
    every module that ran up to the cut. ``single_tensor`` is False where the
    rest of the network also reads something other than this layer's output.
    """

    name: str
    index: int
    relative_depth: float
    channels: int
    height: int
    width: int
    parameters: int
    macs: int
    single_tensor: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Listings per network and input size: the check costs forward passes, and the architecture does not change.
_LISTINGS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], list[Cut]]] = weakref.WeakKeyDictionary()


def list_cuts(model: Model) -> list[Cut]:
    """Every block-level layer of ``model`` (steps of a sequential container or the network's own children).

    Layers that do not carry the full state are included with ``single_tensor=False``
    and a note, so a listing shows why they are never picked.
    """
    per_size = _LISTINGS.setdefault(model.module, {})
    if model.input_size not in per_size:
        per_size[model.input_size] = _listing(model)
    return list(per_size[model.input_size])


def _listing(model: Model, names: Sequence[str] | None = None) -> list[Cut]:
    """Cut records for ``names`` (default: the block-level layers), with cost and the single-tensor check."""
    names = _block_layers(model) if names is None else list(names)
    cost = _cumulative_cost(model)
    complete = _carries_full_state(model, names)
    table = model.layers
    cuts = []
    for name in names:
        layer = table.resolve(name)
        note = (
            "" if complete[name] else "not a single-tensor cut: later layers also read other tensors (skip/two-input)"
        )
        cuts.append(Cut(name, layer.index, round(table.relative_depth(name), 4), layer.channels or 0,
                        layer.height or 1, layer.width or 1, cost[name][1], cost[name][0], complete[name], note))
    return cuts


def candidate_cuts(model: Model, cuts: str | Sequence[str] = "auto", n: int = DEFAULT_CUTS) -> list[Cut]:
    """The cuts a sweep uses: ``"auto"`` picks ``n`` single-tensor cuts spread evenly by depth,
    always including the last one (the pre-output feature map); a list of names is checked."""
    listing = list_cuts(model)
    if isinstance(cuts, str) and cuts == "auto":
        return spread([c for c in listing if c.single_tensor], n)
    names = [cuts] if isinstance(cuts, str) else list(cuts)
    by_name = {c.name: c for c in listing}
    chosen = []
    for name in names:
        if name not in by_name:
            if name in model.layers and model.layers.resolve(name).spatial:
                by_name[name] = _listing(model, [name])[0]
            else:
                raise UnknownNameError("cut", name, [c.name for c in listing])
        if not by_name[name].single_tensor:
            raise DiamondCutterError(f"cannot cut {model.name} at {name!r}: {by_name[name].note}")
        chosen.append(by_name[name])
    return sorted(chosen, key=lambda c: c.index)


def spread(cuts: list[Cut], n: int) -> list[Cut]:
    """``n`` cuts evenly spread by relative depth (first and last always in)."""
    if len(cuts) <= n:
        return list(cuts)
    depths = np.array([c.relative_depth for c in cuts])
    picked: list[int] = []
    for target in np.linspace(depths[0], depths[-1], n):
        order = np.argsort(np.abs(depths - target), kind="stable")
        picked.append(next(int(i) for i in order if int(i) not in picked))
    return [cuts[i] for i in sorted(picked)]


def _block_layers(model: Model) -> list[str]:
    """The network's blocks (:meth:`~diamond_cutter.layers.LayerTable.blocks`): the steps a network is cut at."""
    return [block.name for block in model.layers.blocks()]


def _cumulative_cost(model: Model) -> dict[str, tuple[int, int]]:
    """``name -> (MACs, parameters)`` of everything that ran up to the end of that layer."""
    totals = {"macs": 0, "params": 0}
    seen: set[int] = set()
    at: dict[str, tuple[int, int]] = {}

    def hook_for(name: str):
        def hook(m: nn.Module, inputs: tuple, out: Any) -> None:
            if id(m) not in seen:
                seen.add(id(m))
                totals["params"] += sum(p.numel() for p in m.parameters(recurse=False))
            totals["macs"] += macs(m, out)
            at.setdefault(name, (totals["macs"], totals["params"]))

        return hook

    names = [n for n, _ in model.module.named_modules() if n]
    x = torch.zeros((1, *model.input_size), device=model.device)
    with preserved(model.module), torch.no_grad(), forward_hooks(model.module, {n: hook_for(n) for n in names}):
        model.module(x)
    return at


def _carries_full_state(model: Model, names: Sequence[str]) -> dict[str, bool]:
    """For each layer: do the logits depend on the input only through this layer's output?

    One forward on a batch of ``2·len(names)`` random images: layer ``k`` copies
    image ``2k``'s output onto image ``2k+1``; the pairs do not interact (eval mode).
    """
    names = list(names)
    if not names:
        return {}
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((2 * len(names), *model.input_size), generator=gen).to(model.device)

    def copier(k: int):
        def hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> torch.Tensor:
            out = out.clone()
            out[2 * k + 1] = out[2 * k]
            return out

        return hook

    with preserved(model.module), torch.no_grad():
        with forward_hooks(model.module, {name: copier(k) for k, name in enumerate(names)}):
            out = model(x).float()
    scale = out.abs().amax(dim=1).clamp_min(1e-6)
    gap = (out[0::2] - out[1::2]).abs().amax(dim=1) / scale[0::2]
    return {name: bool(gap[k] < 1e-4) for k, name in enumerate(names)}


class CutBackbone(nn.Module):
    """The original network run only up to ``cut``; returns that layer's output.

    The network is kept whole (``self.net``, so its layer names stay readable
    as ``backbone.net.…`` and its checkpoint loads unchanged); the forward is
    stopped right after the cut, so nothing downstream is computed.
    """

    def __init__(self, net: nn.Module, cut: str):
        super().__init__()
        self.net = net
        self.cut = cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return read_layers(self.net, x, [self.cut], grad="through", stop=True, heap=False)[self.cut]

    def extra_repr(self) -> str:
        return f"cut={self.cut!r}"


def run_to_cuts(net: nn.Module, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of several layers from one forward that stops after the last of them (detached)."""
    reading = read_layers(net, x, names, stop=True)
    return {name: reading[name] for name in names}
