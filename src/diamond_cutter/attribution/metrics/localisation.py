"""Localisation: does the map point at the object, when the user says where the object is?

The pointing game (Zhang et al. 2016) asks whether the map's maximum falls in
the object's region; the energy-based pointing game (Wang et al. 2020) asks
which share of the map's positive mass does.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...errors import DiamondCutterError
from ..result import Attribution
from .inputs import relevance_map
from .result import MetricResult

#: A box: (x0, y0, x1, y1) in pixels of the network's input (after resizing and cropping), x1/y1 exclusive.
Box = tuple[float, float, float, float]


def pointing_game(maps: Attribution | torch.Tensor, regions: Any, *, tolerance: int = 0) -> MetricResult:
    """1 where a maximum of the map lies in the image's region (grown by ``tolerance`` pixels), else 0.

    ``regions``: N×H×W masks, or per image a box or a list of boxes
    (see :data:`Box`). An image with an empty region scores NaN.
    """
    masks = region_masks(regions, _size(maps))
    heat = relevance_map(maps, len(masks), _hw(masks))
    if tolerance > 0:
        masks = F.max_pool2d(masks[:, None].float(), 2 * tolerance + 1, 1, tolerance)[:, 0] > 0
    peak = heat.flatten(1) == heat.flatten(1).max(1, keepdim=True).values
    hit = (peak & masks.flatten(1)).any(1).double()
    return _result("pointing_game", maps, _nan_where_empty(hit, masks), {"tolerance": tolerance})


def energy_pointing_game(maps: Attribution | torch.Tensor, regions: Any) -> MetricResult:
    """The share of the map's positive mass inside the image's region (1 is best; NaN without a region)."""
    masks = region_masks(regions, _size(maps))
    heat = relevance_map(maps, len(masks), _hw(masks)).clamp_min(0).flatten(1).double()
    share = (heat * masks.flatten(1)).sum(1) / heat.sum(1).clamp_min(1e-300)
    return _result("energy_pointing_game", maps, _nan_where_empty(share, masks), {})


def region_masks(regions: Any, size: tuple[int, int] | None) -> torch.Tensor:
    """N×H×W boolean masks from masks or boxes (boxes need ``size``, the images' H×W)."""
    if regions is None:
        raise DiamondCutterError(
            "the pointing games need the object's region in each image: pass regions= as N×H×W masks "
            "or one (x0, y0, x1, y1) box (or a list of boxes) per image"
        )
    if isinstance(regions, torch.Tensor) and regions.ndim == 3:
        return regions.bool()
    if size is None:
        raise DiamondCutterError("boxes need the images' size: pass the maps as an Attribution or masks as a tensor")
    masks = torch.zeros((len(regions), *size), dtype=torch.bool)
    for mask, boxes in zip(masks, regions):
        for box in [boxes] if _is_box(boxes) else boxes:
            if not _is_box(box):
                raise DiamondCutterError(f"a box is (x0, y0, x1, y1), got {box!r}")
            x0, y0, x1, y1 = (int(round(float(v))) for v in box)
            mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return masks


def _is_box(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value)


def _hw(t: torch.Tensor) -> tuple[int, int]:
    return int(t.shape[-2]), int(t.shape[-1])


def _size(maps: Attribution | torch.Tensor) -> tuple[int, int] | None:
    if isinstance(maps, Attribution):
        return _hw(maps.pixels) if maps.pixels is not None else _hw(maps.maps)
    return _hw(maps) if isinstance(maps, torch.Tensor) else None


def _nan_where_empty(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return torch.where(masks.flatten(1).any(1), values, torch.full_like(values, float("nan")))


def _result(metric: str, maps: Attribution | torch.Tensor, values: torch.Tensor, settings: dict) -> MetricResult:
    if isinstance(maps, Attribution):
        return MetricResult(metric, maps.method, values.cpu(), list(maps.image_ids), True, settings)
    return MetricResult(metric, "maps", values.cpu(), [f"image {i}" for i in range(len(values))], True, settings)
