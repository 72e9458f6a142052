"""Concept-conditional heatmaps (CRP, Achtibat et al. 2023): where in an image the
evidence that flows through one channel (or one neuron-group direction) of a layer
comes from.

Written on zennit directly rather than on ``zennit-crp``: zennit-crp's last
release (0.6.0, 2023) pins ``zennit<=0.4.6`` while Diamond Cutter uses zennit 0.5,
and it computes every concept with a full forward and backward through the whole
network. Here the part of the network above the layer runs once per image: one
forward and one backward give the relevance (or the gradient) at the layer; only
the part below the layer runs forward once per image and backward once per
concept, with the masked relevance as the incoming gradient and zennit's rules
keeping their modified forwards between the backward passes. The rules,
composites and canonizers are zennit's, the same ones
:class:`~diamond_cutter.attribution.LRP` uses, so the heatmaps of all channels
of a layer add up to the plain LRP heatmap: the backward below the layer is
linear in the relevance it receives.

Two methods:

- ``"lrp"``: relevance through zennit's rules (conserving for networks whose
  residual additions zennit's canonizers see: torchvision VGG and ResNet, plain
  sequential CNNs);
- ``"gradient"``: gradient × activation, for networks LRP rules do not cover
  (timm's EfficientNet residual additions are plain ``+`` in ``forward``). A
  channel's score is ``sum(activation × gradient)`` at the layer and its heatmap is
  input × gradient of that linearised contribution; the heatmaps of all channels
  add up to input × gradient of the logit. Results carry the method's name so the
  two are never confused.

``"auto"`` picks LRP for torchvision VGG, ResNet and AlexNet and for networks
without residual blocks that zennit cannot see (only containers of convolutions,
linear layers, activations, pooling and BatchNorm); everything else gets the
gradient method.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MethodType
from typing import Any

import torch
from PIL import Image
from torch import nn
from torchvision.models import VGG, AlexNet, ResNet
from zennit.core import BasicHook, ParamMod

from ..attribution.common import chunks
from ..attribution.lrp import LRP, _Logits
from ..capture import capture, preserved, truncated
from ..errors import DiamondCutterError, UnknownNameError
from ..images import as_batch
from ..model import Model
from ..render import relevance_picture
from ..targets import resolve_targets

METHODS = ("auto", "lrp", "gradient")
#: Human-readable method names stored with every result.
METHOD_LABELS = {"lrp": "LRP (concept relevance propagation)", "gradient": "gradient × activation"}
_PLAIN = (nn.Conv2d, nn.Linear, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
          nn.AdaptiveMaxPool2d, nn.BatchNorm2d, nn.Dropout, nn.Flatten, nn.Identity, nn.Sequential)


@dataclass(frozen=True)
class CRPSettings:
    """How relevance is computed: ``method`` (auto, lrp, gradient), zennit ``rule`` and
    ``canonizer`` names as in :class:`~diamond_cutter.attribution.LRP`, and how many
    (image, concept) rows go through the part below the layer at once."""

    method: str = "auto"
    rule: str = "epsilon_plus_flat"
    canonizer: str = "auto"
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UnknownNameError("CRP method", self.method, METHODS)
        if self.batch_size < 1:
            raise DiamondCutterError(f"batch_size must be at least 1, got {self.batch_size}")


def choose_method(model: Model, method: str) -> str:
    """``lrp`` or ``gradient`` for ``method`` (``auto`` decides from the architecture)."""
    if method != "auto":
        return method
    if isinstance(model.module, (VGG, ResNet, AlexNet)):
        return "lrp"
    leaves = [m for m in model.module.modules() if not any(True for _ in m.children())]
    plain = all(isinstance(m, _PLAIN) for m in leaves)
    containers = [m for m in model.module.modules() if any(True for _ in m.children())]
    sequential = all(isinstance(m, nn.Sequential) or m is model.module for m in containers)
    return "lrp" if plain and sequential else "gradient"


@dataclass
class ConditionalHeatmaps:
    """Input-space heatmaps of ``concepts`` of ``layer`` for each image's target class.

    ``maps`` is N×M×H×W (images × concepts); ``channel_relevance`` is N×C, each
    channel's share of the target score at the layer (relevance summed over the
    grid, or activation × gradient for the gradient method).
    """

    layer: str
    method: str
    concepts: list[str]
    classes: list[int]
    class_names: list[str]
    image_ids: list[str]
    maps: torch.Tensor
    channel_relevance: torch.Tensor
    pixels: torch.Tensor = field(repr=False)

    def __repr__(self) -> str:
        return (f"ConditionalHeatmaps({self.layer!r}, {METHOD_LABELS[self.method]}, "
                f"{len(self.image_ids)} images × {len(self.concepts)} concepts)")

    def overlay(self, image: int, concept: int) -> Image.Image:
        """The concept's heatmap over the image, red for and blue against (:func:`~.render.relevance_picture`)."""
        return relevance_picture(self.pixels[image], self.maps[image, concept])


