"""Visual logging (after tf-explain): look at the images a pipeline actually produces.

Bugs in data pipelines are often visible at a glance (a wrong crop, swapped
channels, an augmentation that erases the object) and invisible in a loss curve.
:class:`VisualLog` collects images at named stages ("loaded", "resized",
"augmented"...) into one self-contained HTML page; :class:`TrainingMonitor`
adds Grad-CAM and layer activations of fixed validation images every few
epochs, from a plain PyTorch loop or as a PyTorch Lightning callback.

Presentation, like the report: it consumes attributions and activations and
draws them through :mod:`~diamond_cutter.render` and :mod:`~diamond_cutter.html`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .attribution import attribute
from .blocks.examples import layer_activations
from .errors import DiamondCutterError
from .html import HtmlPage, from_template
from .images import as_batch
from .render import activation_tiles, pictures


@dataclass
class Stage:
    """Images logged under one name at one step."""

    name: str
    step: int | None
    images: list[Image.Image]
    captions: list[str]


@dataclass
class VisualLog(HtmlPage):
    """Images at named pipeline stages, saved as one HTML page (images inline)."""

    title: str = "Visual log"
    max_images: int = 16
    stages: list[Stage] = field(default_factory=list)

    def add(self, stage: str, images: Any, captions: list[str] | None = None, step: int | None = None) -> None:
        """Log ``images`` (PIL images, an ImageBatch, or [0, 1] tensors C×H×W / N×C×H×W) under ``stage``."""
        shown = pictures(images)[: self.max_images]
        captions = list(captions or [str(i) for i in range(len(shown))])[: len(shown)]
        self.stages.append(Stage(stage, step, shown, captions))

    def html(self) -> str:
        return from_template("visuallog.html.j2", log=self)


class TrainingMonitor:
    """Every ``every`` epochs, log Grad-CAM of ``target`` and the strongest activation maps of
    ``layer`` for the same fixed validation ``images`` into ``log``, so the evolution is comparable.

    Plain loop: call :meth:`on_epoch_end` after each epoch. Lightning: pass
    :meth:`lightning_callback` to the Trainer.
    """

    def __init__(self, model, images: Any, layer: str, *, every: int = 1, target: Any = "top1", log: VisualLog | None = None, tiles: int = 4):
        if every < 1:
            raise DiamondCutterError(f"every must be at least 1 epoch, got {every}")
        model.layer(layer)
        self.model, self.layer, self.every, self.target, self.tiles = model, layer, every, target, tiles
        self.images = as_batch(images, model)
        self.log = log or VisualLog(title=f"Training of {model.name}: {layer}")
        self.log.add("validation images", self.images, list(self.images.ids))

    def on_epoch_end(self, epoch: int) -> bool:
        """Log this epoch if it is due; returns whether it logged."""
        if (epoch + 1) % self.every:
            return False
        cam = attribute(self.model, self.images, method="gradcam", target=self.target, layer=self.layer)
        self.log.add(f"Grad-CAM, epoch {epoch + 1}", cam.overlay(), list(self.images.ids), step=epoch + 1)
        tiles, captions = self._activations()
        self.log.add(f"activations of {self.layer}, epoch {epoch + 1}", tiles, captions, step=epoch + 1)
        return True

    def _activations(self) -> tuple[list[Image.Image], list[str]]:
        acts = layer_activations(self.model, self.images, self.layer)
        tiles, captions = [], []
        for image_id, a, picture in zip(self.images.ids, acts, self.images.images()):
            for channel, value, tile in activation_tiles(a, picture.size, self.tiles):
                tiles.append(tile)
                captions.append(f"{image_id} · channel {channel} · {value:.2g}")
        return tiles, captions

    def lightning_callback(self):
        """A PyTorch Lightning ``Callback`` calling :meth:`on_epoch_end` after each validation epoch."""
        Callback = _lightning_callback_base()

        monitor = self

        class DiamondCutterMonitor(Callback):  # type: ignore[misc, valid-type]
            def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                if not getattr(trainer, "sanity_checking", False):
                    monitor.on_epoch_end(trainer.current_epoch)

        return DiamondCutterMonitor()


def _lightning_callback_base():
    # Lightning is optional (and slow to import): only a callback asks for it.
    try:
        from lightning.pytorch import Callback
    except ImportError:
        try:
            from pytorch_lightning import Callback
        except ImportError:
            raise DiamondCutterError("PyTorch Lightning is not installed: pip install lightning") from None
    return Callback
