"""Estimators from sufficient statistics: streamed equals at once, closed forms on 1-D Gaussians, and every
estimator rising with class separation."""

from __future__ import annotations

import numpy as np
import pytest

from diamond_cutter.transfer import statistics as st


def gaussians(separation: float, n: int = 300, d: int = 8, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d))
    centres *= separation / np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.arange(n) % classes
    return centres[y] + rng.normal(size=(n, d)), y


def test_streamed_batches_give_the_statistics_of_all_features_at_once():
    x, y = gaussians(2.0)
    whole = st.Statistics.of(x, y)
    streamed = st.Statistics(x.shape[1], 3)
    for start in range(0, len(x), 37):
        streamed.update(x[start : start + 37], y[start : start + 37])
    assert np.allclose(streamed.covariance, np.cov(x.T, bias=True))
    assert np.allclose(streamed.within + streamed.between, whole.covariance)
    assert np.allclose(streamed.means, [x[y == c].mean(0) for c in range(3)])
    assert np.allclose(streamed.variances, [x[y == c].var(0) for c in range(3)])


def test_one_dimensional_closed_forms():
    """Two classes N(±m, 1): H-score m²/(m²+1); GBC −2·exp(−m²/2) (Bhattacharyya distance (2m)²/8)."""
    m, n = 1.5, 200_000
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = (np.where(y == 1, m, -m) + rng.normal(size=n))[:, None]
    stats = st.Statistics.of(x, y)
    assert st.hscore(stats) == pytest.approx(m**2 / (m**2 + 1), abs=0.01)
    assert st.gbc(stats, x, y) == pytest.approx(-2 * np.exp(-(m**2) / 2), abs=0.01)


def test_transrate_matches_the_coding_rate_definition():
    x, y = gaussians(1.0, n=60, d=4, classes=2)
    z = x - x.mean(0)
    rate = lambda a: 0.5 * np.linalg.slogdet(np.eye(4) + a.T @ a / (len(a) * st.TRANSRATE_EPS))[1]  # noqa: E731
    assert st.transrate(x, y) == pytest.approx(rate(z) - (rate(z[y == 0]) + rate(z[y == 1])) / 2, rel=1e-10)


def test_lda_posterior_is_near_zero_when_separated_and_near_chance_when_not():
    x, y = gaussians(12.0)
    assert st.sfda_lda(st.Statistics.of(x, y), x, y) > -0.01
    x, y = gaussians(0.0)
    assert st.sfda_lda(st.Statistics.of(x, y), x, y) == pytest.approx(np.log(1 / 3), abs=0.1)


@pytest.mark.parametrize("name", ["hscore", "gbc", "sfda", "transrate"])
def test_every_estimator_rises_with_class_separation(name):
    def score(sep: float) -> float:
        x, y = gaussians(sep)
        stats = st.Statistics.of(x, y)
        return {"hscore": lambda: st.hscore(stats), "gbc": lambda: st.gbc(stats, x, y),
                "sfda": lambda: st.sfda_lda(stats, x, y), "transrate": lambda: st.transrate(x, y)}[name]()

    scores = [score(s) for s in (0.0, 1.0, 2.0, 4.0)]
    assert all(b > a + 1e-3 for a, b in zip(scores, scores[1:])), scores


def test_gbc_stays_informative_in_many_dimensions():
    """In 512 raw dimensions every Bhattacharyya coefficient underflows; in 64 principal axes it does not."""
    scores = []
    for sep in (0.5, 1.0, 2.0):
        x, y = gaussians(sep, n=400, d=512)
        scores.append(st.gbc(st.Statistics.of(x, y), x, y))
    assert scores[0] < scores[1] < scores[2] < 0 and scores[0] < -0.1


def test_standardised_statistics_equal_those_of_standardised_features():
    from diamond_cutter.transfer.estimators import standardise

    x, y = gaussians(2.0, d=6)
    x[:, 3] = 5.0  # a constant dimension stays 0 after standardising
    (z,) = standardise(x)
    direct, derived = st.Statistics.of(z, y), st.Statistics.of(x, y).standardised()
    for name in ("counts", "sums", "squares", "gram"):
        assert np.allclose(getattr(derived, name), getattr(direct, name), atol=1e-9), name


