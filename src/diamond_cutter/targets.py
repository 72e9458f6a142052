"""The one target grammar: what an attribution, a building block or a report explains.

Every function that explains a score takes ``target=`` in this grammar, and the
CLI's ``--target`` parses into it (:func:`parse_target`):

- a class index (a Python, numpy or one-element tensor integer) or a class name;
- ``"topK"`` (``"top1"``, ``"top2"``, ...): each image's k-th predicted class;
- ``"auto"``: each image's top-1 minus its top-2 logit (why this class rather than the runner-up);
- a contrast ``(positive, negative)``: the positive score minus the negative one,
  each side a class, ``"topK"`` or a per-image list of those;
- a callable mapping the logits (N×classes) to one score per image;
- a list with one of the above per image (a one-element list applies to every image);
- a list of lists (N×M): several targets per image, explained as one row per
  (image, target), image by image (a single inner list applies to every image).

One target applies to every image; a list must match the batch (an error
otherwise, never a silent zero map for the images after the first). Scores are
logits, not probabilities, so a contrast is exactly the difference of two
single-class explanations.
"""

from __future__ import annotations

import numbers
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .capture import fast_layout
from .errors import DiamondCutterError

#: A target in the grammar above.
TargetSpec = Any

#: ``"auto"`` as a contrast.
AUTO = ("top1", "top2")


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


#: Default of the deprecated ``classes=`` keyword (tells "not given" from every real target).
UNSET: Any = _Unset()


def is_index(target: object) -> bool:
    """True for a class index: a Python or numpy integer, or an integer tensor with one element."""
    if isinstance(target, (bool, np.bool_)):
        return False
    if isinstance(target, numbers.Integral):
        return True
    return (
        isinstance(target, torch.Tensor)
        and target.numel() == 1
        and not (target.is_floating_point() or target.dtype == torch.bool)
    )


def _single(target: object) -> bool:
    return isinstance(target, str) or is_index(target)


def _rank(target: object) -> int | None:
    if isinstance(target, str):
        m = re.fullmatch(r"top(\d+)", target.strip().lower())
        if m and int(m.group(1)) >= 1:
            return int(m.group(1))
    return None


def _is_auto(target: object) -> bool:
    return isinstance(target, str) and target.strip().lower() == "auto"


def is_nested(target: object) -> bool:
    """True for an N×M target: a non-empty list of lists."""
    return isinstance(target, list) and bool(target) and all(isinstance(t, list) for t in target)


def split(target: TargetSpec) -> tuple[TargetSpec, TargetSpec | None]:
    """``target`` as (positive, negative-or-None): ``"auto"`` and contrasts have a negative side.

    A per-image list of contrasts becomes a contrast of per-image lists.
    """
    if _is_auto(target):
        return AUTO
    if isinstance(target, tuple):
        if len(target) != 2:
            raise DiamondCutterError(
                f"a contrast is a (positive, negative) pair, got {len(target)} items; give one target per image as a "
                "list"
            )
        for side in target:
            if callable(side) or isinstance(side, tuple) or _is_auto(side):
                raise DiamondCutterError(
                    f"each side of a contrast is a class, 'topK' or a per-image list of those; got {side!r}"
                )
        return target[0], target[1]
    if isinstance(target, list) and any(_is_auto(t) or isinstance(t, tuple) for t in target):
        pairs = [split(t) for t in target]
        if any(negative is None for _, negative in pairs):
            raise DiamondCutterError(
                "a per-image list mixes contrasts and single targets: give every image a contrast, or none"
            )
        return [p for p, _ in pairs], [n for _, n in pairs]
    return target, None


def _items(side: TargetSpec, n: int) -> list[Any]:
    """One single target (index, name or "topK") per image."""
    if _single(side):
        items = [side]
    elif isinstance(side, (torch.Tensor, np.ndarray)):
        items = side.reshape(-1).tolist()
    elif isinstance(side, Sequence) and not isinstance(side, str):
        items = list(side)
    else:
        raise DiamondCutterError(
            f"a target is a class index or name, 'topK', 'auto', a contrast, a list or a callable; got {side!r}"
        )
    if len(items) == 1:
        items = items * n
    if len(items) != n:
        raise DiamondCutterError(f"got {len(items)} targets for {n} images: give one target, or one per image")
    for item in items:
        if not _single(item):
            raise DiamondCutterError(f"a per-image target is a class index or name, or 'topK'; got {item!r}")
    return items


