"""The lens site: a static, self-contained folder to browse a model's channels offline.

``lens(model, images, layers, out)`` scans the images once (references by
activation and by relevance), labels every channel, renders the layers' atlases
and writes HTML pages, JSON and images with stable links:

- ``index.html``: the layers (channel count, atlas coverage) and the classes;
- ``layer/LAYER/index.html``: the channel grid (atlas icons, one spritemap per
  layer) with a search by label;
- ``layer/LAYER/CHANNEL.html``: the feature visualization (with diversity
  variants for the most relevant channels), the top references by activation and
  by relevance with the receptive-field patch and the concept-conditional
  heatmap, the label and the classes the channel drives;
- ``class/NAME.html``: the class's most relevant channels per layer and their
  conditional heatmaps on example images.

Nothing is fetched when a page opens: no server, no external URL, and a
content security policy that allows only images from the folder. Every string
that comes from the user (file names, class names, layer names) is escaped by
the template engine; file names on disk are made from indices and slugs.

A transferred model works as any other: its layers are ``backbone.net.*`` and
``head.*``, its labels are the user's classes, and frozen layers reuse the
backbone's atlas (atlases are keyed by content, not by name) and show the
backbone's references and labels from its own lens beside their own
(:mod:`~diamond_cutter.lens.shared`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..atlas import atlas as layer_atlas
from ..errors import DiamondCutterError, ImageError
from ..featureviz import FAST_SCHEDULE, Settings, objectives, render_objective
from ..html import from_template
from ..images import load_images
from ..progress import bar
from ..render import relevance_picture
from ..store import Store
from .costs import lens_plan
from .crp import METHOD_LABELS, CRPSettings, Relevance, channel_heatmaps
from .geometry import Geometry, layer_geometry
from .labels import LayerLabels, label_channels
from .references import References, ScanSettings, scan_references
from .shared import SharedScan, other_scan, publish

PATCH = 96
#: Content security policy of every page: images from the folder (or inline), nothing else leaves it.
CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


@dataclass(frozen=True)
class LensSettings:
    """What the site shows and how much it computes.

    ``k`` references per ranking, of which ``heatmaps`` get a conditional heatmap;
    ``detail`` most relevant channels per layer get ``variants`` diversity variants;
    atlas icons are ``icon_size`` pixels after ``icon_steps`` steps of the fast
    schedule; class pages list ``class_channels`` channels per layer on up to
    ``class_images`` images.
    """

    k: int = 8
    heatmaps: int = 3
    detail: int = 8
    variants: int = 4
    icon_size: int = 48
    icon_steps: int = 64
    class_channels: int = 6
    class_images: int = 3
    batch_size: int = 16
    crp: CRPSettings = field(default_factory=CRPSettings)

    @property
    def icon_render(self) -> Settings:
        """How the site's atlas icons are rendered (the fast schedule at ``icon_steps`` and ``icon_size``)."""
        return FAST_SCHEDULE.replace(steps=self.icon_steps, size=self.icon_size)

    @property
    def variant_render(self) -> Settings:
        """How diversity variants are rendered: as icons, at twice their side."""
        return self.icon_render.replace(size=2 * self.icon_size)


def slug(text: str) -> str:
    """A file-name-safe form of a name (letters, digits, ``.``, ``_``, ``-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "_"


@dataclass
class _Writer:
    """Writes files under the site folder and remembers each one's relative path."""

    root: Path

    def image(self, picture: Image.Image, path: str) -> str:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        picture.convert("RGB").save(target, quality=88) if target.suffix == ".jpg" else picture.save(target)
        return path

    def page(self, path: str, template: str, **context: Any) -> str:
        depth = path.count("/")
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(from_template(template, root="../" * depth, csp=CSP, **context), encoding="utf-8")
        return path


def lens(
    model, images: Any, layers: list[str] | str, out: str | Path, settings: LensSettings = LensSettings(), *,
    store: Store | str | None = None, progress: bool = True, plan: Callable[[str], Any] | None = None,
) -> Path:
    """Write the lens site of ``layers`` over ``images`` to the folder ``out``; returns its ``index.html``.
    ``plan`` (e.g. ``print``) is told first what the site will compute and about how long it takes
    (:func:`~.costs.lens_plan`)."""
    layers = [s.strip() for s in layers.split(",")] if isinstance(layers, str) else list(layers)
    if not layers:
        raise DiamondCutterError("name at least one layer for the lens")
    store = store if isinstance(store, Store) else Store(store)
    if plan is not None:
        plan(lens_plan(model, images, layers, settings, store))
    scan = ScanSettings(k=settings.k, batch_size=settings.batch_size, crp=settings.crp)
    refs = scan_references(model, images, layers, scan, store=store, progress=progress)
    site = _Site(model, refs, settings, store, _Writer(Path(out)), progress)
    return site.write()


