"""The sweep: which model, cut at which layer, transfers best to the user's images.

The work is a DAG of three stages of tasks, the same for every executor (in this process they run
one after another; on Ray they overlap). Every task writes what it finished to the store before it
returns, so a crashed or interrupted sweep resumes where it stopped and never redoes a finished
(model, cut); large arrays travel between stages by store path, never by value:

1. per model (a whole GPU where the cluster has GPUs): pooled features of every cut the store has no
   row for, from one pass over the images, cached per batch; the task returns only which cuts are
   missing and how long the pass took;
2. per (model, cut), on a CPU: the cut's features read back from the store, the fast estimators (k-NN,
   ridge probe, LogME, H-score, TransRate, GBC, SFDA's LDA, NCTI's terms; the last five from one set of
   sufficient statistics, :mod:`.statistics`) and, in every fold, a linear head trained on the features
   (NCTI itself compares the pairs, so the result computes it from every pair's terms);
3. per (model, cut, head) on the shortlist, the pairs the ridge probe ranks highest: the other heads
   (``conv``, fine-tuning), a quarter of a GPU each where there are GPUs.

Every choice is made on validation images: the ridge penalty, the head's epoch
(early stopping) and the recommended pair (see :mod:`.result`); every reported
accuracy is on test images no choice saw, with a bootstrap interval.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DiamondCutterError, UnknownNameError
from ..executors import wants_gpu
from ..model import Model
from ..progress import duration_text, seconds_per_call
from ..store import Store, default_cache_dir
from ..zoo import load_model
from .blocked import standardised
from .cuts import DEFAULT_CUTS, Cut, candidate_cuts, run_to_cuts
from .data import LabelledImages, load_labelled
from .estimators import knn_accuracy, logme, ridge_probe
from .executor import Executor, executor_for, session
from .features import extract_features, model_key
from .heads import HEAD_KINDS
from .intervals import accuracy, balanced_accuracy
from .metrics import confusion_matrix
from .profile import fine_tuning_profile
from .result import BASE_COLUMNS, Selection, SweepResult
from .statistics import Statistics, gbc, hscore, ncti_terms, sfda_lda, transrate
from .train import TrainConfig, train_head


@dataclass
class ModelSpec:
    """How a job gets its network: a zoo name with weights and input size, or a Model object.

    ``label`` names the model's rows; it is unique within a sweep, so two user
    networks of the same class (and so the same name) keep separate rows.
    """

    model: str | Model
    weights: str | None = "imagenet"
    input_size: tuple[int, int, int] | None = None
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or self.base_name

    def load(self, device: str | None = None) -> Model:
        if isinstance(self.model, Model):
            return self.model
        return _load(self.model, self.weights, self.input_size, device)

    @property
    def base_name(self) -> str:
        return self.model.name if isinstance(self.model, Model) else self.model

    @property
    def name(self) -> str:
        return self.label


def model_specs(models: Sequence[str | Model], weights: str | None,
                input_size: tuple[int, int, int] | None) -> list[ModelSpec]:
    """One spec per model; names that occur more than once get ``#1``, ``#2``... in the order given."""
    specs = [ModelSpec(m, weights, input_size) for m in models]
    counts, seen = Counter(s.base_name for s in specs), Counter[str]()
    for s in specs:
        if counts[s.base_name] > 1:
            seen[s.base_name] += 1
            s.label = f"{s.base_name}#{seen[s.base_name]}"
    return specs


@lru_cache(maxsize=4)
def _load(name: str, weights: str | None, input_size: tuple[int, int, int] | None, device: str | None) -> Model:
    """Load once per process; random weights are seeded, so every stage (and a rerun) sees the same network."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return load_model(name, weights=weights, input_size=input_size, device=device)


@dataclass
class Job:
    """One model's share of a sweep (picklable, so an executor can ship it to another process)."""

    spec: ModelSpec
    data: LabelledImages
    store_root: str
    cuts: str | int | list[str]
    heads: tuple[str, ...]
    train: TrainConfig
    select: Selection
    progress: bool
    device: str | None = None


