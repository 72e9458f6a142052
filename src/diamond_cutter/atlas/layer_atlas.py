"""The channel atlas: every channel's feature visualization of a layer, cached as one spritemap.

Rendering a layer's 1000 channels takes a while, so an atlas is built in
chunks and saved after each one through the :class:`~diamond_cutter.store.Store`
(atomic writes). The manifest records the spritemap's size and SHA-256; a
spritemap that is missing, resized or different is not trusted, and its cells
are rendered again. Each save first notes the coming spritemap's hash as
``pending`` in the manifest, then writes the spritemap, then the manifest that
lists the new cells, so whatever a kill leaves behind is consistent: the
manifest never claims a cell the spritemap lacks, and a rerun renders only the
channels it does not list. Writers hold the atlas's lock while they merge the
cells already saved (by another process, say) into theirs, so two processes
filling the same atlas keep each other's work. Cells sit on a ⌈√C⌉ × ⌈√C⌉ grid
in channel order.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from ..devices import even_batches
from ..errors import DiamondCutterError, StaleCacheWarning
from ..featureviz.fold import rendering_network
from ..featureviz.optimize import (
    LUCID_SCHEDULE,
    Settings,
    Visualization,
    auto_batch_size,
    image_size,
    layer_channels,
    visualize,
)
from ..html import image_tag
from ..progress import bar
from ..store import Store
from .fingerprint import layer_fingerprint, settings_digest

#: Icons of an atlas default to this side (settings with size None): big enough to read, small enough
#: for 1000-channel layers.
DEFAULT_ICON = 128
FORMAT_VERSION = 2


class Atlas:
    """A (possibly partial) atlas of one layer. ``icon(c)`` renders a missing channel on demand."""

    def __init__(self, model: Any, layer: str, settings: Settings, store: Store):
        info = model.layer(layer)
        if not info.channels:
            raise DiamondCutterError(f"layer {layer!r} has no channels to put in an atlas")
        settings = settings.replace(size=settings.size or DEFAULT_ICON).for_model(model)  # as the key must say
        self.model, self.layer, self.settings, self.store = model, layer, settings, store
        self.channels = info.channels
        self.grid = math.ceil(math.sqrt(self.channels))
        self.cell = image_size(model, settings.size)  # the resolved size, as a pair
        self.fingerprint = layer_fingerprint(model, layer)
        self.key = f"atlas/{self.fingerprint[:24]}-{settings_digest(settings.describe())[:12]}"
        self.manifest, self._sprites = self._load()

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

    def _fresh(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION, "fingerprint": self.fingerprint, "model": self.model.name, "layer": self.layer,
            "channels": self.channels, "grid": self.grid, "cell": list(self.cell),
            "settings": self.settings.describe(), "done": [], "scores": {}, "spritemap": None, "pending": None,
        }

    def _load(self) -> tuple[dict[str, Any], Image.Image]:
        """The saved manifest and spritemap, or an empty atlas (with a warning) where they do not check out."""
        key = f"{self.key}/manifest.json"
        if not self.store.exists(key):
            return self._fresh(), self._blank()
        try:
            manifest = self.store.read_json(key)
            problem = self._manifest_problem(manifest)
            sprites = None if problem else self._verified_spritemap(manifest)
        except DiamondCutterError as err:
            problem, sprites = str(err), None
        if problem is None and sprites is None:
            problem = "its spritemap is missing or does not match the size and SHA-256 the manifest records"
        if problem is not None:
            warnings.warn(f"atlas {self.store.path(key)}: {problem}; its cells will be rendered again",
                          StaleCacheWarning, stacklevel=3)
            return self._fresh(), self._blank()
        return manifest, sprites  # type: ignore[return-value]  # a missing spritemap returned above

    def _manifest_problem(self, m: Any) -> str | None:
        """What is wrong with a saved manifest for this atlas, or ``None``."""
        if not isinstance(m, dict) or m.get("version") != FORMAT_VERSION:
            return f"not a version-{FORMAT_VERSION} atlas manifest"
        expected = {k: v for k, v in self._fresh().items() if k in ("fingerprint", "channels", "grid", "cell")}
        if any(m.get(k) != v for k, v in expected.items()):
            return "it belongs to another layer, size or network"
        done, scores, sprite = m.get("done"), m.get("scores"), m.get("spritemap")
        if not (isinstance(done, list) and all(type(c) is int and 0 <= c < self.channels for c in done)):
            return "its list of done channels is malformed"
        if not (isinstance(scores, dict) and all(isinstance(scores.get(str(c)), (int, float)) for c in done)):
            return "its scores are malformed"
        if done and not (isinstance(sprite, dict) and isinstance(sprite.get("sha256"), str)):
            return "it records no spritemap hash"
        return None

    def _verified_spritemap(self, manifest: dict[str, Any]) -> Image.Image | None:
        """The saved spritemap if it is the one the manifest records (or the pending one), else ``None``."""
        blank = self._blank()
        if not manifest["done"]:
            return blank
        key = f"{self.key}/spritemap.png"
        if not self.store.exists(key):
            return None
        data = self.store.read_bytes(key)
        digest = hashlib.sha256(data).hexdigest()
        recorded = manifest["spritemap"]
        # pending: killed after writing the spritemap, before the manifest; it still holds every listed cell
        if digest not in (recorded["sha256"], manifest.get("pending")) or recorded.get("size") != list(blank.size):
            return None
        try:
            sprites = Image.open(io.BytesIO(data))
            if sprites.size != blank.size:  # checked before decoding: a huge image is never allocated
                return None
            sprites.load()
        except Exception:  # noqa: BLE001  a corrupt PNG is as good as a missing one
            return None
        return sprites.convert(blank.mode)

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

    def chunks(self, channels: Sequence[int] | None = None, batch_size: int | None = None) -> list[list[int]]:
        """The missing ones among ``channels`` (all by default) in chunks of one render each; the
        chunks decide the renders, so every executor renders the same chunks."""
        todo = self.missing(channels)
        batch = batch_size or auto_batch_size(self.model, self.layer, self.cell)
        return even_batches(todo, batch)

    def fill(self, channels: Sequence[int] | None = None, *, batch_size: int | None = None, progress: bool = True,
             references: Mapping[int, Any] | None = None, judge: Any = None) -> Atlas:
        """Render the missing ones among ``channels`` (all by default), saving after every chunk; with
        ``references`` and a ``judge``, each channel's plausibility is stored too."""
        chunks = self.chunks(channels, batch_size)
        network = rendering_network(self.model, [self.layer]) if chunks else None  # one folded copy for all chunks
        for chunk in bar(chunks, f"atlas {self.layer}", enabled=progress and len(chunks) > 1):
            vis = render_chunk(self.model, self.layer, self.settings, chunk, network, progress, references, judge)
            if vis.plausibility is not None:
                plausible = self.manifest.setdefault("plausibility", {})
                plausible.update({str(c): float(p) for c, p in zip(vis.channels, vis.plausibility)})
            self._add(vis.channels, vis.images, vis.scores.tolist())
        return self

    def _add(self, channels: list[int], images: list[Image.Image], scores: list[float]) -> None:
        for ch, picture, score in zip(channels, images, scores):
            self._sprites.paste(picture.convert(self._sprites.mode), self.box(ch)[:2])
            self.manifest["scores"][str(ch)] = float(score)
        self.manifest["done"] = sorted(set(self.manifest["done"]) | set(channels))
        with self.store.lock(f"{self.key}/.lock"):
            self._merge_saved()
            buffer = io.BytesIO()
            self._sprites.save(buffer, format="PNG")
            data = buffer.getvalue()
            saved = self._saved_manifest()
            saved["pending"] = hashlib.sha256(data).hexdigest()
            self.store.write_json(f"{self.key}/manifest.json", saved)
            self.store.write_bytes(f"{self.key}/spritemap.png", data)
            self.manifest["spritemap"] = {"sha256": saved["pending"], "size": list(self._sprites.size)}
            self.manifest["pending"] = None
            self.store.write_json(f"{self.key}/manifest.json", self.manifest)

    def _merge_saved(self) -> None:
        """Take in the cells another writer saved since this atlas was loaded (called under the lock)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StaleCacheWarning)  # what does not check out is simply not merged
            saved, sprites = self._load()
        for ch in set(saved["done"]) - set(self.manifest["done"]):
            self._sprites.paste(sprites.crop(self.box(ch)), self.box(ch)[:2])
            self.manifest["scores"][str(ch)] = saved["scores"][str(ch)]
        self.manifest["done"] = sorted(set(self.manifest["done"]) | set(saved["done"]))

    def _saved_manifest(self) -> dict[str, Any]:
        """The manifest now in the store if it checks out (to mark a write pending in), else a fresh one."""
        key = f"{self.key}/manifest.json"
        try:
            saved = self.store.read_json(key) if self.store.exists(key) else None
        except DiamondCutterError:
            saved = None
        return saved if saved is not None and self._manifest_problem(saved) is None else self._fresh()


def render_chunk(model: Any, layer: str, settings: Settings, chunk: Sequence[int], network: Any,
                 progress: bool = False, references: Mapping[int, Any] | None = None,
                 judge: Any = None) -> Visualization:
    """One chunk's channels rendered in one batch on ``network``
    (:func:`~diamond_cutter.featureviz.fold.rendering_network`'s copy of the model); with ``references``
    and a ``judge``, their plausibility too."""
    return visualize(model, layer, list(chunk), settings, batch_size=len(chunk), progress=progress,
                     network=network, references=references, judge=judge)


def atlas(
    model: Any,
    layer: str,
    channels: Sequence[int] | None = None,
    settings: Settings = LUCID_SCHEDULE,
    *,
    store: Store | str | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    fill: bool = True,
    references: Mapping[int, Any] | None = None,
    judge: Any = None,
    **changes: Any,
) -> Atlas:
    """The atlas of ``layer``: loaded from the store, with ``channels`` (default all) rendered if missing.

    ``settings`` (default Lucid's, with :data:`DEFAULT_ICON` px cells; ``changes``
    to them by name) are the cache key together with the layer's content.
    ``store`` is a :class:`Store`, a folder or an fsspec URL (default: the user
    cache). ``fill=False`` only loads what is there. ``steps=64, size=64`` gives
    a quick demo atlas. ``references`` and a ``judge`` give each channel
    rendered now a plausibility, stored with it.
    """
    store = store if isinstance(store, Store) else Store(store)
    result = Atlas(model, model.layer(layer).name, settings.replace(**changes), store)  # an alias keys as its layer
    if fill:
        result.fill(channels, batch_size=batch_size, progress=progress, references=references, judge=judge)
    return result
