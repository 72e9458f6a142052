"""Fast estimators against their definitions and against scikit-learn on the same features."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from diamond_cutter.transfer.estimators import _maximised, knn_accuracy, logistic_probe, logme, ridge_probe, standardise
from diamond_cutter.transfer.metrics import classification_metrics


def blobs(n: int, d: int, classes: int, signal: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features whose first dimensions carry ``signal`` × a class-specific mean, plus unit noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(size=(classes, d))
    return signal * centres[y] + rng.normal(size=(n, d)), y


@pytest.mark.parametrize("n,d", [(40, 6), (25, 60)])
def test_logme_evidence_is_the_exact_log_marginal_likelihood(n, d):
    """At the (α, β) it reaches, LogME's value must equal log N(y | 0, β⁻¹I + α⁻¹FFᵀ) / N (both N>D and N<D)."""
    rng = np.random.default_rng(1)
    f = rng.normal(size=(n, d))
    y = (rng.random(n) > 0.5).astype(float)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    evidence, alpha, beta = _maximised((u.T @ y) ** 2, float(y @ y), s**2, n, d, 11)
    exact = multivariate_normal(np.zeros(n), np.eye(n) / beta + f @ f.T / alpha).logpdf(y) / n
    assert evidence == pytest.approx(exact, rel=1e-9, abs=1e-9)


def test_logme_ranks_informative_over_weak_over_noise_features():
    strong, y = blobs(150, 20, 4, signal=2.0)
    weak, _ = blobs(150, 20, 4, signal=0.4)
    noise = np.random.default_rng(5).normal(size=(150, 20))
    scores = [logme(strong, y), logme(weak, y), logme(noise, y)]
    assert scores[0] > scores[1] > scores[2]


@pytest.mark.parametrize("n,d", [(120, 10), (30, 80)])  # primal (D<=N) and dual (D>N) eigendecompositions
def test_ridge_probe_matches_sklearn_ridge_at_the_chosen_penalty(n, d):
    from sklearn.linear_model import Ridge

    x, y = blobs(n + 40, d, 3, signal=0.7, seed=2)
    xt, xv = standardise(x[:n], x[n:])
    result = ridge_probe(xt, y[:n], xv, y[n:])
    peer = Ridge(alpha=result.regularisation).fit(xt, np.eye(3)[y[:n]])
    assert np.array_equal(result.predictions, peer.predict(xv).argmax(axis=1))
    assert result.accuracy == pytest.approx((peer.predict(xv).argmax(axis=1) == y[n:]).mean())
    assert result.accuracy > 0.6  # well above chance (1/3) on separable blobs


def test_logistic_probe_matches_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(160, 8, 3, signal=0.5, seed=3)
    result = logistic_probe(x[:120], y[:120], x[120:], y[120:], grid=(0.1,))
    peer = LogisticRegression(C=0.1, tol=1e-10, max_iter=2000).fit(x[:120], y[:120])
    assert np.array_equal(result.predictions, peer.predict(x[120:]))


def test_knn_matches_sklearn_neighbours():
    from sklearn.neighbors import KNeighborsClassifier

    x, y = blobs(130, 5, 3, signal=0.6, seed=4)
    ours = knn_accuracy(x[:100], y[:100], x[100:], y[100:], k=5)
    peer = KNeighborsClassifier(5).fit(x[:100], y[:100]).score(x[100:], y[100:])
    assert ours == pytest.approx(peer, abs=1 / 30 + 1e-9)  # at most one vote tie broken differently


def test_metrics_match_sklearn():
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m.balanced_accuracy == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m.confusion == confusion_matrix(y_true, y_pred).tolist()
    assert m.accuracy == pytest.approx((y_true == y_pred).mean())
