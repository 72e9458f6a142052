"""What every training callback shares: when it runs, how it runs, and where its pictures go.

A callback explains the same fixed images every ``every`` epochs and hands the
pictures, as one :class:`Panel`, to the sinks the user chose (the HTML visual
log, TensorBoard, a store folder: see :mod:`diamond_cutter.visuallog`).
Callbacks compute; sinks draw and write; so this package never imports presentation.

Why the care around each call: training frameworks run evaluation hooks under
``torch.inference_mode()`` and with the network in eval mode, while
explanations need gradients. Every explanation therefore runs with gradients
enabled outside inference mode, on copies of the images, with the network's
modes and ``requires_grad`` flags restored afterwards, and under a forked random
number generator, so the training run draws the same random numbers as it would
without callbacks. In distributed training only rank 0 explains and writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
import torch.distributed as dist
from PIL import Image

from ..capture import preserved
from ..errors import DiamondCutterError
from ..images import ImageBatch, as_batch
from ..model import Model


@dataclass
class Panel:
    """One method's pictures for one epoch: what a sink writes.

    ``tag`` stays the same from epoch to epoch (``"gradcam/relu2"``), so a sink
    can line the epochs up (one TensorBoard slider, one HTML section per tag);
    ``step`` is the epoch number, counted from 1.
    """

    tag: str
    title: str
    step: int
    images: list[Image.Image]
    captions: list[str]


class Sink(Protocol):
    """Where panels go; sinks live with presentation (:mod:`diamond_cutter.visuallog`)."""

    def write(self, panel: Panel) -> None: ...


#: The keyword arguments every callback takes (the rest of a method callback's go to the method).
COMMON_SETTINGS = ("sinks", "model", "every", "target", "layer")


class ExplanationCallback:
    """Explain ``images`` every ``every`` epochs and write the pictures to ``sinks``.

    Plain loop: call :meth:`on_epoch_end` after each epoch. Lightning: wrap the
    callbacks with :func:`~diamond_cutter.callbacks.lightning_callback`.
    ``model`` may be given here or to each :meth:`on_epoch_end` call (which is
    how :func:`~diamond_cutter.train_head` hands over the network it trains).
    Subclasses implement :meth:`explain`.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""

    def __init__(self, images: Any = None, *, sinks: Sequence[Sink], model: Model | None = None, every: int = 1,
                 target: Any = "top1", layer: str | None = None):
        if every < 1:
            raise DiamondCutterError(f"every must be at least 1 epoch, got {every}")
        if not sinks:
            raise DiamondCutterError("give at least one sink (VisualLogSink, TensorBoardSink or StoreSink) to write to")
        if model is not None and layer is not None:
            with explaining(model):
                model.layer(layer)  # a typo fails here, with suggestions, not after the first epoch
        self.images, self.sinks, self.model, self.every = images, list(sinks), model, every
        self.target, self.layer = target, layer
        self._batch: ImageBatch | None = None
        self._key: tuple | None = None

    @property
    def tag(self) -> str:
        return f"{self.name}/{self.layer}" if self.layer else self.name

    @property
    def title(self) -> str:
        return f"{self.label} at {self.layer}" if self.layer else self.label

    def due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (counted from 0) is one to explain, on this process."""
        return (epoch + 1) % self.every == 0 and is_rank_zero()

    def on_epoch_end(self, epoch: int, model: Model | None = None) -> bool:
        """Explain after epoch ``epoch`` (counted from 0) if it is due; returns whether it wrote."""
        if not self.due(epoch):
            return False
        model = model or self.model
        if model is None:
            raise DiamondCutterError(
                f"{type(self).__name__} has no model: pass model= when creating it or to on_epoch_end"
            )
        with explaining(model):
            images, captions = self.explain(model)
        panel = Panel(self.tag, self.title, epoch + 1, images, captions)
        for sink in self.sinks:
            sink.write(panel)
        return True

    def batch(self, model: Model) -> ImageBatch:
        """A copy of the fixed images, prepared for ``model`` once, on its device."""
        if self.images is None:
            raise DiamondCutterError(f"{type(self).__name__} explains images: give the fixed images to watch")
        key = (tuple(model.input_size), tuple(model.mean), tuple(model.std))
        if self._batch is None or self._key != key:
            self._batch, self._key = as_batch(self.images, model), key
        b = self._batch
        return ImageBatch(b.tensor.clone().to(model.device), b.pixels.clone(), b.originals, list(b.ids))

    def explain(self, model: Model) -> tuple[list[Image.Image], list[str]]:
        """The pictures of this epoch and a caption for each (the images come from :meth:`batch`)."""
        raise NotImplementedError


def is_rank_zero() -> bool:
    """True outside distributed training and on its rank 0."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


@contextmanager
def explaining(model: Model) -> Iterator[None]:
    """Gradients on, inference mode off, the global RNG and the network's modes and flags restored."""
    device = model.device
    with torch.inference_mode(False), torch.enable_grad(), \
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            preserved(model.module, eval_mode=False):
        yield


def all_sinks(callbacks: Sequence[ExplanationCallback]) -> list[Sink]:
    """Each sink of ``callbacks`` once, in first-use order."""
    return list({id(s): s for cb in callbacks for s in cb.sinks}.values())
