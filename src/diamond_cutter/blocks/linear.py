"""Linear attribution at a layer: activation × gradient of a class score, per element.

Every building block reads the same two tensors (the layer's activation A and
A ⊙ ∂score/∂A), summed in different directions: over space for channel
attribution, over channels for the heatmap, not at all for the semantic map.
Computing them in one place keeps those views consistent with each other, and
one probe per batch (a forward, and a backward from the layer up) is all any of them costs.

The score is a logit (not a probability), as in Building Blocks, so that a
positive-minus-negative score is exactly the difference of two single-class
attributions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..capture import preserved, probe
from ..errors import DiamondCutterError
from ..html import short_repr
from ..images import as_batch
from ..model import batch_for
from ..progress import bar
from ..targets import UNSET, Selector, TargetSpec, class_name, expand, legacy_classes, score_title


@dataclass
class LayerGradients:
    """Activations (N×C×H×W) of a layer, the gradient of ``positive − negative`` with respect
    to them, and their product, the linear attribution.

    The raw tensors that every building block sums in its own direction; not an
    :class:`~diamond_cutter.attribution.Attribution` (no maps over the input image)."""

    layer: str
    activations: torch.Tensor
    gradients: torch.Tensor
    attributions: torch.Tensor
    logits: torch.Tensor
    positive: list[int]
    negative: list[int] | None
    image_ids: list[str]

    def __repr__(self) -> str:
        return short_repr(self)

    def title(self, model, index: int | None = None) -> str:
        """What the score is, e.g. "tabby − tiger cat", for one image or for all of them."""
        pick = slice(None) if index is None else slice(index, index + 1)
        positive = [class_name(model, i) for i in self.positive[pick]]
        negative = None if self.negative is None else [class_name(model, i) for i in self.negative[pick]]
        return score_title(positive, negative)


def linear_attribution(
    model,
    images: Any,
    layer: str | None = None,
    target: TargetSpec = "auto",
    *,
    batch_size: int | None = None,
    progress: bool = False,
    classes: TargetSpec = UNSET,
) -> LayerGradients:
    """Activation and activation × gradient of the ``target`` score at ``layer``.

    ``target`` follows the one target grammar (:mod:`diamond_cutter.targets`);
    the default ``"auto"`` is each image's top-1 minus its top-2 logit. An N×M
    target repeats the images, one row per (image, target). ``layer`` defaults
    to the last spatial layer before global pooling. The layer's output is
    where gradients start, so nothing below it records autograd history. ``batch_size`` images
    run per pass (default: what fits the memory budget).
    """
    target = legacy_classes(target, classes, "linear_attribution")
    if callable(target):
        raise DiamondCutterError(
            "building blocks attribute class scores: give a class, 'topK', 'auto' or a contrast, not a callable"
        )
    batch_size = batch_for(model, batch_size)
    if batch_size < 1:
        raise DiamondCutterError(f"batch_size must be at least 1, got {batch_size}")
    name = model.spatial_layer(layer).name
    batch = as_batch(images, model)
    rows, target = expand(target, len(batch))
    batch = batch if rows is None else batch[rows]
    selector = Selector(model, target, len(batch))
    index = torch.arange(len(batch))
    parts: list[tuple[torch.Tensor, ...]] = []
    with preserved(model.module, freeze=True), probe(model.module, [name], grad="layers", head=model.output) as read:
        for start in bar(range(0, len(batch), batch_size), f"attribution {name}", enabled=progress):
            part = slice(start, start + batch_size)
            reading = read(batch.tensor[part].to(model.device))
            (grad,) = reading.gradients(selector.score(reading.logits, index[part]), [name]).values()
            parts.append(
                (reading[name].detach().float().cpu(), grad.float().cpu(), reading.logits.detach().float().cpu())
            )
    acts, grads, logits = (torch.cat(p) for p in zip(*parts))
    assert selector.positive is not None  # class targets: a callable was refused above
    negative = None if selector.negative is None else selector.negative.tolist()
    return LayerGradients(
        name, acts, grads, acts * grads, logits, selector.positive.tolist(), negative, list(batch.ids)
    )
