"""The :class:`Attribution` result: raw maps plus what they explain, with renders on demand."""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save as safetensors_bytes

from .. import render
from ..store import Store


@dataclass
class Attribution:
    """Maps from one attribution method for a batch of images.

    ``maps`` is N×C×h×w exactly as the method computed it: signed and
    unnormalised (C = 3 for input-space methods such as gradients, C = 1 for
    class activation maps and occlusion; h×w is the layer's grid for CAMs, the
    input size otherwise). Scaling only happens when rendering, so maps of
    different classes and images stay comparable. ``targets`` are the explained
    class indices (the positive side of a contrast; ``None`` for a callable
    target), ``target_names`` their labels ("tabby − tiger cat" for a contrast)
    and ``pixels`` the images in ``[0, 1]`` for overlays.
    """

    maps: torch.Tensor
    method: str
    layer: str | None
    targets: list[int] | None
    target_names: list[str]
    image_ids: list[str]
    pixels: torch.Tensor | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.maps)

    def __repr__(self) -> str:
        where = f", layer={self.layer!r}" if self.layer else ""
        return f"Attribution({self.method!r}{where}, maps={tuple(self.maps.shape)}, images={len(self)})"

    def heat(self, signed: bool = True) -> torch.Tensor:
        """One N×h×w map per image: channels summed (their magnitudes when ``signed=False``)."""
        maps = self.maps if signed or self.maps.shape[1] == 1 else self.maps.abs()
        return maps.sum(1)

    def upsampled(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        """``maps`` resized bilinearly to ``size`` (default: the input images' size)."""
        if size is None:
            if self.pixels is None:
                return self.maps
            size = (int(self.pixels.shape[-2]), int(self.pixels.shape[-1]))
        if tuple(self.maps.shape[-2:]) == tuple(size):
            return self.maps
        return F.interpolate(self.maps.float(), size=size, mode="bilinear", align_corners=False)

    def overlay(self, cmap: str = "jet", alpha: float = 0.5, signed: bool = False) -> list[Image.Image]:
        """Each map over its image (see :func:`diamond_cutter.render.heatmap_overlay`)."""
        heats = self.heat(signed=signed)
        if self.pixels is None:
            return [render.colored_map(h, cmap, signed) for h in heats]
        return [render.heatmap_overlay(p, h, cmap, alpha, signed) for p, h in zip(self.pixels, heats)]

    def render(
        self, style: str = "auto", cmap: str = "jet", alpha: float = 0.5, percentile: float = render.CLIP_PERCENTILE
    ) -> list[Image.Image]:
        """Each map drawn in ``style`` (see :func:`diamond_cutter.render.attribution_picture`), clipped at
        ``percentile``. ``auto`` is :meth:`default_style`."""
        style = self.default_style() if style == "auto" else style
        pixels = self.pixels if self.pixels is not None else [None] * len(self)
        return [render.attribution_picture(p, m, style, cmap=cmap, alpha=alpha, percentile=percentile)
                for p, m in zip(pixels, self.maps)]

    def default_style(self) -> str:
        """``overlay`` for maps at a layer's grid or of one channel (CAMs, occlusion), whose coarse
        blobs read well over the image; ``magnitude`` for pixel-space gradients, whose fine detail a
        colour wash hides (chosen side by side with captum's defaults)."""
        return "overlay" if self.maps.shape[1] == 1 else "magnitude"

    def captions(self) -> list[str]:
        return [f"{image_id} → {name}" for image_id, name in zip(self.image_ids, self.target_names)]

    def save(self, directory: str, cmap: str = "jet", alpha: float = 0.5, style: str = "auto") -> list[str]:
        """Write renders in ``style`` (PNG), the raw maps (``maps.safetensors``) and ``attribution.json``;
        return the keys."""
        store = Store(directory)
        keys = []
        renders = self.render(style, cmap, alpha)
        for i, (picture, image_id, name) in enumerate(zip(renders, self.image_ids, self.target_names)):
            key = f"{i:03d}_{_slug(image_id)}_{self.method}_{_slug(name)}.png"
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            store.write_bytes(key, buffer.getvalue())
            keys.append(key)
        store.write_bytes(
            "maps.safetensors", safetensors_bytes({"maps": self.maps.detach().float().contiguous().cpu()})
        )
        store.write_json(
            "attribution.json",
            {
                "method": self.method,
                "layer": self.layer,
                "targets": self.targets,
                "target_names": self.target_names,
                "image_ids": self.image_ids,
                "shape": list(self.maps.shape),
                "options": {
                    k: v for k, v in self.options.items() if isinstance(v, (int, float, str, bool, type(None)))
                },
                "overlays": keys,
            },
        )
        return keys + ["maps.safetensors", "attribution.json"]

    def _repr_html_(self) -> str:
        cells = []
        for picture, caption in zip(self.render(), self.captions()):
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            data = base64.b64encode(buffer.getvalue()).decode("ascii")
            cells.append(
                f'<figure style="display:inline-block;margin:4px"><img src="data:image/png;base64,{data}" width="160">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        layer = f" at {html.escape(self.layer)}" if self.layer else ""
        return f"<div><b>{html.escape(self.method)}</b>{layer}<br>{''.join(cells)}</div>"


def _slug(text: str) -> str:
    """A file-name-safe fragment of an image id or class name."""
    tail = re.split(r"[\\/]", text)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-")[:40] or "x"
