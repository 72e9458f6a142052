"""References from one streamed pass: for every channel of the chosen layers, the images
that excite it most (ActMax) and the images where it carries the most relevance for
their class (RelMax, Achtibat et al. 2023), both from the same forward and backward.

The images stream through in batches and only the current top ``k`` per channel
are kept, so a folder larger than memory works. The pass is cut into shards of
``shard_size`` images; each shard's top-``k`` is stored under a key made of the
content of everything that decides it (the model's weights, the layers, the
settings, the bytes of the shard's images), so a killed scan resumes where it
stopped, a changed image recomputes only its shard, and shards computed anywhere
(:func:`compute_shard` on a Ray worker) merge into the same result as one pass:
merging keeps ties in image order, exactly as streaming does. Each shard is sealed
with its key and SHA-256 (:meth:`Store.write_checked`): a torn, edited or foreign
shard is recomputed with a warning naming it, never merged.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..atlas.fingerprint import settings_digest, tensor_digest
from ..blocks.examples import image_batches
from ..capture import preserved
from ..errors import DiamondCutterError
from ..images import SAMPLES, ImageBatch, load_images, sample_path, source_ids
from ..progress import bar
from ..store import Store
from .crp import CRPSettings, Relevance

FORMAT_VERSION = 2
#: How many predicted classes are kept per image (the labels read them).
PREDICTIONS = 5
RANKINGS = ("activation", "relevance")


@dataclass(frozen=True)
class ScanSettings:
    """``k`` references per channel and ranking; relevance for each image's ``target`` class
    (target grammar, ``top1`` by default); images per batch and per stored shard."""

    k: int = 8
    target: Any = "top1"
    batch_size: int = 16
    shard_size: int = 64
    crp: CRPSettings = field(default_factory=CRPSettings)

    def __post_init__(self) -> None:
        if min(self.k, self.batch_size, self.shard_size) < 1:
            raise DiamondCutterError("k, batch_size and shard_size must be at least 1")

    def key(self) -> dict[str, Any]:
        return {"k": self.k, "target": repr(self.target), "crp": [self.crp.method, self.crp.rule, self.crp.canonizer]}


@dataclass
class TopK:
    """Per-channel best: ``values`` k×C (``-inf`` where fewer images were seen), ``images``
    k×C global image indices (``-1`` likewise), ``cells`` k×C×2 (row, column of the peak)."""

    values: torch.Tensor
    images: torch.Tensor
    cells: torch.Tensor

    @classmethod
    def of_batch(cls, maps: torch.Tensor, score: torch.Tensor, first: int, k: int) -> TopK:
        """The batch's own top-``k``: ``score`` N×C per image and channel, peaks from ``maps`` N×C×H×W."""
        where = maps.flatten(2).argmax(2)
        cells = torch.stack([where // maps.shape[3], where % maps.shape[3]], -1)
        images = (first + torch.arange(len(score)))[:, None].expand_as(score)
        return cls(score.float().cpu(), images.clone(), cells.cpu()).best(k)

    def merge(self, other: TopK, k: int) -> TopK:
        """The best ``k`` of both; ``self`` holds the earlier images, so ties keep image order."""
        return TopK(torch.cat([self.values, other.values]), torch.cat([self.images, other.images]),
                    torch.cat([self.cells, other.cells])).best(k)

    def best(self, k: int) -> TopK:
        order = self.values.sort(dim=0, descending=True, stable=True).indices[:k]
        cells = self.cells.gather(0, order[..., None].expand(-1, -1, 2))
        return TopK(self.values.gather(0, order), self.images.gather(0, order), cells)

    def column(self, channel: int) -> list[tuple[int, float, tuple[int, int]]]:
        """(image index, score, cell) of one channel, best first, without padding."""
        return [(int(i), float(v), (int(c[0]), int(c[1])))
                for i, v, c in zip(self.images[:, channel], self.values[:, channel], self.cells[:, channel]) if i >= 0]


@dataclass
class Tables:
    """What a pass over images yields: their ids, top predictions and target classes, the top-``k``
    per layer and ranking, and per layer each channel's relevance summed by target class (classes × C)."""

    ids: list[str]
    predictions: torch.Tensor
    probabilities: torch.Tensor
    classes: torch.Tensor
    tops: dict[str, dict[str, TopK]]
    class_relevance: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Shard(Tables):
    """One shard's tables; ``start`` is the global index of its first image."""

    start: int = 0

    def to_bytes(self, key: str) -> bytes:
        tensors = {"predictions": self.predictions, "probabilities": self.probabilities, "classes": self.classes}
        for layer, by in self.tops.items():
            for ranking, top in by.items():
                for part in ("values", "images", "cells"):
                    tensors[f"{layer}|{ranking}|{part}"] = getattr(top, part)
        seen = self.classes.unique()
        tensors["seen"] = seen
        for layer, sums in self.class_relevance.items():
            tensors[f"{layer}|classes"] = sums[seen]
        meta = {
            "key": key,
            "classes": len(next(iter(self.class_relevance.values()))),
            "start": self.start,
            "ids": self.ids,
            "layers": list(self.tops),
            "version": FORMAT_VERSION,
        }
        buffer = io.BytesIO()
        torch.save({"meta": json.dumps(meta), "tensors": tensors}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> Shard:
        """The stored shard; raises when it does not parse or was made for another key or format,
        which a cache reader (:meth:`Store.read_checked`) turns into a recompute."""
        saved = torch.load(io.BytesIO(data), weights_only=True)
        meta, t = json.loads(saved["meta"]), saved["tensors"]
        if meta.get("key") != key or meta.get("version") != FORMAT_VERSION:
            raise DiamondCutterError(f"shard made for key {meta.get('key')!r} in format {meta.get('version')!r}")
        tops = {layer: {r: TopK(*(t[f"{layer}|{r}|{p}"] for p in ("values", "images", "cells"))) for r in RANKINGS}
                for layer in meta["layers"]}
        sums = {}
        for layer in meta["layers"]:
            sums[layer] = torch.zeros(meta["classes"], t[f"{layer}|classes"].shape[1])
            sums[layer][t["seen"]] = t[f"{layer}|classes"]
        return cls(meta["ids"], t["predictions"], t["probabilities"], t["classes"], tops, sums, start=meta["start"])


@dataclass
class Reference:
    """One reference image of a channel: its index and id, the score, the peak cell and the image's target class."""

    image: int
    image_id: str
    score: float
    cell: tuple[int, int]
    target: int


@dataclass
class References(Tables):
    """Top-``k`` references of every channel of ``layers`` by activation and by relevance."""

    layers: list[str] = field(default_factory=list)
    method: str = ""
    sources: Any = None
    key: str = ""

    def __repr__(self) -> str:
        return f"References({self.layers}, {len(self.ids)} images, {self.method})"

    def top(self, layer: str, channel: int, by: str = "activation") -> list[Reference]:
        """The channel's references ranked ``by`` ``activation`` or ``relevance``, best first."""
        if by not in RANKINGS:
            raise DiamondCutterError(f"rank references by 'activation' or 'relevance', not {by!r}")
        if layer not in self.tops:
            raise DiamondCutterError(f"layer {layer!r} was not scanned (scanned: {', '.join(self.layers)})")
        return [
            Reference(i, self.ids[i], s, c, int(self.classes[i])) for i, s, c in self.tops[layer][by].column(channel)
        ]

    def class_channels(self, layer: str, target: int) -> torch.Tensor:
        """Mean relevance of each channel of ``layer`` over the images whose target is class ``target``."""
        count = int((self.classes == target).sum())
        return self.class_relevance[layer][target] / max(count, 1)

    def channels(self, layer: str) -> int:
        return int(self.tops[layer]["activation"].values.shape[1])

    def load(self, indices: list[int], model) -> ImageBatch:
        """The images at ``indices``, prepared for ``model``."""
        if isinstance(self.sources, ImageBatch):
            return self.sources[indices]
        return load_images([self.sources[i] for i in indices], model)


def scan_references(
    model, images: Any, layers: list[str], settings: ScanSettings = ScanSettings(), *, store: Store | str | None = None,
    progress: bool = False,
) -> References:
    """Top references per channel of ``layers`` over ``images`` (folder, glob, list or ImageBatch),
    by activation and by relevance, from one forward and backward per batch; shards are
    cached in ``store`` (the default cache when ``None``), sealed, and reused on a rerun."""
    for layer in layers:
        model.layer(layer)
    store = store if isinstance(store, Store) else Store(store)
    sources = images if isinstance(images, ImageBatch) else source_ids(images)
    engine = Relevance(model, settings.crp)
    base = _model_digest(model) + settings_digest({"layers": list(layers), **settings.key(), "method": engine.method})
    shards, digests = [], []
    for start in bar(range(0, len(sources), settings.shard_size), "references", enabled=progress):
        part = sources[start : start + settings.shard_size]
        digests.append(_sources_digest(part))
        key = hashlib.sha256((base + digests[-1]).encode()).hexdigest()
        path = f"lens/references/{key[:2]}/{key}.pt"
        shard = store.read_checked(path, partial(Shard.from_bytes, key=key))
        if shard is None:
            shard = compute_shard(model, engine, part, start, layers, settings)
            store.write_checked(path, shard.to_bytes(key))
        shards.append(shard)
    return merge_shards(
        shards,
        layers,
        engine.method,
        sources,
        settings.k,
        key=hashlib.sha256("".join([base, *digests]).encode()).hexdigest(),
    )


def compute_shard(
    model, engine: Relevance, sources: Any, start: int, layers: list[str], settings: ScanSettings
) -> Shard:
    """One shard: batches of ``sources`` through one forward and one backward each."""
    ids, preds, probs, classes = [], [], [], []
    tops: dict[str, dict[str, TopK]] = {}
    sums: dict[str, torch.Tensor] = {}
    first = start
    with preserved(model.module):
        for batch in image_batches(sources, model, settings.batch_size):
            sig = engine.signal(batch.tensor.to(model.device), layers, settings.target)
            p = sig.logits.float().softmax(1).topk(min(PREDICTIONS, sig.logits.shape[1]))
            ids += batch.ids
            preds.append(p.indices.cpu())
            probs.append(p.values.cpu())
            classes.append(sig.classes)
            for layer in layers:
                acts = sig.activations[layer]
                if acts.ndim != 4:
                    raise DiamondCutterError(f"layer {layer!r} has no spatial map (output {tuple(acts.shape)})")
                contribution = engine.contribution(acts, sig.signals[layer])
                per_image = contribution.sum((2, 3)).float().cpu()
                sums.setdefault(layer, torch.zeros(model.num_classes, acts.shape[1])).index_add_(
                    0, sig.classes, per_image
                )
                found = {"activation": TopK.of_batch(acts, acts.flatten(2).amax(2), first, settings.k),
                         "relevance": TopK.of_batch(contribution, per_image, first, settings.k)}
                tops[layer] = (
                    {r: tops[layer][r].merge(found[r], settings.k) for r in RANKINGS} if layer in tops else found
                )
            first += len(batch)
    return Shard(ids, torch.cat(preds), torch.cat(probs), torch.cat(classes), tops, sums, start=start)


def merge_shards(
    shards: list[Shard], layers: list[str], method: str, sources: Any, k: int, key: str = ""
) -> References:
    """Shards (any order) merged into the references of all their images."""
    shards = sorted(shards, key=lambda s: s.start)
    first, rest = shards[0], shards[1:]
    tops = dict(first.tops)
    for shard in rest:
        tops = {layer: {r: tops[layer][r].merge(shard.tops[layer][r], k) for r in RANKINGS} for layer in layers}
    sums = {layer: sum((s.class_relevance[layer] for s in rest), first.class_relevance[layer]) for layer in layers}
    return References([i for s in shards for i in s.ids], torch.cat([s.predictions for s in shards]),
                      torch.cat([s.probabilities for s in shards]), torch.cat([s.classes for s in shards]), tops, sums,
                      layers=list(layers), method=method, sources=sources, key=key)


def _model_digest(model) -> str:
    """SHA-256 of the weights, buffers, preprocessing and class names: what the scan depends on."""
    h = hashlib.sha256(json.dumps([list(model.mean), list(model.std), list(model.input_size), model.labels]).encode())
    for name, tensor in model.module.state_dict().items():
        tensor_digest(h, name, tensor)
    return h.hexdigest()


def _sources_digest(sources: Any) -> str:
    """SHA-256 of the images' content: file bytes for paths and samples, pixels otherwise."""
    h = hashlib.sha256()
    if isinstance(sources, ImageBatch):
        tensor_digest(h, "pixels", sources.pixels)
        return h.hexdigest()
    for source in sources:
        if isinstance(source, str) and source.removeprefix("sample:") in SAMPLES and not Path(source).exists():
            source = sample_path(source.removeprefix("sample:"))
        if isinstance(source, (str, Path)) and Path(source).is_file():
            h.update(str(Path(source).name).encode() + Path(source).read_bytes())
        elif isinstance(source, torch.Tensor):
            tensor_digest(h, "tensor", source)
        elif hasattr(source, "tobytes"):  # PIL images and numpy arrays
            h.update(repr(getattr(source, "shape", getattr(source, "size", ""))).encode() + source.tobytes())
        else:
            h.update(repr(source).encode())
    return h.hexdigest()
