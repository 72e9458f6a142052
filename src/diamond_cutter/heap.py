"""Keep large CPU tensors on the heap while a loop allocates and frees them over and over: opt-in.

Why: glibc serves every allocation above its mmap threshold (at most 32 MiB) with
a fresh ``mmap`` and returns it with ``munmap`` when freed, and it trims the heap
top as soon as a little memory is free. An optimization loop on a CPU (feature
visualization: forward, backward, step, thousands of times) allocates the same
large activations and gradients every step, so every step pays page faults to
zero tens of megabytes again. On EfficientNet-Lite0 at 224 px a render step
costs about half as much when that memory is reused (measured 31.7 → 15.7 ms per
image at ``blocks.4``); batched attribution (Integrated Gradients, occlusion,
Score-CAM) runs about twice as fast for the same reason. This is what jemalloc or
tcmalloc would give, without asking users to preload one.

Why opt-in: ``mallopt`` changes the whole process, and once any of its
thresholds is set glibc turns its dynamic mmap threshold off for good (there is
no call that turns it back on). A library call must leave the process as it
found it, so by default :func:`reused_heap` does nothing. Inside
``with fast_cpu():`` (the ``diamond-cutter`` command runs every command in one)
the loops of feature visualization, attribution and feature extraction switch
glibc to "never mmap, never trim" for their duration; afterwards mmaps are
allowed again, thresholds stay fixed where glibc's own dynamic rule would settle
for such a workload (32 MiB mmap, 64 MiB trim) and the free memory goes back to
the system with ``malloc_trim``. Elsewhere than glibc (macOS, Windows, musl)
nothing changes. ``DIAMOND_CUTTER_HEAP=0`` turns it off even inside ``fast_cpu``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
DEFAULT_MMAP_MAX = 65536
AFTER_MMAP_THRESHOLD = 32 << 20
AFTER_TRIM_THRESHOLD = 64 << 20
NEVER_TRIM = 2**31 - 1


@cache
def glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (the only one whose ``mallopt`` this module knows), else None."""
    if os.environ.get("DIAMOND_CUTTER_HEAP", "1") == "0":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
    except (OSError, AttributeError):
        return None
    return libc


_depth = 0  # nested (or concurrent) blocks keep the setting until the last one ends
_opted_in = 0  # open fast_cpu blocks (in any thread: the allocator is one for the process)
_lock = threading.Lock()


@contextmanager
def fast_cpu() -> Iterator[None]:
    """Let the CPU loops of library calls inside the block keep large tensors on the heap.

    Faster renders and attributions on a CPU with glibc; the price is that glibc's
    dynamic mmap threshold stays off for the rest of the process once a loop has
    run (see the module docstring). Nests, and may be open in several threads.
    """
    global _opted_in
    with _lock:
        _opted_in += 1
    try:
        yield
    finally:
        with _lock:
            _opted_in -= 1


def opted_in() -> bool:
    """Whether a :func:`fast_cpu` block is open."""
    return _opted_in > 0


def worker_opt_in(on: bool) -> None:
    """Initializer of a worker process the library spawns: opt it in for its life when its parent was."""
    global _opted_in
    if on:
        with _lock:
            _opted_in += 1


@contextmanager
def reused_heap() -> Iterator[None]:
    """Serve and keep large allocations on the heap inside the block, inside :func:`fast_cpu` only
    (see the module docstring)."""
    global _depth
    libc = glibc() if opted_in() else None
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(M_MMAP_THRESHOLD, AFTER_MMAP_THRESHOLD)
                libc.mallopt(M_TRIM_THRESHOLD, AFTER_TRIM_THRESHOLD)
                libc.malloc_trim(0)
