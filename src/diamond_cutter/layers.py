"""Layer discovery: the inventory of a network's layers, found with one hooked forward.

Any ``nn.Module`` works, sequential or not (Inception branches, ResNet shortcuts,
NASNet cells), because the table is built by observing a real forward pass on a
dummy input rather than by walking the module tree. Layers are listed in the
order their outputs appear in that pass (a container finishes after its
children), which is the order a cut or a capture sees them in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .capture import forward_hooks, preserved
from .errors import DiamondCutterError, UnknownNameError
from .html import details_html, table_html

#: Modules that pass their input through unchanged at inference; never reported as the pre-output layer.
PASS_THROUGH = (nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten)
#: Adaptive pooling (torchvision's VGG pools its 7×7 map to 7×7 again): never the default layer.
POOLS = ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "SelectAdaptivePool2d")


@dataclass(frozen=True)
class Layer:
    """One named module as seen during a forward pass.

    ``shape`` is the output shape without the batch dimension (first call);
    ``channels``/``height``/``width`` are ``None`` where the output is not a
    tensor of that rank. ``grid`` is the spritemap side ``ceil(sqrt(channels))``.
    ``calls`` counts how often the module ran in one forward (shared modules run
    more than once: their captured output is the last call's). ``macs`` counts the
    multiply-accumulates of the module's own convolution or linear map per image (0 for
    others and for containers); ``step`` says the module is a step of a Sequential or
    ModuleList, or a child of the network itself: the places a network is cut.
    """

    name: str
    type: str
    index: int
    shape: tuple[int, ...] | None
    output: str
    calls: int
    leaf: bool
    parameters: int
    macs: int = 0
    step: bool = False

    @property
    def channels(self) -> int | None:
        return self.shape[0] if self.shape else None

    @property
    def height(self) -> int | None:
        return self.shape[1] if self.shape and len(self.shape) == 3 else None

    @property
    def width(self) -> int | None:
        return self.shape[2] if self.shape and len(self.shape) == 3 else None

    @property
    def spatial(self) -> bool:
        """True for a ``C×H×W`` feature map (what CAMs, semantic maps and cuts need)."""
        return self.shape is not None and len(self.shape) == 3

    @property
    def grid(self) -> int | None:
        return math.ceil(math.sqrt(self.channels)) if self.channels else None

    @property
    def note(self) -> str:
        notes = []
        if self.calls > 1:
            notes.append(f"runs {self.calls}x per forward; captures see the last call")
        if self.output != "tensor":
            notes.append(f"returns {self.output}, not a tensor")
        return "; ".join(notes)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(channels=self.channels, height=self.height, width=self.width, grid=self.grid, note=self.note)
        return d


class LayerTable(Sequence[Layer]):
    """Layers in forward order, plus the input, output and pre-output facts of the network.

    ``num_outputs`` is the width of the logits (``None`` if the network does not return N×K).
    """

    def __init__(
        self,
        layers: list[Layer],
        input_size: tuple[int, ...],
        output: str | None,
        pre_output: str | None,
        num_outputs: int | None = None,
    ):
        self._layers = layers
        self.num_outputs = num_outputs
        self._by_name = {layer.name: layer for layer in layers}
        self.input_size = tuple(input_size)
        self.output = output
        self.pre_output = pre_output
        #: Other names for layers (another library's), resolved to the table's names.
        self.aliases: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._layers)

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return self.resolve(key)
        return self._layers[key]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self._layers)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self._layers]

    def resolve(self, name: str) -> Layer:
        """The layer called ``name``; an unknown name raises with the closest names."""
        if not isinstance(name, str):
            raise DiamondCutterError(f"a layer is named by a string, got {type(name).__name__} {name!r}")
        try:
            return self._by_name[self.aliases.get(name, name)]
        except KeyError:
            raise UnknownNameError("layer", name, [*self.names, *self.aliases]) from None

    def spatial(self) -> list[Layer]:
        return [layer for layer in self._layers if layer.spatial]

    def last_spatial(self) -> Layer | None:
        """The last layer before the output with a C×H×W map larger than 1×1: the map that global
        pooling summarises, where the network's spatial evidence last exists (Grad-CAM's usual
        layer). Squeeze-and-excitation gates (1×1 maps) and everything after pooling are skipped."""
        end = self.resolve(self.output).index if self.output else len(self._layers)
        maps = [
            layer for layer in self._layers[:end]
            if layer.spatial and (layer.height or 0) * (layer.width or 0) > 1 and layer.type not in POOLS
        ]
        return maps[-1] if maps else None

    def relative_depth(self, name: str) -> float:
        """Position of the layer's output in the forward pass, 0 (first) to 1 (last)."""
        return self.resolve(name).index / max(1, len(self._layers) - 1)

    def to_json(self) -> str:
        return json.dumps(
            {
                "input_size": list(self.input_size),
                "output": self.output,
                "pre_output": self.pre_output,
                "layers": [layer.as_dict() for layer in self._layers],
            },
            indent=2,
        )

    def blocks(self) -> list[Block]:
        """The blocks users cut at: spatial, single-call steps of a Sequential or ModuleList (or children
        of the network). A Sequential's output is its last step's, so of the two only one is listed: the
        inner one where the last step is itself a Sequential, else the outer one. Each block carries the
        multiply-accumulates and parameters of everything that ran up to its end (EfficientNet-Lite0:
        265 layers, 23 blocks)."""
        steps = [layer for layer in self._layers if layer.spatial and layer.calls == 1 and layer.step
                 and layer.type not in POOLS]
        keep = {layer.name for layer in steps}
        for layer in steps:
            children = [other for other in steps if other.name.rpartition(".")[0] == layer.name]
            if layer.type == "Sequential" and children:
                last = max(children, key=lambda other: other.index)
                keep.discard(layer.name if last.type == "Sequential" else last.name)
        own = self._own_parameters()
        return [
            Block(layer.name, layer.type, layer.index, layer.channels or 0, layer.height or 1, layer.width or 1,
                  sum(other.macs for other in self._layers[: layer.index + 1]),
                  sum(own[other.name] for other in self._layers[: layer.index + 1]))
            for layer in steps if layer.name in keep
        ]

    def _own_parameters(self) -> dict[str, int]:
        """Parameters of each module itself, without its children's (a container may hold some of its own)."""
        own = {layer.name: layer.parameters for layer in self._layers}
        for layer in self._layers:
            parent = layer.name.rpartition(".")[0]
            if parent in own:
                own[parent] -= layer.parameters
        return own

    def __repr__(self) -> str:
        return (f"LayerTable({len(self)} layers, {len(self.spatial())} with a C×H×W map; input "
                f"{'×'.join(map(str, self.input_size))}; output {self.output!r}; pre-output {self.pre_output!r})")

    def _repr_html_(self) -> str:
        """The blocks as a table, and every layer folded behind a ``<details>``."""
        blocks = [
            [b.name, b.type, b.channels, f"{b.height}×{b.width}", f"{b.macs / 1e6:.1f}M", f"{b.parameters / 1e6:.2f}M"]
            for b in self.blocks()
        ]
        rows = [
            [
                layer.index,
                layer.name,
                layer.type,
                layer.channels if layer.channels is not None else "-",
                f"{layer.height}×{layer.width}" if layer.spatial else "-",
                layer.parameters,
                layer.note,
            ]
            for layer in self
        ]
        return table_html(
            ["block", "type", "channels", "H×W", "MACs to here", "parameters to here"], blocks, caption=repr(self)
        ) + details_html(
            f"all {len(self)} layers", table_html(["#", "name", "type", "channels", "H×W", "parameters", "note"], rows)
        )

    def __str__(self) -> str:
        rows = [("#", "name", "type", "channels", "H×W", "grid", "note")]
        for layer in self._layers:
            hw = f"{layer.height}×{layer.width}" if layer.spatial else "-"
            shape = layer.channels if layer.channels is not None else "-"
            rows.append((str(layer.index), layer.name, layer.type, str(shape), hw, str(layer.grid or "-"), layer.note))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths)) + ("  " + r[-1] if r[-1] else "") for r in rows
        )


