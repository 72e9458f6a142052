"""The one place Diamond Cutter registers hooks on a user's network, and the one probe.

Everything that needs to observe or alter a layer's output during a forward pass
(layer discovery, activation capture, guided backpropagation, feature
visualization) goes through :func:`forward_hooks`, which always removes what it
registered, and :func:`preserved`, which restores the network's train/eval modes
and ``requires_grad`` flags. Together they keep the promise that a model passed
in is never left changed, also when the work inside raises.

Running a network to named layers and reading them is :func:`probe` (or
:func:`read_layers` for one batch): attribution, building blocks, activation
views, class activation maps, transfer cuts and feature visualization all use
it, so the choices that make it fast (channels-last input on CPU, the forward
stopped after the last wanted layer, no autograd history below the layers that
gradients start from, large CPU tensors kept on the heap) are made in one place.

Why forward hooks return a clone: torchvision networks apply ``ReLU(inplace=True)``
right after many layers. A captured activation that is the very tensor the next
module mutates in place would be silently overwritten. The hook therefore keeps
the original tensor (which stays on the autograd path, so gradients with respect
to it are exact) and hands a clone to the rest of the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Literal

import torch
from torch import nn

from .errors import DiamondCutterError, UnknownNameError
from .heap import reused_heap

ForwardHook = Callable[[nn.Module, tuple, Any], Any]


def resolve_modules(module: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Map layer names (``named_modules`` names) to modules, with suggestions for typos."""
    table = dict(module.named_modules())
    out = {}
    for name in names:
        if name not in table:
            raise UnknownNameError("layer", name, [n for n in table if n])
        out[name] = table[name]
    return out


@contextmanager
def forward_hooks(module: nn.Module, hooks: Mapping[str, ForwardHook]) -> Iterator[None]:
    """Register forward hooks on named submodules for the duration of the block.

    A hook may return a replacement output, as with ``register_forward_hook``.
    Every handle is removed in ``finally``.
    """
    handles = []
    try:
        for name, sub in resolve_modules(module, hooks).items():
            handles.append(sub.register_forward_hook(hooks[name]))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def preserved(module: nn.Module, *, eval_mode: bool = True, freeze: bool = False) -> Iterator[nn.Module]:
    """Run a block on ``module`` and restore its modes and ``requires_grad`` flags afterwards.

    ``eval_mode`` switches the network to eval for the block (attribution and
    feature visualization must see inference behaviour); ``freeze`` turns off
    parameter gradients, which input attribution never needs and which would
    otherwise cost a weight-gradient computation per layer.
    """
    modes = [(m, m.training) for m in module.modules()]
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        if eval_mode:
            module.eval()
        if freeze:
            for p, _ in flags:
                p.requires_grad_(False)
        yield module
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


