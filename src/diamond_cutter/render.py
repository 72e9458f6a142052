"""Turning maps into pictures: heatmap overlays, saliency renders and image grids.

Attribution methods return raw, signed, unnormalised maps; every choice about
how to show them (scaling, colour map, transparency, which sign) lives here, so
the numbers stay comparable across classes and methods and only the picture is
normalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import DiamondCutterError, UnknownNameError

ImageLike = Image.Image | torch.Tensor


def to_pil(image: ImageLike) -> Image.Image:
    """A PIL RGB image from a PIL image or a C×H×W tensor of ``[0, 1]`` pixels."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise DiamondCutterError(f"an image must be a PIL image or a C×H×W tensor (C = 1 or 3), got {shape}")
    arr = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).convert("RGB")


def scale(heat: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """A map scaled for display into ``[0, 1]``.

    Unsigned maps are min-max scaled; signed maps are divided by their largest
    magnitude and shifted so that zero sits at 0.5 (the middle of a diverging
    colour map), keeping the sign visible.
    """
    heat = heat.detach().float()
    if signed:
        top = heat.abs().max().clamp_min(1e-12)
        return heat / top * 0.5 + 0.5
    low, high = heat.min(), heat.max()
    return (heat - low) / (high - low).clamp_min(1e-12)


def colorize(values: torch.Tensor, cmap: str = "jet") -> np.ndarray:
    """H×W values in ``[0, 1]`` to an H×W×3 uint8 array through a matplotlib colour map."""
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise UnknownNameError("colour map", cmap, list(matplotlib.colormaps)) from None
    rgba = colormap(values.clamp(0, 1).cpu().numpy())
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def resize_map(heat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of an h×w map to ``size`` (height, width)."""
    heat = heat.detach().float()
    if tuple(heat.shape) == tuple(size):
        return heat
    return F.interpolate(heat[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def heatmap(heat: torch.Tensor, cmap: str = "jet", signed: bool = False, size: tuple[int, int] | None = None) -> Image.Image:
    """The map alone, coloured (``size`` = (height, width) to resize first)."""
    heat = _as_map(heat)
    if size is not None:
        heat = resize_map(heat, size)
    return Image.fromarray(colorize(scale(heat, signed), cmap))


def heatmap_overlay(
    image: ImageLike, heat: torch.Tensor, cmap: str = "jet", alpha: float = 0.5, signed: bool = False
) -> Image.Image:
    """``heat`` (any h×w) resized onto ``image``, coloured with ``cmap`` and blended with weight ``alpha``."""
    if not 0.0 <= alpha <= 1.0:
        raise DiamondCutterError(f"alpha must be between 0 and 1, got {alpha}")
    picture = to_pil(image)
    colored = heatmap(heat, cmap, signed, size=(picture.height, picture.width))
    return Image.blend(picture, colored, alpha)


def colored_saliency(grad: torch.Tensor) -> Image.Image:
    """A 3×H×W gradient shown as colours: each channel min-max scaled together."""
    return to_pil(scale(_as_rgb(grad)))


def grayscale_saliency(grad: torch.Tensor, percentile: float = 99.0) -> Image.Image:
    """Summed absolute gradient over channels, clipped at a percentile so a few pixels do not wash it out."""
    magnitude = _as_rgb(grad).abs().sum(0)
    top = torch.quantile(magnitude.flatten(), percentile / 100.0).clamp_min(1e-12)
    return to_pil((magnitude / top).clamp(0, 1)[None])


def positive_negative_saliency(grad: torch.Tensor) -> tuple[Image.Image, Image.Image]:
    """Two renders: where the gradient is positive, and where it is negative (each scaled by its extreme)."""
    grad = _as_rgb(grad).float()
    positive = grad.clamp_min(0)
    negative = (-grad).clamp_min(0)
    return (
        to_pil(positive / positive.max().clamp_min(1e-12)),
        to_pil(negative / negative.max().clamp_min(1e-12)),
    )


def grid(images: Sequence[Image.Image], cols: int | None = None, pad: int = 2, background: str = "white") -> Image.Image:
    """Images laid out in rows of ``cols`` (default: a near-square grid), each cell the largest image's size."""
    if not images:
        raise DiamondCutterError("grid needs at least one image")
    cols = cols or int(np.ceil(np.sqrt(len(images))))
    if cols < 1:
        raise DiamondCutterError(f"cols must be at least 1, got {cols}")
    rows = (len(images) + cols - 1) // cols
    cell_w = max(im.width for im in images)
    cell_h = max(im.height for im in images)
    sheet = Image.new("RGB", (cols * cell_w + (cols + 1) * pad, rows * cell_h + (rows + 1) * pad), background)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        sheet.paste(im.convert("RGB"), (pad + c * (cell_w + pad), pad + r * (cell_h + pad)))
    return sheet


def _as_map(heat: torch.Tensor) -> torch.Tensor:
    heat = torch.as_tensor(heat)
    while heat.ndim > 2 and heat.shape[0] == 1:
        heat = heat[0]
    if heat.ndim != 2:
        raise DiamondCutterError(f"a heatmap must be an h×w map, got shape {tuple(heat.shape)}")
    return heat


def _as_rgb(grad: torch.Tensor) -> torch.Tensor:
    grad = torch.as_tensor(grad).detach().float()
    if grad.ndim == 4 and grad.shape[0] == 1:
        grad = grad[0]
    if grad.ndim != 3:
        raise DiamondCutterError(f"a saliency map must be C×H×W, got shape {tuple(grad.shape)}")
    return grad
