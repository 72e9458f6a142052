"""The channel atlas: every channel's feature visualization of a layer, cached as one spritemap.

Rendering a layer's 1000 channels takes a while, so an atlas is built in
chunks and saved after each one through the :class:`~diamond_cutter.store.Store`
(atomic writes). The spritemap is written before the manifest that lists the
finished cells, so whatever a kill leaves behind is consistent: the manifest
never claims a cell the spritemap lacks, and a rerun renders only the channels
the manifest does not list. Cells sit on a ⌈√C⌉ × ⌈√C⌉ grid in channel order.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from PIL import Image

from ..errors import DiamondCutterError
from ..html import image_tag
from ..featureviz.fold import rendering_network
from ..featureviz.optimize import Settings, auto_batch_size, image_size, layer_channels, visualize
from ..progress import bar
from ..store import Store
from .fingerprint import layer_fingerprint, settings_digest

#: Icons of an atlas default to this side: big enough to read, small enough for 1000-channel layers.
DEFAULT_ICON = 128
FORMAT_VERSION = 1


class Atlas:
    """A (possibly partial) atlas of one layer. ``icon(c)`` renders a missing channel on demand."""

    def __init__(self, model: Any, layer: str, settings: Settings, store: Store):
        info = model.layer(layer)
        if not info.channels:
            raise DiamondCutterError(f"layer {layer!r} has no channels to put in an atlas")
        self.model, self.layer, self.settings, self.store = model, layer, settings, store
        self.channels = info.channels
        self.grid = math.ceil(math.sqrt(self.channels))
        self.cell = settings.size
        self.fingerprint = layer_fingerprint(model, layer)
        self.key = f"atlas/{self.fingerprint[:24]}-{settings_digest(settings.describe())[:12]}"
        self.manifest = self._load_manifest()
        self._sprites = self._load_spritemap()

    def __repr__(self) -> str:
        return f"Atlas({self.layer!r}, {len(self.done)}/{self.channels} channels, {self.store.path(self.key)})"

    @property
    def done(self) -> list[int]:
        return sorted(self.manifest["done"])

    @property
    def scores(self) -> dict[int, float]:
        """Final mean activation of each rendered channel on its own picture."""
        return {int(k): v for k, v in self.manifest["scores"].items()}

    @property
    def spritemap(self) -> Image.Image:
        """The whole grid (cells not rendered yet are grey)."""
        return self._sprites.copy()

    def _repr_html_(self) -> str:
        return image_tag(self.spritemap, f"atlas of {self.layer}: {len(self.done)}/{self.channels} channels")

    def _blank(self) -> Image.Image:
        mode = "L" if self.model.input_size[0] == 1 else "RGB"
        h, w = self.cell
        return Image.new(mode, (self.grid * w, self.grid * h), 128 if mode == "L" else (128, 128, 128))

    def _load_manifest(self) -> dict[str, Any]:
        key = f"{self.key}/manifest.json"
        if self.store.exists(key):
            manifest = self.store.read_json(key)
            if manifest.get("version") == FORMAT_VERSION:
                return manifest
        return {
            "version": FORMAT_VERSION, "fingerprint": self.fingerprint, "model": self.model.name, "layer": self.layer,
            "channels": self.channels, "grid": self.grid, "cell": list(self.cell),
            "settings": self.settings.describe(), "done": [], "scores": {},
        }

    def _load_spritemap(self) -> Image.Image:
        key = f"{self.key}/spritemap.png"
        if self.manifest["done"] and self.store.exists(key):
            return Image.open(io.BytesIO(self.store.read_bytes(key))).convert(self._blank().mode)
        return self._blank()

    def box(self, channel: int) -> tuple[int, int, int, int]:
        """Pixel box (left, top, right, bottom) of a channel's cell."""
        h, w = self.cell
        row, col = divmod(channel, self.grid)
        return col * w, row * h, (col + 1) * w, (row + 1) * h

    def icon(self, channel: int) -> Image.Image:
        """The picture of one channel, rendered now (and cached) if the atlas lacks it."""
        layer_channels(self.model, self.layer, [channel])
        if channel not in self.manifest["done"]:
            self.fill([channel], progress=False)
        return self._sprites.crop(self.box(channel))

    def missing(self, channels: Sequence[int] | None = None) -> list[int]:
        done = set(self.manifest["done"])
        return [c for c in layer_channels(self.model, self.layer, channels) if c not in done]

    @property
    def plausibility(self) -> dict[int, float]:
        """Plausibility per channel, for channels rendered with references and a judge (see :func:`visualize`)."""
        return {int(k): v for k, v in self.manifest.get("plausibility", {}).items()}

    def fill(self, channels: Sequence[int] | None = None, *, batch_size: int | None = None, progress: bool = True,
             references: Mapping[int, Any] | None = None, judge: Any = None) -> Atlas:
        """Render the missing ones among ``channels`` (all by default), saving after every chunk; with
        ``references`` and a ``judge``, each channel's plausibility is stored too."""
        todo = self.missing(channels)
        batch = batch_size or auto_batch_size(self.model, self.layer, self.cell)
        chunks = [todo[i : i + batch] for i in range(0, len(todo), batch)]
        network = rendering_network(self.model, [self.layer]) if chunks else None  # one folded copy for all chunks
        for chunk in bar(chunks, f"atlas {self.layer}", enabled=progress and len(chunks) > 1):
            s = self.settings
            vis = visualize(self.model, self.layer, chunk, steps=s.steps, size=s.size, param=s.param, seed=s.seed,
                            batch_size=len(chunk), progress=progress, lr=s.lr, betas=s.betas, transforms=s.transforms,
                            blur=s.blur, redirect_steps=s.redirect_steps, param_options=s.param_options,
                            network=network, optimizer=s.optimizer, references=references, judge=judge)
            if vis.plausibility is not None:
                plausible = self.manifest.setdefault("plausibility", {})
                plausible.update({str(c): float(p) for c, p in zip(vis.channels, vis.plausibility)})
            self._add(vis.channels, vis.images, vis.scores.tolist())
        return self

    def _add(self, channels: list[int], images: list[Image.Image], scores: list[float]) -> None:
        for ch, picture, score in zip(channels, images, scores):
            self._sprites.paste(picture.convert(self._sprites.mode), self.box(ch)[:2])
            self.manifest["scores"][str(ch)] = float(score)
        buffer = io.BytesIO()
        self._sprites.save(buffer, format="PNG")
        self.store.write_bytes(f"{self.key}/spritemap.png", buffer.getvalue())
        self.manifest["done"] = sorted(set(self.manifest["done"]) | set(channels))
        self.store.write_json(f"{self.key}/manifest.json", self.manifest)


def atlas(
    model: Any,
    layer: str,
    channels: Sequence[int] | None = None,
    *,
    steps: int = 512,
    size: int | Sequence[int] = DEFAULT_ICON,
    param: str = "fft",
    seed: int = 0,
    store: Store | str | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    fill: bool = True,
    references: Mapping[int, Any] | None = None,
    judge: Any = None,
    **options: Any,
) -> Atlas:
    """The atlas of ``layer``: loaded from the store, with ``channels`` (default all) rendered if missing.

    ``store`` is a :class:`Store`, a folder or an fsspec URL (default: the user
    cache). ``fill=False`` only loads what is there. ``steps=64, size=64``
    gives a quick demo atlas; other ``options`` (``lr``, ``transforms``, ...)
    are render settings and part of the cache key. ``references`` and a
    ``judge`` give each channel rendered now a plausibility, stored with it.
    """
    store = store if isinstance(store, Store) else Store(store)
    settings = replace(Settings(steps=steps, size=image_size(model, size), param=param, seed=seed), **options)
    result = Atlas(model, layer, settings, store)
    if fill:
        result.fill(channels, batch_size=batch_size, progress=progress, references=references, judge=judge)
    return result
