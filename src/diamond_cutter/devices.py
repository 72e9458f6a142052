"""Device names to ``torch.device``s, and the memory a device can spare.

Every computing path runs on the model's device; this module only turns what a
user types (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``) into a device that
exists, and says how many bytes a batch may take there, so batch sizes come
from a budget instead of a constant.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

from .errors import DiamondCutterError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

#: What ``--device`` accepts besides ``cuda:N``.
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
#: Environment variable holding the memory budget for batches (bytes, or a size such as ``2G``, ``512M``).
MEMORY_ENV = "DIAMOND_CUTTER_MEMORY"
#: Without a budget, batches may use this share of the free memory of the device.
FREE_SHARE = {"cuda": 0.5, "cpu": 0.25}
#: ... but on a CPU never more than this: other processes and the page cache share the RAM, PyTorch and
#: its libraries already take most of a GiB, and past a few images a batch is hardly faster per image on
#: a CPU (the layers are bound by memory traffic).
CPU_CAP = 512 << 20


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The device called ``spec``: ``auto`` (or None) is CUDA where available, else the CPU."""
    import torch  # deferred: PyTorch takes seconds to import, and the CLI reads MEMORY_ENV and parse_size for --help

    if isinstance(spec, torch.device):
        return spec
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "meta":
        return torch.device("meta")
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", text):
        raise DiamondCutterError(f"unknown device {spec!r}: use auto, cpu, cuda, cuda:N or mps")
    device = torch.device(text)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DiamondCutterError(
            f"device {spec!r} asked for, but this PyTorch sees no CUDA GPU; use --device cpu or auto"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DiamondCutterError(f"device {spec!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DiamondCutterError(f"device {spec!r} asked for, but MPS is not available here; use --device cpu or auto")
    return device


def parse_size(text: str | int) -> int:
    """Bytes from ``1500000000``, ``1.5G``, ``512M`` or ``64K`` (powers of 1024)."""
    if isinstance(text, int):
        size = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(text).lower())
        if not match:
            raise DiamondCutterError(f"cannot read memory size {text!r}: use bytes or a size such as 2G or 512M")
        size = int(float(match.group(1)) * 1024 ** " kmgt".index(match.group(2) or " "))
    if size <= 0:
        raise DiamondCutterError(f"a memory budget must be positive, got {text!r}")
    return size


def free_memory(device: torch.device) -> int:
    """Free bytes on ``device``: the GPU's free memory, or the free RAM (4 GiB when unknown)."""
    if device.type == "cuda":
        # deferred: PyTorch takes seconds to import, and the CLI reads MEMORY_ENV and parse_size for --help
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def memory_budget(device: torch.device, budget: int | str | None = None) -> int:
    """Bytes a batch may use on ``device``: ``budget`` if given, else ``DIAMOND_CUTTER_MEMORY``, else a
    safe share of the free memory (half a GPU's, a quarter of the RAM capped at :data:`CPU_CAP`)."""
    chosen = budget if budget is not None else os.environ.get(MEMORY_ENV)
    if chosen not in (None, ""):
        return parse_size(chosen)  # type: ignore[arg-type]
    share = free_memory(device) * FREE_SHARE.get(device.type, 0.25)
    return int(share if device.type == "cuda" else min(share, CPU_CAP))


def budgeted_empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor on ``device`` when it fits :func:`memory_budget`, else on the CPU in a
    temporary file mapped into memory.

    Why: a training set's inputs (decoded pixels for fine-tuning, a cut's maps for a conv head) can
    outgrow the RAM. Mapped from a file, their pages are the operating system's to drop and read back,
    so the run slows down instead of dying. The file is unlinked at once and vanishes with the tensor,
    even when the process is killed. Callers move each batch to ``device`` themselves.
    """
    import torch  # deferred: PyTorch takes seconds to import, and the CLI imports this module for --help

    count = math.prod(shape)
    element = torch.empty(0, dtype=dtype).element_size()
    if count * element <= memory_budget(device):
        return torch.empty(shape, dtype=dtype, device=device)
    with tempfile.NamedTemporaryFile(prefix="diamond-cutter-", suffix=".bin") as handle:
        handle.truncate(max(1, count * element))
        flat = torch.from_file(handle.name, shared=True, size=count, dtype=dtype)
    return flat.view(shape)


def even_batches(items: Sequence[T], batch: int) -> list[list[T]]:
    """``items`` in ⌈n/batch⌉ consecutive batches of sizes that differ by at most one.

    Why: a CPU step costs more per item in a small batch, so 8 channels at a budget of 5
    run faster as 4 + 4 than as 5 + 3, at the same number of optimizations.
    """
    count = max(1, -(-len(items) // max(1, batch)))
    bounds = [round(i * len(items) / count) for i in range(count + 1)]
    return [list(items[a:b]) for a, b in zip(bounds, bounds[1:]) if b > a]

