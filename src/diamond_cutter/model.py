"""The :class:`Model`: a network plus everything needed to use it on images.

A bare ``nn.Module`` does not say what size of image it wants, how to
normalise it, what its classes are called or where its logits come out. Model
carries those facts next to the network so every tool (attribution, feature
visualization, transfer) can take a Model and do the right thing.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn

from .capture import preserved
from .devices import memory_budget, resolve_device
from .errors import DiamondCutterError, UnknownNameError
from .html import short_repr, table_html
from .images import INTERPOLATIONS, ImageBatch, as_batch, load_batches
from .layers import Layer, LayerTable, discover_layers
from .progress import bar

log = logging.getLogger("diamond_cutter")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Batches never grow past these (a GPU is busy long before; on a CPU larger batches are not faster per image).
MAX_BATCH = 256
MAX_CPU_BATCH = 64


def batch_for(model: Model, batch_size: int | None, backward: bool = True) -> int:
    """``batch_size`` when the caller chose one, else what fits the model's memory budget."""
    return int(batch_size) if batch_size is not None else model.fitting_batch(backward)


def tensor_digest(h: hashlib._Hash, name: str, t: torch.Tensor) -> None:
    """Feed a tensor's name, dtype, shape and bytes to ``h`` (exact: any changed weight changes the digest)."""
    t = t.detach().cpu().contiguous()
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
    h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``module``: which weights it holds, whatever it is called."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor_digest(h, name, tensor)
    return h.hexdigest()


