"""The model-randomization sanity check (Adebayo et al. 2018) run on the user's own model.

An explanation that barely changes when the weights it explains are replaced
by random ones is not explaining the model. Layers are re-initialised from the
top (output) down in a cascade, and after each step the rank correlation with
the original maps is measured. Published result: gradients and Grad-CAM
decorrelate quickly; guided backprop and Guided Grad-CAM stay similar. All of
it runs on a private copy of the network; the model passed in is untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from ..errors import DiamondCutterError, UnknownNameError
from ..html import short_repr
from ..images import as_batch
from ..model import Model, batched_logits
from ..targets import Selector, TargetSpec
from .api import LAYER_METHODS, attribute, method_class
from .result import Attribution

#: How sanity_check re-draws a layer: at the trained scale, or by the layer's own initialisation.
INITS = ("scaled", "reset")


@dataclass
class SanityResult:
    """Rank correlations with the original maps, per method, after each randomization step.

    ``steps[i]`` names the deepest layer re-initialised at step i (the cascade
    goes from the output down); ``correlations[method][i]`` is the mean Spearman
    correlation over images at that step; ``repeat[method]`` is the correlation
    of two runs on the unchanged model (1.0 for a deterministic method);
    ``per_image[method]`` holds each image's correlation at every step (steps × images).
    """

    methods: list[str]
    steps: list[str]
    correlations: dict[str, list[float]]
    repeat: dict[str, float]
    threshold: float
    per_image: dict[str, list[list[float]]] = field(default_factory=dict)
    image_ids: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return short_repr(self)

    def depends_on_weights(self, method: str) -> bool:
        """True when the fully randomized model's maps correlate below ``threshold`` with the original."""
        return self.correlations[method][-1] < self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "threshold": self.threshold,
            "methods": {
                m: {
                    "repeat": self.repeat[m],
                    "correlations": self.correlations[m],
                    "depends_on_weights": self.depends_on_weights(m),
                }
                for m in self.methods
            },
        }

    def __str__(self) -> str:
        width = max(len(m) for m in self.methods)
        lines = [f"{'method':<{width}}  repeat  " + "  ".join(f"→{s}" for s in self.steps) + "  verdict"]
        for m in self.methods:
            cells = "  ".join(f"{c:>{len(s) + 1}.2f}" for c, s in zip(self.correlations[m], self.steps))
            verdict = "depends on the weights" if self.depends_on_weights(m) else "INSENSITIVE to the weights"
            lines.append(f"{m:<{width}}  {self.repeat[m]:6.2f}  {cells}  {verdict}")
        return "\n".join(lines)


def sanity_check(
    model: Model, images: Any, methods: Sequence[str] = ("saliency", "gradcam", "guided_backprop", "guided_gradcam"),
    target: TargetSpec = "top1", layer: str | None = None, steps: int | None = 4, seed: int = 0, threshold: float = 0.5,
    init: str = "scaled",
) -> SanityResult:
    """Cascading model randomization for ``methods`` on ``images``; see :class:`SanityResult`.

    ``steps`` cascade steps split the parameterised layers (output first) into
    equal groups (``None``: one step per layer); the last step has randomized
    every layer. Targets are fixed from the original model's predictions, so
    every step explains the same class. ``init="scaled"`` re-draws weights at
    the trained scale (see :func:`_randomize`); ``init="reset"`` calls each
    layer's own ``reset_parameters()`` under the seed ``seed + 1``, as Quantus's
    MPRT does, leaving the process's random state as it was.
    """
    if steps is not None and steps < 1:
        raise DiamondCutterError(f"steps must be at least 1, got {steps}")
    if init not in INITS:
        raise UnknownNameError("randomization init", init, INITS)
    names = [method_class(m).name for m in methods]
    batch = as_batch(images, model)
    selector = Selector(model, target, len(batch))
    if not selector.resolved:
        selector.resolve(batched_logits(model, batch.tensor))
    targets = selector.fixed()
    clone = copy.copy(model)
    clone.module = copy.deepcopy(model.module)

    def run(method: str) -> torch.Tensor:
        layer_arg = layer if method in LAYER_METHODS else None
        return _heat(attribute(clone, batch, method=method, target=targets, layer=layer_arg))

    original = {m: run(m) for m in names}
    repeat = {m: float(np.mean(_correlations(original[m], run(m)))) for m in names}
    groups = _cascade(clone, steps)
    generator = torch.Generator().manual_seed(seed)
    per_image: dict[str, list[list[float]]] = {m: [] for m in names}
    for group in groups:
        for _, module in group:
            _reset(module, seed) if init == "reset" else _randomize(module, generator)
        for m in names:
            per_image[m].append(_correlations(original[m], run(m)))
    correlations = {m: [float(np.mean(step)) for step in per_image[m]] for m in names}
    return SanityResult(
        names, [group[-1][0] for group in groups], correlations, repeat, threshold, per_image, list(batch.ids)
    )


def _heat(result: Attribution) -> torch.Tensor:
    """Per-image maps compared by rank: magnitudes summed over colour channels."""
    return result.heat(signed=False)


def _correlations(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Spearman correlation per image; a flat map carries no ranking and counts as 0."""
    values = []
    for x, y in zip(a.flatten(1).numpy(), b.flatten(1).numpy()):
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            values.append(0.0)
        else:
            values.append(float(spearmanr(x, y).statistic))
    return values


def _cascade(model: Model, steps: int | None) -> list[list[tuple[str, nn.Module]]]:
    """Parameterised modules from the output down, split into ``steps`` groups."""
    modules = dict(model.module.named_modules())
    order = [
        (layer.name, modules[layer.name])
        for layer in reversed(list(model.layers))
        if any(True for _ in modules[layer.name].parameters(recurse=False))
    ]
    if not order:
        raise DiamondCutterError(f"{model.name} has no parameters to randomize")
    bounds = np.linspace(0, len(order), min(steps or len(order), len(order)) + 1).round().astype(int)
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _reset(module: Any, seed: int) -> None:
    """The layer's own initialisation (``reset_parameters``), seeded, without touching the global RNG afterwards."""
    if not hasattr(module, "reset_parameters"):
        raise DiamondCutterError(f"{type(module).__name__} has no reset_parameters(); use init='scaled'")
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        module.reset_parameters()


def _randomize(module: nn.Module, generator: torch.Generator) -> None:
    """Re-draw a layer's own weights: N(0, std of the trained weights); norm scales become 1, biases 0.

    Matching each tensor's trained scale keeps activations in a normal range, so
    a map that still looks like the original cannot be blamed on dead units.
    """
    with torch.no_grad():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias" or p.ndim == 1:
                p.copy_(torch.ones_like(p) if name == "weight" else torch.zeros_like(p))
            else:
                std = float(p.std()) or 1e-2
                p.copy_(torch.randn(p.shape, generator=generator) * std)
