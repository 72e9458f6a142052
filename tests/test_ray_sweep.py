"""The sweep on Ray: the rows of an in-process run, through a worker killed mid-run too."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

import diamond_cutter as dc
from diamond_cutter.executors import Ray
from diamond_cutter.transfer.data import load_labelled, make_colour_dataset
from diamond_cutter.transfer.train import TrainConfig

TINY = dict(weights=None, input_size=(3, 32, 32), progress=False, cuts=4, train=TrainConfig(epochs=8))
COMPARED = ("model", "cut", "knn", "ridge", "linear_val_acc", "linear_acc", "linear_balanced_acc")


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return load_labelled(make_colour_dataset(tmp_path_factory.mktemp("colours"), per_class=10, size=16))


@pytest.fixture(scope="module")
def in_process(colours, tmp_path_factory):
    return dc.sweep(["resnet18", "mobilenet_v3_small"], colours, store=tmp_path_factory.mktemp("local"), **TINY)


def same_rows(a, b) -> None:
    assert [[r[c] for c in COMPARED] for r in a.rows] == [[r[c] for c in COMPARED] for r in b.rows]
    assert [r["logme"] for r in a.rows] == pytest.approx([r["logme"] for r in b.rows], rel=1e-6)


def test_sweep_on_ray_gives_the_in_process_rows(local_ray, colours, in_process, tmp_path):
    on_ray = dc.sweep(["resnet18", "mobilenet_v3_small"], colours, store=tmp_path, executor="ray",
                      ray_address=local_ray, **TINY)
    same_rows(in_process, on_ray)
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
    survived = dc.sweep(["resnet18", "mobilenet_v3_small"], colours, store=tmp_path / "store",
                        executor=DyingOnce(marker), **TINY)
    assert marker.exists()
    same_rows(in_process, survived)
