"""What every attribution method class shares: options, the batch loop and the result record."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar

import torch

from ..capture import preserved
from ..heap import reused_heap
from ..model import Model, batch_for
from ..targets import Selector, TargetSpec
from .common import prepare
from .result import Attribution


class Method:
    """An attribution method bound to a model and its options; call :meth:`attribute` on images.

    Subclasses implement :meth:`compute` (maps for a normalised batch), in passes of at most
    ``batch_size`` images (or perturbed copies); by default as many as the memory budget allows
    (``DIAMOND_CUTTER_MEMORY``, see :meth:`Model.fitting_batch`). The model
    runs in eval mode with parameter gradients off for the whole call and is
    restored afterwards, also when the call raises.
    """

    name: ClassVar[str] = ""
    #: Methods that run many forwards per image resolve "topK" targets up front
    #: from the clean images, so every pass explains the class predicted for the original.
    multipass: ClassVar[bool] = False
    #: Whether a pass runs a backward (and so keeps every activation); sizes the batch from the budget.
    backward: ClassVar[bool] = True

    def __init__(self, model: Model, *, batch_size: int | None = None):
        self.model = model
        self.batch_size = batch_for(model, batch_size, self.backward)
        self.layer: str | None = None

    def attribute(self, images: Any, target: TargetSpec = "top1") -> Attribution:
        """Maps for ``images`` (ImageBatch, normalised tensor or sources) explaining ``target``."""
        batch, x = prepare(self.model, images)
        selector = Selector(self.model, target, len(x))
        with reused_heap(), preserved(self.model.module, freeze=True), self.context():
            if self.multipass:
                selector.resolve_with(x, self.batch_size)
            maps = self.compute(x, selector)
        return Attribution(
            maps=maps.detach().float().cpu().contiguous(),
            method=self.name,
            layer=self.layer,
            targets=None if selector.classes is None else selector.classes.tolist(),
            target_names=selector.labels(),
            image_ids=list(batch.ids),
            pixels=batch.pixels.detach().cpu(),
            options=self.options(),
        )

    def context(self) -> AbstractContextManager:
        """Model changes that last for the whole call (e.g. guided ReLU rules); none by default."""
        return nullcontext()

    def compute(self, x: torch.Tensor, selector: Selector) -> torch.Tensor:
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "model" and isinstance(v, (int, float, str, bool))}
