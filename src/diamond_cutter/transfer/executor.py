"""Where sweep jobs run: in this process (default), in a pool of worker processes, or on Ray.

A sweep's tasks (its three stages, :mod:`.sweep`: an extraction per model, the
estimates per (model, cut), a slower head per shortlisted (model, cut, head))
are independent within a stage and write every result to the store before
returning it, so any executor that can call a picklable function (a top-level
one, or a ``functools.partial`` binding what a stage's tasks share) on picklable
arguments can run them. ``map`` must yield results in the order of ``jobs``; an
executor with a ``session()`` keeps it open for all stages of a run.

Ray (:class:`diamond_cutter.executors.Ray`, ``executor="ray"``) is the cluster
engine; another backend plugs in the same way: implement ``map`` by submitting
``fn(job)`` for each job to the cluster and yielding the gathered results. Give the
sweep a store every node can reach (an fsspec URL such as ``s3://bucket/cache``)
so cached features and finished pairs are shared, and a rerun after a lost
node recomputes only what no node finished.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager, nullcontext
from typing import Any, Protocol, TypeVar

import torch

from .. import heap
from ..errors import UnknownNameError
from ..executors import placed, ray_executor

J = TypeVar("J")
R = TypeVar("R")


class Executor(Protocol):
    def map(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[R]: ...


class InProcess:
    """Run jobs one after another in this process (what a notebook or a single GPU wants)."""

    def map(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[R]:
        return map(fn, jobs)


class ProcessPool:
    """Run jobs in ``workers`` spawned processes; on a machine with GPUs, one worker per GPU by default.

    Job ``i`` runs with ``device = "cuda:{i mod GPUs}"`` when GPUs exist and the job asked for no
    particular device (``None``, ``auto`` or ``cuda`` in its ``device`` field), so each GPU holds one
    model at a time. Within a :meth:`session` every stage of a run shares one pool: spawning workers
    costs seconds, and a worker keeps the models it loaded for the next stage.
    """

    def __init__(self, workers: int | None = None):
        gpus = torch.cuda.device_count()
        self.devices = [f"cuda:{i}" for i in range(gpus)]
        self.workers = workers or max(1, gpus or min(4, multiprocessing.cpu_count()))
        self.pool: ProcessPoolExecutor | None = None

    @contextmanager
    def session(self) -> Iterator[ProcessPoolExecutor]:
        """The pool of the session already open, or a new one for the duration of the block."""
        if self.pool is not None:
            yield self.pool
            return
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=heap.worker_opt_in,
                                 initargs=(heap.opted_in(),)) as pool:  # workers inherit fast_cpu
            self.pool = pool
            try:
                yield pool
            finally:
                self.pool = None

    def map(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[R]:
        jobs = [self._place(job, i) for i, job in enumerate(jobs)]
        with self.session() as pool:
            yield from pool.map(fn, jobs)

    def _place(self, job: J, i: int) -> J:
        if self.devices and getattr(job, "device", "cpu") in (None, "auto", "cuda"):  # a chosen device stays
            return placed(job, self.devices[i % len(self.devices)])
        return job


EXECUTORS = ("local", "processes", "ray")


def executor_for(name: str | Executor | None, ray_address: str | None = None) -> Executor:
    """``None``/``"local"`` -> :class:`InProcess`, ``"processes"`` -> :class:`ProcessPool`, ``"ray"`` ->
    :class:`~diamond_cutter.executors.Ray` (at ``ray_address``, default ``$RAY_ADDRESS`` or a local
    Ray), or an executor as is."""
    if name is None or name == "local":
        return InProcess()
    if name == "processes":
        return ProcessPool()
    if name == "ray":
        ray = ray_executor(name, ray_address)
        assert ray is not None  # "ray" always gives one
        return ray
    if isinstance(name, str):
        raise UnknownNameError("executor", name, EXECUTORS)
    return name


def session(executor: Executor) -> ContextManager[Any]:
    """The executor's session (Ray: one connection; processes: one pool) for all stages of a run, or a no-op."""
    return executor.session() if hasattr(executor, "session") else nullcontext()
