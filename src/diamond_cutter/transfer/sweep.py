"""The sweep: which model, cut at which layer, transfers best to the user's images.

Two phases of independent jobs, each writing every finished (model, cut)
result to the store before moving on, so a crashed or interrupted sweep
resumes where it stopped:

1. per model: pooled features of all its cuts from one pass over the images
   (cached per batch), then per cut the fast estimators (k-NN, ridge probe,
   LogME) and a linear head trained on the cached features;
2. per model: the other heads (``conv``, fine-tuning) for the shortlist, the
   pairs the ridge probe ranks highest.

Recommendation rule: take the best validation accuracy of any trained head
(or of the ridge probe where no head was trained); among the pairs within
``tolerance`` of it, recommend the cheapest to run: fewest multiply-accumulates
up to the cut, then fewest parameters. An earlier cut of a smaller model that
is as good is faster and generalises from less data.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import kendalltau

from ..errors import DiamondCutterError, UnknownNameError
from ..html import short_repr, table_html
from ..model import Model
from ..store import Store, default_cache_dir
from ..zoo import load_model
from .cuts import DEFAULT_CUTS, Cut, candidate_cuts
from .data import LabelledImages, load_labelled
from .estimators import knn_accuracy, logme, ridge_probe, standardise
from .executor import Executor, executor_for
from .features import extract_features, model_key
from .heads import HEAD_KINDS
from .plots import figure_png, sweep_figure
from .train import TrainConfig, TrainedHead, train_head

ESTIMATORS = ("knn", "ridge", "logme")
#: How many (model, cut) pairs get the slower heads (conv, fine-tuning) by default.
SHORTLIST = 3
TRUST_NOTE = (
    "Fast estimators rank models unreliably in published studies (k-NN often beats LogME); "
    "they shortlist, trained heads decide. Kendall tau below shows how far they agree on this data."
)


@dataclass
class ModelSpec:
    """How a job gets its network: a zoo name with weights and input size, or a Model object."""

    model: str | Model
    weights: str | None = "imagenet"
    input_size: tuple[int, int, int] | None = None

    def load(self, device: str | None = None) -> Model:
        if isinstance(self.model, Model):
            return self.model
        return _load(self.model, self.weights, self.input_size, device)

    @property
    def name(self) -> str:
        return self.model.name if isinstance(self.model, Model) else self.model


@lru_cache(maxsize=4)
def _load(name: str, weights: str | None, input_size: tuple[int, int, int] | None, device: str | None) -> Model:
    """Load once per process; random weights are seeded, so every phase (and a rerun) sees the same network."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return load_model(name, weights=weights, input_size=input_size, device=device)


@dataclass
class Job:
    """One model's share of a sweep (picklable, so an executor can ship it to another process)."""

    spec: ModelSpec
    data: LabelledImages
    store_root: str
    cuts: str | list[str]
    n_cuts: int
    heads: tuple[str, ...]
    pooling: str
    train: TrainConfig
    batch_size: int
    progress: bool
    shortlist: list[str] = field(default_factory=list)
    device: str | None = None


