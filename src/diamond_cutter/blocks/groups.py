"""Neuron groups (Building Blocks' factorized attribution): non-negative matrix
factorization of a layer's activations into a few groups of channels.

The activations of all cells (N·H·W rows × C channels) factor as
``A ≈ S · D`` with S ≥ 0 (each cell's strength per group: the group's spatial
map) and D ≥ 0 (each group's direction in channel space, a feature
visualization objective). A group's attribution to a class is the linear
attribution of its part ``S_g ⊗ D_g`` of the activation, so groups explain the
decision in a handful of human-sized pieces instead of hundreds of channels.

NMF needs non-negative data: layers after a ReLU are; for a layer that can go
negative (a residual block's sum) the negative part is clipped to zero and
``error`` is measured against that clipped activation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import DiamondCutterError
from ..html import from_template, short_repr
from ..images import as_batch
from ..render import tint_colour
from ..targets import UNSET, TargetSpec, legacy_classes
from .linear import LayerGradients, linear_attribution

#: Distinct colours for group maps (ColorBrewer Set1), cycled for more groups.
GROUP_COLOURS = [
    (228, 26, 28),
    (55, 126, 184),
    (77, 175, 74),
    (152, 78, 163),
    (255, 127, 0),
    (255, 255, 51),
    (166, 86, 40),
    (247, 129, 191),
]


@dataclass
class NeuronGroups:
    """``k`` groups of a layer's channels found by NMF over ``image_ids``.

    ``spatial`` is N×k×H×W, ``directions`` k×C (unit-free; each row is a
    direction for feature visualization), ``attributions`` k × scores (each score named in ``class_names``) and
    ``error`` the relative reconstruction error ‖A − S·D‖ / ‖A‖ of the clipped
    activations.
    """

    layer: str
    spatial: torch.Tensor
    directions: torch.Tensor
    attributions: torch.Tensor
    class_names: list[str]
    error: float
    image_ids: list[str]
    images: list[Image.Image]

    def __repr__(self) -> str:
        return short_repr(self)

    @property
    def k(self) -> int:
        return int(self.directions.shape[0])

    def top_channels(self, group: int, k: int = 5) -> list[tuple[int, float]]:
        """The channels that weigh most in a group's direction."""
        top = self.directions[group].topk(min(k, self.directions.shape[1]))
        return [(int(c), float(v)) for c, v in zip(top.indices, top.values)]

    def overlay(self, group: int, image: int = 0, alpha: float = 0.8) -> Image.Image:
        """One group's spatial map over image ``image``, in the group's colour."""
        return tint_colour(
            self.images[image], self.spatial[image, group], GROUP_COLOURS[group % len(GROUP_COLOURS)], alpha
        )

    def _repr_html_(self) -> str:
        return from_template("groups_fragment.html.j2", groups=self, overlays=self.overlays(0), icons={})

    def overlays(self, image: int = 0) -> list[Image.Image]:
        """Every group's spatial map over image ``image``."""
        return [self.overlay(g, image) for g in range(self.k)]


def factorize(
    activations: torch.Tensor, k: int, seed: int = 0, max_iter: int = 400
) -> tuple[np.ndarray, np.ndarray, float]:
    """NMF of N×C×H×W activations (clipped at 0) into cell strengths (N·H·W × k) and directions (k × C)."""
    from sklearn.decomposition import NMF  # deferred: scikit-learn is slow to import and only NMF needs it

    n, c, h, w = activations.shape
    if not 1 <= k <= min(c, n * h * w):
        raise DiamondCutterError(f"k={k} groups: need 1 ≤ k ≤ min(channels={c}, cells={n * h * w})")
    data = activations.clamp(min=0).permute(0, 2, 3, 1).reshape(-1, c).double().numpy()
    if not data.any():
        raise DiamondCutterError("the layer's activations are all ≤ 0 for these images: nothing to factorize")
    nmf = NMF(n_components=k, init="nndsvda", random_state=seed, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Maximum number of iterations")
        strengths = nmf.fit_transform(data)
    directions = nmf.components_
    error = float(np.linalg.norm(data - strengths @ directions) / np.linalg.norm(data))
    return strengths, directions, error


def neuron_groups(
    model,
    images: Any,
    layer: str | None = None,
    k: int = 6,
    target: TargetSpec | list[TargetSpec] | None = None,
    *,
    batch_size: int | None = None,
    progress: bool = False,
    classes: Sequence[TargetSpec] = UNSET,
) -> NeuronGroups:
    """Factor ``layer``'s activations over ``images`` into ``k`` neuron groups.

    Each group gets its attribution to ``target``, one column per target: a
    single target, or a list of targets (class indices, names, ``"topK"``,
    contrasts); the default is ``["top1", "top2"]``; a named class shows up by
    name. ``classes=`` is the deprecated name of ``target=`` (there a sequence
    always meant one column per entry).
    """
    columns = list(legacy_classes(target, classes, "neuron_groups")) if classes is not UNSET else target
    columns = ["top1", "top2"] if columns is None else columns if isinstance(columns, list) else [columns]
    layer = model.spatial_layer(layer).name
    batch = as_batch(images, model)
    per_class = [linear_attribution(model, batch, layer, c, batch_size=batch_size, progress=progress) for c in columns]
    return factor_groups(model, per_class, k, batch.images())


def factor_groups(model, scores: Sequence[LayerGradients], k: int, pictures: list[Image.Image]) -> NeuronGroups:
    """Neuron groups from computed attributions of one layer over the same images (one per score);
    the report passes the attribution it already has, so grouping costs no further pass."""
    acts = scores[0].activations
    n, c, h, w = acts.shape
    strengths, directions, error = factorize(acts, k)
    s = torch.from_numpy(strengths).float()
    d = torch.from_numpy(directions).float()
    attributions = torch.stack([group_attribution(s, d, la.gradients) for la in scores], dim=1)
    return NeuronGroups(
        scores[0].layer,
        s.reshape(n, h, w, k).permute(0, 3, 1, 2).contiguous(),
        d,
        attributions,
        [la.title(model) for la in scores],
        error,
        list(scores[0].image_ids),
        pictures,
    )


def group_attribution(strengths: torch.Tensor, directions: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Σ over cells and channels of (S_g ⊗ D_g) ⊙ ∂score/∂A for each group g (a length-k vector)."""
    c = gradients.shape[1]
    g = gradients.permute(0, 2, 3, 1).reshape(-1, c)
    return (strengths * (g @ directions.T)).sum(0)