@dataclass
class Signal:
    """What one forward and backward leave: logits, target classes, activations and signals by layer."""

    logits: torch.Tensor
    classes: torch.Tensor
    activations: dict[str, torch.Tensor]
    signals: dict[str, torch.Tensor]


class Relevance:
    """A private, rule-ready copy of a model: the layer signal from above and heatmaps from below.

    The user's model is never touched: zennit registers its hooks and canonizers
    on a deep copy, and only while :meth:`active` runs.
    """

    def __init__(self, model: Model, settings: CRPSettings = CRPSettings()):
        self.model, self.settings = model, settings
        self.method = choose_method(model, settings.method)
        self.network = _Logits(copy.deepcopy(model.module), model.output).eval()
        for p in self.network.parameters():
            p.requires_grad_(False)
        self._lrp = LRP(model, rule=settings.rule, canonizer=settings.canonizer) if self.method == "lrp" else None

    @contextmanager
    def active(self, x: torch.Tensor, repeated: bool = False) -> Iterator[nn.Module]:
        """The copy with zennit's composite registered (LRP), or as it is (gradient).

        ``repeated``: several backward passes will follow one forward, so each rule keeps
        its modified forward between them (see :func:`_keep_rule_forwards`)."""
        composite = self.composite(x)
        if composite is None:
            yield self.network
            return
        with composite.context(self.network) as modified:
            if repeated:
                _keep_rule_forwards(composite)
            yield modified

    def composite(self, x: torch.Tensor) -> Any:
        """The zennit composite (rules and canonizers) for input ``x``; ``None`` for the gradient method."""
        return None if self._lrp is None else self._lrp.composite(x)

    def signal(self, x: torch.Tensor, layers: Sequence[str], target: Any) -> Signal:
        """One forward and one backward: logits, target classes, activations and the signal at each layer.

        ``target`` follows the target grammar; ``topK`` is read from this very
        forward. The signal is the relevance at the layer (LRP) or the gradient of
        the target logit (gradient method); :meth:`contribution` turns it into per-cell scores.
        """
        names = [f"module.{name}" for name in layers]
        x = x.detach().requires_grad_(True)
        with self.active(x) as net, capture(net, names) as rec:
            logits = net(x)
            classes = resolve_targets(self.model, target, len(x), logits.detach().float().cpu())
            rows, cols = torch.arange(len(x)), classes.to(logits.device)
            seed = torch.zeros_like(logits)
            seed[rows, cols] = logits[rows, cols].detach() if self._lrp else 1.0
            acts = [rec[n] for n in names]
            grads = torch.autograd.grad(logits, acts, grad_outputs=seed)
        return Signal(logits.detach(), classes, dict(zip(layers, (a.detach() for a in acts))), dict(zip(layers, grads)))

    def contribution(self, activation: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        """Per-cell share of the target score: relevance (LRP) or activation × gradient."""
        return signal if self._lrp else activation * signal

    def heatmaps(self, x: torch.Tensor, layer: str, signal: torch.Tensor, weights: torch.Tensor,
                 rows: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
        """Input heatmaps (R×H×W) of (image, concept) ``rows`` (default: every image × every concept),
        for concepts ``weights`` (M×C) and each image's layer ``signal``.

        The part below the layer runs forward once for ``batch_size`` images, and each further concept
        of those images costs one backward through it: the graph is kept between the backward passes.
        Why not stack the concepts in a batch: the forward below the layer is the same for every concept
        of an image, and a batch of 32 copies of a 224 px image is memory-bound on a CPU (ResNet-50 at
        ``layer3``, 32 concepts: 17 s stacked, 6.6 s with the graph kept, 4.4 s when zennit's rules also
        keep their modified forwards). Batching the backward passes with ``is_grads_batched`` gains
        nothing there (4.5 s at 4 concepts a pass) and loses on the embedded EfficientNet-Lite0's
        gradient method (5 photos × 64 channels of ``blocks.5``: 4.7 s one concept a pass, 7.5 s at 8).
        """
        rows = list(rows) if rows is not None else [(i, j) for i in range(len(x)) for j in range(len(weights))]
        out = torch.zeros(len(rows), *x.shape[2:])
        slots: dict[int, list[int]] = {}  # image -> its rows' positions
        for position, (image, _) in enumerate(rows):
            slots.setdefault(image, []).append(position)
        images, weights, name = sorted(slots), weights.to(signal), f"module.{layer}"
        for s in chunks(len(images), self.settings.batch_size):
            part = images[s]
            xs = x[part].detach().requires_grad_(True)
            with self.active(xs, repeated=True) as net, capture(net, [name]) as rec:
                with truncated(net, name) as run:
                    run(xs)
                passes = max(len(slots[i]) for i in part)
                for k in range(passes):
                    mine = [(n, slots[i][k]) for n, i in enumerate(part) if k < len(slots[i])]
                    seed = torch.zeros_like(rec[name])
                    for n, position in mine:
                        seed[n] = signal[part[n]] * weights[rows[position][1]][:, None, None]
                    (grad,) = torch.autograd.grad(rec[name], xs, grad_outputs=seed, retain_graph=k < passes - 1)
                    heat = (grad if self._lrp else grad * xs.detach()).sum(1).float().cpu()
                    for n, position in mine:
                        out[position] = heat[n]
        return out


def _keep_rule_forwards(composite: Any) -> None:
    """Make each of ``composite``'s registered rules compute its modified forward once per forward.

    Why: a zennit rule (:class:`zennit.core.BasicHook`) reruns its layer forward with modified
    weights and inputs (two of them for z+) on every backward pass, and takes the gradient of that.
    Conditional heatmaps run one backward per concept through the same forward, so that rerun is
    the same every time: kept, with its graph, the part below the layer costs a third less per
    concept (ResNet-50 ``layer3``, 32 concepts: 6.6 s → 4.4 s). Only hooks that use
    ``BasicHook``'s own backward are changed, on this registration's instances only.
    """
    for hook in list(composite.hook_refs):
        if type(hook).backward is BasicHook.backward:
            hook.backward = MethodType(_backward_with_kept_forward, hook)


def _backward_with_kept_forward(hook: BasicHook, module: nn.Module, grad_input: Any, grad_output: Any) -> tuple:
    """:meth:`zennit.core.BasicHook.backward`, with the modified forward computed once per stored input."""
    stored = hook.stored_tensors["input"][0]
    kept = getattr(hook, "kept_forward", None)
    if kept is None or kept[0] is not stored:
        original = stored.clone()
        inputs, outputs = [], []
        for in_mod, param_mod, out_mod in zip(hook.input_modifiers, hook.param_modifiers, hook.output_modifiers):
            inp = in_mod(original).requires_grad_()
            with ParamMod.ensure(param_mod)(module) as modified, torch.autograd.enable_grad():
                outputs.append(out_mod(modified.forward(inp)))
            inputs.append(inp)
        kept = hook.kept_forward = (stored, inputs, outputs)
    _, inputs, outputs = kept
    gradients = torch.autograd.grad(outputs, inputs, grad_outputs=hook.gradient_mapper(grad_output[0], outputs),
                                    retain_graph=True, create_graph=grad_output[0].requires_grad)
    relevance = hook.reducer(inputs, gradients)
    return tuple(relevance if original.shape == relevance.shape else None for original in grad_input)


def channel_heatmaps(engine: Relevance, x: torch.Tensor, layer: str, classes: Sequence[int],
                     rows: Sequence[tuple[int, int]]) -> dict[tuple[int, int], torch.Tensor]:
    """Heatmaps of (image, channel) ``rows`` of ``x``, each image explaining its own class in ``classes``:
    one forward and backward for the images, then the batched pass below the layer for the rows."""
    sig = engine.signal(x, [layer], list(classes))
    eye = torch.eye(sig.signals[layer].shape[1])
    maps = engine.heatmaps(x, layer, sig.signals[layer], eye, rows)
    return {(i, j): heat for (i, j), heat in zip(rows, maps)}


def concept_weights(
    channels: Sequence[int] | None, directions: torch.Tensor | None, n_channels: int
) -> tuple[torch.Tensor, list[str]]:
    """M×C weights and names: one-hot rows for channels, given rows for neuron-group directions."""
    if directions is not None:
        directions = torch.as_tensor(directions, dtype=torch.float32)
        if directions.ndim != 2 or directions.shape[1] != n_channels:
            raise DiamondCutterError(f"directions must be M×{n_channels}, got {tuple(directions.shape)}")
        return directions, [f"direction {i}" for i in range(len(directions))]
    chosen = list(range(n_channels)) if channels is None else [int(c) for c in channels]
    bad = [c for c in chosen if not 0 <= c < n_channels]
    if bad:
        raise DiamondCutterError(f"channels {bad} are out of range: the layer has {n_channels} channels")
    return torch.eye(n_channels)[chosen], [f"channel {c}" for c in chosen]


def _most_relevant(channels: Sequence[int] | int | None, relevance: torch.Tensor) -> Sequence[int] | None:
    """``channels`` as a list: an int ``k`` picks the ``k`` channels of most summed N×C ``relevance``."""
    if isinstance(channels, bool):  # an int to Python, but no count of channels
        raise DiamondCutterError(f"channels must be a list of channels, a count or None, got {channels!r}")
    if isinstance(channels, int):
        return relevance.sum(0).topk(min(channels, relevance.shape[1])).indices.tolist()
    return channels


def conditional_heatmaps(
    model: Model,
    images: Any,
    layer: str,
    target: Any = "top1",
    channels: Sequence[int] | int | None = 8,
    *,
    directions: torch.Tensor | None = None,
    settings: CRPSettings = CRPSettings(),
) -> ConditionalHeatmaps:
    """Concept-conditional heatmaps of ``layer`` for each image's ``target`` class.

    ``channels`` is a list of channels, an int ``k`` (the ``k`` channels with the
    most relevance summed over the images, most relevant first) or ``None`` (all);
    ``directions`` (M×C, e.g. ``neuron_groups(...).directions``) replaces channels
    with neuron-group directions.
    """
    batch = as_batch(images, model)
    x = batch.tensor.to(model.device)
    engine = Relevance(model, settings)
    with preserved(model.module):
        sig = engine.signal(x, [layer], target)
        acts, signal = sig.activations[layer], sig.signals[layer]
        if acts.ndim != 4:
            raise DiamondCutterError(
                f"layer {layer!r} has no spatial map (output {tuple(acts.shape)}); pick a convolutional layer"
            )
        relevance = engine.contribution(acts, signal).sum((2, 3)).float().cpu()
        chosen = None if directions is not None else _most_relevant(channels, relevance)
        weights, names = concept_weights(chosen, directions, relevance.shape[1])
        maps = engine.heatmaps(x, layer, signal, weights).view(len(x), len(weights), *x.shape[2:])
    classes = sig.classes
    return ConditionalHeatmaps(
        layer,
        engine.method,
        names,
        classes.tolist(),
        [model.labels[c] for c in classes.tolist()],
        list(batch.ids),
        maps,
        relevance,
        batch.pixels.cpu(),
    )
