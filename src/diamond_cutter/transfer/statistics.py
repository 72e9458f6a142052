"""Sufficient statistics of pooled features, and the transferability estimators computed from them.

Most published estimators need only a few moments of the features per class:
counts, class means, the total covariance and per-class variances. They are
accumulated batch by batch (:meth:`Statistics.update`): the sweep gathers the
training images' statistics of every cut while their features stream out of
the network (``extract_features(..., accumulate=)``), standardises them without
the features (:meth:`Statistics.standardised`), and every estimator reads that
one object. Memory is ``D×D`` for the covariance plus ``C×D`` per-class sums per
cut; GBC's projection, SFDA's per-image posteriors and TransRate's per-class
coding rates still read the pooled features the sweep holds anyway, a block of
rows at a time (:mod:`.blocked`), so they add no float64 copy of them.

Estimators here (higher is better for all of them):

- **H-score** (Bao et al. 2019) with shrinkage (Ibrahim et al. 2022):
  ``tr(Σ⁻¹ Σ_between)``; ``Σ`` shrunk towards a scaled identity with the
  Oracle Approximating Shrinkage weight (Chen et al. 2010), which needs only
  ``Σ`` and the image count, so it stays computable from the statistics.
  TLlib's ``regularized_h_score`` uses Ledoit–Wolf's weight instead, which needs
  fourth moments of every image, and also scales ``Σ_between`` by ``1 − w`` and
  ``N/(N−1)``; at weight 0 both are the plain H-score.
- **GBC** (Pándy et al. 2022): minus the sum over class pairs of the
  Bhattacharyya coefficient of diagonal Gaussians fitted per class, in the
  paper's 64 principal components (the eigenvectors of the statistics' total
  covariance; in hundreds of raw dimensions every coefficient underflows to 0).
- **SFDA's LDA part** (Shao et al. 2022): mean log posterior of the true class
  under a shared-covariance Gaussian (Fisher's LDA) with a shrunk within-class
  covariance. It needs each image once more (its discriminant), so it takes the
  features too.
- **NCTI** (Wang et al., ICCV 2023): how close the features are to neural
  collapse, from a shrunk LDA in 64 principal components: nuclear norm of the
  discriminant projections (simplex encoded label interpolation, SELI,
  geometry), mean posterior of the true class (nearest-centre classifier), and
  log of the summed nuclear norms of each class's posteriors (within-class
  variability collapse, lower is better). Each term is min–max normalised over
  the compared models and cuts (:func:`ncti`), so NCTI is a comparison; the
  last two terms need each image's posterior, so it takes the features too.
- **TransRate** (Huang et al. 2022): coding rate of the centred features minus
  the mean per-class coding rate, ``ε = 1e-4`` as in TLlib; all per-class Gram
  matrices at once would cost ``C×D×D``, so it takes the features and sums one
  class's at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .blocked import gram, product, row_blocks
from .threads import one_thread

#: Coding-rate distortion for TransRate (TLlib's default).
TRANSRATE_EPS = 1e-4


@dataclass
class Statistics:
    """Running counts, per-class sums and sums of squares, and the total Gram matrix (float64)."""

    dim: int
    n_classes: int
    counts: np.ndarray = field(init=False)
    sums: np.ndarray = field(init=False)
    squares: np.ndarray = field(init=False)
    gram: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.n_classes)
        self.sums = np.zeros((self.n_classes, self.dim))
        self.squares = np.zeros((self.n_classes, self.dim))
        self.gram = np.zeros((self.dim, self.dim))

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> Statistics:
        stats = cls(x.shape[1], n_classes or int(y.max()) + 1)
        for part in row_blocks(np.arange(len(x))):  # a float64 block at a time, never a copy of all of x
            stats.update(x[part], y[part])
        return stats

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add a batch of features ``x`` (B×D) with labels ``y``."""
        x = np.asarray(x, dtype=np.float64)
        np.add.at(self.counts, y, 1)
        np.add.at(self.sums, y, x)
        np.add.at(self.squares, y, x * x)
        self.gram += x.T @ x
        self.__dict__.pop("spectrum", None)  # the covariance changed

    def standardised(self) -> Statistics:
        """The statistics of the features standardised by their own mean and std (as :func:`standardise`
        scales them: constant dimensions divided by 1), computed without the features."""
        m, n = self.mean, self.n
        std = np.sqrt(np.maximum(np.diag(self.gram) / n - m * m, 0.0))
        s = np.where(std > 1e-8, std, 1.0)
        out = Statistics(self.dim, self.n_classes)
        out.counts = self.counts.copy()
        out.sums = (self.sums - self.counts[:, None] * m) / s
        out.squares = (self.squares - 2 * m * self.sums + self.counts[:, None] * m * m) / (s * s)
        out.gram = (self.gram - n * np.outer(m, m)) / np.outer(s, s)
        return out

    @property
    def n(self) -> float:
        return float(self.counts.sum())

    @property
    def present(self) -> np.ndarray:
        return self.counts > 0

    @property
    def means(self) -> np.ndarray:
        """Class means (rows of absent classes are zero)."""
        return self.sums / np.maximum(self.counts, 1)[:, None]

    @property
    def mean(self) -> np.ndarray:
        return self.sums.sum(axis=0) / self.n

    @property
    def covariance(self) -> np.ndarray:
        """Total covariance (maximum likelihood, divided by N)."""
        return self.gram / self.n - np.outer(self.mean, self.mean)

    @property
    def between(self) -> np.ndarray:
        """Between-class covariance: ``Σ_c (n_c / N) (μ_c − μ)(μ_c − μ)ᵀ``."""
        d = (self.means - self.mean)[self.present]
        w = (self.counts[self.present] / self.n)[:, None]
        return (d * w).T @ d

    @property
    def within(self) -> np.ndarray:
        """Pooled within-class covariance (total minus between)."""
        return self.covariance - self.between

    @property
    def variances(self) -> np.ndarray:
        """Per-class variances of each dimension (C×D)."""
        return np.maximum(self.squares / np.maximum(self.counts, 1)[:, None] - self.means**2, 0.0)

    @cached_property
    def spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues of the total covariance, largest first, and their eigenvectors (columns): one ``D³``
        decomposition that GBC and NCTI share."""
        values, vectors = np.linalg.eigh(self.covariance)
        order = np.argsort(values)[::-1]
        return values[order], vectors[:, order]


def oas_weight(cov: np.ndarray, n: float) -> float:
    """Oracle Approximating Shrinkage weight (Chen et al. 2010, scikit-learn's formula) from a covariance alone."""
    d = cov.shape[0]
    mu = np.trace(cov) / d
    alpha = np.mean(cov**2)
    num = alpha + mu**2
    den = (n + 1.0) * (alpha - mu**2 / d)
    return 1.0 if den == 0 else float(min(num / den, 1.0))


def shrink(cov: np.ndarray, weight: float) -> np.ndarray:
    """``(1 − w) Σ + w · tr(Σ)/D · I``: a covariance pulled towards the scaled identity."""
    d = cov.shape[0]
    return (1.0 - weight) * cov + weight * np.trace(cov) / d * np.eye(d)


def oas(cov: np.ndarray, n: float) -> np.ndarray:
    """A covariance shrunk by its Oracle Approximating Shrinkage weight."""
    return shrink(cov, oas_weight(cov, n))


@one_thread()
def hscore(stats: Statistics, shrinkage: float | None = None) -> float:
    """Shrinkage H-score: ``tr(Σ_w⁻¹ Σ_between)`` with ``Σ`` shrunk by weight ``w`` (OAS's when None; 0 gives
    the plain H-score of Bao et al.)."""
    weight = oas_weight(stats.covariance, stats.n) if shrinkage is None else shrinkage
    return float(np.trace(np.linalg.solve(shrink(stats.covariance, weight), stats.between)))


#: Principal components GBC fits its Gaussians in (Pándy et al. 2022).
GBC_COMPONENTS = 64


def principal_components(stats: Statistics, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenvalues of the total covariance (descending) and their eigenvectors (D×k)."""
    values, vectors = stats.spectrum
    return values[:k], vectors[:, :k]


@one_thread()
def gbc(stats: Statistics, x: np.ndarray, y: np.ndarray, components: int = GBC_COMPONENTS,
        floor: float = 1e-6) -> float:
    """Gaussian Bhattacharyya coefficient: ``−Σ_{i≠j} exp(−D_B(i, j))`` over diagonal per-class Gaussians
    of the features projected on their ``components`` principal axes."""
    z = product(x, principal_components(stats, components)[1])
    projected = Statistics.of(z, y, stats.n_classes)
    means, var = projected.means[projected.present], projected.variances[projected.present] + floor
    total = 0.0
    for i in range(len(means)):
        for j in range(i + 1, len(means)):
            s = (var[i] + var[j]) / 2
            d = (means[i] - means[j]) ** 2 / s / 8 + 0.5 * (np.log(s) - 0.5 * (np.log(var[i]) + np.log(var[j])))
            total += 2 * np.exp(-d.sum())
    return float(-total)


@one_thread()
def sfda_lda(stats: Statistics, x: np.ndarray, y: np.ndarray) -> float:
    """Mean log posterior of the true class under Fisher's LDA with an OAS-shrunk within-class covariance."""
    means = stats.means[stats.present]
    log_post = lda_log_posterior(x, means, np.linalg.solve(oas(stats.within, stats.n), means.T), stats)
    return float(log_post[np.arange(len(y)), _columns(stats)[y]].mean())


def lda_log_posterior(x: np.ndarray, means: np.ndarray, precision_means: np.ndarray, stats: Statistics) -> np.ndarray:
    """``log p(c | x)`` (N×C, present classes) under Gaussians around ``means`` (C×D) sharing one covariance
    ``Σ``, given ``Σ⁻¹ meansᵀ`` (D×C); class priors are the statistics' class frequencies."""
    prior = np.log(stats.counts[stats.present] / stats.n)
    scores = product(x, precision_means) - 0.5 * np.sum(means.T * precision_means, axis=0) + prior
    scores -= scores.max(axis=1, keepdims=True)
    return scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))


