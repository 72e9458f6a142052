"""One intra-op thread for the small numeric work of the sweep (estimators, heads on cached features).

These steps run many small matrix operations. Splitting each over threads
only adds a synchronisation per operation, and on a CPU shared with other
work a waiting thread costs more than the operation itself. Measured on a busy
2-core machine: a linear head on cached features 2.2 s with two threads vs
0.09 s with one; a ridge probe on 150×1280 features 2.3 s vs 0.013 s; an SVD
for LogME 0.8 s vs 0.04 s. The network's forward passes keep every thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits


@contextmanager
def one_thread() -> Iterator[None]:
    """Limit torch and the BLAS under numpy to one thread for the block (usable as a decorator)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)
