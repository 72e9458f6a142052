"""What replaces removed pixels: constant-free baselines and ROAD's noisy linear imputation.

Every function works on a batch (rows × C × H × W in the network's input
space) at once, so all images, steps and orders of a metric perturb in a few
tensor operations instead of a loop per image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import UnknownNameError

#: Removal baselines for deletion and insertion.
BASELINES = ("blur", "mean", "noise", "black")



def baseline_images(x: torch.Tensor, kind: str, model, seed: int = 0, blur: float = 0.025) -> torch.Tensor:
    """What a removed pixel becomes, one image per row of ``x`` (the network's input).

    ``blur``: a Gaussian blur of the image (σ = ``blur`` × the longer side, Petsiuk
    et al.'s substrate); ``mean``: the image's mean colour; ``noise``: uniform
    random pixels (the same draw for every image, so a result does not depend on
    which other images share the batch); ``black``: zero pixels.
    """
    if kind == "blur":
        return gaussian_blur(x, blur * max(x.shape[-2:]))
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if kind == "noise":
        pixels = torch.rand(x.shape[1:], generator=torch.Generator().manual_seed(seed)).to(x.device, x.dtype)
        return model.normalize(pixels.expand_as(x))
    if kind == "black":
        return model.normalize(torch.zeros_like(x))
    raise UnknownNameError("baseline", kind, BASELINES)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders (kernel truncated at 3σ, at most the image size)."""
    radius = max(1, min(int(math.ceil(3 * sigma)), min(x.shape[-2:]) - 1))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / max(sigma, 1e-6)) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ranks(relevance: torch.Tensor, descending: bool = True) -> torch.Tensor:
    """Each pixel's position in the removal order (N×H×W, 0 = first removed); ties keep pixel order."""
    flat = relevance.flatten(1)
    order = torch.argsort(-flat if descending else flat, dim=1, stable=True)
    out = torch.empty_like(order)
    out.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order).contiguous())
    return out.view_as(relevance)


def noisy_linear_imputation(
    x: torch.Tensor, removed: torch.Tensor, noise: torch.Tensor | None = None, tol: float = 1e-3, max_iter: int = 20,
) -> torch.Tensor:
    """ROAD's imputation: each removed pixel becomes the weighted mean of its 8 neighbours, plus noise.

    The weighted-mean conditions for all removed pixels form one linear system per
    image (a masked Laplace equation). It is solved for every row at once by
    conjugate gradients, level by level from coarse to fine, each level stopping when
    every row's residual is below ``tol`` of its right-hand side or after ``max_iter``
    steps (20 steps leave a mean error of about 0.01, ROAD's noise level, at 224 px
    with 90% removed). ``removed``
    is rows×1×H×W (True where removed); ``noise`` (shaped like ``x``, e.g. Gaussian
    with std 0.01) is added to the imputed values only, as in Rong et al. 2022, so
    the fill leaks no mask shape.
    """
    m = removed.to(x.dtype)
    solved = _harmonic_fill(x, m, tol, max_iter)
    return solved if noise is None else solved + m * noise.to(x.device, x.dtype)


def _harmonic_fill(x: torch.Tensor, m: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
    """``x`` with the pixels where ``m`` is 1 solved for; the start is the solution at half the
    resolution (cascadic multigrid), so the fine level only corrects detail and converges in few steps."""
    h, w = x.shape[-2:]
    known = x * (1 - m)
    if min(h, w) >= 32 and bool(m.any()):
        kept = F.avg_pool2d(1 - m, 2, ceil_mode=True)
        coarse = F.avg_pool2d(known, 2, ceil_mode=True) / kept.clamp_min(1e-12)
        coarse = _harmonic_fill(coarse, (kept == 0).to(x.dtype), tol, max_iter)
        start = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    else:
        start = pyramid_fill(known, 1 - m)
    weight = neighbours(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device))
    b = m * neighbours(known)
    centre = weight + 4 / 12  # neighbours() subtracts the centre it counted in its separable sum

    def apply(v: torch.Tensor) -> torch.Tensor:
        return _separable(v).mul_(-1 / 12).addcmul_(centre, v).mul_(m)

    u = _conjugate_gradients(apply, b, m * start, 1 / weight, tol, max_iter)
    return known + m * u


def neighbours(u: torch.Tensor) -> torch.Tensor:
    """ROAD's weighted sum of the 8 neighbours (Rong et al. 2022: 1/6 along the axes, 1/12 on the
    diagonals; outside the image counts as 0). Written as a separable [1, 2, 1] filter minus the centre,
    with slices: a one-channel 3×3 convolution is about 25× slower on a CPU."""
    return _separable(u).sub_(u, alpha=4).mul_(1 / 12)


def _separable(u: torch.Tensor) -> torch.Tensor:
    """The [1, 2, 1] ⊗ [1, 2, 1] filter with zeros outside the image."""
    p = F.pad(u, (1, 1, 1, 1))
    r = torch.add(p[..., :, :-2], p[..., :, 2:]).add_(p[..., :, 1:-1], alpha=2)
    return torch.add(r[..., :-2, :], r[..., 2:, :]).add_(r[..., 1:-1, :], alpha=2)


def _conjugate_gradients(
    apply, b: torch.Tensor, u: torch.Tensor, inverse_diagonal: torch.Tensor, tol: float, max_iter: int
):
    """Jacobi-preconditioned CG, one independent system per (row, channel), updated in place (the
    solve is bound by memory traffic); the residual is checked every few steps."""
    dims = (2, 3)
    r = b - apply(u)
    z = inverse_diagonal * r
    p = z.clone()
    rz = (r * z).sum(dims, keepdim=True)
    limit = (tol * b.norm(dim=dims, keepdim=True)).clamp_min(1e-12)
    for step in range(max_iter):
        if step % 4 == 0 and bool((r.norm(dim=dims, keepdim=True) <= limit).all()):
            break
        ap = apply(p)
        pap = (p * ap).sum(dims, keepdim=True)
        alpha = torch.where(pap > 0, rz / pap.clamp_min(1e-30), torch.zeros_like(pap))
        u.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1)
        torch.mul(inverse_diagonal, r, out=z)
        rz_new = (r * z).sum(dims, keepdim=True)
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(1e-30), torch.zeros_like(rz))
        p.mul_(beta).add_(z)
        rz = rz_new
    return u


def pyramid_fill(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Fill where ``weights`` is 0 from ever coarser weighted averages (push-pull): a smooth first guess."""
    if min(values.shape[-2:]) <= 1 or bool((weights > 0).all()):
        return values
    total = F.avg_pool2d(values * weights, 2, ceil_mode=True)
    coarse_w = F.avg_pool2d(weights, 2, ceil_mode=True)
    coarse = pyramid_fill(total / coarse_w.clamp_min(1e-12), (coarse_w > 0).to(values.dtype))
    up = F.interpolate(coarse, size=values.shape[-2:], mode="bilinear", align_corners=False)
    return torch.where(weights > 0, values, up)
