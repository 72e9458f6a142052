"""Ray, the cluster engine bulk jobs (sweeps, atlases, dataset scans) run on when one machine is not enough.

Diamond Cutter grows no scheduler of its own: a job is a top-level function of
picklable arguments (or a method of an actor that loaded the model once), and
every job writes what it finished to the shared store, so a rerun after a lost
worker or a lost driver recomputes only what nobody finished. Ray is an
optional extra (``pip install "diamond-cutter[ray]"``); nothing imports it
before a caller asks for the Ray executor.

A cluster that cannot be reached is an error within seconds: Ray's own client
retries an unreachable address for minutes, so the address is tried with a
plain TCP connection first.
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any, TypeVar

from .errors import DiamondCutterError

J = TypeVar("J")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

INSTALL_HINT = 'executor="ray" needs Ray, an optional extra: pip install "diamond-cutter[ray]"'
#: Seconds to wait for a cluster's address to answer before saying it cannot be reached.
CONNECT_TIMEOUT = 5.0
#: How often a job whose worker process died is started again.
RETRIES = 3


def import_ray() -> Any:
    """The ``ray`` module, or an error that says how to install it."""
    try:
        import ray  # optional extra: deferred so the package imports without it
    except ImportError:
        raise DiamondCutterError(INSTALL_HINT) from None
    return ray


def endpoint(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a cluster address (``host:port`` or ``ray://host:port``); ``None`` for
    ``auto``/``local``, which Ray resolves itself."""
    if address in ("auto", "local"):
        return None
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise DiamondCutterError(f"Ray address {address!r} is not host:port or ray://host:port")
    return host, int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail within ``timeout`` seconds, with what to do, when nothing listens at ``address``."""
    target = endpoint(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as err:
        raise DiamondCutterError(
            f"the Ray cluster at {address!r} cannot be reached ({err}); start one with `ray start --head` "
            "and pass the address it prints (or set RAY_ADDRESS)"
        ) from None


@contextmanager
def loopback(ray: Any) -> Iterator[None]:
    """Keep a Ray started here on 127.0.0.1. Ray gives even a one-machine cluster the machine's
    outward address (and turns an explicit 127.0.0.1 into it); the switch it uses on desktop systems
    keeps it on loopback, where a local run's servers belong. Restored after the start."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is None:  # a Ray without the switch: it picks its own address
        yield
        return
    before = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = before


class Ray:
    """Jobs as Ray tasks (or actors) on a cluster at ``address`` (default ``$RAY_ADDRESS``), else on a
    local Ray of ``workers`` CPUs that is started for the run and shut down after it, also on error.

    A task whose worker process dies is started again (``retries`` times); jobs are pure
    functions of their arguments and the store, so the retried result is the same.
    """

    def __init__(self, address: str | None = None, workers: int | None = None, retries: int = RETRIES):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.workers = workers
        self.retries = retries

    def __repr__(self) -> str:
        return f"Ray(address={self.address!r}, workers={self.workers})"

    @contextmanager
    def session(self) -> Iterator[Any]:
        """Connected Ray for the duration of the block: an existing connection is reused and left
        open; one started here is shut down on the way out (no ``raylet`` is left behind)."""
        ray = import_ray()
        if self.address:
            check_reachable(self.address)
        if ray.is_initialized():
            yield ray
            return
        with loopback(ray) if self.on_this_machine() else nullcontext():
            ray.init(address=self.address, num_cpus=None if self.address else self.workers,
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            yield ray
        finally:
            ray.shutdown()

    def on_this_machine(self) -> bool:
        """A Ray started here, or one listening on loopback (whose drivers must say 127.0.0.1 too)."""
        if not self.address:
            return True
        where = endpoint(self.address)  # None for "auto": Ray finds that cluster, on whatever address it has
        return where is not None and where[0] in ("127.0.0.1", "localhost", "::1")

    def gpus(self, ray: Any) -> float:
        """GPUs in the cluster (0 on a CPU-only one), so jobs ask for one only where there is one."""
        return float(ray.cluster_resources().get("GPU", 0))

    def map(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[R]:
        """``fn(job)`` for every job as a Ray task, results in the order of ``jobs``. Where the cluster
        has GPUs, each task gets the share of one that ``fn`` asks for (:func:`wants_gpu`, also through a
        ``functools.partial``), and jobs with a ``device`` field compute on ``cuda`` if they got a share,
        else on the CPU (a CPU task sees no GPU)."""
        with self.session() as ray:
            gpus = self.gpus(ray) > 0
            share = gpu_share(fn) if gpus else 0.0
            task, shared = ray.remote(num_cpus=1, num_gpus=share, max_retries=self.retries)(_call), ray.put(fn)
            refs = [task.remote(shared, placed(job, "cuda" if share else "cpu") if gpus else job) for job in jobs]
            for ref in refs:
                yield ray.get(ref)

    def actors(self, ray: Any, cls: type, *args: Any) -> list[Any]:
        """One actor of ``cls(*args)`` per GPU, else per worker CPU; each is restarted (and its
        running call retried) when its process dies."""
        gpus = self.gpus(ray)
        count = int(gpus) if gpus else (self.workers or int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(num_cpus=0 if gpus else 1, num_gpus=1 if gpus else 0,
                            max_restarts=self.retries, max_task_retries=self.retries)(cls)
        return [remote.remote(*args) for _ in range(max(1, count))]


def wants_gpu(share: float) -> Callable[[F], F]:
    """Mark a job function (or a stage's function that a partial binds) as wanting ``share`` of a GPU (1 for
    a feature pass, less for a small head), so a cluster with GPUs packs jobs onto them; elsewhere the
    mark changes nothing."""

    def mark(fn: F) -> F:
        fn.gpus = share  # type: ignore[attr-defined]
        return fn

    return mark


def gpu_share(fn: Callable[..., Any]) -> float:
    """The share of a GPU ``fn`` asks for (:func:`wants_gpu`), also when it comes wrapped in a
    ``functools.partial`` (a stage's function with the jobs it shares bound)."""
    while isinstance(fn, partial):
        fn = fn.func
    return float(getattr(fn, "gpus", 0.0))


def placed(job: J, device: str) -> J:
    """A copy of ``job`` that computes on ``device`` (a job without a ``device`` field as it is). A copy,
    so placing one stage's job never moves the next stage, which may run elsewhere."""
    if not hasattr(job, "device"):
        return job
    job = copy.copy(job)
    job.device = device  # type: ignore[attr-defined]
    return job


def _call(fn: Callable[[J], R], job: J) -> R:
    """The task every job runs as, so ``fn`` may be any picklable callable (a partial, an object)."""
    return fn(job)


def ray_executor(name: Any, address: str | None = None, workers: int | None = None) -> Ray | None:
    """A :class:`Ray` for ``"ray"`` (or a :class:`Ray` as is), ``None`` for anything else."""
    if isinstance(name, Ray):
        return name
    return Ray(address, workers) if name == "ray" else None