def _columns(stats: Statistics) -> np.ndarray:
    """Class id → its column among the present classes."""
    return np.cumsum(stats.present) - 1


#: NCTI (Wang et al. 2023): the principal components its LDA is fitted in, how many of the largest set its
#: shrinkage, and the smallest shrinkage.
NCTI_COMPONENTS, NCTI_SHRINKAGE_COMPONENTS, NCTI_SHRINKAGE_FLOOR = 64, 32, 1e-10
#: NCTI's terms and their signs in its sum: SELI geometry (higher is closer), nearest-centre accuracy (higher),
#: within-class variability (lower is more collapsed).
NCTI_TERMS = (("ncti_seli", 1.0), ("ncti_ncc", 1.0), ("ncti_vc", -1.0))


@one_thread()
def ncti_terms(stats: Statistics, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """NCTI's three raw terms for one (model, cut); :func:`ncti` combines them over the compared pairs.

    In the features' 64 leading principal components, a Fisher LDA is fitted
    with the within- and between-class covariances shrunk by
    ``w = max(exp(−Σ 32 largest PCA variances), 1e-10)`` (variances over
    ``N − 1``), as the authors' code does; at the floor it runs scikit-learn's
    SVD solver, unshrunk: the same within-class covariance up to 1e-10, since
    scikit-learn divides by N there too (earlier versions divided by ``N − C``).
    The rule depends on the features' scale: on the sweep's standardised
    features the shrinkage is at its floor from 24 non-constant dimensions on.
    ``seli``: nuclear norm of the centred features projected on the ``C − 1``
    discriminant directions (within-class whitened), computed from the
    statistics as ``Σ √eig(N Wᵀ Σ W)``. ``ncc``: mean LDA posterior of the true
    class. ``vc``: ``log Σ_c ‖P_c‖_*``, ``P_c`` the posteriors of class ``c``'s
    images (collapsed classes give rank-one, small-norm ``P_c``; so do
    near-uniform posteriors at chance, which ``vc`` alone cannot tell apart).
    The last two need every image's posterior, so this takes the features too.
    """
    values, axes = principal_components(stats, NCTI_COMPONENTS)
    n, c = stats.n, int(stats.present.sum())
    means = (stats.means[stats.present] - stats.mean) @ axes
    within = axes.T @ stats.within @ axes
    between = np.diag(values) - within
    weight = max(np.exp(-values[:NCTI_SHRINKAGE_COMPONENTS].sum() * n / (n - 1)), NCTI_SHRINKAGE_FLOOR)
    whiten = _whitening(shrink(within, weight))
    between = shrink(between, weight)
    spread, rotation = np.linalg.eigh(whiten.T @ between @ whiten)
    directions = whiten @ rotation[:, np.argsort(spread)[::-1][: c - 1]]
    projected = n * directions.T @ (values[:, None] * directions)
    seli = float(np.sqrt(np.clip(np.linalg.eigvalsh(projected), 0.0, None)).sum())
    z = product(x, axes, centre=stats.mean)
    posterior = np.exp(lda_log_posterior(z, means, whiten @ (whiten.T @ means.T), stats))
    column = _columns(stats)[y]
    ncc = float(posterior[np.arange(len(y)), column].mean())
    vc = float(np.log(sum(np.linalg.svd(posterior[column == k], compute_uv=False).sum() for k in range(c))))
    return {"ncti_seli": seli, "ncti_ncc": ncc, "ncti_vc": vc}


def _whitening(cov: np.ndarray, tolerance: float = 1e-8) -> np.ndarray:
    """``T`` with ``Tᵀ Σ T = I`` on the span of ``Σ``'s eigenvalues above ``tolerance`` × the largest (so
    ``T Tᵀ`` is the pseudo-inverse of a rank-deficient ``Σ``)."""
    values, vectors = np.linalg.eigh(cov)
    keep = values > tolerance * values.max()
    return vectors[:, keep] / np.sqrt(values[keep])


def ncti(terms: Sequence[Mapping[str, float]]) -> list[float]:
    """NCTI of each compared (model, cut): each term min–max normalised over the pairs, summed with its sign.

    The normalisation is what makes NCTI a comparison: a pair's score depends on
    the others, so it is computed where the sweep's table compares them. A term
    whose spread is below 1e-9 of its size (equal in every pair, or one pair
    alone) contributes 0 instead of the published 0/0.
    """
    total = np.zeros(len(terms))
    for name, sign in NCTI_TERMS:
        v = np.array([t[name] for t in terms], dtype=np.float64)
        if not len(v):
            break
        span = float(v.max() - v.min())
        if span > 1e-9 * max(float(np.abs(v).max()), 1e-300):
            total += sign * (v - v.min()) / span
    return total.tolist()


def _coding_rate(centred_gram: np.ndarray, n: int, eps: float) -> float:
    """``R(Z) = ½ log det(I + ZᵀZ / (n ε))`` from ``ZᵀZ``."""
    d = len(centred_gram)
    return 0.5 * float(np.linalg.slogdet(np.eye(d) + centred_gram / (n * eps))[1])


@one_thread()
def transrate(x: np.ndarray, y: np.ndarray, eps: float = TRANSRATE_EPS) -> float:
    """TransRate: ``R(Z) − mean_c R(Z_c)`` with ``R(Z) = ½ log det(I + ZᵀZ / (n ε))`` on centred features.

    Each ``ZᵀZ`` is summed a block of rows at a time, one class after another, so beside the features it
    holds one D×D matrix, never a float64 copy of them nor the ``C×D×D`` of every class at once.
    """
    x, y = np.asarray(x), np.asarray(y)
    centre = x.mean(axis=0, dtype=np.float64)
    rates = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        rates.append(_coding_rate(gram(x, members, centre), len(members), eps))
    return _coding_rate(gram(x, centre=centre), len(x), eps) - float(np.mean(rates))