def needs_logits(target: TargetSpec) -> bool:
    """True when resolving ``target`` needs the model's predictions (``"topK"`` or ``"auto"`` anywhere)."""
    if callable(target):
        return False
    if is_nested(target):
        return any(needs_logits(t) for t in target)
    items = [i for side in split(target) if side is not None for i in ([side] if _single(side) else _flat(side))]
    return any(_rank(i) is not None for i in items)


def _flat(side: TargetSpec) -> list[Any]:
    if isinstance(side, (torch.Tensor, np.ndarray)) or not isinstance(side, Sequence):
        return []
    return list(side)


def expand(target: TargetSpec, n: int) -> tuple[list[int] | None, TargetSpec]:
    """For an N×M target: the image of each output row and one target per row; ``(None, target)`` otherwise."""
    if not is_nested(target):
        return None, target
    per_image = list(target) * n if len(target) == 1 else list(target)
    if len(per_image) != n:
        raise DiamondCutterError(f"got {len(per_image)} target lists for {n} images: give one list, or one per image")
    rows = [i for i, targets in enumerate(per_image) for _ in targets]
    return rows, [t for targets in per_image for t in targets]


def _resolve(model: Any, items: list[Any], rows: Sequence[int], logits: torch.Tensor | None) -> list[int]:
    """Class indices for ``items[rows]``; ``logits`` (one row per entry of ``rows``) answer "topK"."""
    out = []
    for j, i in enumerate(rows):
        k = _rank(items[i])
        if k is None:
            out.append(model.class_index(int(items[i]) if is_index(items[i]) else items[i]))
            continue
        if logits is None:
            raise DiamondCutterError(f"target {items[i]!r} needs the model's predictions")
        if k > logits.shape[1]:
            raise DiamondCutterError(f"target {items[i]!r}: the model has only {logits.shape[1]} classes")
        out.append(int(logits[j].topk(k).indices[k - 1]))
    return out


def resolve_targets(model: Any, targets: TargetSpec, n: int, logits: torch.Tensor | None = None) -> torch.Tensor:
    """Class indices (a LongTensor of length ``n``) for a one-sided ``targets`` over ``n`` images.

    ``logits`` (N×classes) are needed only for ``"topK"`` targets.
    """
    items = _items(targets, n)
    return torch.tensor(_resolve(model, items, range(n), logits), dtype=torch.long)


