"""Estimators against the numbers their authors' published implementations give on the same features.

The reference numbers were produced once by running the published functions
(numpy 2, scikit-learn 1.9.1; numba's ``njit`` replaced by plain Python) on
:func:`features`; the implementations here are written from the formulas, not
copied. Sources, by repository, file and commit:

- TLlib: github.com/thuml/Transfer-Learning-Library, ``tllib/ranking/transrate.py``,
  ``tllib/ranking/hscore.py``, ``tllib/ranking/logme.py`` at c4aa59eb565650a552b809411601d0589efbbfe4;
- LogME: github.com/thuml/LogME, ``LogME.py`` (``LogME().fit``) at 56551ca94a3295bcc37e6a01b1291911af985f07;
- NCTI: github.com/BUserName/NCTI, ``metrics.py`` (``NCTI_Score``) and the min–max combination in
  ``evaluate_metric_group1_cpu.py`` at b18d39514a3f2a7a949500b467a38b93de1428e4.
"""

from __future__ import annotations

import numpy as np
import pytest

from diamond_cutter.transfer import statistics as st
from diamond_cutter.transfer.estimators import logme

#: TLlib ``transrate(x, y)`` (ε = 1e-4).
TLLIB_TRANSRATE = 2.224254918802089
#: TLlib ``h_score(x, y)``: the plain H-score.
TLLIB_H_SCORE = 2.3437172139444966
#: TLlib ``regularized_h_score(x, y)`` and the Ledoit–Wolf weight it used.
TLLIB_REGULARIZED_H_SCORE = 2.1231526418370077
TLLIB_LEDOIT_WOLF_WEIGHT = 0.052473128585032516
#: LogME ``LogME().fit(x, y)`` (the fixed-point version, its default) and TLlib ``log_maximum_evidence(x, y)``
#: (the ICML 2021 iteration, which stops at a 1% change of α/β).
LOGME_REPOSITORY = -0.20967541239782397
TLLIB_LOGME = -0.20967571677490898
#: NCTI's three models: ``features(**kwargs)`` (the last one is small enough to get a shrinkage of 0.82).
NCTI_MODELS = (dict(d=96, signal=0.3), dict(d=96, signal=0.15), dict(d=96, signal=0.2, scale=0.05))
#: ``NCTI_Score`` per model: (SELI nuclear norm, nearest-centre score, log within-class nuclear norm).
NCTI_TERMS = ((87.44019016365974, 0.9721412958358677, 3.464314947904554),
              (61.58603712801235, 0.780998641653982, 3.6288159727164917),
              (56.53982113541159, 0.7108823317566006, 3.6210688962606796))
#: The combined score over the three models (``mcscore + mascore − cpscore``).
NCTI_SCORES = (2.0, -0.5683154089789784, -0.9529056036905014)


def features(d: int = 16, signal: float = 1.0, scale: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """200 images of 4 classes (50 each): class means ``signal`` × a normal vector plus unit noise, mixed by a
    random matrix so that dimensions correlate, times ``scale``."""
    rng = np.random.default_rng(seed)
    y = np.arange(200) % 4
    centres = rng.normal(size=(4, d))
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return scale * (signal * centres[y] + rng.normal(size=(200, d))) @ mix, y


def test_transrate_equals_tllib():
    x, y = features()
    assert st.transrate(x, y) == pytest.approx(TLLIB_TRANSRATE, rel=1e-9)


def test_plain_h_score_equals_tllib():
    x, y = features()
    assert st.hscore(st.Statistics.of(x, y), shrinkage=0.0) == pytest.approx(TLLIB_H_SCORE, rel=1e-9)


def test_shrinkage_h_score_relates_to_tllib_regularised_h_score():
    """At the same (Ledoit–Wolf) weight w, TLlib's score is ours × (1 − w) × N/(N − 1): it also scales the
    between-class covariance by 1 − w and estimates it with N − 1 degrees of freedom."""
    x, y = features()
    w, n = TLLIB_LEDOIT_WOLF_WEIGHT, len(x)
    ours = st.hscore(st.Statistics.of(x, y), shrinkage=w)
    assert ours * (1 - w) * n / (n - 1) == pytest.approx(TLLIB_REGULARIZED_H_SCORE, rel=1e-9)


def test_logme_equals_the_logme_repository_and_tllib():
    """Ours evaluates the evidence at the final (α, β); the repository with the previous step's posterior mean
    (1e-8 apart here), TLlib after a looser stopping rule (1e-6 apart)."""
    x, y = features()
    assert logme(x, y) == pytest.approx(LOGME_REPOSITORY, rel=1e-6)
    assert logme(x, y) == pytest.approx(TLLIB_LOGME, rel=1e-5)


def test_ncti_terms_and_scores_equal_the_authors():
    terms = []
    for kwargs, published in zip(NCTI_MODELS, NCTI_TERMS):
        x, y = features(**kwargs)
        terms.append(st.ncti_terms(st.Statistics.of(x, y), x, y))
        ours = [terms[-1][name] for name, _ in st.NCTI_TERMS]
        assert ours == pytest.approx(published, rel=1e-6)
    assert st.ncti(terms) == pytest.approx(NCTI_SCORES, abs=1e-6)