def sweep(
    models: Sequence[str | Model] | str | Model,
    data: Any,
    *,
    cuts: str | int | Sequence[str] = "auto",
    heads: Sequence[str] = ("linear",),
    train: TrainConfig | None = None,
    select: Selection | None = None,
    weights: str | None = "imagenet",
    input_size: Sequence[int] | None = None,
    store: Store | str | None = None,
    out: str | Path | None = None,
    executor: str | Executor | None = None,
    profile: bool = False,
    ray_address: str | None = None,
    progress: bool = True,
    device: str | None = None,
    plan: Callable[[str], Any] | None = None,
) -> SweepResult:
    """Run ``models`` × cuts on labelled ``data`` (a folder, a CSV or :func:`load_labelled`'s result).

    ``cuts``: ``"auto"`` (:data:`~.cuts.DEFAULT_CUTS` spread by depth), a number of
    cuts spread by depth, or layer names. ``heads``: ``"linear"`` is trained on
    every pair from cached features; ``"conv"`` (and every head when
    ``train.unfreeze`` > 0 or ``train.augment``) only on ``select.shortlist`` pairs
    by ridge probe. ``train`` says how heads train (its ``pooling`` and
    ``batch_size`` also serve feature extraction); ``select`` how pairs are compared
    and one recommended. ``weights``/``input_size`` apply to models given by name.
    ``store`` caches features and finished pairs (default: the user cache);
    ``out`` also writes the table and plots there. ``profile`` adds the fine-tuning
    profile of the recommended pair (one block unfrozen at a time; slow, so off by default).
    ``executor``: ``"local"`` (default), ``"processes"`` or ``"ray"`` (a cluster at
    ``ray_address`` or ``$RAY_ADDRESS``, else a local Ray; give it a ``store`` every node reaches).
    ``device`` is where the models compute (an executor with several GPUs spreads jobs over them).
    ``plan`` (e.g. ``print``) is told first what the sweep will compute and about how long it takes
    (:func:`sweep_plan`).
    """
    train = train or TrainConfig()  # a fresh one per call: TrainConfig is mutable
    select = select or Selection()
    unknown = [h for h in heads if h not in HEAD_KINDS]
    if unknown:
        raise UnknownNameError("head", unknown[0], HEAD_KINDS)
    data = load_labelled(data)
    if not all(len(f.test) for f in data.folds):
        raise DiamondCutterError("the sweep reports on held-out test images: give load_labelled a test_fraction "
                                 "above 0, a test folder, or folds")
    store = store if isinstance(store, Store) else Store(store or default_cache_dir())
    models = [models] if isinstance(models, (str, Model)) else list(models)
    if not models:
        raise DiamondCutterError("sweep needs at least one model")
    specs = model_specs(models, weights, tuple(input_size) if input_size else None)  # type: ignore[arg-type]
    cut_request = cuts if isinstance(cuts, (str, int)) else list(cuts)
    jobs = [Job(spec, data, store.root, cut_request, tuple(heads), train, select, progress, device=device)
            for spec in specs]
    slow = [h for h in heads if h != "linear" or train.augment or train.unfreeze]
    if plan is not None:
        plan(sweep_plan(jobs, store, slow))
    run = executor_for(executor, ray_address)
    with session(run):
        rows = _estimates(jobs, run)
        if slow:
            rows = _train_shortlist(rows, jobs, slow, select.shortlist, run)
    result = SweepResult(rows, data.report(), select, specs, data, train)
    if profile:
        rec = result.recommendation
        result.profile = fine_tuning_profile(result.spec(rec["model"]).load(), data, rec["cut"], result.head, train,
                                             resamples=select.resamples, confidence=select.confidence,
                                             progress=progress)
    if out is not None:
        result.save(out)
    return result


def sweep_plan(jobs: Sequence[Job], store: Store, slow_heads: Sequence[str]) -> str:
    """What the sweep will compute and about how long it takes: the total, then a line per model
    (:func:`job_plan`)."""
    planned = [job_plan(job, store, slow_heads) for job in jobs]
    heads = f", then {', '.join(slow_heads)} heads on the {jobs[0].select.shortlist} best pairs" if slow_heads else ""
    total = duration_text(sum(seconds for _, seconds in planned))
    return (f"sweep of {len(jobs)} models on {len(jobs[0].data)} images{heads}: {total} in all\n  "
            + "\n  ".join(line for line, _ in planned))


