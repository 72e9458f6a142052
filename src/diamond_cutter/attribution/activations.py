"""What a layer computes for an image: feature-map grids, one filter's guided backprop, first-layer kernels.

These are the classic "look at the activations" views (pytorch-cnn-visualizations):
raw tensors first, pictures through :mod:`diamond_cutter.render`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .. import render
from ..capture import preserved, read_layers
from ..errors import DiamondCutterError
from ..model import Model
from .common import prepare
from .gradients import relu_rule


def feature_maps(model: Model, image: Any, layer: str) -> torch.Tensor:
    """The C×h×w output of ``layer`` for one image (the first if several are given)."""
    model.spatial_layer(layer)
    _, x = prepare(model, image)
    with preserved(model.module, freeze=True):
        return read_layers(model.module, x[:1], [layer], stop=True)[layer][0].float().cpu()


def feature_grid(
    model: Model, image: Any, layer: str, channels: list[int] | range | None = None, cols: int | None = None,
    cmap: str = "viridis", size: int = 64,
) -> Image.Image:
    """Each channel's map as a ``size``-pixel tile in one grid (each tile scaled on its own)."""
    maps = feature_maps(model, image, layer)
    picked = _channels(channels, len(maps), layer)
    return render.grid([render.colored_map(maps[c], cmap, size=(size, size)) for c in picked], cols)


def filter_guided_backprop(model: Model, image: Any, layer: str, channel: int) -> torch.Tensor:
    """Guided backprop of one filter's summed activation: which pixels drive this filter (3×H×W)."""
    _channels([channel], model.layer(layer).channels or 0, layer)
    _, x = prepare(model, image)
    module = model.module
    x = x[:1].detach().requires_grad_(True)
    with preserved(module, freeze=True), relu_rule(module, "guided"), torch.enable_grad():
        reading = read_layers(module, x, [layer], grad="through", stop=True)
        (grad,) = torch.autograd.grad(reading[layer][:, channel].sum(), x)
    return grad[0].cpu()


def first_conv(model: Model) -> tuple[str, nn.Conv2d]:
    """The first convolution the input meets (forward order)."""
    modules = dict(model.module.named_modules())
    for layer in model.layers:
        if isinstance(modules[layer.name], nn.Conv2d):
            return layer.name, modules[layer.name]
    raise DiamondCutterError(f"{model.name} has no Conv2d layer")


def first_layer_kernels(model: Model, scale: int = 8) -> list[Image.Image]:
    """The first convolution's kernels as images (RGB when it reads 3 channels), each min-max scaled."""
    _, conv = first_conv(model)
    weights = conv.weight.detach().float().cpu()
    if weights.shape[1] != 3:
        weights = weights.mean(1, keepdim=True)
    low = weights.amin(dim=(1, 2, 3), keepdim=True)
    high = weights.amax(dim=(1, 2, 3), keepdim=True)
    weights = (weights - low) / (high - low).clamp_min(1e-12)
    weights = F.interpolate(weights, scale_factor=scale, mode="nearest")
    return [render.to_pil(w) for w in weights]


def _channels(channels: list[int] | range | None, count: int, layer: str) -> list[int]:
    picked = list(range(count)) if channels is None else [int(c) for c in channels]
    bad = [c for c in picked if not 0 <= c < count]
    if bad:
        raise DiamondCutterError(f"layer {layer!r} has {count} channels; channel {bad[0]} is out of range")
    return picked
