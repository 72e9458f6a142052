"""Channels described in words, offline, from the model's own classes.

Two sources of evidence, both from the channel's references (its top images by
activation):

- **drive**: how much the channel pushes each class's logit, gradient ×
  activation from the layer to the logits (``sum over the grid of a_c · ∂logit_k/∂a_c``),
  averaged over the references; each reference contributes for its ``PREDICTIONS``
  most probable classes (the classes it could be evidence for), zero for the rest;
- **votes**: the mean probability each class gets on the references.

The score of a class is the mean of its vote and its drive as a share of all
the drive (positive and negative) the channel exerts, so a channel that drives
one class weakly and others against does not claim that class; the label is the three best classes, e.g.
``channel 17 → tabby, tiger cat, Egyptian cat (0.41)``. A transferred model
speaks with its own class names, since only its labels are used.

Labels are cached in the store with the key of everything they depend on (the
references' key, which covers weights, images and scan settings, plus the
labeler's own key); a cache with another key is stale and is recomputed.

Other labelers plug in through :class:`Labeler`. A CLIP-style labeler would
embed each channel's reference patches with an image encoder whose weights
already exist on disk (its constructor takes their path and raises a
:class:`~diamond_cutter.errors.DiamondCutterError` when they are missing — a
labeler never downloads), compare them with text embeddings of a vocabulary,
return the best words with their similarities as :class:`ChannelLabel` objects,
and put the weights' digest and the vocabulary in :meth:`Labeler.key`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch

from ..capture import capture, preserved
from ..store import Store
from .references import References

FORMAT_VERSION = 1


@dataclass
class ChannelLabel:
    """A channel's label: the words, the score of the first class, and the numbers behind them."""

    channel: int
    text: str
    score: float
    classes: list[tuple[str, float]] = field(default_factory=list)
    drives: list[tuple[str, float]] = field(default_factory=list)
    votes: list[tuple[str, float]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"channel {self.channel} → {self.text} ({self.score:.2f})"


@dataclass
class LayerLabels:
    """Labels of every scanned channel of ``layer``, with the labeler's name and the cache key."""

    layer: str
    labeler: str
    key: str
    labels: list[ChannelLabel]

    def __getitem__(self, channel: int) -> ChannelLabel:
        return self.labels[channel]

    def search(self, words: str) -> list[ChannelLabel]:
        """Channels whose label mentions ``words`` (case-insensitive), best score first."""
        needle = words.lower()
        return sorted((lab for lab in self.labels if needle in lab.text.lower()), key=lambda lab: -lab.score)


class Labeler(Protocol):
    """Turns a layer's references into labels; see the module docstring for a CLIP-style one."""

    @property
    def name(self) -> str:
        """Names the labels on pages and in the cache's file name (a plain attribute satisfies this)."""

    def key(self) -> str:
        """What else the labels depend on (weights, vocabulary, settings), for the cache key."""

    def describe(self, model, references: References, layer: str) -> list[ChannelLabel]:
        """One label per channel of ``layer``."""


@dataclass(frozen=True)
class ClassLabeler:
    """Labels from the model's own classes: drive and votes over ``k`` references per channel."""

    k: int = 8
    words: int = 3
    predictions: int = 5
    batch_size: int = 16
    name: str = "model classes"

    def key(self) -> str:
        return f"class-labeler:{self.k}:{self.words}:{self.predictions}"

    def describe(self, model, references: References, layer: str) -> list[ChannelLabel]:
        tops = [references.top(layer, c)[: self.k] for c in range(references.channels(layer))]
        images = sorted({r.image for refs in tops for r in refs})
        drive = self._drives(model, references, layer, images)
        votes = torch.zeros(len(references.ids), model.num_classes)
        votes.scatter_(1, references.predictions, references.probabilities)
        return [self._label(model, c, [images.index(r.image) for r in refs], [r.image for r in refs], drive, votes)
                for c, refs in enumerate(tops)]

    def _drives(self, model, references: References, layer: str, images: list[int]) -> torch.Tensor:
        """images × channels × classes: gradient × activation of the layer to each image's top classes."""
        out = torch.zeros(len(images), references.channels(layer), model.num_classes)
        for start in range(0, len(images), self.batch_size):
            part = images[start : start + self.batch_size]
            x = references.load(part, model).tensor.to(model.device)
            classes = references.predictions[part, : self.predictions]
            with preserved(model.module, freeze=True), capture(model.module, [layer]) as rec:
                logits = model(x.requires_grad_(True))
                act = rec[layer]
                for p in range(classes.shape[1]):
                    chosen = logits.gather(1, classes[:, p : p + 1].to(logits.device)).sum()
                    (grad,) = torch.autograd.grad(chosen, act, retain_graph=p + 1 < classes.shape[1])
                    share = (act * grad).sum((2, 3)).detach().float().cpu()
                    rows = torch.arange(len(part)) + start
                    out[rows[:, None], torch.arange(share.shape[1])[None], classes[:, p : p + 1]] = share
        return out

    def _label(
        self, model, channel: int, rows: list[int], image_ids: list[int], drive: torch.Tensor, votes: torch.Tensor
    ) -> ChannelLabel:
        if not rows:
            return ChannelLabel(channel, "", 0.0)
        mean_drive = drive[rows, channel].mean(0)
        total = mean_drive.abs().sum()
        share = mean_drive.clamp(min=0) / total if total > 0 else torch.zeros_like(mean_drive)
        vote = votes[image_ids].mean(0)
        score = (share + vote) / 2
        words = min(self.words, len(score))
        best = score.topk(words)
        names = [model.labels[i] for i in best.indices.tolist()]

        def top(t: torch.Tensor) -> list[tuple[str, float]]:
            return [(model.labels[i], round(float(t[i]), 4)) for i in t.topk(words).indices.tolist()]

        return ChannelLabel(channel, ", ".join(names), round(float(best.values[0]), 4),
                            list(zip(names, (round(float(v), 4) for v in best.values))), top(mean_drive), top(vote))


def label_channels(model, references: References, layer: str, labeler: Labeler | None = None, *,
                   store: Store | str | None = None) -> LayerLabels:
    """Labels for every channel of ``layer``, from the store when its key matches, computed otherwise."""
    labeler = labeler or ClassLabeler()
    store = store if isinstance(store, Store) else Store(store)
    key = hashlib.sha256(f"{FORMAT_VERSION}|{references.key}|{layer}|{labeler.key()}".encode()).hexdigest()
    path = f"lens/labels/{_slug(model.name)}/{_slug(layer)}-{_slug(labeler.name)}.json"
    if store.exists(path):
        saved = store.read_json(path)
        if saved.get("key") == key:
            labels = [ChannelLabel(**{**d, **{f: [tuple(p) for p in d[f]] for f in ("classes", "drives", "votes")}})
                      for d in saved["labels"]]
            return LayerLabels(layer, labeler.name, key, labels)
    result = LayerLabels(layer, labeler.name, key, labeler.describe(model, references, layer))
    store.write_json(
        path, {"key": key, "layer": layer, "labeler": labeler.name, "labels": [asdict(lab) for lab in result.labels]}
    )
    return result


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80] or "_"