@dataclass(frozen=True)
class Block:
    """A block of the network (see :meth:`LayerTable.blocks`): its output map, and the multiply-accumulates
    (per image) and parameters of everything that ran up to its end."""

    name: str
    type: str
    index: int
    channels: int
    height: int
    width: int
    macs: int
    parameters: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def block_table_text(blocks: Sequence[Block]) -> str:
    """The blocks as aligned text columns (what ``diamond-cutter layers --blocks`` prints)."""
    rows = [("block", "type", "channels", "H×W", "MACs to here", "parameters to here")]
    rows += [(b.name, b.type, str(b.channels), f"{b.height}×{b.width}", f"{b.macs / 1e6:.1f}M",
              f"{b.parameters / 1e6:.2f}M") for b in blocks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def macs(module: nn.Module, output: Any) -> int:
    """Multiply-accumulates per image of a convolution or linear layer's own computation (0 otherwise)."""
    if isinstance(module, nn.Conv2d) and isinstance(output, torch.Tensor):
        k = module.kernel_size[0] * module.kernel_size[1] * (module.in_channels // module.groups)
        return int(output[0].numel()) * k
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def _describe(output: Any) -> tuple[tuple[int, ...] | None, str]:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape[1:]), "tensor"
    return None, type(output).__name__


def discover_layers(module: nn.Module, input_size: Sequence[int], logits: Any = None) -> LayerTable:
    """Run one forward on a dummy ``1×input_size`` input and tabulate every named module.

    The root module (name ``""``) is not listed. The output layer is the last
    layer whose output has the logits' shape; the pre-output layer is the last
    non-pass-through layer before it that is not one of its containers.
    """
    seen: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    modules = {name: m for name, m in module.named_modules() if name}

    def recorder(name: str):
        def hook(m: nn.Module, _i: tuple, output: Any) -> None:
            if name in seen:
                seen[name]["calls"] += 1
                return
            shape, kind = _describe(output)
            seen[name] = {"shape": shape, "output": kind, "calls": 1, "macs": macs(m, output)}
            order.append(name)

        return hook

    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dummy = torch.rand((1, *input_size), generator=torch.Generator().manual_seed(0)).to(device)
    with preserved(module), torch.no_grad(), forward_hooks(module, {n: recorder(n) for n in modules}):
        out = module(dummy)
    out = logits(out) if logits is not None else out
    layers = [
        Layer(
            name=name,
            type=type(modules[name]).__name__,
            index=i,
            shape=seen[name]["shape"],
            output=seen[name]["output"],
            calls=seen[name]["calls"],
            leaf=not any(True for _ in modules[name].children()),
            parameters=sum(p.numel() for p in modules[name].parameters()),
            macs=seen[name]["macs"],
            step="." not in name or isinstance(modules[name.rpartition(".")[0]], (nn.Sequential, nn.ModuleList)),
        )
        for i, name in enumerate(order)
    ]
    output_name, pre_output = _output_layers(layers, modules, out)
    width = int(out.shape[1]) if isinstance(out, torch.Tensor) and out.ndim == 2 else None
    return LayerTable(layers, tuple(input_size), output_name, pre_output, width)


def _output_layers(layers: list[Layer], modules: dict[str, nn.Module], out: Any) -> tuple[str | None, str | None]:
    if not isinstance(out, torch.Tensor):
        return None, None
    target = tuple(out.shape[1:])
    output = next((layer for layer in reversed(layers) if layer.shape == target), None)
    if output is None:
        return None, None
    inner = [layer for layer in layers if layer.shape == target and layer.name.startswith(output.name + ".")]
    output = inner[-1] if inner else output
    for layer in reversed(layers[: output.index]):
        is_container = output.name.startswith(layer.name + ".")
        if not is_container and not isinstance(modules[layer.name], PASS_THROUGH) and layer.output == "tensor":
            return output.name, layer.name
    return output.name, None
