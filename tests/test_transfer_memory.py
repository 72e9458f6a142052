"""A sweep holds its pooled features and little more: no spatial maps, pixels, k-NN distance matrix or
float64 copies of a cut beside them.

Peak RSS is measured in fresh subprocesses (``ru_maxrss``), so nothing this test session did counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from diamond_cutter.transfer import estimators

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_memory.py"
MIB = 2**20
#: Above the pooled features of the model being swept (the sweep goes one model at a time) and
#: :data:`SQUARE_MATRICES` D×D float64 matrices of the widest cut (covariances, Gram matrices, their
#: decompositions and LAPACK's workspace): one cut's standardised copy, one block of float64 rows, a batch's
#: maps, and the allocator's slack.
SWEEP_SLACK = 32 * MIB
SQUARE_MATRICES = 8
#: Above the features and their standardised copies, for every estimator on 30,000 images × 96 dimensions:
#: D×D matrices, blocks of 2,048 rows and 512² k-NN distances. Their old forms held a 6,000 × 18,000
#: distance matrix (830 MiB) and float64 copies of the 18,000 training images' features (13 MiB each).
ESTIMATOR_SLACK = 12 * MIB


def fresh_python(*args: str) -> dict:
    """The JSON line a fresh interpreter prints last, run with ``args``."""
    run = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_sweep_of_three_models_holds_little_beyond_one_models_pooled_features():
    """3 models × 10 cuts × 2,000 images at 32 px. Holding every image's spatial maps at the cuts would take
    over 300 MiB for ResNet-18 alone; its pooled features take under 20 MiB, and the widest cut
    (EfficientNet-Lite0's 1,280 channels) costs 12.5 MiB per D×D matrix."""
    out = fresh_python(str(BENCHMARK), "--images", "2000", "--cuts", "10", "--epochs", "2")
    assert out["images"] == 2000 and out["pairs"] == 30
    squares = SQUARE_MATRICES * out["widest_cut"] ** 2 * 8
    assert out["peak_growth"] < out["largest_model_features"] + squares + SWEEP_SLACK, out


ESTIMATORS = """
    import json, resource
    import numpy as np
    from diamond_cutter.transfer.blocked import standardised
    from diamond_cutter.transfer.estimators import knn_accuracy, logme, ridge_probe
    from diamond_cutter.transfer.statistics import Statistics, gbc, hscore, ncti_terms, sfda_lda, transrate

    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rng = np.random.default_rng(0)
    n, d = 30_000, 96
    y = np.arange(n) % 3
    x = (rng.normal(size=(3, d))[y] + 2 * rng.normal(size=(n, d))).astype(np.float32)
    train, val, test = np.arange(0, 18_000), np.arange(18_000, 24_000), np.arange(24_000, n)
    xt, xv, xs = standardised(x, train, val, test)
    stats = Statistics.of(xt[:500], y[:500])  # warm up every code path on a few images
    knn_accuracy(xt[:500], y[:500], xv[:100], y[val][:100]); logme(xt[:500], y[:500]); transrate(xt[:500], y[:500])
    ridge_probe(xt[:500], y[:500], xv[:100], y[val][:100], x_test=xs[:100])
    gbc(stats, xt[:500], y[:500]); sfda_lda(stats, xt[:500], y[:500]); ncti_terms(stats, xt[:500], y[:500])
    base = peak()
    stats = Statistics.of(xt, y[train])
    scores = {"knn": knn_accuracy(xt, y[train], xv, y[val]), "logme": logme(xt, y[train]),
              "ridge": ridge_probe(xt, y[train], xv, y[val], x_test=xs).accuracy, "hscore": hscore(stats),
              "transrate": transrate(xt, y[train]), "gbc": gbc(stats, xt, y[train]),
              "sfda": sfda_lda(stats, xt, y[train]), **ncti_terms(stats, xt, y[train])}
    print(json.dumps({"growth": peak() - base, "scores": scores}))
"""


def test_estimators_on_many_images_hold_only_blocks_and_dxd_matrices():
    out = fresh_python("-c", textwrap.dedent(ESTIMATORS))
    assert out["scores"]["knn"] > 0.9 and out["scores"]["ridge"] > 0.9  # separable classes: real answers
    assert out["growth"] < ESTIMATOR_SLACK, out


def test_knn_reads_the_distances_in_blocks_and_finds_the_same_neighbours(monkeypatch):
    rng = np.random.default_rng(1)
    references, queries = rng.normal(size=(2500, 6)), rng.normal(size=(1300, 6))
    shapes = []
    cdist = torch.cdist

    def recording(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        shapes.append((len(a), len(b)))
        return cdist(a, b)

    monkeypatch.setattr(torch, "cdist", recording)
    blocked = estimators.nearest_neighbours(queries, references, 5, rows=1000)
    assert max(a * b for a, b in shapes) <= 1000 * 1000 and len(shapes) == 2 * 3
    whole = np.argsort(((queries[:, None] - references[None]) ** 2).sum(-1), axis=1)[:, :5]
    assert np.array_equal(blocked, whole)
