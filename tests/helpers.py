"""Test helpers shared by several test modules (import as ``from helpers import ...``)."""

from __future__ import annotations

import ctypes

import pytest
import torch
from torch import nn

from diamond_cutter import heap


class InplaceNet(nn.Module):
    """A small CNN in torchvision's style: conv → BN → ReLU(inplace=True), twice, then a linear head."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(self.pool(x).flatten(1))



def snapshot(module: nn.Module) -> dict:
    """Everything the "model is never left changed" promise covers, for before/after comparison."""
    return {
        "params": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "modes": {n: m.training for n, m in module.named_modules()},
        "flags": {n: p.requires_grad for n, p in module.named_parameters()},
        "hooks": {
            n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks), len(m._backward_pre_hooks))
            for n, m in module.named_modules()
        },
    }


def assert_unchanged(before: dict, module: nn.Module) -> None:
    after = snapshot(module)
    assert after["modes"] == before["modes"]
    assert after["flags"] == before["flags"]
    assert after["hooks"] == before["hooks"]
    for k, v in before["params"].items():
        assert torch.equal(v, after["params"][k]), f"parameter/buffer {k} changed"


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def mmapped_bytes_for(size: int) -> int:
    """How much of a fresh ``size``-byte tensor glibc served with mmap (``hblkhd`` while it is alive)."""
    libc = heap.glibc()
    libc.mallinfo2.restype = MallInfo2
    before = libc.mallinfo2().hblkhd
    block = torch.empty(size, dtype=torch.uint8)
    during = libc.mallinfo2().hblkhd
    del block
    return during - before


def larger_than_free_heap() -> int:
    """A size above glibc's largest mmap threshold (32 MiB) that no free heap memory can serve, so glibc maps
    it unless mmap is turned off (left untouched: it costs address space, not memory)."""
    libc = heap.glibc()
    libc.mallinfo2.restype = MallInfo2
    return max(2 << 30, libc.mallinfo2().fordblks + (64 << 20))


needs_glibc = pytest.mark.skipif(heap.glibc() is None or not hasattr(heap.glibc(), "mallinfo2"),
                                 reason="glibc >= 2.33 only")
