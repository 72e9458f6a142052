"""Target classes for attribution: one rule for every tool that explains a class.

A target is a class index, a class name, ``"top1"``/``"top2"``/... (the k-th
predicted class of each image), or a list with one of those per image. A single
target applies to every image of the batch; a list must match the batch length
(an error otherwise, never a silent zero map for the images after the first).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from .errors import DiamondCutterError

Target = int | str
Targets = Target | Sequence[Target]


def _rank(target: object) -> int | None:
    if isinstance(target, str):
        m = re.fullmatch(r"top(\d+)", target.strip().lower())
        if m and int(m.group(1)) >= 1:
            return int(m.group(1))
    return None


def needs_logits(targets: Targets) -> bool:
    """True when resolving ``targets`` needs the model's predictions (``"topK"`` anywhere)."""
    items = [targets] if isinstance(targets, (str, int)) else list(targets)
    return any(_rank(t) is not None for t in items)


def resolve_targets(model, targets: Targets, n: int, logits: torch.Tensor | None = None) -> torch.Tensor:
    """Class indices (a LongTensor of length ``n``) for ``targets`` over a batch of ``n`` images.

    ``logits`` (N×classes) are needed only for ``"topK"`` targets.
    """
    if isinstance(targets, (str, int)) or (hasattr(targets, "__index__") and not isinstance(targets, torch.Tensor)):
        items = [targets] * n
    elif isinstance(targets, torch.Tensor):
        items = targets.reshape(-1).tolist()
        items = items * n if len(items) == 1 else items
    else:
        items = list(targets)
        if len(items) == 1:
            items = items * n
    if len(items) != n:
        raise DiamondCutterError(f"got {len(items)} targets for {n} images: give one target, or one per image")
    out = []
    for i, item in enumerate(items):
        k = _rank(item)
        if k is None:
            out.append(model.class_index(item))
            continue
        if logits is None:
            raise DiamondCutterError(f"target {item!r} needs the model's predictions")
        if k > logits.shape[1]:
            raise DiamondCutterError(f"target {item!r}: the model has only {logits.shape[1]} classes")
        out.append(int(logits[i].topk(k).indices[k - 1]))
    return torch.tensor(out, dtype=torch.long)
