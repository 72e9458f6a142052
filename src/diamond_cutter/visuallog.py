"""Visual logging (after tf-explain): look at the images a pipeline and a training run produce.

Bugs in data pipelines are often visible at a glance (a wrong crop, swapped
channels, an augmentation that erases the object) and invisible in a loss curve.
:class:`VisualLog` collects images at named stages ("loaded", "resized",
"augmented"...) into one self-contained HTML page.

During training, the callbacks of :mod:`diamond_cutter.callbacks` hand their
pictures to sinks, all defined here: :class:`VisualLogSink` (the HTML page,
each method's epochs side by side), :class:`TensorBoardSink` (one image grid per
method per epoch, under a stable tag) and :class:`StoreSink` (PNG files and a
JSON index in a store folder). :class:`TrainingMonitor` is the ready-made pair
Grad-CAM + activations into a visual log.

Presentation, like the report: it consumes the callbacks' pictures, attributions
and activations and draws them through :mod:`~diamond_cutter.render` and
:mod:`~diamond_cutter.html`.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .callbacks import ActivationsCallback, GradCAMCallback, Panel, lightning_callback
from .errors import DiamondCutterError
from .html import HtmlPage, from_template
from .images import as_batch
from .render import grid, pictures
from .store import Store


@dataclass
class Stage:
    """Images logged under one name at one step; stages of one ``group`` are shown together."""

    name: str
    step: int | None
    images: list[Image.Image]
    captions: list[str]
    group: str | None = None


@dataclass
class VisualLog(HtmlPage):
    """Images at named pipeline stages, saved as one HTML page (images inline)."""

    title: str = "Visual log"
    max_images: int = 16
    stages: list[Stage] = field(default_factory=list)

    def add(self, stage: str, images: Any, captions: list[str] | None = None, step: int | None = None,
            group: str | None = None) -> None:
        """Log ``images`` (PIL images, an ImageBatch, or [0, 1] tensors C×H×W / N×C×H×W) under ``stage``;
        stages with the same ``group`` share one section (e.g. one method's epochs, one row each)."""
        shown = pictures(images)[: self.max_images]
        captions = list(captions or [str(i) for i in range(len(shown))])[: len(shown)]
        self.stages.append(Stage(stage, step, shown, captions, group))

    def sections(self) -> list[tuple[str, list[Stage]]]:
        """(heading, stages) in order of first appearance: a group's stages together, other stages alone."""
        sections: dict[Any, tuple[str, list[Stage]]] = {}
        for i, stage in enumerate(self.stages):
            key = ("group", stage.group) if stage.group is not None else ("stage", i)
            sections.setdefault(key, (stage.group or stage.name, []))[1].append(stage)
        return list(sections.values())

    def html(self) -> str:
        return from_template("visuallog.html.j2", log=self)


class VisualLogSink:
    """Panels into a :class:`VisualLog`, one section per method with a row per epoch; the page is
    saved to ``path`` after every panel when given, so it can be watched while training runs."""

    def __init__(self, log: VisualLog | None = None, path: str | os.PathLike | None = None):
        self.log = log if log is not None else VisualLog(title="Training")
        self.path = path

    def write(self, panel: Panel) -> None:
        self.log.add(f"epoch {panel.step}", panel.images, panel.captions, step=panel.step, group=panel.title)
        if self.path is not None:
            self.log.save(self.path)


class TensorBoardSink:
    """One image grid per panel under the panel's tag, at the epoch as step.

    Writes through ``writer`` (any object with ``add_image``), else a
    ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir`` (needs the
    ``tensorboard`` package), else, inside Lightning, the trainer's TensorBoard logger.
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, *, writer: Any = None):
        self.log_dir, self.writer = log_dir, writer

    def bind_lightning(self, trainer: Any) -> None:
        """Use the trainer's TensorBoard logger when no writer or folder was given."""
        if self.writer is None and self.log_dir is None:
            experiments = [getattr(logger, "experiment", None) for logger in getattr(trainer, "loggers", [])]
            self.writer = next((e for e in experiments if hasattr(e, "add_image")), None)

    def write(self, panel: Panel) -> None:
        writer = self._writer()
        sheet = np.asarray(grid(panel.images))
        writer.add_image(panel.tag, sheet, panel.step, dataformats="HWC")
        writer.flush()

    def close(self) -> None:
        """Close the writer (files complete on disk)."""
        if self.writer is not None and hasattr(self.writer, "close"):
            self.writer.close()

    def _writer(self) -> Any:
        if self.writer is None:
            if self.log_dir is None:
                raise DiamondCutterError(
                    "TensorBoardSink needs a log_dir or a writer (or Lightning's TensorBoardLogger)"
                )
            # TensorBoard is optional: torch.utils.tensorboard needs the tensorboard package.
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise DiamondCutterError(
                    "TensorBoard logging needs the tensorboard package: pip install tensorboard"
                ) from None
            self.writer = SummaryWriter(str(self.log_dir))
        return self.writer


class StoreSink:
    """Each panel's pictures as PNG files in a store folder (local or fsspec URL), under
    ``<tag>/epoch-<N>/``, and ``index.json`` listing every panel, rewritten after each one."""

    def __init__(self, root: str | os.PathLike):
        self.store = Store(root)
        self.entries: list[dict[str, Any]] = []

    def write(self, panel: Panel) -> None:
        folder = f"{re.sub(r'[^A-Za-z0-9._/-]+', '-', panel.tag)}/epoch-{panel.step:04d}"
        files = []
        for i, (picture, caption) in enumerate(zip(panel.images, panel.captions)):
            key = f"{folder}/{i:03d}.png"
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            self.store.write_bytes(key, buffer.getvalue())
            files.append({"file": key, "caption": caption})
        self.entries.append({"tag": panel.tag, "title": panel.title, "epoch": panel.step, "images": files})
        self.store.write_json("index.json", {"panels": self.entries})


class TrainingMonitor:
    """Every ``every`` epochs, log Grad-CAM of ``target`` and the strongest activation maps of
    ``layer`` for the same fixed validation ``images`` into ``log``, so the evolution is comparable.

    Plain loop: call :meth:`on_epoch_end` after each epoch. Lightning: pass
    :meth:`lightning_callback` to the Trainer. For other methods and sinks, use
    :mod:`diamond_cutter.callbacks` directly.
    """

    def __init__(self, model, images: Any, layer: str, *, every: int = 1, target: Any = "top1",
                 log: VisualLog | None = None, tiles: int = 4):
        self.log = log or VisualLog(title=f"Training of {model.name}: {layer}")
        common = {"sinks": [VisualLogSink(self.log)], "model": model, "every": every, "target": target}
        self.callbacks = [
            GradCAMCallback(images, layer=layer, **common),
            ActivationsCallback(images, layer, tiles=tiles, **common),
        ]
        batch = as_batch(images, model)
        self.log.add("validation images", batch.pixels, list(batch.ids))

    def on_epoch_end(self, epoch: int) -> bool:
        """Log this epoch if it is due; returns whether it logged."""
        return all([callback.on_epoch_end(epoch) for callback in self.callbacks])  # a list: every callback runs

    def lightning_callback(self) -> Any:
        """A PyTorch Lightning ``Callback`` logging after each training epoch (rank 0 only)."""
        return lightning_callback(self.callbacks)

