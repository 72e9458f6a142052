"""Tensors into pictures, in one place: single pictures and batches, heatmap overlays,
saliency renders, tints, activation tiles, patch crops and image grids.

Attribution methods return raw, signed, unnormalised maps; every choice about
how to show them (scaling, colour map, transparency, which sign) lives here, so
the numbers stay comparable across classes and methods and only the picture is
normalised. A ground-floor module: analysis results, the report and the visual
log all draw through it, and of Diamond Cutter it imports only the errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .errors import DiamondCutterError, UnknownNameError

ImageLike = Image.Image | torch.Tensor

#: Building Blocks' colours: orange for evidence for the positive class, blue for the negative one.
POSITIVE_RGB = (255, 127, 14)
NEGATIVE_RGB = (31, 119, 180)


def to_pil(image: ImageLike) -> Image.Image:
    """One picture from a PIL image (returned as it is) or a C×H×W tensor of ``[0, 1]`` pixels
    (C = 1 gives a grey picture, C = 3 an RGB one)."""
    if isinstance(image, Image.Image):
        return image
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise DiamondCutterError(f"an image must be a PIL image or a C×H×W tensor (C = 1 or 3), got {shape}")
    arr = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def pictures(images: Any) -> list[Image.Image]:
    """Pictures from the forms images are handed around in: PIL images, ``[0, 1]`` tensors
    (C×H×W or N×C×H×W), an :class:`~diamond_cutter.images.ImageBatch` (its ``pixels``), or lists of these."""
    images = getattr(images, "pixels", images)
    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, torch.Tensor):
        batch = images[None] if images.ndim == 3 else images
        if batch.ndim != 4 or batch.shape[1] not in (1, 3):
            raise DiamondCutterError(
                f"images must be N×C×H×W or C×H×W tensors in [0, 1] (C = 1 or 3), got {tuple(images.shape)}"
            )
        return [to_pil(x) for x in batch]
    if isinstance(images, (list, tuple)):
        return [p for item in images for p in pictures(item)]
    raise DiamondCutterError(f"cannot show a {type(images).__name__} as images")


#: Attribution maps are shown clipped at this percentile of their magnitude, so that a few extreme
#: pixels (gradients are spiky) do not push everything else into the bottom of the colour map.
CLIP_PERCENTILE = 99.0
#: How an attribution map can be drawn: over its image through a colour map, the colour map alone,
#: a diverging colour map of the sign over a greyed image, or the magnitude in grey.
STYLES = ("overlay", "heatmap", "signed", "magnitude")
#: The diverging colour map of the signed style: blue against, white for nothing, red for.
DIVERGING_CMAP = "RdBu_r"


def scale(heat: torch.Tensor, signed: bool = False, percentile: float | None = None) -> torch.Tensor:
    """A map scaled for display into ``[0, 1]``.

    Unsigned maps are shifted to start at 0 and divided by their maximum; signed
    maps are divided by their largest magnitude and shifted so that zero sits at
    0.5 (the middle of a diverging colour map), keeping the sign visible. With
    ``percentile``, that percentile stands in for the maximum and larger values are clipped.
    """
    heat = heat.detach().float()
    if signed:
        return (heat / _top(heat.abs(), percentile)).clamp(-1, 1) * 0.5 + 0.5
    shifted = heat - heat.min()
    return (shifted / _top(shifted, percentile)).clamp(0, 1)


def _top(values: torch.Tensor, percentile: float | None) -> torch.Tensor:
    """The maximum of non-negative ``values``, or their ``percentile`` (never 0)."""
    if percentile is None:
        return values.max().clamp_min(1e-12)
    if not 0 < percentile <= 100:
        raise DiamondCutterError(f"percentile must be in (0, 100], got {percentile}")
    top = float(np.percentile(values.cpu().numpy(), percentile))
    return torch.tensor(top if top > 0 else float(values.max()), device=values.device).clamp_min(1e-12)


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


def colored_map(
    heat: torch.Tensor, cmap: str = "jet", signed: bool = False, size: tuple[int, int] | None = None,
    percentile: float | None = None,
) -> Image.Image:
    """An h×w map alone, coloured (``size`` = (height, width) to resize first; ``percentile`` clips)."""
    heat = _as_map(heat)
    if size is not None:
        heat = resize_map(heat, size)
    return Image.fromarray(colorize(scale(heat, signed, percentile), cmap))


def heatmap_overlay(
    image: ImageLike, heat: torch.Tensor, cmap: str = "jet", alpha: float = 0.5, signed: bool = False,
    percentile: float | None = None,
) -> Image.Image:
    """``heat`` (any h×w) resized onto ``image``, coloured with ``cmap`` and blended with weight ``alpha``."""
    if not 0.0 <= alpha <= 1.0:
        raise DiamondCutterError(f"alpha must be between 0 and 1, got {alpha}")
    picture = to_pil(image).convert("RGB")
    colored = colored_map(heat, cmap, signed, size=(picture.height, picture.width), percentile=percentile)
    return Image.blend(picture, colored, alpha)


def attribution_picture(
    image: ImageLike | None, attribution: torch.Tensor, style: str = "overlay", *, cmap: str = "jet",
    alpha: float = 0.5, percentile: float = CLIP_PERCENTILE,
) -> Image.Image:
    """One attribution map (C×h×w, or h×w) drawn in one of :data:`STYLES`, at the image's size.

    ``overlay``: the map (channels summed; their magnitudes for C > 1) through ``cmap`` blended over
    the image; ``heatmap``: the same colours alone; ``signed``: the summed map through a diverging
    colour map (red for, blue against), opaque where it is strong, over a greyed image;
    ``magnitude``: the summed magnitude in grey. Every style clips at ``percentile``.
    """
    if style not in STYLES:
        raise UnknownNameError("attribution style", style, STYLES)
    maps = torch.as_tensor(attribution).detach().float()
    maps = maps[None] if maps.ndim == 2 else maps
    signed_sum, magnitude = maps.sum(0), maps.abs().sum(0)
    heat = signed_sum if len(maps) == 1 and style in ("overlay", "heatmap") else magnitude
    picture = to_pil(image).convert("RGB") if image is not None else None
    size = (picture.height, picture.width) if picture is not None else (int(maps.shape[-2]), int(maps.shape[-1]))
    if style == "overlay" and picture is not None:
        return heatmap_overlay(picture, heat, cmap, alpha, percentile=percentile)
    if style in ("overlay", "heatmap"):
        return colored_map(heat, cmap, size=size, percentile=percentile)
    if style == "magnitude":
        return to_pil(scale(resize_map(magnitude, size), percentile=percentile)[None])
    unit = scale(resize_map(signed_sum, size), signed=True, percentile=percentile) * 2 - 1
    colours = colorize(unit * 0.5 + 0.5, DIVERGING_CMAP)
    base = picture if picture is not None else Image.new("RGB", (size[1], size[0]), "white")
    return _blend(base, np.sqrt(np.abs(unit.numpy())) * 0.9, colours)  # the root lifts faint evidence into view


def colored_saliency(grad: torch.Tensor) -> Image.Image:
    """A 3×H×W gradient shown as colours: each channel min-max scaled together."""
    return to_pil(scale(_as_rgb(grad)))


def grayscale_saliency(grad: torch.Tensor, percentile: float = CLIP_PERCENTILE) -> Image.Image:
    """Summed absolute gradient over channels, clipped at a percentile so a few pixels do not wash it out
    (the ``magnitude`` style of :func:`attribution_picture`)."""
    return attribution_picture(None, _as_rgb(grad), "magnitude", percentile=percentile)


def positive_negative_saliency(grad: torch.Tensor) -> tuple[Image.Image, Image.Image]:
    """Two renders: where the gradient is positive, and where it is negative (each scaled by its extreme)."""
    grad = _as_rgb(grad).float()
    positive = grad.clamp_min(0)
    negative = (-grad).clamp_min(0)
    return (
        to_pil(positive / positive.max().clamp_min(1e-12)),
        to_pil(negative / negative.max().clamp_min(1e-12)),
    )


def grid(
    images: Sequence[Image.Image], cols: int | None = None, pad: int = 2, background: str = "white"
) -> Image.Image:
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


def bar_chart(labels: Sequence[str], values: Sequence[float], width: int = 320, row: int = 18) -> Image.Image:
    """Horizontal bars from a shared zero (green for positive, red for negative values), one row per
    label, each value printed at its bar: scores that a sequence of pictures can compare at a glance."""
    if len(labels) != len(values) or not labels:
        raise DiamondCutterError(
            f"a bar chart needs as many labels as values (at least one), got {len(labels)} and {len(values)}"
        )
    label_w, value_w = 80, 56
    span = max(max(abs(float(v)) for v in values), 1e-12)
    lo, hi = min(0.0, min(values)) / span, max(0.0, max(values)) / span
    plot_w = width - label_w - value_w
    zero = label_w + plot_w * (-lo / ((hi - lo) or 1.0))
    picture = Image.new("RGB", (width, row * len(labels) + 4), "white")
    draw = ImageDraw.Draw(picture)
    for i, (label, value) in enumerate(zip(labels, values)):
        y = 2 + i * row
        end = zero + plot_w * float(value) / span / ((hi - lo) or 1.0)
        draw.rectangle(
            [min(zero, end), y + 3, max(zero, end), y + row - 3], fill="#2a9d4b" if value >= 0 else "#d1493f"
        )
        draw.text((4, y + 3), str(label)[:14], fill="black")
        draw.text((width - value_w + 4, y + 3), f"{float(value):+.3g}", fill="black")
    draw.line([zero, 0, zero, picture.height], fill="#888888")
    return picture


def tint(image: Image.Image, values: torch.Tensor, alpha: float = 0.75) -> Image.Image:
    """Blend orange (positive) / blue (negative) over ``image`` with opacity ∝ |value| (bilinear)."""
    up = _unit_map(values, image.size)
    colour = np.where(up[..., None] >= 0, np.array(POSITIVE_RGB), np.array(NEGATIVE_RGB))
    return _blend(image, np.abs(up) * alpha, colour)


def tint_colour(
    image: Image.Image, values: torch.Tensor, rgb: tuple[int, int, int], alpha: float = 0.75
) -> Image.Image:
    """Blend one colour over ``image`` with opacity ∝ value (non-negative values, bilinear)."""
    return _blend(image, _unit_map(values.clamp(min=0), image.size) * alpha, np.array(rgb))


def activation_tiles(acts: torch.Tensor, size: tuple[int, int], count: int) -> list[tuple[int, float, Image.Image]]:
    """The ``count`` channels of ``acts`` (C×H×W) with the largest mean activation, as
    (channel, mean, grey map a third of ``size`` = (width, height) on each side)."""
    means = acts.mean(dim=(1, 2))
    top = means.topk(min(count, len(means)))
    side = (max(1, size[1] // 3), max(1, size[0] // 3))
    return [
        (c, v, to_pil(resize_map(scale(acts[c]), side)[None]))
        for c, v in zip(top.indices.tolist(), top.values.tolist())
    ]


def crop_cell(
    picture: Image.Image, cell: tuple[int, int], grid: tuple[int, int], cells: float, size: int = 96
) -> Image.Image:
    """The square patch ``cells`` cells wide centred on ``cell`` of a ``grid`` laid over ``picture``
    (clamped to the image), resized to ``size``."""
    width, height = picture.size
    side = min(width, height, round(cells * max(width / grid[1], height / grid[0])))
    cx, cy = (cell[1] + 0.5) * width / grid[1], (cell[0] + 0.5) * height / grid[0]
    left = int(min(max(cx - side / 2, 0), width - side))
    top = int(min(max(cy - side / 2, 0), height - side))
    return picture.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)


def _unit_map(values: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """H×W values divided by their largest magnitude (into [-1, 1]) and resized to ``size`` (W, H)."""
    top = float(values.abs().max()) or 1.0
    return resize_map(values.float() / top, (size[1], size[0])).clamp(-1, 1).numpy()


#: A relevance picture sums its map over squares of about 1/RELEVANCE_CELLS of the image's shorter side.
RELEVANCE_CELLS = 14


def relevance_picture(image: ImageLike, heat: torch.Tensor) -> Image.Image:
    """A signed input-space relevance map (h×w, the image's size) in the signed style, over its image,
    after summing it over squares of 1/:data:`RELEVANCE_CELLS` of the shorter side (16 px at 224).

    Why: gradient × input and LRP maps flip sign from pixel to pixel, which at thumbnail size reads as
    noise or, blended, as nothing at all; relevance per square shows where the evidence is, and a sum
    keeps what the map conserves.
    """
    heat = _as_map(heat).detach().float()
    region = max(1, min(heat.shape) // RELEVANCE_CELLS)
    pooled = F.avg_pool2d(heat[None, None], region, ceil_mode=True)[0, 0] if region > 1 else heat
    return attribution_picture(image, pooled, "signed")


def _blend(image: Image.Image, weight: np.ndarray, colour: np.ndarray) -> Image.Image:
    """``colour`` over a mostly-grey, dimmed ``image``, so tints stand out also on orange or blue pictures."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    base = (0.35 * rgb + 0.65 * rgb.mean(axis=2, keepdims=True)) * 0.8
    w = weight[..., None]
    return Image.fromarray((base * (1 - w) + colour * w).clip(0, 255).astype(np.uint8))


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


def faded_pictures(images: torch.Tensor, importance: torch.Tensor, quantile: float = 0.8) -> list[Image.Image]:
    """RGBA pictures whose opacity is each pixel's importance (N×H×W, non-negative), as MACO's figures show a
    visualization with its transparency map: importance is clipped at its ``quantile`` per image and scaled
    to [0, 1], so the top fifth of pixels by importance is opaque and the rest fades out."""
    if images.ndim != 4 or importance.shape != (images.shape[0], *images.shape[2:]):
        raise DiamondCutterError(
            f"importance must be N×H×W for images {tuple(images.shape)}, got {tuple(importance.shape)}")
    flat = importance.detach().float().flatten(1)
    top = torch.quantile(flat, quantile, dim=1, keepdim=True).clamp(min=1e-12)
    alpha = (flat / top).clamp(0, 1).view_as(importance)
    out = []
    for picture, a in zip(pictures(images), alpha):
        rgba = picture.convert("RGBA")
        rgba.putalpha(Image.fromarray((a.cpu().numpy() * 255).round().astype(np.uint8)))
        out.append(rgba)
    return out