def sweep(
    models: Sequence[str | Model] | str | Model,
    data: Any,
    cuts: str | Sequence[str] = "auto",
    heads: Sequence[str] = ("linear",),
    *,
    n_cuts: int = DEFAULT_CUTS,
    weights: str | None = "imagenet",
    input_size: Sequence[int] | None = None,
    pooling: str = "avg",
    shortlist: int = SHORTLIST,
    tolerance: float = 0.01,
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 1e-2,
    optimizer: str = "adam",
    augment: bool = False,
    unfreeze: int = 0,
    seed: int = 0,
    store: Store | str | None = None,
    out: str | Path | None = None,
    executor: str | Executor | None = None,
    progress: bool = True,
    device: str | None = None,
) -> SweepResult:
    """Run ``models`` × cuts on labelled ``data`` (a folder, a CSV or :func:`load_labelled`'s result).

    ``heads``: ``"linear"`` is trained on every pair from cached features;
    ``"conv"`` (and every head when ``unfreeze`` > 0 or ``augment``) only on the
    ``shortlist`` best pairs by ridge probe. ``store`` caches features and finished
    pairs (default: the user cache); ``out`` also writes the table and plots there.
    ``device`` is where the models compute (an executor with several GPUs spreads jobs over them).
    """
    unknown = [h for h in heads if h not in HEAD_KINDS]
    if unknown:
        raise UnknownNameError("head", unknown[0], HEAD_KINDS)
    data = load_labelled(data)
    store = store if isinstance(store, Store) else Store(store or default_cache_dir())
    models = [models] if isinstance(models, (str, Model)) else list(models)
    if not models:
        raise DiamondCutterError("sweep needs at least one model")
    size = tuple(input_size) if input_size else None
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, augment=augment,
                         unfreeze=unfreeze, pooling=pooling, seed=seed)
    jobs = [Job(ModelSpec(m, weights, size), data, store.root, cuts if isinstance(cuts, str) else list(cuts),
                n_cuts, tuple(heads), pooling, config, batch_size, progress, device=device) for m in models]
    run = executor_for(executor)
    rows = [row for job_rows in run.map(estimate_job, jobs) for row in job_rows]
    slow = [h for h in heads if h != "linear" or augment or unfreeze]
    if slow:
        rows = _train_shortlist(rows, jobs, slow, shortlist, run)
    result = SweepResult(rows, data.report(), tolerance, [j.spec for j in jobs], data, config)
    if out is not None:
        result.save(out)
    return result


def estimate_job(job: Job) -> list[dict[str, Any]]:
    """Phase 1 for one model: features of every cut in one pass, estimators and a linear head per cut."""
    model = job.spec.load(job.device)
    store = Store(job.store_root)
    cuts = candidate_cuts(model, job.cuts, job.n_cuts)
    prefix = _prefix(model, job)
    rows, todo = {}, []
    for cut in cuts:
        row = store.read_checked_json(f"{prefix}/{cut.name}/estimates.json", _has(BASE_COLUMNS))
        if row is not None:
            rows[cut.name] = row
        else:
            todo.append(cut)
    if todo:
        start = time.perf_counter()
        fs = extract_features(model, job.data, [c.name for c in todo], pooling=job.pooling,
                              batch_size=job.batch_size, store=store, progress=job.progress)
        seconds = (time.perf_counter() - start) / len(todo)
        for cut in todo:
            row = _estimate(model, job, cut, fs.features[cut.name], seconds)
            store.write_checked_json(f"{prefix}/{cut.name}/estimates.json", row)
            rows[cut.name] = row
    return [rows[c.name] for c in cuts]


def heads_job(job: Job) -> list[dict[str, Any]]:
    """Phase 2 for one model: the slower heads on its shortlisted cuts (cached per head and settings)."""
    model = job.spec.load(job.device)
    store = Store(job.store_root)
    prefix = _prefix(model, job)
    out = []
    for cut in job.shortlist:
        for head in job.heads:
            key = f"{prefix}/{cut}/head-{head}-{_digest(asdict(job.train))}.json"
            columns = store.read_checked_json(key, _has([f"{head}_acc"]))
            if columns is None:
                start = time.perf_counter()
                trained = train_head(model, job.data, cut, head, job.train, progress=job.progress)
                columns = _head_columns(head, trained, time.perf_counter() - start)
                store.write_checked_json(key, columns)
            out.append({"model": job.spec.name, "cut": cut, **columns})
    return out


def _estimate(model: Model, job: Job, cut: Cut, features: np.ndarray, feature_seconds: float) -> dict[str, Any]:
    data = job.data
    start = time.perf_counter()
    x_train, x_val = standardise(features[data.train], features[data.val])
    y_train, y_val = data.labels[data.train], data.labels[data.val]
    row = {
        "model": job.spec.name, "cut": cut.name, "relative_depth": cut.relative_depth, "channels": cut.channels,
        "feature_dim": int(features.shape[1]), "macs": cut.macs, "parameters": cut.parameters,
        "knn": knn_accuracy(x_train, y_train, x_val, y_val),
        "ridge": ridge_probe(x_train, y_train, x_val, y_val).accuracy,
        "logme": logme(x_train, y_train),
    }
    row["estimator_seconds"] = time.perf_counter() - start
    row["feature_seconds"] = feature_seconds
    if "linear" in job.heads and not job.train.augment and not job.train.unfreeze:
        start = time.perf_counter()
        trained = train_head(model, data, cut.name, "linear", job.train, progress=False,
                             features=(features[data.train], features[data.val]))
        row.update(_head_columns("linear", trained, time.perf_counter() - start))
    return row