def test_features_stream_their_training_statistics(tmp_path):
    import diamond_cutter as dc
    from diamond_cutter.transfer.data import load_labelled, make_colour_dataset
    from diamond_cutter.transfer.features import extract_features

    data = load_labelled(make_colour_dataset(tmp_path / "c", per_class=6, size=16))
    model = dc.load_model("resnet18", weights=None, input_size=(3, 32, 32))
    fs = extract_features(model, data, ["layer1", "layer2"], batch_size=5, progress=False, accumulate=data.train)
    for cut in ("layer1", "layer2"):
        f = fs.features[cut][data.train]
        whole = st.Statistics.of(f, data.labels[data.train], 3)
        assert np.allclose(fs.statistics[cut].gram, whole.gram, rtol=1e-6)
        assert np.allclose(fs.statistics[cut].sums, whole.sums, rtol=1e-6)


def test_ncti_terms_on_collapsed_classes():
    """Classes collapsed to points: every posterior is the one-hot of its class, so the nearest-centre term is 1
    and each class's posterior matrix is rank one with nuclear norm √n_c: the variability term is log Σ √n_c."""
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = 10 * rng.normal(size=(3, 5))[y] + 1e-3 * rng.normal(size=(90, 5))
    terms = st.ncti_terms(st.Statistics.of(x, y), x, y)
    assert terms["ncti_ncc"] == pytest.approx(1.0, abs=1e-9)
    assert terms["ncti_vc"] == pytest.approx(np.log(3 * np.sqrt(30)), abs=1e-9)


def test_ncti_terms_on_two_one_dimensional_gaussians():
    """N(±m, 1): the one discriminant direction, whitened, has variance 1 + m², so the SELI term is √(N(1 + m²));
    the true class's posterior is σ(2m·x), whose mean over x ~ N(m, 1) the nearest-centre term must reach."""
    from scipy.integrate import quad
    from scipy.stats import norm

    m, n = 1.0, 200_000
    y = np.arange(n) % 2
    x = (np.where(y == 1, m, -m) + np.random.default_rng(0).normal(size=n))[:, None]
    terms = st.ncti_terms(st.Statistics.of(x, y), x, y)
    assert terms["ncti_seli"] / np.sqrt(n) == pytest.approx(np.sqrt(1 + m**2), abs=0.005)
    expected = quad(lambda v: norm.pdf(v - m) / (1 + np.exp(-2 * m * v)), -20, 20)[0]
    assert terms["ncti_ncc"] == pytest.approx(expected, abs=0.005)


def test_ncti_normalises_each_term_over_the_pairs():
    terms = [{"ncti_seli": 10.0, "ncti_ncc": 0.9, "ncti_vc": 2.0},  # best in every term: 1 + 1 - 0
             {"ncti_seli": 4.0, "ncti_ncc": 0.5, "ncti_vc": 4.0},  # worst in every term: 0 + 0 - 1
             {"ncti_seli": 7.0, "ncti_ncc": 0.6, "ncti_vc": 3.5}]
    assert st.ncti(terms) == pytest.approx([2.0, -1.0, 0.5 + 0.25 - 0.75])
    assert st.ncti(terms[:1]) == [0.0] and st.ncti([]) == []  # one pair alone: nothing to compare with
    same = [dict(t, ncti_ncc=0.7) for t in terms]  # a term equal everywhere contributes nothing
    assert st.ncti(same) == pytest.approx([1.0, -1.0, 0.5 - 0.75])


def test_ncti_rises_with_class_separation_once_classes_are_told_apart():
    """From 1 to 4 standard deviations apart NCTI rises. At chance (0) every posterior is near uniform and so
    rank one, which the variability term cannot tell from collapse: the published estimator's blind spot."""
    terms = []
    for sep in (1.0, 2.0, 4.0):
        x, y = gaussians(sep)
        terms.append(st.ncti_terms(st.Statistics.of(x, y), x, y))
    scores = st.ncti(terms)
    assert scores[0] < scores[1] < scores[2]
    assert [t["ncti_seli"] for t in terms] == sorted(t["ncti_seli"] for t in terms)
    assert [t["ncti_ncc"] for t in terms] == sorted(t["ncti_ncc"] for t in terms)


def test_spectrum_follows_updates():
    x, y = gaussians(1.0)
    stats = st.Statistics.of(x[:100], y[:100])
    before = stats.spectrum[0].copy()
    stats.update(x[100:], y[100:])
    assert np.allclose(stats.spectrum[0], np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1])
    assert not np.allclose(stats.spectrum[0], before)