def job_plan(job: Job, store: Store, slow_heads: Sequence[str]) -> tuple[str, float]:
    """One model's line of the plan and its seconds.

    The model is timed on one batch: reading and decoding an image, and one forward to the deepest cut
    still missing; its features then cost that per image. A slower head trains on the shortlist in every
    fold: with the backbone frozen and no augmentation, after one pass that computes its inputs; otherwise
    ``epochs`` passes over the training images, forward and backward (counted 3×). Estimators and linear
    heads work on pooled features and take seconds, so they are left out; pairs in the store cost nothing.
    """
    model = job.spec.load(job.device)
    cuts, done = finished_rows(model, job, store)
    todo = [cut.name for cut in cuts if cut.name not in done]
    if not todo and not slow_heads:  # everything is in the store: nothing to time
        return f"{job.spec.label}: 0 of {len(cuts)} cuts to compute, {duration_text(0.0)}", 0.0
    batch = job.data.pixels(np.arange(min(job.train.batch_size, len(job.data))), model).to(model.device)
    deepest = [todo[-1] if todo else cuts[-1].name]
    per_image = seconds_per_call(lambda: run_to_cuts(model.module, batch, deepest)) / len(batch)
    per_image += seconds_per_call(lambda: job.data.pixels([0], model))
    seconds = len(job.data) * per_image if todo else 0.0
    if slow_heads:
        tuning = job.train.augment or job.train.unfreeze > 0
        passes = job.train.epochs * 3 * len(job.data.folds[0].train) if tuning else len(job.data)
        seconds += len(slow_heads) * job.select.shortlist * len(job.data.folds) * passes * per_image
    return f"{job.spec.label}: {len(todo)} of {len(cuts)} cuts to compute, {duration_text(seconds)}", seconds


def _cuts(model: Model, request: str | int | list[str]) -> list[Cut]:
    if isinstance(request, int):
        return candidate_cuts(model, "auto", request)
    return candidate_cuts(model, request, DEFAULT_CUTS)


def finished_rows(model: Model, job: Job, store: Store) -> tuple[list[Cut], dict[str, dict]]:
    """The job's cuts, and the rows of stage 2 (estimates and linear heads) the store already holds, by cut name."""
    cuts, prefix, rows = _cuts(model, job.cuts), _prefix(model, job), {}
    for cut in cuts:
        row = store.read_checked_json(f"{prefix}/{cut.name}/estimates.json", _has(BASE_COLUMNS))
        if row is not None:
            rows[cut.name] = row
    return cuts, rows


@dataclass(frozen=True)
class Extracted:
    """What a model's extraction tells the driver: small metadata, never arrays (the features wait in the store).

    ``cuts`` are all the job's cuts in order; ``done`` the rows the store already held, so no task redoes
    them; ``prefix`` is where the model's results lie in the store; ``seconds`` the feature pass per missing cut.
    """

    cuts: tuple[Cut, ...]
    done: dict[str, dict[str, Any]]
    prefix: str
    seconds: float

    @property
    def missing(self) -> list[Cut]:
        return [cut for cut in self.cuts if cut.name not in self.done]


@dataclass
class Part:
    """One task's share of a model's job: a cut (stage 2), or a cut and a head (stage 3).

    The jobs (data set included) travel inside the task function, a ``functools.partial`` that Ray ships once
    per ``map``, so each task itself costs only these names; ``device`` is where the task computes, and an
    executor may place it.
    """

    model: str
    cut: str
    head: str = ""
    device: str | None = None


@wants_gpu(1.0)
def extract_job(job: Job) -> Extracted:
    """Stage 1 for one model: pooled features of every cut the store has no row for, from one pass over the
    images, written to the store batch by batch (:func:`.features.extract_features`)."""
    model = job.spec.load(job.device)
    store = Store(job.store_root)
    cuts, done = finished_rows(model, job, store)
    missing = [cut.name for cut in cuts if cut.name not in done]
    start = time.perf_counter()
    if missing:
        extract_features(model, job.data, missing, pooling=job.train.pooling, batch_size=job.train.batch_size,
                         store=store, progress=job.progress)
    seconds = (time.perf_counter() - start) / max(1, len(missing))
    return Extracted(tuple(cuts), done, _prefix(model, job), seconds)


