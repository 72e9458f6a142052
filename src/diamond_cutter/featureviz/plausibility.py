"""Plausibility: how natural a feature visualization looks, not only how strongly it excites its channel.

Following the MACO paper's evaluation (Fel et al. 2023), a visualization and
the natural images that excite its channel most (dataset examples) are both
embedded by a *different* network, the judge (EfficientNet-Lite2 when the
visualized model is Lite0), and the score is their mean cosine similarity: a
picture made of adversarial texture lands far from real photographs in the
judge's feature space even when it drives the channel hard. Over a whole layer,
the Fréchet distance between the embeddings of the visualizations and of the
references (FID's formula in the judge's space) summarises the same question.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..capture import preserved, read_layers
from ..errors import DiamondCutterError

#: Images embedded per forward pass of the judge.
EMBED_BATCH = 16


def as_pixels(images: Any, size: tuple[int, int], channels: int) -> torch.Tensor:
    """N×C×H×W ``[0, 1]`` pixels at ``size`` from a tensor, PIL images, or dataset examples
    (anything with ``.examples``, each with an ``.image``); grey images are repeated to ``channels``."""
    if hasattr(images, "examples"):
        images = [e.image for e in images.examples]
    if isinstance(images, torch.Tensor):
        tensors = list(images.float())
    else:
        tensors = [pil_pixels(p) for p in images]
    if not tensors:
        raise DiamondCutterError("plausibility needs at least one reference image per channel")
    resized = [F.interpolate(t[None], size=size, mode="bilinear", align_corners=False, antialias=True) for t in tensors]
    batch = torch.cat(resized)
    if batch.shape[1] == 1 and channels > 1:
        batch = batch.expand(-1, channels, -1, -1)
    return batch


def pil_pixels(picture: Image.Image) -> torch.Tensor:
    if not isinstance(picture, Image.Image):
        raise DiamondCutterError(f"a reference image must be a PIL image or a tensor, got {type(picture).__name__}")
    arr = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)


def embed(judge: Any, images: Any, layer: str | None = None) -> torch.Tensor:
    """N×D embeddings: the judge's ``layer`` (default: its last spatial layer before pooling), averaged
    over positions, for images resized to the judge's input size."""
    name = judge.spatial_layer(layer).name
    pixels = as_pixels(images, tuple(judge.input_size[1:]), judge.input_size[0])
    out = []
    with preserved(judge.module), torch.no_grad():
        for chunk in pixels.split(EMBED_BATCH):
            acts = read_layers(judge.module, judge.normalize(chunk.to(judge.device)), [name], stop=True)[name]
            out.append(acts.float().mean(dim=(-2, -1)).cpu())
    return torch.cat(out)


def plausibility(judge: Any, visualizations: torch.Tensor, references: Sequence[Any],
                 layer: str | None = None) -> torch.Tensor:
    """Per visualization (N×C×H×W), the mean cosine similarity of its embedding to those of its channel's
    reference images (``references[i]`` for visualization ``i``), in the judge's feature space."""
    if len(references) != len(visualizations):
        raise DiamondCutterError(f"{len(references)} reference sets for {len(visualizations)} visualizations")
    vis = embed(judge, visualizations, layer)
    return torch.stack([F.cosine_similarity(v[None], embed(judge, refs, layer)).mean()
                        for v, refs in zip(vis, references)])


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings (N×D, M×D): FID's formula,
    ‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½), the trace of the root from the eigenvalues of Σa^½ Σb Σa^½."""
    if len(a) < 2 or len(b) < 2:
        raise DiamondCutterError("a Fréchet distance needs at least two embeddings on each side")
    a, b = a.double(), b.double()
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    mean_term = (a.mean(0) - b.mean(0)).pow(2).sum()
    return float(mean_term + cov_a.trace() + cov_b.trace() - 2 * cross)


def channel_references(references: Mapping[int, Any], channels: Sequence[int]) -> list[Any]:
    """The reference images of every channel, in order; a channel without any is an error naming it."""
    missing = [c for c in channels if c not in references]
    if missing:
        raise DiamondCutterError(f"no reference images for channels {missing[:8]} (give references for every channel)")
    return [references[c] for c in channels]
