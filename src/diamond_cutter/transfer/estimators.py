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
from .threads import one_thread

#: Ridge penalties, as multiples of the mean eigenvalue of the Gram matrix.
RIDGE_GRID = tuple(10.0 ** k for k in range(-4, 3))
#: Inverse L2 strengths for the logistic probe (scikit-learn's ``C`` convention).
LOGISTIC_GRID = (0.01, 0.1, 1.0, 10.0)


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
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return [(a - mean) / std for a in (train, *others)]


@one_thread()
def knn_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, k: int = 5) -> float:
    """Validation accuracy of a k-nearest-neighbour vote (Euclidean; ties go to the nearer neighbours)."""
    k = max(1, min(k, len(x_train)))
    dist = torch.cdist(torch.as_tensor(x_val, dtype=torch.float64), torch.as_tensor(x_train, dtype=torch.float64))
    nearest = dist.topk(k, largest=False).indices.numpy()
    n_classes = int(max(y_train.max(), y_val.max())) + 1
    votes = np.zeros((len(x_val), n_classes))
    weights = 1.0 + 1e-3 / (1.0 + np.arange(k))  # one vote each, nearest breaks ties
    np.add.at(votes, (np.arange(len(x_val))[:, None], y_train[nearest]), weights[None, :])
    return float((votes.argmax(axis=1) == y_val).mean())


@one_thread()
def ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                grid: tuple[float, ...] = RIDGE_GRID, x_test: np.ndarray | None = None) -> ProbeResult:
    """Closed-form ridge regression on one-hot targets; the penalty is picked on validation accuracy
    (and ``x_test``, when given, is predicted at that penalty).

    One eigendecomposition serves every penalty: of ``XᵀX`` when there are
    fewer dimensions than images, else of ``XXᵀ`` (the dual form), so the
    cost is ``min(N, D)³`` once, then a matrix product per penalty.
    """
    x = torch.as_tensor(x_train, dtype=torch.float64)
    xv = torch.as_tensor(x_val, dtype=torch.float64)
    n_classes = int(max(y_train.max(), y_val.max())) + 1
    y = torch.nn.functional.one_hot(torch.as_tensor(y_train), n_classes).double()
    y_mean = y.mean(dim=0)
    if x.shape[1] <= x.shape[0]:
        s, v = torch.linalg.eigh(x.T @ x)
        b, project = v.T @ (x.T @ (y - y_mean)), lambda q: q @ v  # noqa: E731
    else:
        s, u = torch.linalg.eigh(x @ x.T)
        b, project = u.T @ (y - y_mean), lambda q: (q @ x.T) @ u  # noqa: E731
    p = project(xv)
    s = s.clamp_min(0)
    scale = float(s.mean()) or 1.0
    best: ProbeResult | None = None
    best_err = np.inf
    for factor in grid:
        scores = p @ (b / (s + factor * scale)[:, None]) + y_mean
        pred = scores.argmax(dim=1).numpy()
        acc = float((pred == y_val).mean())
        err = float(((scores - torch.nn.functional.one_hot(torch.as_tensor(y_val), n_classes)) ** 2).sum())
        if best is None or acc > best.accuracy or (acc == best.accuracy and err < best_err):
            best, best_err = ProbeResult(acc, factor * scale, pred), err
    assert best is not None
    if x_test is not None:
        weights = b / (s + best.regularisation)[:, None]
        scores = project(torch.as_tensor(x_test, dtype=torch.float64)) @ weights + y_mean
        best.test_predictions = scores.argmax(dim=1).numpy()
    return best


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
    of the features; the score is the mean over classes of evidence / N.
    Higher means the features explain the labels better.
    """
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if f.ndim != 2 or len(f) != len(labels):
        raise DiamondCutterError(f"LogME needs N×D features and N labels, got {f.shape} and {labels.shape}")
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    evidences = []
    for c in np.unique(labels):
        y = (labels == c).astype(np.float64)
        evidences.append(_evidence(y, u, sigma, n, d, max_iter)[0])
    return float(np.mean(evidences))


def _evidence(
    y: np.ndarray, u: np.ndarray, sigma: np.ndarray, n: int, d: int, max_iter: int
) -> tuple[float, float, float]:
    """Maximised log evidence / N and the ``(α, β)`` reached, for one target vector."""
    x2 = (u.T @ y) ** 2
    outside = max(float(y @ y - x2.sum()), 0.0)  # part of y no feature direction can explain
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
