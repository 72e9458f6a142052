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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from ..errors import DiamondCutterError
from ..html import short_repr
from ..images import as_batch
from ..model import Model, batched_logits
from ..targets import Selector, TargetSpec
from .api import LAYER_METHODS, attribute, method_class
from .result import Attribution


@dataclass
class SanityResult:
    """Rank correlations with the original maps, per method, after each randomization step.

    ``steps[i]`` names the deepest layer re-initialised at step i (the cascade
    goes from the output down); ``correlations[method][i]`` is the mean Spearman
    correlation over images at that step; ``repeat[method]`` is the correlation
    of two runs on the unchanged model (1.0 for a deterministic method).
    """

    methods: list[str]
    steps: list[str]
    correlations: dict[str, list[float]]
    repeat: dict[str, float]
    threshold: float

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
                m: {"repeat": self.repeat[m], "correlations": self.correlations[m], "depends_on_weights": self.depends_on_weights(m)}
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
    target: TargetSpec = "top1", layer: str | None = None, steps: int = 4, seed: int = 0, threshold: float = 0.5,
) -> SanityResult:
    """Cascading model randomization for ``methods`` on ``images``; see :class:`SanityResult`.

    ``steps`` cascade steps split the parameterised layers (output first) into
    equal groups; the last step has randomized every layer. Targets are fixed
    from the original model's predictions, so every step explains the same class.
    """
    if steps < 1:
        raise DiamondCutterError(f"steps must be at least 1, got {steps}")
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
    repeat = {m: _correlation(original[m], run(m)) for m in names}
    groups = _cascade(clone, steps)
    generator = torch.Generator().manual_seed(seed)
    correlations: dict[str, list[float]] = {m: [] for m in names}
    for group in groups:
        for _, module in group:
            _randomize(module, generator)
        for m in names:
            correlations[m].append(_correlation(original[m], run(m)))
    return SanityResult(names, [group[-1][0] for group in groups], correlations, repeat, threshold)


def _heat(result: Attribution) -> torch.Tensor:
    """Per-image maps compared by rank: magnitudes summed over colour channels."""
    return result.heat(signed=False)


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean Spearman correlation over images; a flat map carries no ranking and counts as 0."""
    values = []
    for x, y in zip(a.flatten(1).numpy(), b.flatten(1).numpy()):
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            values.append(0.0)
        else:
            values.append(float(spearmanr(x, y).statistic))
    return float(np.mean(values))


def _cascade(model: Model, steps: int) -> list[list[tuple[str, nn.Module]]]:
    """Parameterised modules from the output down, split into ``steps`` groups."""
    modules = dict(model.module.named_modules())
    order = [
        (layer.name, modules[layer.name])
        for layer in reversed(list(model.layers))
        if any(True for _ in modules[layer.name].parameters(recurse=False))
    ]
    if not order:
        raise DiamondCutterError(f"{model.name} has no parameters to randomize")
    bounds = np.linspace(0, len(order), min(steps, len(order)) + 1).round().astype(int)
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


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
