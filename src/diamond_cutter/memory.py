"""How much memory a batched computation may take: the one rule every budgeted batch size uses.

Batch sizes come from a budget, not a constant, so the same call fills a GPU
and stays within a laptop's RAM.
"""

from __future__ import annotations

import os

import torch


def available_memory(device: torch.device) -> int:
    """Bytes a computation may use: half the free GPU memory, or a quarter of the free RAM (capped at 4 GiB)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = 4 << 30
    return min(free // 4, 4 << 30)
