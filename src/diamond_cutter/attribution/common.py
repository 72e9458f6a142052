"""Plumbing every attribution method shares: inputs, targets, scores and layer gradients.

Methods differ in what they compute, not in how they read images, pick the
class to explain or reach a layer's activations; keeping those steps here means
every method treats targets, frozen backbones and bad input the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from ..capture import Capture, capture, forward_hooks
from ..errors import DiamondCutterError
from ..images import ImageBatch, as_batch
from ..model import Model
from ..targets import needs_logits, resolve_targets

#: A target: class index or name, "top1"/"top2"/..., a list with one per image,
#: or a callable mapping logits (N×classes) to one score per image.
TargetSpec = Any


class Selector:
    """The score each image's attribution explains.

    Class targets are resolved once (``"topK"`` from the logits of the clean
    images, so SmoothGrad's noisy copies or occluded images keep explaining the
    class predicted for the original); a callable target is applied to the
    logits of every pass.
    """

    def __init__(self, model: Model, target: TargetSpec, n: int):
        self.model, self.target, self.n = model, target, n
        self.fn: Callable[[torch.Tensor], torch.Tensor] | None = target if callable(target) else None
        self.classes: torch.Tensor | None = None
        if self.fn is None and not needs_logits(target):
            self.classes = resolve_targets(model, target, n)

    @property
    def resolved(self) -> bool:
        return self.fn is not None or self.classes is not None

    def resolve(self, logits: torch.Tensor) -> None:
        """Fix ``"topK"`` targets from the logits of the unperturbed images (all ``n`` rows)."""
        if not self.resolved:
            self.classes = resolve_targets(self.model, self.target, self.n, logits.detach())

    def resolve_with(self, x: torch.Tensor, batch_size: int) -> None:
        """Resolve ``"topK"`` targets with a gradient-free forward of ``x`` when still needed."""
        if self.resolved:
            return
        with torch.no_grad():
            logits = torch.cat([self.model(fast_layout(x[s : s + batch_size])) for s in range(0, len(x), batch_size)])
        self.resolve(logits)

    def score(self, logits: torch.Tensor, rows: torch.Tensor | slice | None = None) -> torch.Tensor:
        """One score per row of ``logits``; ``rows`` says which image each row belongs to."""
        if self.fn is not None:
            out = self.fn(logits)
            if not isinstance(out, torch.Tensor) or out.shape != (len(logits),):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise DiamondCutterError(
                    f"a target callable must return one score per image, shape ({len(logits)},); got {shape}"
                )
            return out
        if not self.resolved:
            self.resolve(logits)  # a single pass over all n clean images: its logits give "topK"
        classes = self.classes[rows if rows is not None else slice(None)].to(logits.device)
        return logits.gather(1, classes.view(-1, 1)).squeeze(1)

    def labels(self) -> list[str]:
        if self.classes is None:
            return ["custom"] * self.n
        return [self.model.labels[i] for i in self.classes.tolist()]


def prepare(model: Model, images: Any) -> tuple[ImageBatch, torch.Tensor]:
    """The image batch and the network input on the model's device (no gradient history)."""
    batch = as_batch(images, model)
    x = batch.tensor.detach().to(model.device)
    model.check_input(x)
    return batch, x


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory order on CPU, where oneDNN runs depthwise and 1×1
    convolutions (EfficientNet, MobileNet) 1.5–2× faster than in the default order;
    values are unchanged, so the maps are the same up to float rounding."""
    if x.ndim == 4 and x.device.type == "cpu":
        return x.contiguous(memory_format=torch.channels_last)
    return x


def chunks(n: int, size: int) -> Iterator[slice]:
    if size < 1:
        raise DiamondCutterError(f"batch_size must be at least 1, got {size}")
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def forward_to_layers(model: Model, x: torch.Tensor, names: Sequence[str]) -> tuple[torch.Tensor, Capture]:
    """Logits of ``x`` with the outputs of ``names`` captured as differentiable tensors.

    The earliest of the layers is detached from everything that computed it (its
    output becomes a leaf that requires grad), so layer gradients work on frozen
    backbones and the forward up to that layer records no autograd history at all.
    """
    order = sorted(names, key=lambda n: model.layer(n).index)

    def make_leaf(_m: torch.nn.Module, _i: tuple, output: Any) -> Any:
        if isinstance(output, torch.Tensor):
            return output.detach().requires_grad_(True)
        return None

    with torch.enable_grad(), forward_hooks(model.module, {order[0]: make_leaf}), capture(model.module, order) as rec:
        logits = model(fast_layout(x))
    return logits, rec


def input_gradient(model: Model, x: torch.Tensor, score: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """d score(model(x)).sum() / dx for a batch, with ``x`` made a fresh leaf (frozen models work)."""
    x = fast_layout(x.detach()).requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(score(model(x)).sum(), x)
    return grad

