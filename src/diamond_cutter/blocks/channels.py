"""Channel attribution (Building Blocks' linear attribution, summed over space).

For each channel c of a layer, ``Σ_{h,w} A[c,h,w] · ∂score/∂A[c,h,w]``: how much
the channel's activation, taken as a whole, pushes the class score up or down.
For a layer followed only by linear operations this is exactly the channel's
share of the logit; elsewhere it is the first-order estimate Building Blocks uses.
Many images are averaged, which ranks the channels that matter for a class
across a set rather than for one picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..html import from_template, short_repr
from ..targets import UNSET, TargetSpec, class_name, legacy_classes, score_title
from .linear import LayerGradients, linear_attribution


class ChannelScore(NamedTuple):
    """One channel and its attribution (positive: evidence for, negative: against)."""

    channel: int
    score: float


@dataclass
class ChannelAttribution:
    """Per-channel attribution of a layer to ``positive − negative`` classes.

    ``per_image`` is N×C; ``scores`` its mean over images. ``positive`` and
    ``negative`` hold each image's class indices (``negative`` is None for a
    single-class attribution); ``*_names`` the matching class names.
    """

    layer: str
    scores: torch.Tensor
    per_image: torch.Tensor
    positive: list[int]
    negative: list[int] | None
    positive_names: list[str]
    negative_names: list[str] | None
    image_ids: list[str]

    def __repr__(self) -> str:
        return short_repr(self)

    def top(self, k: int = 8) -> list[ChannelScore]:
        """Up to ``k`` channels with positive scores (evidence for), largest first."""
        values, idx = self.scores.topk(min(k, len(self.scores)))
        return [ChannelScore(int(i), float(v)) for i, v in zip(idx, values) if v > 0]

    def bottom(self, k: int = 8) -> list[ChannelScore]:
        """Up to ``k`` channels with negative scores (evidence against), most negative first; fewer when
        fewer channels count against, so a weakly positive channel is never listed as evidence against."""
        values, idx = (-self.scores).topk(min(k, len(self.scores)))
        return [ChannelScore(int(i), -float(v)) for i, v in zip(idx, values) if v > 0]

    @property
    def title(self) -> str:
        """"tabby − tiger cat" style description of what is attributed (one name when shared)."""
        return score_title(self.positive_names, self.negative_names)

    def _repr_html_(self) -> str:
        return from_template("channels_fragment.html.j2", channels=self, icon_uris={}, k=8)


def from_layer_gradients(model, la: LayerGradients) -> ChannelAttribution:
    """Sum a :class:`LayerGradients` over space (shared by the report, which computes it once)."""
    per_image = la.attributions.sum(dim=(2, 3))
    return ChannelAttribution(
        la.layer,
        per_image.mean(0),
        per_image,
        la.positive,
        la.negative,
        [class_name(model, i) for i in la.positive],
        None if la.negative is None else [class_name(model, i) for i in la.negative],
        la.image_ids,
    )


def channel_attribution(
    model, images: Any, layer: str | None = None, target: TargetSpec = "auto", *, batch_size: int | None = None,
    progress: bool = False, classes: TargetSpec = UNSET,
) -> ChannelAttribution:
    """Attribution of every channel of ``layer`` to a class, or to one class minus another.

    ``target``: ``"auto"`` (each image's top-1 minus its top-2 prediction), one
    class (index, name or ``"top1"``), a ``(positive, negative)`` contrast, or
    a list with one per image (see :mod:`diamond_cutter.targets`). ``classes=``
    is the deprecated name of ``target=``.
    """
    target = legacy_classes(target, classes, "channel_attribution")
    return from_layer_gradients(
        model, linear_attribution(model, images, layer, target, batch_size=batch_size, progress=progress)
    )
