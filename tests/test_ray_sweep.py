"""The sweep on Ray: its three stages give the rows of an in-process run, also through a worker killed
mid-run; a driver killed mid-run resumes without redoing a finished (model, cut); the command line."""

from __future__ import annotations

import json
import os
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from diamond_cutter.cli import main
from diamond_cutter.executors import Ray
from diamond_cutter.store import Store
from diamond_cutter.transfer.data import load_labelled, make_colour_dataset

from ray_fixtures import killed_driver, stage, tiny_sweep

LINEAR = ("model", "cut", "knn", "ridge", "linear_val_acc", "linear_acc", "linear_balanced_acc")
CONV = ("conv_val_acc", "conv_acc")
PAIRS = 8  # 2 models × 4 cuts


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory) -> Path:
    return make_colour_dataset(tmp_path_factory.mktemp("colours"), per_class=10, size=16)


@pytest.fixture(scope="module")
def colours(colour_folder):
    return load_labelled(colour_folder)


@pytest.fixture(scope="module")
def in_process(colours, tmp_path_factory):
    return tiny_sweep(colours, tmp_path_factory.mktemp("local"))


def same_rows(a: list[dict], b: list[dict], columns=LINEAR + CONV) -> None:
    assert [[r.get(c) for c in columns] for r in a] == [[r.get(c) for c in columns] for r in b]
    assert [r["logme"] for r in a] == pytest.approx([r["logme"] for r in b], rel=1e-6)


class Counting(Ray):
    """Ray that counts the jobs each stage of the sweep is given."""

    def __init__(self, address: str | None = None):
        super().__init__(address)
        self.jobs: Counter[str] = Counter()

    def map(self, fn, jobs):
        jobs = list(jobs)
        self.jobs[stage(fn)] += len(jobs)
        return super().map(fn, jobs)


def test_sweep_on_ray_runs_three_stages_and_gives_the_in_process_rows(local_ray, colours, in_process, tmp_path):
    ray = Counting(local_ray)
    on_ray = tiny_sweep(colours, tmp_path, executor=ray)
    assert ray.jobs == {"extract_job": 2, "estimate_cut": PAIRS, "head_task": 2}  # per model, per pair, per head
    assert sum("conv_acc" in r for r in on_ray.rows) == 2
    same_rows(in_process.rows, on_ray.rows)
    assert on_ray.recommendation["cut"] == in_process.recommendation["cut"]


def finish_then_die_once(marker: Path, fn, job):
    """Does the job (its results reach the store), then the first time kills its worker before returning."""
    result = fn(job)
    if not marker.exists():
        marker.touch()
        os._exit(1)
    return result


class DyingOnce(Ray):
    def __init__(self, marker: Path):
        super().__init__()
        self.marker = marker

    def map(self, fn, jobs):
        return super().map(partial(finish_then_die_once, self.marker, fn), jobs)


def test_a_worker_killed_mid_run_is_retried_with_the_same_rows(local_ray, colours, in_process, tmp_path):
    marker = tmp_path / "killed"
    survived = tiny_sweep(colours, tmp_path / "store", executor=DyingOnce(marker))
    assert marker.exists()
    same_rows(in_process.rows, survived.rows)


DRIVER = """
    import os
    import signal
    import sys
    from diamond_cutter.executors import Ray
    from ray_fixtures import stage, tiny_sweep

    class DiesAfterFirstPair(Ray):  # the driver is SIGKILLed as soon as the first (model, cut) is in
        def map(self, fn, jobs):
            for result in super().map(fn, jobs):
                if stage(fn) == "estimate_cut":
                    os.kill(os.getpid(), signal.SIGKILL)
                yield result

    tiny_sweep(sys.argv[1], sys.argv[2], executor=DiesAfterFirstPair(sys.argv[3]))
"""


def test_a_killed_driver_resumes_without_redoing_finished_pairs(local_ray, colour_folder, colours, in_process,
                                                                 tmp_path):
    store = Store(tmp_path)
    pairs = lambda: [k for k in store.list() if k.endswith("/estimates.json")]  # noqa: E731
    killed_driver(DRIVER, str(colour_folder), str(tmp_path), local_ray, started=lambda: bool(pairs()))
    finished = len(pairs())
    assert 1 <= finished < PAIRS
    ray = Counting()
    resumed = tiny_sweep(colours, tmp_path, executor=ray)
    assert ray.jobs["estimate_cut"] == PAIRS - finished  # nothing finished is redone
    same_rows(in_process.rows, resumed.rows)


def test_sweep_command_on_ray(local_ray, colour_folder, in_process, tmp_path, capsys):
    args = ["sweep", "resnet18", "--data", str(colour_folder), "--weights", "none", "--input-size", "32",
            "--n-cuts", "4", "--epochs", "8", "--out", str(tmp_path / "out"), "--store", str(tmp_path / "store"),
            "--executor", "ray", "--ray-address", local_ray]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "resnet18: 4 of 4 cuts to compute" in out and "recommended:" in out
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    same_rows([r for r in in_process.rows if r["model"] == "resnet18"], rows, LINEAR)  # linear heads only here
