"""Pooled features of many cuts from one forward pass per image, cached on disk.

Comparing ten cuts the naive way costs ten passes over the data per epoch.
Here every image goes through the frozen network once, up to the deepest cut
asked for, and every cut's feature map is pooled on the way. Each batch's
features are written to the store under a key made of the model's parameters,
the preprocessing, the cut, the pooling and the images' content, so a second
run, a resumed run and a run with one more cut only compute what is missing.
Each file is sealed with its key and hash (:meth:`Store.write_checked`) and
must hold one row per image of its batch, so a swapped, edited or broken file
is recomputed with a warning instead of changing the answer.

Memory: each cut's N×D float32 matrix is allocated once and filled batch by
batch; spatial maps and pixels live for one batch only. The pooled features
are the largest thing extraction holds.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..capture import preserved
from ..errors import DiamondCutterError
from ..heap import reused_heap
from ..html import short_repr
from ..model import Model
from ..progress import bar
from ..store import Store
from .cuts import run_to_cuts
from .data import LabelledImages
from .statistics import Statistics

POOLINGS = ("avg", "avgmax")


@dataclass
class FeatureSet:
    """``features[cut]``: N×D float32 pooled features, rows in the data set's order.

    ``computed``/``cached`` count batches that needed a forward pass and batches read from the store;
    ``statistics[cut]`` are the sufficient statistics of the images ``extract_features`` was asked to
    accumulate, gathered batch by batch as the features streamed past.
    """

    features: dict[str, np.ndarray]
    computed: int
    cached: int
    statistics: dict[str, Statistics] = field(default_factory=dict)

    def __repr__(self) -> str:
        return short_repr(self)


def model_key(model: Model) -> str:
    """A digest of everything that changes a network's features: its name, preprocessing and every weight."""
    h = hashlib.sha256(f"{model.name}|{sorted(model.preprocessing.items())}".encode())
    for name, tensor in model.module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def pool(fmap: torch.Tensor, pooling: str = "avg") -> torch.Tensor:
    """Global pooling of an N×C×H×W map to N×C (``avg``) or N×2C (``avgmax``); N×C input passes through."""
    if fmap.ndim == 2:
        return fmap
    avg = fmap.mean(dim=(2, 3))
    return torch.cat([avg, fmap.amax(dim=(2, 3))], dim=1) if pooling == "avgmax" else avg


def extract_features(
    model: Model,
    data: LabelledImages,
    cuts: Sequence[str],
    *,
    pooling: str = "avg",
    batch_size: int = 32,
    store: Store | None = None,
    progress: bool = True,
    accumulate: np.ndarray | None = None,
) -> FeatureSet:
    """Pooled features of every image at every cut; batches already in ``store`` are read, not recomputed.

    ``accumulate``: indices of images (e.g. the training split) whose labelled features are also summed
    into per-cut :class:`~.statistics.Statistics` while they stream past.
    """
    if pooling not in POOLINGS:
        raise DiamondCutterError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    cuts = sorted(dict.fromkeys(cuts), key=lambda c: model.layers.resolve(c).index)
    prefix = f"features/{model_key(model)}/{pooling}"
    features: dict[str, np.ndarray] = {}
    stats: dict[str, Statistics] = {}
    wanted = np.zeros(len(data), dtype=bool)
    wanted[np.asarray(accumulate if accumulate is not None else [], dtype=np.int64)] = True
    computed = cached = 0
    starts = range(0, len(data), batch_size)
    with reused_heap(), preserved(model.module, freeze=True):
        for start in bar(starts, f"features {model.name}", enabled=progress, total=len(starts)):
            indices = np.arange(start, min(start + batch_size, len(data)))
            batch = hashlib.sha256("".join(data.hashes[i] for i in indices).encode()).hexdigest()[:24]
            keys = {cut: f"{prefix}/{cut}/{batch}.npy" for cut in cuts}
            found = _cached(store, keys, len(indices))
            missing = [cut for cut in cuts if cut not in found]
            if missing:
                found.update(_forward_batch(model, data.pixels(indices, model), missing, pooling))
                for cut in missing:
                    if store is not None:
                        store.write_checked(keys[cut], _to_bytes(found[cut]))
                computed += 1
            else:
                cached += 1
            for cut in cuts:
                if cut not in features:  # allocated once, at the first batch that tells its width
                    features[cut] = np.empty((len(data), found[cut].shape[1]), dtype=np.float32)
                features[cut][indices] = found[cut]
                if accumulate is not None:
                    stats.setdefault(cut, Statistics(found[cut].shape[1], len(data.classes)))
                    stats[cut].update(found[cut][wanted[indices]], data.labels[indices][wanted[indices]])
    return FeatureSet(features, computed, cached, stats)


def _forward_batch(model: Model, x: torch.Tensor, cuts: Sequence[str], pooling: str) -> dict[str, np.ndarray]:
    """One truncated forward: pooled float32 features of each cut (the network stops after the deepest)."""
    with torch.inference_mode():
        maps = run_to_cuts(model.module, x.to(model.device), cuts)
        return {cut: pool(fmap, pooling).float().cpu().numpy() for cut, fmap in maps.items()}


def _cached(store: Store | None, keys: dict[str, str], rows: int) -> dict[str, np.ndarray]:
    """The cuts whose batch of ``rows`` rows ``store`` holds intact, by cut (none without a store)."""
    if store is None:
        return {}
    read = _reader(rows)
    return {cut: array for cut, key in keys.items() if (array := store.read_checked(key, read)) is not None}


def _to_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _reader(rows: int) -> Callable[[bytes], np.ndarray]:
    """Parse a cached batch, refusing anything but a finite float32 matrix of ``rows`` rows."""

    def read(data: bytes) -> np.ndarray:
        array = np.load(io.BytesIO(data), allow_pickle=False)
        if array.dtype != np.float32 or array.ndim != 2 or len(array) != rows or not np.isfinite(array).all():
            raise ValueError(f"expected {rows} finite float32 rows, got {array.dtype} {array.shape}")
        return array

    return read
