"""Fast transferability estimates on cached features: k-NN, ridge and logistic probes, LogME.

Each costs seconds where training a head costs minutes, which is what lets a
sweep look at every (model, cut) pair. Published comparisons find such scores
rank models unreliably (k-NN often beats LogME), so the sweep uses them to
shortlist and reports their rank agreement with trained heads (Kendall τ).

Features are standardised with the training split's mean and standard
deviation before every estimate, so scores do not depend on a layer's scale.
The probes pick their regularisation on the validation split, which makes
their validation accuracy slightly optimistic; trained heads decide. Each
estimator runs on one thread (see :mod:`.threads` for the measurements).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DiamondCutterError
from ..html import short_repr
from .blocked import block, gram, moments, product, row_blocks, scaled, transposed_product
from .threads import one_thread

#: Ridge penalties, as multiples of the mean eigenvalue of the Gram matrix.
RIDGE_GRID = tuple(10.0 ** k for k in range(-4, 3))
#: Inverse L2 strengths for the logistic probe (scikit-learn's ``C`` convention).
LOGISTIC_GRID = (0.01, 0.1, 1.0, 10.0)
#: Queries and references per k-NN distance block: 512 × 512 float64 distances (2 MiB) at a time.
KNN_ROWS = 512


@dataclass
class ProbeResult:
    """Validation accuracy of the best regularisation, that regularisation and the validation predictions
    (and, where test features were given, the test predictions at that regularisation)."""

    accuracy: float
    regularisation: float
    predictions: np.ndarray
    test_predictions: np.ndarray | None = None

    def __repr__(self) -> str:
        return short_repr(self)


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale every array with the training features' per-dimension mean and std (constant dims stay 0)."""
    mean, std = moments(train)
    dtype = np.result_type(train.dtype, np.float32)
    return [scaled(np.array(a, dtype=dtype), mean, std) for a in (train, *others)]


@one_thread()
def knn_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, k: int = 5) -> float:
    """Validation accuracy of a k-nearest-neighbour vote (Euclidean; ties go to the nearer neighbours)."""
    k = max(1, min(k, len(x_train)))
    nearest = nearest_neighbours(x_val, x_train, k)
    n_classes = int(max(y_train.max(), y_val.max())) + 1
    votes = np.zeros((len(x_val), n_classes))
    weights = 1.0 + 1e-3 / (1.0 + np.arange(k))  # one vote each, nearest breaks ties
    np.add.at(votes, (np.arange(len(x_val))[:, None], y_train[nearest]), weights[None, :])
    return float((votes.argmax(axis=1) == y_val).mean())


def nearest_neighbours(queries: np.ndarray, references: np.ndarray, k: int, rows: int | None = None) -> np.ndarray:
    """Indices of each query's ``k`` nearest references (Euclidean, nearest first), from distance blocks of
    ``rows`` × ``rows``: the running ``k`` best of each query are merged with every new block's, so the
    full queries × references matrix never exists (``rows``: :data:`KNN_ROWS` by default)."""
    rows = rows or KNN_ROWS
    out = np.empty((len(queries), k), dtype=np.int64)
    for q in row_blocks(np.arange(len(queries)), rows):
        xq = torch.as_tensor(block(queries, q))
        best_d, best_i = xq.new_empty((len(q), 0)), torch.empty((len(q), 0), dtype=torch.int64)
        for r in row_blocks(np.arange(len(references)), rows):
            dist = torch.cdist(xq, torch.as_tensor(block(references, r)))
            d, i = dist.topk(min(k, dist.shape[1]), largest=False)
            best_d, best_i = torch.cat([best_d, d], dim=1), torch.cat([best_i, i + int(r[0])], dim=1)
            keep = best_d.topk(min(k, best_d.shape[1]), largest=False).indices
            best_d, best_i = best_d.gather(1, keep), best_i.gather(1, keep)
        out[q] = best_i.numpy()
    return out


@one_thread()
def ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                grid: tuple[float, ...] = RIDGE_GRID, x_test: np.ndarray | None = None) -> ProbeResult:
    """Closed-form ridge regression on one-hot targets; the penalty is picked on validation accuracy
    (and ``x_test``, when given, is predicted at that penalty).

    One eigendecomposition serves every penalty: of ``XᵀX`` when there are
    fewer dimensions than images, else of ``XXᵀ`` (the dual form), so the
    cost is ``min(N, D)³`` once, then a D×C weight matrix per penalty. Beside
    the features it holds at most ``min(N, D)²`` numbers and one block of rows.
    """
    n_classes = int(max(y_train.max(), y_val.max())) + 1
    y = np.eye(n_classes)[y_train]
    y_mean = y.mean(axis=0)
    basis, s, b = _ridge_basis(x_train, y - y_mean)
    s = np.clip(s, 0.0, None)
    scale = float(s.mean()) or 1.0
    truth = np.eye(n_classes)[y_val]
    best: ProbeResult | None = None
    best_err = np.inf
    for factor in grid:
        scores = product(x_val, basis @ (b / (s + factor * scale)[:, None])) + y_mean
        pred = scores.argmax(axis=1)
        acc = float((pred == y_val).mean())
        err = float(((scores - truth) ** 2).sum())
        if best is None or acc > best.accuracy or (acc == best.accuracy and err < best_err):
            best, best_err = ProbeResult(acc, factor * scale, pred), err
    assert best is not None
    if x_test is not None:
        weights = basis @ (b / (s + best.regularisation)[:, None])
        best.test_predictions = (product(x_test, weights) + y_mean).argmax(axis=1)
    return best