class _Site:
    """Builds every page of one site from one scan."""

    def __init__(self, model, refs: References, settings: LensSettings, store: Store, writer: _Writer, progress: bool):
        self.model, self.refs, self.settings, self.store, self.out, self.progress = (
            model,
            refs,
            settings,
            store,
            writer,
            progress,
        )
        self.engine = Relevance(model, settings.crp)
        self.pictures: dict[int | str, Image.Image] = {}
        self.class_pages = {int(c): f"class/{slug(model.labels[int(c)])}-{int(c)}.html" for c in refs.classes.unique()}

    def write(self) -> Path:
        layers = [self._layer(layer) for layer in self.refs.layers]
        classes = [self._class(c, path) for c, path in sorted(self.class_pages.items())]
        summary = {
            "model": self.model.name,
            "method": METHOD_LABELS[self.refs.method],
            "images": self.refs.ids,
            "layers": [
                {k: v for k, v in layer.items() if k in ("name", "channels", "coverage", "page", "shared")}
                for layer in layers
            ],
            "classes": [{"name": c["name"], "page": c["page"]} for c in classes],
        }
        (self.out.root / "data").mkdir(parents=True, exist_ok=True)
        (self.out.root / "data" / "lens.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        self.out.page("index.html", "lens/index.html.j2", model=self.model, method=METHOD_LABELS[self.refs.method],
                      layers=layers, classes=classes, images=len(self.refs.ids))
        return self.out.root / "index.html"

    # -- layers and channels -------------------------------------------------------------

    def _layer(self, layer: str) -> dict[str, Any]:
        labels = label_channels(self.model, self.refs, layer, store=self.store)
        icons = layer_atlas(self.model, layer, settings=self.settings.icon_render, store=self.store,
                            progress=self.progress)
        publish(self.store, icons.fingerprint, self.model.name, layer, self.refs, labels)
        elsewhere = other_scan(self.store, icons.fingerprint, self.refs.key)
        base = f"layer/{slug(layer)}"
        sprite = self.out.image(icons.spritemap, f"img/{slug(layer)}/atlas.png")
        geometry = layer_geometry(self.model, layer)
        channels = self.refs.channels(layer)
        relevance = self.refs.class_relevance[layer].sum(0)
        detailed = (
            relevance.topk(min(self.settings.detail, channels)).indices.tolist() if self.settings.variants else []
        )
        heat = self._reference_heatmaps(layer)
        cells = []
        for c in bar(range(channels), f"lens {layer}", enabled=self.progress):
            cell = {
                "channel": c,
                "label": labels[c],
                "page": f"{base}/{c}.html",
                "box": icons.box(c),
                "relevance": float(relevance[c]),
                "shared": self._shared(layer, c, elsewhere, geometry) if elsewhere else None,
            }
            cells.append(cell)
            self._channel(layer, c, cell, labels, sprite, geometry, heat, c in detailed)
        info: dict[str, Any] = {
            "name": layer,
            "channels": channels,
            "coverage": len(icons.done) / channels,
            "page": f"{base}/index.html",
            "shared": None if elsewhere is None else
            {"model": elsewhere.model, "layer": elsewhere.layer, "images": elsewhere.images},
        }
        self.out.page(info["page"], "lens/layer.html.j2", model=self.model, layer=info, cells=cells, sprite=sprite,
                      icon=icons.cell, labeler=labels.labeler)
        return info

    def _channel(self, layer: str, c: int, cell: dict, labels: LayerLabels, sprite: str, geometry: Geometry,
                 heat: dict[tuple[int, int], torch.Tensor], detailed: bool) -> None:
        refs = {
            by: [self._reference(layer, c, r, geometry, heat) for r in self.refs.top(layer, c, by)]
            for by in ("activation", "relevance")
        }
        variants = self._variants(layer, c) if detailed else []
        drives = [{"name": n, "value": v, "page": self._class_page(n)} for n, v in labels[c].drives]
        self.out.page(
            cell["page"],
            "lens/channel.html.j2",
            model=self.model,
            layer=layer,
            channel=c,
            label=labels[c],
            sprite=sprite,
            box=cell["box"],
            refs=refs,
            variants=variants,
            drives=drives,
            shared=cell["shared"],
            method=METHOD_LABELS[self.refs.method],
            labeler=labels.labeler,
            channels=self.refs.channels(layer),
        )

    def _reference(self, layer: str, c: int, ref, geometry: Geometry, heat: dict) -> dict[str, Any]:
        picture = self._picture(ref.image)
        box = geometry.box(ref.cell)
        name = f"img/{slug(layer)}/{c}-{ref.image}"
        patch = self.out.image(picture.crop(box).resize((PATCH, PATCH), Image.Resampling.BICUBIC), f"{name}-patch.jpg")
        overlay = None
        if (ref.image, c) in heat:
            full = relevance_picture(picture, heat[(ref.image, c)])
            overlay = self.out.image(full.crop(box).resize((PATCH, PATCH), Image.Resampling.BICUBIC), f"{name}-crp.jpg")
        target = self.model.labels[ref.target]
        return {
            "id": ref.image_id,
            "name": Path(ref.image_id).name,
            "score": ref.score,
            "patch": patch,
            "heatmap": overlay,
            "target": target,
            "target_page": self.class_pages.get(ref.target),
        }

    def _shared(self, layer: str, c: int, scan: SharedScan, geometry: Geometry) -> dict[str, Any]:
        """The channel's references in another scan of the same layer content, as patches."""
        refs = []
        for j, ref in enumerate(scan.references[c][: self.settings.k]):
            try:
                picture = self._picture(ref.image)
            except ImageError:  # the file changed or broke since that scan: leave it out
                continue
            patch = picture.crop(geometry.box(ref.cell)).resize((PATCH, PATCH), Image.Resampling.BICUBIC)
            path = self.out.image(patch, f"img/{slug(layer)}/{c}-shared{j}-patch.jpg")
            refs.append({"id": ref.image, "name": Path(ref.image).name, "score": ref.score, "patch": path})
        return {"model": scan.model, "layer": scan.layer, "images": scan.images, "label": scan.labels[c], "refs": refs}

    def _reference_heatmaps(self, layer: str) -> dict[tuple[int, int], torch.Tensor]:
        """Conditional heatmaps of each channel on its best references (each image's target class)."""
        rows = sorted({(r.image, c) for c in range(self.refs.channels(layer)) for by in ("activation", "relevance")
                       for r in self.refs.top(layer, c, by)[: self.settings.heatmaps]})
        return self._heatmaps(layer, rows)

    def _heatmaps(self, layer: str, rows: list[tuple[int, int]]) -> dict[tuple[int, int], torch.Tensor]:
        """Heatmaps of (image, channel) rows, images ``batch_size`` at a time, each for its target class."""
        out: dict[tuple[int, int], torch.Tensor] = {}
        images = sorted({i for i, _ in rows})
        for start in range(0, len(images), self.settings.batch_size):
            part = images[start : start + self.settings.batch_size]
            x = self.refs.load(part, self.model).tensor.to(self.model.device)
            mine = [(part.index(i), c) for i, c in rows if i in part]
            found = channel_heatmaps(self.engine, x, layer, self.refs.classes[part].tolist(), mine)
            out.update({(part[i], c): m for (i, c), m in found.items()})
        return out

    def _variants(self, layer: str, c: int) -> list[str]:
        objective = objectives.channel(layer, [c] * self.settings.variants) + 10 * objectives.diversity(layer)
        result = render_objective(self.model, objective, self.settings.variant_render, progress=False, seed=c)
        return [self.out.image(img, f"img/{slug(layer)}/{c}-variant{i}.png") for i, img in enumerate(result.images)]

    def _picture(self, image: int | str) -> Image.Image:
        """A scanned image by index, or another scan's image by id, as the model sees it."""
        if image not in self.pictures:
            batch = self.refs.load([image], self.model) if isinstance(image, int) else load_images([image], self.model)
            self.pictures[image] = batch.images()[0]
        return self.pictures[image]

    def _class_page(self, name: str) -> str | None:
        index = self.model.class_index(name)
        return self.class_pages.get(index)

    # -- classes ---------------------------------------------------------------------------

    def _class(self, c: int, page: str) -> dict[str, Any]:
        examples = (self.refs.classes == c).nonzero().flatten().tolist()[: self.settings.class_images]
        sections = []
        for layer in self.refs.layers:
            importance = self.refs.class_channels(layer, c)
            top = importance.topk(min(self.settings.class_channels, len(importance))).indices.tolist()
            heat = self._heatmaps(layer, [(i, ch) for i in examples for ch in top])
            rows = [
                {
                    "channel": ch,
                    "importance": float(importance[ch]),
                    "page": f"layer/{slug(layer)}/{ch}.html",
                    "maps": [
                        self.out.image(
                            relevance_picture(self._picture(i), heat[(i, ch)]).resize((PATCH, PATCH)),
                            f"img/class/{c}/{slug(layer)}-{ch}-{i}.jpg",
                        )
                        for i in examples
                    ],
                }
                for ch in top
            ]
            sections.append({"layer": layer, "rows": rows})
        name = self.model.labels[c]
        images = [
            {
                "id": self.refs.ids[i],
                "path": self.out.image(self._picture(i).resize((PATCH, PATCH)), f"img/class/{c}/image-{i}.jpg"),
            }
            for i in examples
        ]
        self.out.page(page, "lens/class.html.j2", model=self.model, name=name, sections=sections, images=images,
                      method=METHOD_LABELS[self.refs.method])
        return {"name": name, "page": page, "count": int((self.refs.classes == c).sum())}

