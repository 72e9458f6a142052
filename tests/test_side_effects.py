"""No process-wide setting outlives a library call: glibc's allocator and the thread counts of torch and
the BLAS under numpy are as the call found them. Keeping tensors on the heap is opt-in (``fast_cpu``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

import diamond_cutter as dc
from diamond_cutter import heap
from diamond_cutter.featureviz import objectives as obj
from diamond_cutter.featureviz import render_objective
from diamond_cutter.transfer.data import load_labelled, make_colour_dataset
from diamond_cutter.transfer.estimators import ridge_probe
from diamond_cutter.transfer.features import extract_features

from helpers import larger_than_free_heap, mmapped_bytes_for, needs_glibc


class RecordingLibc:
    """Stands in for glibc: records every allocator setting a call makes, changes nothing."""

    def __init__(self):
        self.calls: list[tuple[str, int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad, 0))
        return 1

    def last(self, param: int) -> int | None:
        values = [v for name, p, v in self.calls if name == "mallopt" and p == param]
        return values[-1] if values else None


@pytest.fixture(scope="module")
def resnet() -> dc.Model:
    torch.manual_seed(0)
    return dc.load_model("resnet18", weights=None, input_size=(3, 32, 32))


def library_calls(model: dc.Model, folder) -> None:
    """An attribution, a render, a feature extraction and an estimator (which runs on one thread)."""
    dc.attribute(model, torch.rand(2, 3, 32, 32), "integrated_gradients", target=0, steps=4)
    render_objective(model, obj.channel("layer2", [0, 1]), keys=[0, 1], steps=2, size=32, progress=False)
    data = load_labelled(make_colour_dataset(folder, per_class=3, size=16))
    features = extract_features(model, data, ["layer1"], batch_size=4, progress=False).features["layer1"]
    ridge_probe(features, data.labels, features, data.labels)


def thread_counts() -> tuple[int, list[int]]:
    return torch.get_num_threads(), [pool["num_threads"] for pool in threadpool_info()]


def test_library_calls_leave_allocator_and_thread_counts_alone(resnet, tmp_path, monkeypatch):
    libc = RecordingLibc()
    monkeypatch.setattr(heap, "glibc", lambda: libc)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)  # not the default, so "restored to the default" would not pass for "restored"
    try:
        before = thread_counts()
        library_calls(resnet, tmp_path / "data")
        assert thread_counts() == before
    finally:
        torch.set_num_threads(threads)
    assert libc.calls == [], "without fast_cpu no allocator setting may be touched"


def test_fast_cpu_keeps_the_heap_inside_calls_and_allows_mmap_again_after(resnet, tmp_path, monkeypatch):
    libc = RecordingLibc()
    monkeypatch.setattr(heap, "glibc", lambda: libc)
    with dc.fast_cpu():
        library_calls(resnet, tmp_path / "data")
    assert ("mallopt", heap.M_MMAP_MAX, 0) in libc.calls
    assert libc.last(heap.M_MMAP_MAX) == heap.DEFAULT_MMAP_MAX
    assert libc.calls[-1][0] == "malloc_trim" and heap._depth == 0 and not heap.opted_in()


@needs_glibc
def test_large_blocks_are_mapped_after_calls_on_the_real_allocator(resnet, tmp_path):
    library_calls(resnet, tmp_path / "data")
    size = larger_than_free_heap()
    assert mmapped_bytes_for(size) >= size, "mmap must stay on after library calls"


def test_fast_cpu_nests_and_ends(monkeypatch):
    assert not heap.opted_in()
    with dc.fast_cpu():
        with dc.fast_cpu():
            assert heap.opted_in()
        assert heap.opted_in()
    assert not heap.opted_in()
    with pytest.raises(RuntimeError), dc.fast_cpu():
        raise RuntimeError("boom")
    assert not heap.opted_in()


def test_the_cli_runs_its_commands_with_fast_cpu(monkeypatch, capsys):
    from diamond_cutter import cli
    from diamond_cutter.commands import inventory

    seen = []
    monkeypatch.setattr(inventory, "run_models", lambda args: seen.append(heap.opted_in()) or 0)
    assert cli.main(["models"]) == 0
    assert seen == [True] and not heap.opted_in()


def test_features_are_the_same_with_and_without_fast_cpu(resnet, tmp_path):
    data = load_labelled(make_colour_dataset(tmp_path / "d", per_class=3, size=16))
    plain = extract_features(resnet, data, ["layer1"], batch_size=4, progress=False).features["layer1"]
    with dc.fast_cpu():
        fast = extract_features(resnet, data, ["layer1"], batch_size=4, progress=False).features["layer1"]
    np.testing.assert_array_equal(plain, fast)



def test_worker_processes_inherit_fast_cpu(monkeypatch):
    """Spawned workers start with the parent's choice (checked at the boundary: spawning costs seconds)."""
    from diamond_cutter.transfer import executor

    made = []

    class Pool:
        def __init__(self, **kwargs):
            made.append(kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def map(self, fn, jobs):
            return map(fn, jobs)

    monkeypatch.setattr(executor, "ProcessPoolExecutor", Pool)
    with dc.fast_cpu():
        list(executor.ProcessPool(workers=1).map(abs, [-1]))
    list(executor.ProcessPool(workers=1).map(abs, [-1]))
    assert [(m["initializer"], m["initargs"]) for m in made] == [
        (heap.worker_opt_in, (True,)),
        (heap.worker_opt_in, (False,)),
    ]
    monkeypatch.setattr(heap, "_opted_in", 0)
    heap.worker_opt_in(False)
    assert not heap.opted_in()
    heap.worker_opt_in(True)
    assert heap.opted_in()