def _ridge_basis(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(V, s, b)`` with ridge weights ``V (b / (s + λ))`` for every penalty ``λ``: from ``XᵀX = V diag(s) Vᵀ``
    (summed by blocks of rows) when D ≤ N, else from the dual ``XXᵀ = U diag(s) Uᵀ`` with ``V = XᵀU``."""
    if x.shape[1] <= x.shape[0]:
        s, v = np.linalg.eigh(gram(x))
        return v, s, v.T @ transposed_product(x, y)
    s, u = np.linalg.eigh(product(x, np.asarray(x, dtype=np.float64).T))  # N×N, smaller than D×D here
    return transposed_product(x, u), s, u.T @ y


@one_thread()
def logistic_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                   grid: tuple[float, ...] = LOGISTIC_GRID, max_iter: int = 200) -> ProbeResult:
    """Multinomial logistic regression fitted by L-BFGS, strongest penalty first with warm starts.

    The objective is scikit-learn's: ``Σ cross-entropy + ||W||² / (2C)``.
    """
    x = torch.as_tensor(x_train, dtype=torch.float64)
    xv = torch.as_tensor(x_val, dtype=torch.float64)
    y = torch.as_tensor(y_train)
    n_classes = int(max(y_train.max(), y_val.max())) + 1
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    best: ProbeResult | None = None
    for c in sorted(grid):
        fit_logistic(x, y, w, b, c, max_iter)
        pred = (xv @ w + b).argmax(dim=1).numpy()
        acc = float((pred == y_val).mean())
        if best is None or acc > best.accuracy:
            best = ProbeResult(acc, c, pred)
    assert best is not None
    return best


def fit_logistic(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, c: float, max_iter: int) -> None:
    """Minimise ``Σ CE(xW + b, y) + ||W||²/(2C)`` over ``w``, ``b`` in place with L-BFGS."""
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y, reduction="sum") + (w * w).sum() / (2 * c)
        loss.backward()
        return loss

    opt.step(closure)


@one_thread()
def logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 11) -> float:
    """LogME (You et al., ICML 2021): mean log marginal evidence per image of a Bayesian linear model.

    For each class's one-hot target ``y`` the evidence of ``y = Fw + ε`` with
    prior ``w ~ N(0, α⁻¹I)`` and noise ``ε ~ N(0, β⁻¹I)`` is maximised over
    ``α, β`` by the paper's fixed-point iteration, computed from one thin SVD
    of the features (or the eigendecomposition of ``FᵀF``); the score is the mean over classes of evidence / N.
    Higher means the features explain the labels better. Beside the features it holds a D×D matrix (or,
    with fewer images than dimensions, an N×D one).
    """
    features, labels = np.asarray(features), np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels):
        raise DiamondCutterError(f"LogME needs N×D features and N labels, got {features.shape} and {labels.shape}")
    n, d = features.shape
    classes = np.unique(labels)
    targets = (labels[:, None] == classes[None, :]).astype(np.float64)
    projected, sigma = _logme_projections(features, targets)
    evidences = [_maximised(projected[:, i] ** 2, float(targets[:, i].sum()), sigma, n, d, max_iter)[0]
                 for i in range(len(classes))]
    return float(np.mean(evidences))


def _logme_projections(features: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Uᵀ Y`` and ``σ²`` for the thin SVD ``F = U diag(σ) Vᵀ``. With more images than dimensions they come
    from ``FᵀF = V diag(σ²) Vᵀ`` (summed by blocks of rows: D×D beside the features, never an N×D float64
    copy), as LogME's own code does: ``Uᵀy = diag(1/σ) Vᵀ Fᵀy``, directions with ``σ²`` at rounding level
    left out (they explain nothing; the evidence counts them as zero eigenvalues); else from the SVD."""
    n, d = features.shape
    if n <= d:
        u, s, _ = np.linalg.svd(np.asarray(features, dtype=np.float64), full_matrices=False)
        return u.T @ targets, s**2
    sigma, v = np.linalg.eigh(gram(features))
    keep = sigma > max(float(sigma.max()), 0.0) * d * np.finfo(np.float64).eps
    sigma, v = sigma[keep], v[:, keep]
    return (v.T @ transposed_product(features, targets)) / np.sqrt(sigma)[:, None], sigma


def _maximised(x2: np.ndarray, yy: float, sigma: np.ndarray, n: int, d: int,
               max_iter: int) -> tuple[float, float, float]:
    """Maximised log evidence / N and the ``(α, β)`` reached, for one target vector ``y`` given ``(Uᵀy)²``
    and ``yᵀy`` (``U``: the features' left singular vectors, ``sigma``: their squared singular values)."""
    outside = max(yy - float(x2.sum()), 0.0)  # part of y no feature direction can explain
    alpha = beta = 1.0
    for _ in range(max_iter):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        m2 = float((sigma * x2 / (sigma + t) ** 2).sum())
        res2 = float((x2 * (t / (sigma + t)) ** 2).sum()) + outside
        alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
        if abs(alpha / beta - t) / t < 1e-3:
            break
    t = alpha / beta
    m2 = float((sigma * x2 / (sigma + t) ** 2).sum())
    res2 = float((x2 * (t / (sigma + t)) ** 2).sum()) + outside
    logdet = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - logdet / 2 - beta / 2 * res2 - alpha / 2 * m2
                - n / 2 * np.log(2 * np.pi))
    return evidence / n, alpha, beta
