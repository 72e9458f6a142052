"""Large CPU allocations stay on the heap inside ``reused_heap`` (glibc only), and the setting ends with the block."""

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


@pytest.mark.skipif(heap.glibc() is None or not hasattr(heap.glibc(), "mallinfo2"), reason="glibc ≥ 2.33 only")
def test_large_blocks_come_from_the_heap_only_inside_the_block():
    size = 96 << 20  # above the largest mmap threshold glibc allows, so outside the block it is always mmapped
    assert mmapped_bytes_for(size) >= size
    with heap.reused_heap():
        assert mmapped_bytes_for(size) == 0
        with heap.reused_heap():
            pass
        assert mmapped_bytes_for(size) == 0, "a nested block must not end the outer one's setting"
    assert mmapped_bytes_for(size) >= size
    assert heap._depth == 0


def test_can_be_turned_off(monkeypatch):
    heap.glibc.cache_clear()
    monkeypatch.setenv("DIAMOND_CUTTER_HEAP", "0")
    try:
        assert heap.glibc() is None
        with heap.reused_heap():
            pass
    finally:
        monkeypatch.undo()
        heap.glibc.cache_clear()