def default_logits(output: Any) -> torch.Tensor:
    """Pick the logits out of what a network returns: a tensor, a tuple/list (first item),
    a dict (``logits`` or ``out`` key) or an object with a ``logits`` attribute
    (torchvision's ``InceptionOutputs``)."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, dict):
        for key in ("logits", "out"):
            if key in output:
                return output[key]
        raise DiamondCutterError(
            f"the network returns a dict with keys {sorted(output)}; pass output=lambda out: out[KEY] to pick the "
            "logits"
        )
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise DiamondCutterError(f"cannot find logits in a {type(output).__name__}; pass output=... to pick them")


@dataclass(eq=False)
class Model:
    """A network with its preprocessing, class names and layer inventory.

    ``module`` expects normalised input of shape ``N×input_size``;
    :meth:`normalize` maps ``[0, 1]`` pixels to that space. ``crop_pct`` and
    ``interpolation`` say how the network was evaluated: images are resized with
    that filter so the input is ``crop_pct`` of the resized image, then centre-cropped
    (timm's ``crop_pct``; torchvision's ``crop_size / resize_size``). Calling the Model
    returns logits (via ``output``, which picks them from tuple/dict outputs).
    """

    module: nn.Module
    name: str
    input_size: tuple[int, int, int]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    labels: list[str] = field(default_factory=list)
    weights: str | None = None
    output: Callable[[Any], torch.Tensor] = default_logits
    interpolation: str = "bicubic"
    crop_pct: float = 1.0
    #: Other names for layers (Lucid's ``mixed4d`` for GoogLeNet's ``inception4d``), accepted wherever a layer is named.
    layer_aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_size = tuple(int(v) for v in self.input_size)  # type: ignore[assignment]
        if len(self.input_size) != 3:
            raise DiamondCutterError(f"input_size must be (channels, height, width), got {self.input_size}")
        c = self.input_size[0]
        if len(self.mean) == 1 and c > 1:
            self.mean = tuple(self.mean) * c
        if len(self.std) == 1 and c > 1:
            self.std = tuple(self.std) * c
        if len(self.mean) != c or len(self.std) != c:
            raise DiamondCutterError(f"mean/std need {c} values for {c} input channels")
        if not self.labels:
            self.labels = [f"class {i}" for i in range(self.num_classes)]
        if self.interpolation not in INTERPOLATIONS:
            raise UnknownNameError("interpolation", self.interpolation, INTERPOLATIONS)
        if not 0 < self.crop_pct <= 1:
            raise DiamondCutterError(f"crop_pct must be in (0, 1], got {self.crop_pct}")

    @property
    def preprocessing(self) -> dict[str, Any]:
        """Everything that turns a picture into this network's input (part of every cache key)."""
        return {"input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation, "crop_pct": self.crop_pct}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.module(x))

    def __repr__(self) -> str:
        return f"Model({self.name!r}, weights={self.weights!r}, input={self.input_size}, classes={len(self.labels)})"

    @cached_property
    def layers(self) -> LayerTable:
        """The layer inventory (one hooked forward on a dummy input, computed once)."""
        table = discover_layers(self.module, self.input_size, self.output)
        table.aliases = dict(self.layer_aliases)
        return table

    @cached_property
    def num_classes(self) -> int:
        if self.labels:
            return len(self.labels)
        return self.layers.num_outputs or 0

    @property
    def device(self) -> torch.device:
        """Where the network's parameters live; every computation on this model runs there."""
        p = next(self.module.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> Model:
        """Move the network to ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) and return
        this Model, like ``nn.Module.to``: attribution, rendering and transfer then compute there."""
        self.module.to(resolve_device(device))
        return self

    def fitting_batch(self, backward: bool = True, memory: int | str | None = None, cap: int | None = None) -> int:
        """How many input images one pass may take within the memory budget
        (:func:`~diamond_cutter.devices.memory_budget`: ``memory``, ``DIAMOND_CUTTER_MEMORY`` or a share of
        the free memory). Per image, a pass with a backward keeps every activation for the gradient
        (measured on EfficientNet-Lite0: about their sum; 1.5 times it is counted), a forward alone a few
        at a time (measured: about three of the largest; four are counted)."""
        sizes = [math.prod(layer.shape) * 4 for layer in self.layers if layer.shape and layer.leaf] or [1]
        per_image = 3 * sum(sizes) // 2 if backward else 4 * max(sizes)
        batch = memory_budget(self.device, memory) // max(1, per_image)
        cap = cap or (MAX_BATCH if self.device.type == "cuda" else MAX_CPU_BATCH)
        return int(max(1, min(cap, batch)))

    def layer(self, name: str):
        """The :class:`~diamond_cutter.layers.Layer` called ``name`` (suggestions on a typo)."""
        return self.layers.resolve(name)

    def spatial_layer(self, name: str | None = None) -> Layer:
        """The C×H×W layer called ``name``; without a name, the last spatial layer before global
        pooling (:meth:`~diamond_cutter.layers.LayerTable.last_spatial`), logged so the choice is visible.

        A layer without a C×H×W output is an error naming spatial layers, since
        CAMs, semantic maps and channel attribution need positions to weigh.
        """
        if name is None:
            layer = self.layers.last_spatial()
            if layer is None:
                raise DiamondCutterError(f"{self.name} has no layer with a spatial feature map larger than 1×1")
            log.info("layer: %s %s (the last spatial layer before global pooling; choose another with layer=)",
                     layer.name, "×".join(map(str, layer.shape or ())))
            return layer
        layer = self.layer(name)
        if not layer.spatial:
            choices = [x.name for x in self.layers.spatial()][-6:]
            raise DiamondCutterError(
                f"layer {name!r} outputs shape {layer.shape}, not a C×H×W feature map; "
                f"pick a spatial layer such as {', '.join(choices)}"
            )
        return layer

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` pixels (N×C×H×W) to the network's input space."""
        mean = torch.tensor(self.mean, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
        return (pixels - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input space back to ``[0, 1]`` pixels."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return x * std + mean

    def class_index(self, target: int | str) -> int:
        """A class index from an index or a class name (case-insensitive; suggestions on a typo)."""
        if isinstance(target, bool):
            raise DiamondCutterError(f"a class must be an index or a name, not {target!r}")
        if isinstance(target, int) or (hasattr(target, "__index__") and not isinstance(target, str)):
            index = int(target)
            if not 0 <= index < self.num_classes:
                raise DiamondCutterError(
                    f"class index {index} is out of range: the model has {self.num_classes} classes"
                )
            return index
        if isinstance(target, str):
            lowered = [label.lower() for label in self.labels]
            if target.lower() in lowered:
                return lowered.index(target.lower())
            raise UnknownNameError("class", target, self.labels)
        raise DiamondCutterError(f"a class must be an index or a name, not {type(target).__name__}")

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for a tensor the network cannot take."""
        if x.ndim != 4 or x.shape[1] != self.input_size[0]:
            raise DiamondCutterError(
                f"expected images shaped N×{self.input_size[0]}×H×W for {self.name}, got {tuple(x.shape)}"
            )


@dataclass
class Prediction:
    """Top-k classes per image: indices, names and probabilities (softmax of the logits)."""

    indices: torch.Tensor
    probabilities: torch.Tensor
    names: list[list[str]]
    image_ids: list[str]

    def __repr__(self) -> str:
        return short_repr(self)

    def _repr_html_(self) -> str:
        columns = ["image", *(f"#{i + 1}" for i in range(self.indices.shape[1] if self.indices.ndim == 2 else 0))]
        rows = [[image_id, *(f"{n} {p:.1%}" for n, p in zip(names, probs))]
                for image_id, names, probs in zip(self.image_ids, self.names, self.probabilities.tolist())]
        return table_html(columns, rows, caption="top classes")

    def __str__(self) -> str:
        lines = []
        for image_id, names, probs in zip(self.image_ids, self.names, self.probabilities.tolist()):
            top = ", ".join(f"{n} {p:.1%}" for n, p in zip(names, probs))
            lines.append(f"{image_id}: {top}")
        return "\n".join(lines)

    @classmethod
    def join(cls, parts: list[Prediction]) -> Prediction:
        """One prediction from the predictions of consecutive batches."""
        return cls(torch.cat([p.indices for p in parts]), torch.cat([p.probabilities for p in parts]),
                   [n for p in parts for n in p.names], [i for p in parts for i in p.image_ids])

    def as_dicts(self) -> list[dict[str, Any]]:
        return [
            {
                "image": image_id,
                "top": [{"index": i, "name": n, "probability": p} for i, n, p in zip(idx, names, probs)],
            }
            for image_id, idx, names, probs in zip(
                self.image_ids, self.indices.tolist(), self.names, self.probabilities.tolist()
            )
        ]


def batched_logits(model: Model, x: torch.Tensor, batch_size: int = 32, progress: bool = False) -> torch.Tensor:
    """Logits of ``x`` in eval mode, batch by batch, without gradients."""
    model.check_input(x)
    chunks = []
    with torch.inference_mode():
        with preserved(model.module):
            for start in bar(range(0, len(x), batch_size), "predict", enabled=progress):
                chunks.append(model(x[start : start + batch_size].to(model.device)).float().cpu())
    return torch.cat(chunks)


def predict(model: Model, images: Any, k: int = 5, batch_size: int = 32, progress: bool = False) -> Prediction:
    """Top-``k`` classes for each image (an ImageBatch, a tensor, or anything ``load_images`` takes).

    Files, folders and URLs are read ``batch_size`` images at a time, so a folder
    of any length is classified in bounded memory.
    """
    if k < 1:
        raise DiamondCutterError(f"k must be at least 1, got {k}")
    if isinstance(images, (ImageBatch, torch.Tensor)):
        return _predict_batch(model, as_batch(images, model), k, batch_size, progress)
    batches = load_batches(images, model, batch_size=batch_size)
    return Prediction.join(
        [_predict_batch(model, b, k, batch_size, False) for b in bar(batches, "predict", enabled=progress)]
    )


def _predict_batch(model: Model, batch: Any, k: int, batch_size: int, progress: bool) -> Prediction:
    logits = batched_logits(model, batch.tensor, batch_size, progress)
    probs = logits.softmax(dim=1)
    top = probs.topk(min(k, probs.shape[1]), dim=1)
    names = [[model.labels[i] for i in row] for row in top.indices.tolist()]
    return Prediction(top.indices, top.values, names, list(batch.ids))