class Selector:
    """The score each image's explanation differentiates or perturbs, from any target.

    Classes are fixed once: indices and names at once, ``"topK"`` (and
    ``"auto"``) per image from the first logits seen for that image, which are
    the clean image's (methods that run on perturbed copies call
    :meth:`resolve_with` first, so SmoothGrad's noisy copies or occluded images
    keep explaining the class predicted for the original). A callable target
    is applied to the logits of every pass.
    """

    def __init__(self, model: Any, target: TargetSpec, n: int):
        self.model, self.n = model, n
        self.fn: Callable[[torch.Tensor], torch.Tensor] | None = target if callable(target) else None
        self.positive: torch.Tensor | None = None
        self.negative: torch.Tensor | None = None
        self._items: list[list[Any]] = []
        if self.fn is None:
            positive, negative = split(target)
            self._items = [_items(positive, n)] + ([] if negative is None else [_items(negative, n)])
            sides = [self._fixed(items) for items in self._items]
            self.positive, self.negative = sides[0], (sides[1] if len(sides) > 1 else None)

    def _fixed(self, items: list[Any]) -> torch.Tensor:
        """Indices where they need no logits, -1 where a "topK" waits for its image's logits."""
        ranked = [i for i, item in enumerate(items) if _rank(item) is None]
        out = torch.full((len(items),), -1, dtype=torch.long)
        out[ranked] = torch.tensor(_resolve(self.model, items, ranked, None), dtype=torch.long)
        return out

    @property
    def sides(self) -> list[torch.Tensor]:
        return [s for s in (self.positive, self.negative) if s is not None]

    @property
    def resolved(self) -> bool:
        return self.fn is not None or all(bool((s >= 0).all()) for s in self.sides)

    @property
    def classes(self) -> torch.Tensor | None:
        """The explained (positive) class of each image; ``None`` for a callable target."""
        return self.positive

    def resolve(self, logits: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Fix the "topK" classes of ``rows`` (default: all ``n`` images) from their logits."""
        rows = torch.arange(self.n) if rows is None else rows
        for items, side in zip(self._items, self.sides):
            todo = [j for j, i in enumerate(rows.tolist()) if side[i] < 0]
            if todo:
                found = _resolve(self.model, items, [int(rows[j]) for j in todo], logits.detach()[todo])
                side[rows[todo]] = torch.tensor(found, dtype=torch.long)

    def resolve_with(self, x: torch.Tensor, batch_size: int) -> None:
        """Resolve "topK" targets with a gradient-free forward of the clean ``x`` when still needed."""
        if self.resolved:
            return
        with torch.no_grad():
            logits = torch.cat([self.model(fast_layout(x[s : s + batch_size])) for s in range(0, len(x), batch_size)])
        self.resolve(logits)

    def score(self, logits: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """One score per row of ``logits``; ``rows`` says which image each row belongs to (default: all, in order)."""
        if self.fn is not None:
            out = self.fn(logits)
            if not isinstance(out, torch.Tensor) or out.shape != (len(logits),):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise DiamondCutterError(
                    f"a target callable must return one score per image, shape ({len(logits)},); got {shape}"
                )
            return out
        rows = torch.arange(len(logits)) if rows is None else rows
        self.resolve(logits, rows)
        picked = [logits.gather(1, side[rows].to(logits.device).view(-1, 1)).squeeze(1) for side in self.sides]
        return picked[0] if len(picked) == 1 else picked[0] - picked[1]

    def weights(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """∂score/∂logits for class targets: +1 at the positive class, −1 at the negative one."""
        if self.fn is not None:
            raise DiamondCutterError(
                "this method needs class targets (an index, a name, 'topK' or a contrast), not a callable"
            )
        self.resolve(logits, rows)
        out = torch.zeros_like(logits)
        for sign, side in zip((1.0, -1.0), self.sides):
            out[torch.arange(len(logits)), side[rows].to(logits.device)] += sign
        return out

    def fixed(self) -> TargetSpec:
        """The target with every class resolved (after :meth:`resolve`): repeats the same explanation."""
        if self.fn is not None:
            return self.fn
        sides = [side.tolist() for side in self.sides]
        return sides[0] if len(sides) == 1 else tuple(sides)

    def labels(self) -> list[str]:
        """What each image's score is: a class name, or "positive − negative"."""
        if self.positive is None:
            return ["custom"] * self.n
        names = [[class_name(self.model, i) for i in side.tolist()] for side in self.sides]
        return [" − ".join(parts) for parts in zip(*names)]


def class_name(model: Any, index: int) -> str:
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


def legacy_classes(target: TargetSpec, classes: TargetSpec, function: str) -> TargetSpec:
    """``target``, or the deprecated ``classes=`` keyword of ``function`` when it was given (with a warning)."""
    if classes is UNSET:
        return target
    warnings.warn(
        f"{function}(classes=...) is deprecated and will be removed in the next release; use target=...",
        DeprecationWarning,
        stacklevel=3,
    )
    return classes


def parse_target(texts: str | Sequence[str]) -> TargetSpec:
    """The CLI's ``--target`` values as a target: each is ``auto``, a class index or name,
    ``topK`` or ``POSITIVE,NEGATIVE`` (a class name contains no comma); several are one per image."""
    items = [texts] if isinstance(texts, str) else list(texts)
    if not items:
        raise DiamondCutterError("--target needs a value")
    parsed = [_parse_one(text) for text in items]
    return parsed[0] if len(parsed) == 1 else parsed


def _parse_one(text: str) -> TargetSpec:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 2 or not all(parts):
        raise DiamondCutterError(
            f"--target takes 'auto', a class index or name, 'topK', or POSITIVE,NEGATIVE; got {text!r}"
        )
    values = [int(p) if p.isdigit() else p for p in parts]
    return values[0] if len(values) == 1 else tuple(values)
