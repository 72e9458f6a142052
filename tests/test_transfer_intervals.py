"""Bootstrap intervals: coverage on a known answer, paired vs unpaired width, balanced accuracy as scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from diamond_cutter.transfer import intervals


def test_accuracy_interval_covers_the_true_rate_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    y = np.zeros(200, dtype=int)
    covered = 0
    for trial in range(200):
        pred = (rng.random(200) > 0.8).astype(int)  # true accuracy 0.8
        iv = intervals.accuracy(y, pred, resamples=400, seed=trial)
        covered += iv.low <= 0.8 <= iv.high
        assert iv.low <= iv.value <= iv.high
    assert 0.88 <= covered / 200 <= 0.99  # nominal 0.95; far from both edges


def test_paired_difference_is_tighter_than_two_separate_intervals():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 150)
    a = np.where(rng.random(150) < 0.85, y, (y + 1) % 3)
    b = np.where(rng.random(150) < 0.05, (a + 1) % 3, a)  # b disagrees with a on ~5% of images
    diff = intervals.paired_difference(y, a, b)
    ia, ib = intervals.accuracy(y, a), intervals.accuracy(y, b)
    assert abs(diff.value - (ia.value - ib.value)) < 1e-12
    unpaired = np.hypot(ia.high - ia.low, ib.high - ib.low)  # width for two independent samples
    assert diff.high - diff.low < 0.7 * unpaired  # measured 0.08 vs 0.15


def test_balanced_accuracy_matches_scikit_learn_and_its_interval_brackets_it():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1, 2], [80, 30, 10])
    pred = np.where(rng.random(120) < 0.7, y, rng.integers(0, 3, 120))
    iv = intervals.balanced_accuracy(y, pred)
    assert abs(iv.value - balanced_accuracy_score(y, pred)) < 1e-12
    assert iv.low < iv.value < iv.high


def test_statistic_interval_of_a_constant_is_nan_not_a_warning():
    flat = intervals.statistic((np.ones(5), np.arange(5.0)), lambda a, b: float("nan"))
    assert np.isnan(flat.low) and np.isnan(flat.high)