def estimate_cut(job: Job, extracted: Extracted, part: Part) -> dict[str, Any]:
    """Stage 2 for one (model, cut), on a CPU: the cut's features read back from the store (every batch is
    cached, so nothing runs the network), the estimators and a linear head per fold; the row goes to the store."""
    model = job.spec.load(part.device)
    store = Store(job.store_root)
    cut = next(c for c in extracted.cuts if c.name == part.cut)
    fs = extract_features(model, job.data, [cut.name], pooling=job.train.pooling, batch_size=job.train.batch_size,
                          store=store, progress=False, accumulate=job.data.folds[0].train)
    row = _estimate(model, job, cut, fs.features[cut.name], fs.statistics[cut.name], extracted.seconds)
    store.write_checked_json(f"{extracted.prefix}/{cut.name}/estimates.json", row)
    return row


@wants_gpu(0.25)
def head_task(jobs: dict[str, Job], part: Part) -> dict[str, Any]:
    """Stage 3 for one shortlisted (model, cut, head): the head trained in every fold, cached in the store."""
    job = jobs[part.model]
    model = job.spec.load(part.device)
    store = Store(job.store_root)
    key = f"{_prefix(model, job)}/{part.cut}/head-{part.head}.json"
    columns = store.read_checked_json(key, _has([f"{part.head}_acc", f"{part.head}_val_pred"]))
    if columns is None:
        start = time.perf_counter()
        trained = [train_head(model, job.data, part.cut, part.head, job.train, fold=i, progress=job.progress)
                   for i in range(len(job.data.folds))]
        columns = head_columns(part.head, trained, job, time.perf_counter() - start)
        store.write_checked_json(key, columns)
    return {"model": job.spec.label, "cut": part.cut, **columns}


def _estimates(jobs: list[Job], run: Executor) -> list[dict[str, Any]]:
    """Stages 1 and 2. Every model's extraction is submitted at once; as each comes in, its missing cuts
    become CPU tasks while later models still extract (in this process: one model after another). Rows
    come back in model and cut order."""
    rows = []
    for job, extracted in zip(jobs, run.map(extract_job, jobs)):
        parts = [Part(job.spec.label, cut.name, device=job.device) for cut in extracted.missing]
        new = dict(zip([p.cut for p in parts], run.map(partial(estimate_cut, job, extracted), parts)))
        rows += [{**(extracted.done.get(c.name) or new[c.name]), "model": job.spec.label} for c in extracted.cuts]
    return rows


def _estimate(model: Model, job: Job, cut: Cut, features: np.ndarray, streamed: Statistics,
              feature_seconds: float) -> dict[str, Any]:
    """Phase 1's row for one cut. Each step standardises its own copy of the cut's rows and lets it go
    before the next, so beside the pooled features the sweep holds at most one cut's copy at a time."""
    data = job.data
    start = time.perf_counter()
    row = {
        "model": job.spec.label, "cut": cut.name, "relative_depth": cut.relative_depth, "channels": cut.channels,
        "feature_dim": int(features.shape[1]), "macs": cut.macs, "parameters": cut.parameters,
        **_estimators(features, data, streamed.standardised()), **_ridge(features, data),
    }
    row["estimator_seconds"] = time.perf_counter() - start
    row["feature_seconds"] = feature_seconds
    if "linear" in job.heads and not job.train.augment and not job.train.unfreeze:
        start = time.perf_counter()
        trained = [train_head(model, data, cut.name, "linear", job.train, fold=i, progress=False, features=features)
                   for i in range(len(data.folds))]
        row.update(head_columns("linear", trained, job, time.perf_counter() - start))
    return row


def _estimators(features: np.ndarray, data: LabelledImages, stats: Statistics) -> dict[str, float]:
    """The estimators on the first split: its training images' standardised ``stats`` (gathered during
    extraction) and their features, standardised by the training images' mean and std."""
    first = data.folds[0]
    x_train, x_val = standardised(features, first.train, first.val)
    y_train = data.labels[first.train]
    return {"knn": knn_accuracy(x_train, y_train, x_val, data.labels[first.val]),
            "logme": logme(x_train, y_train), "hscore": hscore(stats), "transrate": transrate(x_train, y_train),
            "gbc": gbc(stats, x_train, y_train), "sfda": sfda_lda(stats, x_train, y_train),
            **ncti_terms(stats, x_train, y_train)}