class Capture:
    """Activations of named layers recorded during one forward pass.

    Use :func:`capture`. ``activations[name]`` holds the layer's output of the
    last call (a module that runs several times keeps its last output, and
    ``calls[name]`` counts the runs). Gradients of any scalar with respect to
    captured activations come from :meth:`gradients`, which uses
    ``torch.autograd.grad`` so parameter gradients are never filled.
    """

    def __init__(self, names: Sequence[str], detach: bool):
        self.names = list(names)
        self.detach = detach
        self.activations: dict[str, Any] = {}
        self.calls: dict[str, int] = {name: 0 for name in names}

    def hook_for(self, name: str) -> ForwardHook:
        def hook(_module: nn.Module, _inputs: tuple, output: Any) -> Any:
            self.calls[name] += 1
            if not isinstance(output, torch.Tensor):
                self.activations[name] = output
                return None
            if self.detach:
                self.activations[name] = output.detach().clone()
                return None
            self.activations[name] = output
            return output.clone()

        return hook

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.activations:
            raise DiamondCutterError(
                f"layer {name!r} did not run in the forward pass (it may be unused for this input)"
            )
        return self.activations[name]

    def gradients(
        self, score: torch.Tensor, names: Sequence[str] | None = None, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """d(score.sum())/d(activation) for each named layer, without touching parameter grads."""
        names = list(names or self.names)
        tensors = [self[name] for name in names]
        for name, t in zip(names, tensors):
            if not t.requires_grad:
                raise DiamondCutterError(
                    f"layer {name!r} carries no gradient: probe it with grad='layers', or run the forward on an input "
                    "that requires grad"
                )
        grads = torch.autograd.grad(score.sum(), tensors, **kwargs)
        return dict(zip(names, grads))


@contextmanager
def capture(module: nn.Module, names: Iterable[str], *, detach: bool = False) -> Iterator[Capture]:
    """Record the outputs of ``names`` while the block runs forward passes through ``module``.

    With ``detach=False`` (the default) the recorded tensors stay on the autograd
    graph so :meth:`Capture.gradients` can differentiate with respect to them.
    """
    names = list(dict.fromkeys(names))
    rec = Capture(names, detach)
    with forward_hooks(module, {name: rec.hook_for(name) for name in names}):
        yield rec


class StopForward(Exception):
    """Raised by :func:`truncated` and :func:`probe` hooks to end a forward pass early; ``owner`` says
    whose run it ends, so nested runs stop only themselves.

    Why a fresh exception every time: raising one instance again appends each new traceback to the old
    one, and the frames in it keep every activation of every forward alive (a render grew by 18 MB a step).
    """

    def __init__(self, owner: object):
        super().__init__()
        self.owner = owner


@contextmanager
def truncated(module: nn.Module, last: str) -> Iterator[Callable[[torch.Tensor], None]]:
    """Yield ``run(x)`` that executes ``module`` only until layer ``last`` has produced its output.

    Work downstream of the layer is skipped, which is what makes feature
    extraction at early cuts and feature visualization of early layers cheap.
    Combine with :func:`capture` to read the layer's output. Truncations nest:
    each stops only its own run (a transferred model's cut backbone runs truncated
    inside a truncated analysis of that model), and lets an outer stop pass through.
    """
    own = object()

    def stop(_m: nn.Module, _i: tuple, _o: Any) -> None:
        raise StopForward(own)

    def run(x: torch.Tensor) -> None:
        try:
            module(x)
        except StopForward as err:
            if err.owner is not own:
                raise

    with forward_hooks(module, {last: stop}):
        yield run


#: How gradients relate to a probe's readings: "none" (no autograd at all; detached
#: readings), "layers" (gradients start at the probed layers: the forward below them
#: records no history, so frozen backbones work and the backward is short) or
#: "through" (the caller's autograd mode, so gradients reach the input and parameters).
GradMode = Literal["none", "layers", "through"]
GRAD_MODES = ("none", "layers", "through")


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory order on CPU, where oneDNN runs depthwise and 1×1
    convolutions (EfficientNet, MobileNet) 1.5–2× faster than in the default order;
    values are unchanged, so results are the same up to float rounding."""
    if x.ndim == 4 and x.device.type == "cpu":
        return x.contiguous(memory_format=torch.channels_last)
    return x


class Probe(Capture):
    """A network hooked at named layers; calling it on a batch runs the network and returns itself.

    After ``probe(x)``: ``probe[name]`` is the layer's output, ``probe.logits`` the
    network's output passed through ``head`` (``None`` when the forward stopped
    after the layers), and :meth:`~Capture.gradients` differentiates a score with
    respect to the layers.
    """

    def __init__(
        self, module: nn.Module, names: Sequence[str], grad: GradMode, stop: bool, head: Callable[[Any], Any] | None
    ):
        if grad not in GRAD_MODES:
            raise DiamondCutterError(f"grad must be one of {', '.join(GRAD_MODES)}; got {grad!r}")
        if stop and not names:
            raise DiamondCutterError("a probe that stops after its layers needs at least one layer")
        super().__init__(names, detach=grad == "none")
        self.module, self.grad, self.stop, self.head = module, grad, stop, head
        self.logits: Any = None

    def hook_for(self, name: str) -> ForwardHook:
        record = super().hook_for(name)

        def hook(module: nn.Module, inputs: tuple, output: Any) -> Any:
            if self.grad == "layers" and isinstance(output, torch.Tensor) and not output.requires_grad:
                output = output.detach().requires_grad_(True)  # gradients start here
                torch.set_grad_enabled(True)  # ... and the rest of the forward records them
            replaced = record(module, inputs, output)
            if self.stop and all(self.calls.values()):
                raise StopForward(self)  # its own: a probe nested in a probed forward stops only itself
            return replaced if replaced is not None else output

        return hook

    def __call__(self, x: torch.Tensor) -> Probe:
        self.activations.clear()
        self.calls = dict.fromkeys(self.names, 0)
        self.logits = None
        with self._grad_context():
            try:
                out = self.module(fast_layout(x))
            except StopForward as err:
                if err.owner is not self:
                    raise
                return self
            self.logits = self.head(out) if self.head is not None else out
        return self

    def _grad_context(self) -> AbstractContextManager:
        # "layers" starts without autograd; the first probed layer switches it on (see hook_for).
        return nullcontext() if self.grad == "through" else torch.no_grad()


@contextmanager
def probe(
    module: nn.Module,
    layers: Iterable[str],
    *,
    grad: GradMode = "none",
    stop: bool = False,
    head: Callable[[Any], Any] | None = None,
    heap: bool = True,
) -> Iterator[Probe]:
    """Hook ``layers`` of ``module`` for the block and yield a :class:`Probe` to call on batches.

    ``grad`` says where gradients may start (see :data:`GradMode`); ``stop``
    ends each forward as soon as every layer has produced its output (nothing
    downstream runs, and there are no logits); ``head`` maps the network's
    output to logits (``Model.output``). The input goes in channels-last order
    on CPU, and with ``heap`` large CPU tensors stay on the heap for the whole
    block (:func:`~diamond_cutter.heap.reused_heap`), so a loop of calls pays
    for neither page faults nor a layout change per layer. A probe inside a
    module's ``forward`` turns ``heap`` off: its caller owns the loop, and
    handing memory back after every call would undo the reuse.
    """
    names = list(dict.fromkeys(layers))
    reader = Probe(module, names, grad, stop, head)
    with reused_heap() if heap else nullcontext(), forward_hooks(module, {n: reader.hook_for(n) for n in names}):
        yield reader


def read_layers(module: nn.Module, x: torch.Tensor, layers: Iterable[str], **options: Any) -> Probe:
    """One batch through :func:`probe` (same options): the reading of ``layers`` for ``x``."""
    with probe(module, layers, **options) as reader:
        return reader(x)
