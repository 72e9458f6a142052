"""Large CPU allocations stay on the heap inside ``reused_heap`` (glibc only, opted in with ``fast_cpu``), and go
back to the system after it."""

from __future__ import annotations

import ctypes

import pytest
import torch

from diamond_cutter import heap


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def mmapped_bytes_for(size: int) -> int:
    """How much of a fresh ``size``-byte tensor glibc served with mmap (``hblkhd`` while it is alive)."""
    libc = heap.glibc()
    libc.mallinfo2.restype = MallInfo2
    before = libc.mallinfo2().hblkhd
    block = torch.empty(size, dtype=torch.uint8)
    during = libc.mallinfo2().hblkhd
    del block
    return during - before


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


needs_glibc = pytest.mark.skipif(heap.glibc() is None or not hasattr(heap.glibc(), "mallinfo2"),
                                 reason="glibc >= 2.33 only")


@needs_glibc
def test_large_blocks_come_from_the_heap_only_inside_the_block():
    # Far above glibc's largest mmap threshold (32 MiB), so outside the block it is mapped unless a free
    # chunk that large is left on the heap. Never touched: it costs address space, not memory.
    size = 2 << 30
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
    size = 2 << 30
    with heap.reused_heap():
        assert mmapped_bytes_for(size) >= size
        assert heap._depth == 0
