"""The Ray executor: ordered results, a killed worker retried, clear errors without Ray or a cluster,
and a local Ray shut down (no raylet left) also when the run fails."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from diamond_cutter.errors import DiamondCutterError
from diamond_cutter.executors import Ray, check_reachable, endpoint, gpu_share, placed, wants_gpu
from diamond_cutter.transfer.executor import executor_for


@dataclass
class Placeable:
    """A job with a device field, as the sweep's jobs have."""

    device: str | None


def square_dying_once(job: tuple[Path, int]) -> int:
    """Squares ``n``; the first attempt at 3 kills its own worker process mid-job."""
    marker, n = job
    if n == 3 and not marker.exists():
        marker.touch()
        os._exit(1)
    return n * n


def test_results_come_in_job_order_and_a_killed_worker_is_retried(local_ray, tmp_path):
    marker = tmp_path / "killed-once"
    assert list(Ray().map(square_dying_once, [(marker, n) for n in range(6)])) == [0, 1, 4, 9, 16, 25]
    assert marker.exists()  # the worker running job 3 really died once


def test_executor_names(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray = executor_for("ray", "10.1.2.3:6379")
    assert isinstance(ray, Ray) and ray.address == "10.1.2.3:6379"
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert executor_for("ray").address == "head:6379"
    with pytest.raises(DiamondCutterError, match="did you mean 'ray'"):
        executor_for("rya")


def test_gpu_share_is_a_mark_on_the_job_function():
    @wants_gpu(0.25)
    def head(jobs, part):
        return jobs[part]

    assert head.gpus == 0.25 and head({1: 2}, 1) == 2
    assert gpu_share(partial(head, {1: 2})) == 0.25  # a stage's function with what its tasks share bound
    assert gpu_share(abs) == 0.0


def test_placing_a_job_moves_a_copy_and_leaves_the_next_stage_where_it_was():
    job = Placeable(device=None)
    assert placed(job, "cuda") == Placeable(device="cuda") and job.device is None
    assert placed(3, "cuda") == 3  # a job without a device field stays as it is


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(DiamondCutterError, match=r'pip install "diamond-cutter\[ray\]"'):
        list(Ray().map(abs, [1]))


def test_an_unreachable_cluster_fails_within_seconds():
    assert endpoint("ray://head.example:10001") == ("head.example", 10001)
    assert endpoint("auto") is None
    with pytest.raises(DiamondCutterError, match="not host:port"):
        endpoint("head-without-port")
    start = time.monotonic()
    with pytest.raises(DiamondCutterError, match="cannot be reached.*ray start --head"):
        list(Ray("127.0.0.1:9").map(abs, [1]))  # port 9 (discard): nothing listens
    assert time.monotonic() - start < 10
    check_reachable("auto")  # Ray resolves auto itself


class StubRay:
    """Stands in for the ray module: records whether a session started and shut Ray down."""

    def __init__(self):
        self.calls = []

    def is_initialized(self):
        return False

    def init(self, **options):
        self.calls.append(("init", options["num_cpus"]))

    def shutdown(self):
        self.calls.append(("shutdown", None))


def test_a_failing_run_still_shuts_its_local_ray_down(monkeypatch):
    """The shared local Ray's teardown checks that no raylet is left after a normal run; here a
    job that raises must shut the Ray its session started down as well."""
    stub = StubRay()
    monkeypatch.setitem(sys.modules, "ray", stub)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ZeroDivisionError):
        with Ray(workers=2).session():
            _ = 1 / 0
    assert stub.calls == [("init", 2), ("shutdown", None)]