def _head_columns(head: str, trained: TrainedHead, seconds: float) -> dict[str, Any]:
    m = trained.metrics
    return {f"{head}_acc": m.accuracy, f"{head}_balanced_acc": m.balanced_accuracy,
            f"{head}_train_acc": m.train_accuracy, f"{head}_seconds": seconds,
            f"{head}_per_class": m.per_class, f"{head}_confusion": m.confusion}


def _train_shortlist(rows: list[dict], jobs: list[Job], heads: list[str], k: int, run: Executor) -> list[dict]:
    ranked = sorted(rows, key=lambda r: -r["ridge"])[: max(1, k)]
    phase2 = []
    for job in jobs:
        picked = [r["cut"] for r in ranked if r["model"] == job.spec.name]
        if picked:
            phase2.append(replace(job, heads=tuple(heads), shortlist=picked))
    by_pair = {(r["model"], r["cut"]): dict(r) for r in rows}
    for extra in (row for job_rows in run.map(heads_job, phase2) for row in job_rows):
        by_pair[(extra["model"], extra["cut"])].update(extra)
    return [by_pair[(r["model"], r["cut"])] for r in rows]


def _prefix(model: Model, job: Job) -> str:
    return f"sweeps/{model_key(model)}/{job.data.fingerprint()}/{job.pooling}-{_digest(asdict(job.train))}"


def _has(columns: Sequence[str]):
    """A check that a cached row is an object with (at least) ``columns``."""

    def check(row: Any) -> None:
        if not isinstance(row, dict) or any(c not in row for c in columns):
            raise ValueError(f"expected an object with {', '.join(columns)}")

    return check


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


# --- the result -----------------------------------------------------------------------------------

#: Columns of the CSV table, in order (head columns are added per head).
BASE_COLUMNS = ("model", "cut", "relative_depth", "channels", "feature_dim", "macs", "parameters", *ESTIMATORS)


