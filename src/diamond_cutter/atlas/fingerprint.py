"""Name-independent cache keys: what a layer computes, not what it is called.

A transferred model wraps its frozen backbone under a new name
(``backbone.blocks.4`` instead of ``blocks.4``). Its channels look exactly like
the original's, so their atlas should be reused. The fingerprint therefore
hashes the *content* upstream of the layer: the type and the parameters and
buffers of every module that runs before the layer's output exists (in the
order they run, with module-local names such as ``weight``), plus the input
normalisation and the layer's output shape. New layers of the transferred
model have new weights and so get their own atlas.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import torch

from ..capture import forward_hooks, preserved, truncated
from ..model import tensor_digest


def upstream_modules(model: Any, layer: str) -> list[torch.nn.Module]:
    """Leaf modules that run before ``layer`` finishes, in execution order (first call each)."""
    model.layer(layer)
    order: list[torch.nn.Module] = []
    seen: set[int] = set()

    def hook_for(module: torch.nn.Module):
        def hook(_m: torch.nn.Module, _i: tuple, _o: Any) -> None:
            if id(module) not in seen:
                seen.add(id(module))
                order.append(module)

        return hook

    leaves = {name: m for name, m in model.module.named_modules() if name and not any(True for _ in m.children())}
    x = torch.zeros(1, *model.input_size, device=model.device)
    with (
        preserved(model.module),
        torch.no_grad(),
        forward_hooks(model.module, {n: hook_for(m) for n, m in leaves.items()}),
    ):
        with truncated(model.module, layer) as run:
            run(x)
    return order


def layer_fingerprint(model: Any, layer: str) -> str:
    """SHA-256 of everything upstream of ``layer`` that decides its output (see module docstring)."""
    h = hashlib.sha256()
    meta = {"mean": list(model.mean), "std": list(model.std), "input": list(model.input_size),
            "shape": list(model.layer(layer).shape or [])}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for module in upstream_modules(model, layer):
        h.update(type(module).__name__.encode())
        h.update(re.sub(r",?\s*inplace=\w+", "", module.extra_repr()).encode())
        for name, tensor in sorted(
            list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
        ):
            if tensor is not None:
                tensor_digest(h, name, tensor)
    return h.hexdigest()


def settings_digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