def _ridge(features: np.ndarray, data: LabelledImages) -> dict[str, Any]:
    """The ridge probe in every fold, penalty chosen on the fold's validation images: its pooled validation
    accuracy (an estimator) and its held-out test accuracy."""
    val_pred, test_pred = [], []
    for f in data.folds:
        x_train, x_val, x_test = standardised(features, f.train, f.val, f.test)
        probe = ridge_probe(x_train, data.labels[f.train], x_val, data.labels[f.val], x_test=x_test)
        if probe.test_predictions is None:  # ridge_probe predicts x_test whenever it is given one
            raise ValueError("the ridge probe returned no test predictions")
        val_pred.append(probe.predictions)
        test_pred.append(probe.test_predictions)
        del x_train, x_val, x_test  # the next fold's copies replace these, never join them
    y_val, y_test = data.labels[data.val_order], data.labels[data.test_order]
    return {"ridge": float((np.concatenate(val_pred) == y_val).mean()),
            "ridge_test": float((np.concatenate(test_pred) == y_test).mean())}


def head_columns(head: str, trained: list, job: Job, seconds: float) -> dict[str, Any]:
    """A head's columns from its folds: validation accuracy, held-out accuracy and balanced accuracy with
    bootstrap intervals, the pooled test confusion matrix and the predictions the recommendation compares."""
    data, sel = job.data, job.select
    val_pred = np.concatenate([t.val_predictions for t in trained])
    test_pred = np.concatenate([t.test_predictions for t in trained])
    y_val, y_test = data.labels[data.val_order], data.labels[data.test_order]
    options = sel.bootstrap()
    acc, bal = accuracy(y_test, test_pred, **options), balanced_accuracy(y_test, test_pred, **options)
    val = accuracy(y_val, val_pred, **options)
    matrix = confusion_matrix(y_test, test_pred, len(data.classes))
    support = matrix.sum(axis=1)
    return {f"{head}_val_acc": val.value, f"{head}_val_acc_ci": [val.low, val.high],
            f"{head}_acc": acc.value, f"{head}_acc_ci": [acc.low, acc.high],
            f"{head}_balanced_acc": bal.value, f"{head}_balanced_acc_ci": [bal.low, bal.high],
            f"{head}_train_acc": float(np.mean([t.metrics.train_accuracy for t in trained])),
            f"{head}_epochs": [len(t.history) for t in trained], f"{head}_seconds": seconds,
            f"{head}_per_class": {c: float(matrix[i, i] / support[i]) for i, c in enumerate(data.classes)
                                  if support[i]},
            f"{head}_confusion": matrix.tolist(),
            f"{head}_val_pred": val_pred.tolist(), f"{head}_test_pred": test_pred.tolist()}


def _train_shortlist(rows: list[dict], jobs: list[Job], heads: list[str], k: int, run: Executor) -> list[dict]:
    """Stage 3: the slower heads on the ``k`` pairs the ridge probe ranks highest, one task per
    (model, cut, head), all submitted at once."""
    ranked = sorted(rows, key=lambda r: -r["ridge"])[: max(1, k)]
    by_label = {job.spec.label: job for job in jobs}
    parts = [Part(r["model"], r["cut"], head, by_label[r["model"]].device) for r in ranked for head in heads]
    by_pair = {(r["model"], r["cut"]): dict(r) for r in rows}
    for extra in run.map(partial(head_task, by_label), parts):
        by_pair[(extra["model"], extra["cut"])].update(extra)
    return [by_pair[(r["model"], r["cut"])] for r in rows]


def _prefix(model: Model, job: Job) -> str:
    settings = {"train": asdict(job.train), "select": asdict(job.select)}
    return f"sweeps/{model_key(model)}/{job.data.fingerprint()}/{_digest(settings)}"


def _has(columns: Sequence[str]):
    """A check that a cached row is an object with (at least) ``columns``."""

    def check(row: Any) -> None:
        if not isinstance(row, dict) or any(c not in row for c in columns):
            raise ValueError(f"expected an object with {', '.join(columns)}")

    return check


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]
