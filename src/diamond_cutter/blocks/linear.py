"""Linear attribution at a layer: activation × gradient of a class score, per element.

Every building block reads the same two tensors (the layer's activation A and
A ⊙ ∂score/∂A), summed in different directions: over space for channel
attribution, over channels for the heatmap, not at all for the semantic map.
Computing them in one place keeps those views consistent with each other, and
one forward + one backward per batch is all any of them costs.

The score is a logit (not a probability), as in Building Blocks, so that a
positive-minus-negative score is exactly the difference of two single-class
attributions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..capture import capture, preserved
from ..errors import DiamondCutterError
from ..images import ImageBatch, as_batch
from ..progress import bar
from ..targets import resolve_targets

#: What ``classes`` may be: "auto" (top-1 minus top-2 per image), one class (index, name or
#: "topK"), or a (positive, negative) pair.
Classes = Any


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

    def title(self, model, index: int | None = None) -> str:
        """What the score is, e.g. "tabby − tiger cat", for one image or for all of them."""
        pick = slice(None) if index is None else slice(index, index + 1)
        positive = [class_name(model, i) for i in self.positive[pick]]
        negative = None if self.negative is None else [class_name(model, i) for i in self.negative[pick]]
        return score_title(positive, negative)


def split_classes(classes: Classes) -> tuple[Any, Any | None]:
    """``classes`` as a (positive, negative-or-None) pair of target specs.

    A tuple of two is (positive, negative); a list is one positive target per image.
    """
    if isinstance(classes, str) and classes.lower() == "auto":
        return "top1", "top2"
    if classes is None:
        return "top1", None
    if isinstance(classes, tuple):
        if len(classes) != 2:
            raise DiamondCutterError(f"classes must be 'auto', one class, or a (positive, negative) pair; got {classes!r}")
        return classes[0], classes[1]
    return classes, None


def linear_attribution(
    model,
    images: Any,
    layer: str,
    classes: Classes = "auto",
    *,
    batch_size: int = 16,
    progress: bool = False,
) -> LayerGradients:
    """Activation and activation × gradient of ``logit[positive] − logit[negative]`` at ``layer``."""
    model.spatial_layer(layer)
    batch: ImageBatch = as_batch(images, model)
    pos_spec, neg_spec = split_classes(classes)
    parts: list[tuple[torch.Tensor, ...]] = []
    starts = range(0, len(batch), batch_size)
    with preserved(model.module, freeze=True):
        for start in bar(starts, f"attribution {layer}", enabled=progress):
            parts.append(_one_batch(model, batch.tensor[start : start + batch_size], layer, pos_spec, neg_spec))
    acts, grads, logits, pos, neg = (torch.cat(p) for p in zip(*parts))
    return LayerGradients(
        layer, acts, grads, acts * grads, logits, pos.tolist(), None if neg_spec is None else neg.tolist(), list(batch.ids)
    )


def _one_batch(model, x: torch.Tensor, layer: str, pos_spec: Any, neg_spec: Any) -> tuple[torch.Tensor, ...]:
    x = x.to(model.device).requires_grad_(True)
    with torch.enable_grad(), capture(model.module, [layer]) as rec:
        logits = model(x)
        n = len(x)
        pos = resolve_targets(model, pos_spec, n, logits).to(logits.device)
        score = logits.gather(1, pos[:, None])[:, 0]
        neg = pos
        if neg_spec is not None:
            neg = resolve_targets(model, neg_spec, n, logits).to(logits.device)
            score = score - logits.gather(1, neg[:, None])[:, 0]
        act = rec[layer]
        (grad,) = rec.gradients(score, [layer]).values()
    act = act.detach().float().cpu()
    return act, grad.float().cpu(), logits.detach().float().cpu(), pos.cpu(), neg.cpu()


def class_name(model, index: int) -> str:
    return model.labels[index] if 0 <= index < len(model.labels) else f"class {index}"


def describe_classes(names: list[str]) -> str:
    """One class name when all images share it, else "per-image classes (a, b, …)"."""
    unique = list(dict.fromkeys(names))
    if len(unique) == 1:
        return unique[0]
    return "per-image classes (" + ", ".join(unique[:4]) + ("…" if len(unique) > 4 else "") + ")"


def score_title(positive: list[str], negative: list[str] | None) -> str:
    """"positive − negative" from per-image class names (one name where the images agree)."""
    pos = describe_classes(positive)
    return pos if negative is None else f"{pos} − {describe_classes(negative)}"
