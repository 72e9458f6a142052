"""Whole-model atlases: every channel of many layers, in this process or on a pool of Ray actors.

A Microscope-style atlas of a whole network is hundreds of GPU hours, so the
work is cut into jobs of one chunk each (the chunks :meth:`Atlas.chunks` gives,
so every executor renders exactly the renders an in-process fill would). On Ray
each actor loads the model once and keeps one folded rendering copy per layer;
the render stops at the layer. A finished chunk is written atomically to the
store by the actor that rendered it, so a driver killed mid-run loses nothing:
the rerun adds the chunks the store already holds to their atlases and submits
only the rest. The driver alone writes spritemaps and manifests, so the store
sees one writer per atlas and ends with what an in-process run writes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..executors import Ray
from ..featureviz.fold import rendering_network
from ..featureviz.optimize import Settings
from ..progress import bar
from ..store import Store
from .layer_atlas import Atlas, render_chunk


@dataclass(frozen=True)
class Chunk:
    """One job: channels of one layer, rendered in one batch; ``key`` is its atlas's store key."""

    layer: str
    key: str
    channels: tuple[int, ...]

    @property
    def path(self) -> str:
        """Where the finished chunk lies in the store (beside its atlas)."""
        return f"{self.key}/chunks/{self.channels[0]:05d}-{self.channels[-1]:05d}.npz"


@dataclass
class FillReport:
    """What a run did: chunks rendered now, chunks a killed run had finished (taken from the store)."""

    atlases: list[Atlas]
    rendered: int
    reused: int

    def __str__(self) -> str:
        return (f"{len(self.atlases)} layers: {self.rendered} chunks rendered, "
                f"{self.reused} finished chunks taken from the store")


Rendered = tuple[list[int], list[Image.Image], list[float]]


def save_chunk(store: Store, chunk: Chunk, rendered: Rendered) -> None:
    channels, images, scores = rendered
    buffer = io.BytesIO()
    np.savez(buffer, channels=np.asarray(channels), scores=np.asarray(scores, dtype=np.float64),
             images=np.stack([np.asarray(picture) for picture in images]))
    store.write_bytes(chunk.path, buffer.getvalue())


def load_chunk(store: Store, chunk: Chunk) -> Rendered:
    with np.load(io.BytesIO(store.read_bytes(chunk.path)), allow_pickle=False) as saved:
        images = [Image.fromarray(array) for array in saved["images"]]
        return saved["channels"].tolist(), images, saved["scores"].tolist()


class Renderer:
    """A Ray actor: the model, loaded once, renders chunks and writes each to the store."""

    def __init__(self, model: Any, settings: dict[str, Settings], store_root: str):
        self.model, self.settings, self.store = model, settings, Store(store_root)
        self.networks: dict[str, Any] = {}

    def render(self, chunk: Chunk) -> tuple[Chunk, Rendered]:
        if chunk.layer not in self.networks:  # one folded copy per layer; chunks of a layer arrive together
            self.networks = {chunk.layer: rendering_network(self.model, [chunk.layer])}
        vis = render_chunk(self.model, chunk.layer, self.settings[chunk.layer], chunk.channels,
                           self.networks[chunk.layer])
        rendered = (vis.channels, vis.images, vis.scores.tolist())
        save_chunk(self.store, chunk, rendered)
        return chunk, rendered


def fill_atlases(atlases: Sequence[Atlas], channels: Sequence[int] | None = None, *,
                 batch_size: int | None = None, executor: Ray | None = None, progress: bool = True) -> FillReport:
    """Render what ``atlases`` (one per layer, same model and store) miss: in this process, or on
    ``executor``'s actors. Chunks a killed run left in the store are used, not rendered again."""
    if not atlases:
        return FillReport([], 0, 0)
    by_key = {a.key: a for a in atlases}
    jobs = [Chunk(a.layer, a.key, tuple(c)) for a in atlases for c in a.chunks(channels, batch_size)]
    store = atlases[0].store
    stored = {job for job in jobs if store.exists(job.path)}
    for job in sorted(stored, key=jobs.index):
        by_key[job.key]._add(*load_chunk(store, job))
    todo = [job for job in jobs if job not in stored]
    if todo and executor is not None:
        for job, rendered in bar(_on_ray(atlases, todo, executor), "atlas", enabled=progress, total=len(todo)):
            by_key[job.key]._add(*rendered)
    elif todo:
        for a in atlases:
            a.fill(channels, batch_size=batch_size, progress=progress)
    return FillReport(list(atlases), len(todo), len(stored))


def _on_ray(atlases: Sequence[Atlas], todo: list[Chunk], executor: Ray) -> Iterator[tuple[Chunk, Rendered]]:
    """(chunk, rendered) pairs in the order the actors finish them."""
    with executor.session() as ray:
        from ray.util import ActorPool  # optional extra, imported where it is needed

        settings = {a.layer: a.settings for a in atlases}
        model = ray.put(atlases[0].model)  # shipped once, deserialized once per actor
        pool = ActorPool(executor.actors(ray, Renderer, model, settings, atlases[0].store.root))
        yield from pool.map_unordered(lambda actor, job: actor.render.remote(job), todo)
