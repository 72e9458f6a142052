"""Objectives: what a feature visualization maximizes, as lazy values with algebra.

An objective is a function of recorded activations that returns one score per
batch item, plus the names of the layers it reads (so the renderer hooks only
those and stops the forward pass after the deepest) and a readable
description. Objectives combine with ``+``, ``-``, scalar ``*`` and ``/`` and
negation, so "channel 3 of blocks.4 plus half of channel 7, minus the
diversity penalty" is just ``channel("blocks.4", 3) + 0.5 * channel("blocks.4", 7) - d``.

Batched objectives give each batch item its own target: ``channel(layer, [0, 1, 2])``
renders three images, one per channel, in one optimization.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F

from ..errors import DiamondCutterError
from ..targets import is_index

#: Pseudo layer name for the network's logits (class objectives need the full forward pass).
OUTPUT = "<output>"

Activations = Mapping[str, torch.Tensor]
ScoreFn = Callable[[Activations, Any], torch.Tensor]


class Objective:
    """A score per batch item (higher is better), the layers it reads and what it means.

    ``batch`` is the number of images the objective asks for (``None``: any).
    Call it with recorded activations (name → tensor, ``OUTPUT`` → logits) and
    the :class:`~diamond_cutter.model.Model` (for class names).
    """

    def __init__(self, fn: ScoreFn, layers: Sequence[str], description: str, batch: int | None = None):
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.description = description
        self.batch = batch

    def __call__(self, acts: Activations, model: Any = None) -> torch.Tensor:
        return self.fn(acts, model)

    def __repr__(self) -> str:
        return f"Objective({self.description})"

    def __add__(self, other: Objective | float) -> Objective:
        if not isinstance(other, Objective):
            return Objective(lambda a, m: self(a, m) + other, self.layers, f"{self.description} + {other}", self.batch)
        return Objective(
            lambda a, m: self(a, m) + other(a, m),
            self.layers + other.layers,
            f"{self.description} + {other.description}",
            common_batch(self, other),
        )

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective(lambda a, m: -self(a, m), self.layers, f"-({self.description})", self.batch)

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __rsub__(self, other: float) -> Objective:
        return (-self) + other

    def __mul__(self, factor: float) -> Objective:
        if isinstance(factor, Objective):
            raise DiamondCutterError("objectives can be multiplied by numbers, not by other objectives")
        return Objective(
            lambda a, m: factor * self(a, m), self.layers, f"{factor:g} * ({self.description})", self.batch
        )

    __rmul__ = __mul__

    def __truediv__(self, divisor: float) -> Objective:
        return self * (1.0 / divisor)


def common_batch(a: Objective, b: Objective) -> int | None:
    if a.batch is not None and b.batch is not None and a.batch != b.batch:
        raise DiamondCutterError(f"cannot combine objectives for {a.batch} and {b.batch} images")
    return a.batch if a.batch is not None else b.batch


def per_item(values: int | Sequence[int]) -> tuple[torch.Tensor | int, int | None]:
    """An int applies to every item; a sequence gives item ``i`` the value ``values[i]``."""
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    if isinstance(values, int) or not hasattr(values, "__iter__"):
        value = int(values)  # type: ignore[arg-type]  # numpy integers too
        check_range(value, None)
        return value, None
    values = [int(v) for v in values]
    if not values:
        raise DiamondCutterError("an objective needs at least one channel or class")
    for value in values:
        check_range(value, None)
    return torch.tensor(values), len(values)


def pick(act: torch.Tensor, index: torch.Tensor | int) -> torch.Tensor:
    """``act[i, index_i]`` for every item (or ``act[:, index]``), the rest of the dims kept."""
    if act.ndim < 2:
        raise DiamondCutterError(f"expected an activation with a channel dimension, got shape {tuple(act.shape)}")
    if isinstance(index, int):
        check_range(index, act.shape[1])
        return act[:, index]
    for extreme in (int(index.min()), int(index.max())):  # a negative index would silently pick from the end
        check_range(extreme, act.shape[1])
    if len(index) != len(act):
        raise DiamondCutterError(f"the objective has {len(index)} items but the batch has {len(act)} images")
    return act[torch.arange(len(act), device=act.device), index.to(act.device)]


def check_range(index: int, size: int | None) -> None:
    """The check ``visualize`` makes: no negative index (it would count from the end), none past ``size``."""
    if index < 0 or (size is not None and index >= size):
        limit = f"the layer has {size} channels" if size is not None else "indices start at 0"
        raise DiamondCutterError(f"channel {index} is out of range: {limit}")


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(dim=1) if x.ndim > 1 else x


def describe(values: int | Sequence[int]) -> str:
    if isinstance(values, int):
        return str(values)
    values = list(values)
    return f"{values[0]}..{values[-1]} ({len(values)} items)" if len(values) > 4 else ", ".join(map(str, values))


def channel(layer: str, channels: int | Sequence[int]) -> Objective:
    """Mean activation of a channel over all positions (Lucid's ``channel``); a list gives one channel per image."""
    index, batch = per_item(channels)
    return Objective(
        lambda a, m: spatial_mean(pick(a[layer], index)), [layer], f"channel {describe(channels)} of {layer}", batch
    )


def neuron(layer: str, channels: int | Sequence[int], x: int | None = None, y: int | None = None) -> Objective:
    """Activation of a channel at one position (the centre by default)."""
    index, batch = per_item(channels)

    def fn(a: Activations, _m: Any) -> torch.Tensor:
        act = pick(a[layer], index)
        if act.ndim != 3:
            raise DiamondCutterError(f"layer {layer!r} has no spatial positions: use channel() instead of neuron()")
        h, w = act.shape[-2:]
        return act[:, h // 2 if y is None else y, w // 2 if x is None else x]

    return Objective(fn, [layer], f"neuron {describe(channels)} of {layer} at ({x}, {y})", batch)


def layer_l2(layer: str) -> Objective:
    """Mean squared activation of the whole layer: amplifies whatever the layer sees (the objective
    of :func:`~diamond_cutter.featureviz.generators.deep_dream`)."""
    return Objective(lambda a, m: a[layer].pow(2).flatten(1).mean(dim=1), [layer], f"L2 of {layer}")



def direction(layer: str, vector: Sequence[float] | torch.Tensor, cossim_pow: float = 0.0) -> Objective:
    """Activation along a direction in channel space (an NMF neuron group, a mix of channels).

    ``vector`` is C (every image) or N×C (one direction per image). With
    ``cossim_pow > 0`` the dot product is weighted by cosine similarity to that
    power, which rewards pointing along the direction rather than just being large.
    """
    vec = torch.as_tensor(vector, dtype=torch.float32)
    if vec.ndim not in (1, 2):
        raise DiamondCutterError(f"a direction is a C or N×C vector, got shape {tuple(vec.shape)}")
    batch = len(vec) if vec.ndim == 2 else None

    def fn(a: Activations, _m: Any) -> torch.Tensor:
        act = a[layer]
        if act.shape[1] != vec.shape[-1]:
            raise DiamondCutterError(f"direction has {vec.shape[-1]} values but {layer!r} has {act.shape[1]} channels")
        v = vec.to(act.device, act.dtype)
        v = v.view(-1, v.shape[-1], *[1] * (act.ndim - 2))
        dot = (act * v).sum(dim=1)
        if cossim_pow:
            cos = dot / (act.norm(dim=1) * v.norm(dim=1) + 1e-6)
            dot = dot * cos.clamp(min=0.1) ** cossim_pow
        return spatial_mean(dot)

    return Objective(fn, [layer], f"direction in {layer}" + (f" (cos^{cossim_pow:g})" if cossim_pow else ""), batch)


def _one_class(targets: object) -> bool:
    """One class for every image: an index (numpy integers too) or a name."""
    return isinstance(targets, str) or is_index(targets)


def _classes(model: Any, targets: int | str | Sequence[int | str]) -> torch.Tensor | int:
    if _one_class(targets):
        return model.class_index(targets) if model is not None else int(cast(int, targets))
    return torch.tensor([model.class_index(t) if model is not None else int(t) for t in cast(Sequence, targets)])


def _class_batch(targets: int | str | Sequence[int | str]) -> int | None:
    return None if _one_class(targets) else len(cast(Sequence, targets))


def class_logit(targets: int | str | Sequence[int | str]) -> Objective:
    """The logit of a class (index or name); a list gives one class per image."""
    return Objective(
        lambda a, m: pick(a[OUTPUT], _classes(m, targets)), [OUTPUT], f"logit of class {targets}", _class_batch(targets)
    )


def class_probability(targets: int | str | Sequence[int | str]) -> Objective:
    """The softmax probability of a class: unlike the logit, it also pushes the other classes down."""
    return Objective(
        lambda a, m: pick(a[OUTPUT].softmax(dim=1), _classes(m, targets)),
        [OUTPUT],
        f"probability of class {targets}",
        _class_batch(targets),
    )


def class_margin(targets: int | str | Sequence[int | str], rivals: float = 0.5) -> Objective:
    """A class logit minus ``rivals`` × the log-sum-exp of all other logits.

    Raising a logit alone often raises a near-synonym (tiger cat for tabby) just
    as much, so the class need not win; the rival term pushes the others down.
    With ``rivals`` = 1 this is the log-probability, whose gradient vanishes once
    the class leads; ½ keeps the logit's steady push and still separates rivals.
    """

    def fn(a: Activations, m: Any) -> torch.Tensor:
        logits = a[OUTPUT]
        index = _classes(m, targets)
        own = torch.zeros_like(logits, dtype=torch.bool)
        own[torch.arange(len(logits)), index] = True
        return pick(logits, index) - rivals * logits.masked_fill(own, float("-inf")).logsumexp(dim=1)

    return Objective(fn, [OUTPUT], f"margin of class {targets} over the others", _class_batch(targets))


def diversity(layer: str) -> Objective:
    """Minus the mean cosine similarity of each image's Gram matrix to the other images' (Lucid's diversity).

    Added with a weight to a batched objective, it pushes the images of a batch
    to show different facets of the same feature.
    """

    def fn(a: Activations, _m: Any) -> torch.Tensor:
        act = a[layer]
        n = len(act)
        if n < 2:
            raise DiamondCutterError("diversity needs at least two images in the batch")
        flat = act.flatten(2)
        gram = F.normalize((flat @ flat.transpose(1, 2)).flatten(1), dim=1)
        sim = gram @ gram.T
        return -(sim.sum(dim=1) - sim.diagonal()) / (n - 1)

    return Objective(fn, [layer], f"diversity of {layer}")


def batched(objectives: Sequence[Objective]) -> Objective:
    """One objective per batch item: item ``i`` is scored by ``objectives[i]`` alone."""
    objectives = list(objectives)
    layers = [name for o in objectives for name in o.layers]

    def fn(a: Activations, m: Any) -> torch.Tensor:
        scores = [o(a, m) for o in objectives]
        return torch.stack([s[i] if s.ndim else s for i, s in enumerate(scores)])

    return Objective(fn, layers, "[" + "; ".join(o.description for o in objectives) + "]", len(objectives))
