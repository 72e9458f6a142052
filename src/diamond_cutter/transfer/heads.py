"""New heads on a cut backbone: ``linear`` (pool + linear) and ``conv`` (3×3 conv + BN + ReLU + pool + linear).

The conv head is the new convolution layer of classic transfer learning: it
can recombine the cut's channels locally before pooling, which helps when the
cut is early and its channels are still low-level. Its layer ``head.conv`` is
a real convolution, so channel attribution and feature visualization work on it
like on any other layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import DiamondCutterError
from .cuts import CutBackbone
from .features import POOLINGS, pool

HEAD_KINDS = ("linear", "conv")


class GlobalPool(nn.Module):
    """Global average (or average+max) pooling to a vector; a vector passes through."""

    def __init__(self, pooling: str = "avg"):
        super().__init__()
        if pooling not in POOLINGS:
            raise DiamondCutterError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool(x, self.pooling)

    def extra_repr(self) -> str:
        return f"pooling={self.pooling!r}"


class LinearHead(nn.Module):
    """Pool, standardise, linear. The standardisation (a BatchNorm without affine parameters, averaging
    over every batch seen) is linear at inference, so the head stays linear; it lets SGD converge in a
    few epochs on cuts whose channels differ in scale by orders of magnitude."""

    def __init__(self, in_channels: int, classes: int, pooling: str = "avg"):
        super().__init__()
        features = in_channels * (2 if pooling == "avgmax" else 1)
        self.pool = GlobalPool(pooling)
        self.norm = nn.BatchNorm1d(features, affine=False, momentum=None)
        self.fc = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.pool(x)))


class ConvHead(nn.Module):
    def __init__(self, in_channels: int, classes: int, pooling: str = "avg", width: int | None = None):
        super().__init__()
        width = width or min(256, max(32, in_channels))
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.pool = GlobalPool(pooling)
        self.fc = nn.Linear(width * (2 if pooling == "avgmax" else 1), classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise DiamondCutterError("a conv head needs a spatial (N×C×H×W) cut; use the linear head here")
        return self.fc(self.pool(self.relu(self.bn(self.conv(x)))))


def head_spec(
    kind: str, in_channels: int, classes: int, pooling: str = "avg", width: int | None = None
) -> dict[str, Any]:
    """The plain description a saved model's manifest stores and :func:`build_head` rebuilds from."""
    if kind not in HEAD_KINDS:
        raise DiamondCutterError(f"unknown head {kind!r}: choose one of {', '.join(HEAD_KINDS)}")
    if kind == "conv":
        width = width or min(256, max(32, in_channels))
    return {"kind": kind, "in_channels": int(in_channels), "classes": int(classes), "pooling": pooling,
            "width": int(width) if width is not None and kind == "conv" else None}


def build_head(spec: dict[str, Any]) -> nn.Module:
    if spec["kind"] == "linear":
        return LinearHead(spec["in_channels"], spec["classes"], spec["pooling"])
    return ConvHead(spec["in_channels"], spec["classes"], spec["pooling"], spec["width"])


class TransferNet(nn.Module):
    """``head(backbone(x))``: the transferred network, with layers named ``backbone.net.…`` and ``head.…``."""

    def __init__(self, backbone: CutBackbone, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