@dataclass
class SweepResult:
    """Rows per (model, cut), the recommendation with its reason, and estimator/head rank agreement."""

    rows: list[dict[str, Any]]
    data_report: str
    tolerance: float
    specs: list[ModelSpec]
    data: LabelledImages
    train_config: TrainConfig

    def __repr__(self) -> str:
        return short_repr(self)

    def _repr_html_(self) -> str:
        cols = ["model", "cut", "relative_depth", *ESTIMATORS, *(f"{h}_acc" for h in self.heads)]
        rows = [[r.get(c, "") for c in cols] for r in self.rows]
        return table_html(cols, rows, caption=f"recommended: {self.reason}")

    def plot(self) -> Any:
        """A matplotlib Figure: accuracy and estimators against relative depth, the recommendation starred."""
        return sweep_figure(self)

    @property
    def heads(self) -> list[str]:
        return [h for h in HEAD_KINDS if any(f"{h}_acc" in r for r in self.rows)]

    def accuracy(self, row: dict[str, Any]) -> float:
        """A pair's score: its best trained head's validation accuracy, else its ridge probe's."""
        scores = [row[f"{h}_acc"] for h in HEAD_KINDS if f"{h}_acc" in row]
        return max(scores) if scores else row["ridge"]

    def best_head(self, row: dict[str, Any]) -> str | None:
        scores = {h: row[f"{h}_acc"] for h in HEAD_KINDS if f"{h}_acc" in row}
        return max(scores, key=scores.get) if scores else None

    @property
    def best(self) -> dict[str, Any]:
        """The most accurate pair (ties: the cheaper)."""
        return min(self.rows, key=lambda r: (-self.accuracy(r), r["macs"], r["parameters"]))

    @property
    def recommendation(self) -> dict[str, Any]:
        """The cheapest pair (MACs, then parameters) within ``tolerance`` of the best accuracy."""
        top = self.accuracy(self.best)
        near = [r for r in self.rows if self.accuracy(r) >= top - self.tolerance - 1e-12]
        return min(near, key=lambda r: (r["macs"], r["parameters"]))

    @property
    def reason(self) -> str:
        rec, best = self.recommendation, self.best
        text = (f"{rec['model']} cut at {rec['cut']} (depth {rec['relative_depth']:.2f}): validation accuracy "
                f"{self.accuracy(rec):.1%} with {self.best_head(rec) or 'ridge probe'}, "
                f"{rec['macs'] / 1e6:.1f}M MACs and {rec['parameters'] / 1e6:.2f}M parameters up to the cut")
        if (rec["model"], rec["cut"]) != (best["model"], best["cut"]):
            text += (f"; the most accurate pair, {best['model']} at {best['cut']} ({self.accuracy(best):.1%}), "
                     f"costs {best['macs'] / max(1, rec['macs']):.1f}x the compute")
        return text + (f". Rule: the cheapest pair (fewest MACs up to the cut, then fewest parameters) within "
                       f"{self.tolerance * 100:.1f} points of the best validation accuracy.")

    @property
    def kendall(self) -> dict[str, dict[str, float]]:
        """Kendall τ between each estimator and each trained head's accuracy, over pairs having both."""
        out: dict[str, dict[str, float]] = {}
        for head in self.heads:
            rows = [r for r in self.rows if f"{head}_acc" in r]
            out[head] = {}
            for est in ESTIMATORS:
                a, b = [r[est] for r in rows], [r[f"{head}_acc"] for r in rows]
                tau = kendalltau(a, b).statistic if len(rows) >= 3 and len(set(a)) > 1 and len(set(b)) > 1 else math.nan
                out[head][est] = float(tau)
        return out

    def columns(self) -> list[str]:
        cols = list(BASE_COLUMNS)
        for h in self.heads:
            cols += [f"{h}_acc", f"{h}_balanced_acc", f"{h}_train_acc", f"{h}_seconds"]
        return cols + ["feature_seconds", "estimator_seconds"]

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.columns(), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue()

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "recommendation": {"model": self.recommendation["model"],
                "cut": self.recommendation["cut"], "head": self.best_head(self.recommendation), "reason": self.reason},
                "kendall_tau": self.kendall, "data": self.data_report, "note": TRUST_NOTE,
                "tolerance": self.tolerance}

    def __str__(self) -> str:
        cols = ["model", "cut", "relative_depth", *ESTIMATORS, *(f"{h}_acc" for h in self.heads)]
        fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
        lines = ["\t".join(cols)] + ["\t".join(fmt(r.get(c, "")) for c in cols) for r in self.rows]
        taus = "; ".join(f"{h}: " + ", ".join(f"{e} {t:+.2f}" for e, t in v.items()) for h, v in self.kendall.items())
        return "\n".join([self.data_report, *lines, f"recommended: {self.reason}", f"Kendall tau ({taus})", TRUST_NOTE])

    def save(self, out: str | Path) -> None:
        """``results.csv``, ``results.json`` and ``sweep.png`` (accuracy and estimators vs depth) under ``out``."""
        target = Store(out)
        target.write_bytes("results.csv", self.to_csv().encode())
        target.write_bytes("results.json", json.dumps(self.to_json(), indent=2, default=float).encode())
        target.write_bytes("sweep.png", figure_png(sweep_figure(self), dpi=110))

    def train_best(self, head: str | None = None, callbacks: Sequence[Any] = (), **options: Any) -> TrainedHead:
        """Train the recommended pair's head (its best head, or ``head``) again and return it, ready to save;
        ``callbacks`` (:mod:`diamond_cutter.callbacks`) watch its explanations evolve while it trains."""
        rec = self.recommendation
        spec = next(s for s in self.specs if s.name == rec["model"])
        config = replace(self.train_config, **options)
        return train_head(spec.load(), self.data, rec["cut"], head or self.best_head(rec) or "linear", config,
                          callbacks=callbacks)
