"""Large CPU allocations stay on the heap inside ``reused_heap`` (glibc only, opted in with ``fast_cpu``), and go
back to the system after it."""

from __future__ import annotations

import torch

from diamond_cutter import heap

from helpers import larger_than_free_heap, mmapped_bytes_for, needs_glibc


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@needs_glibc
def test_large_blocks_come_from_the_heap_only_inside_the_block():
    size = larger_than_free_heap()
    assert mmapped_bytes_for(size) >= size
    with heap.fast_cpu(), heap.reused_heap():
        assert mmapped_bytes_for(size) == 0
        with heap.reused_heap():
            pass
        assert mmapped_bytes_for(size) == 0, "a nested block must not end the outer one's setting"
    assert heap._depth == 0  # (what glibc does afterwards depends on where it put those 2 GiB, so it is not asked)


@needs_glibc
def test_memory_freed_inside_is_handed_back_at_the_end():
    start = resident_bytes()
    with heap.fast_cpu(), heap.reused_heap():
        block = torch.ones(256 << 20, dtype=torch.uint8)  # touched, so resident
        del block
        kept = resident_bytes() - start
    assert kept > 200 << 20, "inside the block freed memory stays with the process"
    assert resident_bytes() - start < 64 << 20


def test_can_be_turned_off(monkeypatch):
    heap.glibc.cache_clear()
    monkeypatch.setenv("DIAMOND_CUTTER_HEAP", "0")
    try:
        assert heap.glibc() is None
        with heap.fast_cpu(), heap.reused_heap():
            pass
    finally:
        monkeypatch.undo()
        heap.glibc.cache_clear()


@needs_glibc
def test_without_fast_cpu_nothing_changes():
    size = larger_than_free_heap()
    with heap.reused_heap():
        assert mmapped_bytes_for(size) >= size
        assert heap._depth == 0
