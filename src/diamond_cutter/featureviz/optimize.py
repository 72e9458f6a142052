"""The optimizer: optimize a batch of images so that an objective goes up.

Why it is fast: Lucid and Lucent render one channel at a time through the
whole network. Here one optimization renders a batch (one image per channel),
and the forward pass stops right after the deepest layer the objective reads
(:func:`~diamond_cutter.capture.truncated`), which for a mid layer skips most
of the network. Each image's randomness (initial noise, transformations) comes
from its own seed, derived from the run's seed and the item's key (its channel),
so a channel looks the same whichever batch it was rendered in.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..capture import preserved, probe
from ..devices import even_batches, memory_budget
from ..errors import DiamondCutterError, UnknownNameError
from ..heap import reused_heap
from ..html import image_tag, images_html, short_repr
from ..progress import bar, chain, overall
from ..render import faded_pictures, pictures, to_pil
from ..small import small
from .fold import rendering_network
from .objectives import OUTPUT, Objective, channel
from .param import PARAMS, Parameterization, item_generators, make_param
from .plausibility import channel_references, plausibility
from .transforms import Compose, Randomness, Transform, make_transforms, redirected_relus

Callback = Callable[[int, torch.Tensor, torch.Tensor], None]

#: Optimizers by name: Adam (Lucid) and NAdam (MACO).
OPTIMIZERS = {"adam": torch.optim.Adam, "nadam": torch.optim.NAdam}


def item_seed(seed: int, key: int) -> int:
    """The seed of one batch item: a function of the run's seed and the item's key only."""
    return (int(seed) * 1_000_003 + int(key)) % (2**63)


@dataclass
class RenderResult:
    """Rendered images (``tensor`` N×C×H×W in [0, 1]), the objective per image on the
    untransformed result (``scores``), the images at the requested ``thresholds`` and the
    ``transparency`` (N×H×W: the objective's absolute gradient per pixel summed over the steps,
    MACO's map of which parts of a picture matter)."""

    tensor: torch.Tensor
    scores: torch.Tensor
    description: str
    intermediate: dict[int, torch.Tensor] = field(default_factory=dict)
    transparency: torch.Tensor | None = None

    def __repr__(self) -> str:
        return short_repr(self)

    @property
    def images(self) -> list[Image.Image]:
        return pictures(self.tensor)

    def _repr_html_(self) -> str:
        return images_html(self.images, [f"{score:.3g}" for score in self.scores.flatten().tolist()], self.description)


def image_size(model: Any, size: int | Sequence[int] | None) -> tuple[int, int]:
    """``size`` (one side, or height and width) checked, or the model's input size for None."""
    if size is None:
        return tuple(model.input_size[1:])  # type: ignore[return-value]
    if isinstance(size, int):
        size = (size, size)
    h, w = (int(v) for v in size)
    if h < 8 or w < 8:
        raise DiamondCutterError(f"image size {h}×{w} is too small to visualize (at least 8×8)")
    return h, w


#: Values of :attr:`Settings.precision`: "auto" is bfloat16 autocast on a GPU and float32 elsewhere.
PRECISIONS = ("auto", "float32", "bfloat16")


#: Largest ``blur`` (σ as a fraction of the side): the kernel reaches 2σ, and reflect padding needs it to stay
#: inside the image; beyond a quarter of the side the picture is one colour anyway.
MAX_BLUR = 0.25


@dataclass(frozen=True)
class Settings:
    """Everything besides the objective that decides what a render looks like, with Lucid's defaults.

    One object is what :func:`render_objective`, :func:`visualize` and the atlas
    take (and what keys an atlas's cache); :data:`LUCID_SCHEDULE` and
    :data:`FAST_SCHEDULE` are two of them, and ``settings.replace(steps=64,
    size=64)`` derives another. ``size`` None is the model's input size;
    ``precision`` "auto" autocasts to bfloat16 on a GPU and stays float32 on a
    CPU (:meth:`for_model` says which, so a cache key always names the real one).
    """

    steps: int = 512
    size: tuple[int, int] | None = None  # one side (an int) is accepted too
    param: str = "fft"
    lr: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 0
    transforms: str | Transform | Sequence[Transform] | None = "standard"
    blur: float = 0.0
    redirect_steps: int = 0
    param_options: dict[str, Any] = field(default_factory=dict)
    precision: str = "auto"
    optimizer: str = "adam"

    def __post_init__(self) -> None:
        if int(self.steps) < 1:
            raise DiamondCutterError(f"steps must be at least 1, got {self.steps}")
        betas = tuple(float(b) for b in self.betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise DiamondCutterError(f"Adam's betas must be two numbers in [0, 1), got {tuple(self.betas)}")
        if not 0 <= float(self.blur) < MAX_BLUR:
            raise DiamondCutterError(f"blur is a fraction of the image side in [0, {MAX_BLUR}), got {self.blur}")
        if self.param not in PARAMS:
            raise UnknownNameError("parameterization", self.param, PARAMS)
        if self.precision not in PRECISIONS:
            raise UnknownNameError("precision", self.precision, PRECISIONS)
        if self.optimizer not in OPTIMIZERS:
            raise UnknownNameError("optimizer", self.optimizer, list(OPTIMIZERS))
        object.__setattr__(self, "steps", int(self.steps))
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "size", None if self.size is None else image_size(None, self.size))

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (names of fields; an unknown name is an error with suggestions)."""
        for name in changes:
            if name not in self.__dataclass_fields__:
                raise UnknownNameError("render setting", name, list(self.__dataclass_fields__))
        return dataclasses.replace(self, **changes)

    def for_model(self, model: Any) -> Settings:
        """These settings as they run on ``model``: the size in pixels and the precision on its device."""
        return dataclasses.replace(self, size=image_size(model, self.size),
                                   precision=resolved_precision(self.precision, model.device))

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (the parts that change the pictures)."""
        transforms = self.transforms if isinstance(self.transforms, (str, type(None))) else repr(self.transforms)
        options = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in self.param_options.items()}
        return {
            "steps": self.steps, "size": list(self.size) if self.size else None, "param": self.param, "lr": self.lr,
            "betas": list(self.betas), "seed": self.seed, "transforms": transforms, "blur": self.blur,
            "redirect_steps": self.redirect_steps, "param_options": options, "precision": self.precision,
            "optimizer": self.optimizer,
        }


def resolved_precision(precision: str, device: torch.device) -> str:
    """"auto" as it runs on ``device``: bfloat16 on a GPU, float32 elsewhere."""
    if precision == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    return precision


def autocast(precision: str, device: torch.device) -> Any:
    """The autocast context of ``precision`` on ``device`` (a no-op for float32)."""
    if resolved_precision(precision, device) == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


#: Lucid's defaults: Adam with lr 0.05 and PyTorch's default betas, 512 steps.
LUCID_SCHEDULE = Settings()
#: A schedule that climbs faster: Adam with short memories (betas 0.5, 0.8) and lr 0.07. In 144 steps
#: it reaches the mean channel activation that lucent reaches in 512 steps with Lucid's defaults
#: (EfficientNet-Lite0, ``blocks.4``, 224 px; ``benchmarks/featureviz.py``), with pictures of the same
#: structures; Lucid's defaults here need about 220 steps for that.
FAST_SCHEDULE = Settings(steps=144, lr=0.07, betas=(0.5, 0.8))
#: MACO as published (Fel et al. 2023; Xplique's defaults): phase-only parameterization with a fixed
#: natural magnitude spectrum, random crops and noise every step, NAdam with lr 1.0 for 256 steps.
MACO_SCHEDULE = Settings(steps=256, lr=1.0, optimizer="nadam", param="maco", transforms="maco")


def forward_fn(model: Any, layers: Sequence[str], stack: ExitStack, module: torch.nn.Module | None = None,
               precision: str = "auto") -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """A function image→activations that runs the network (``model.module``, or a rendering
    copy of it with the same layer names) only as far as the objective needs, in ``precision``
    (see :class:`Settings`)."""
    net = model.module if module is None else module
    hooked = [name for name in layers if name != OUTPUT]
    for name in hooked:
        model.layer(name)
    read = stack.enter_context(probe(net, hooked, grad="through", stop=OUTPUT not in layers, head=model.output))
    context = autocast(precision, model.device)

    def forward(x: torch.Tensor) -> dict[str, torch.Tensor]:
        with context:
            reading = read(x)
        out = {name: reading[name].float() for name in hooked}
        return out if reading.logits is None else {**out, OUTPUT: reading.logits.float()}

    return forward


def render_objective(
    model: Any,
    objective: Objective,
    settings: Settings = LUCID_SCHEDULE,
    *,
    n: int | None = None,
    keys: Sequence[int] | None = None,
    start: Parameterization | None = None,
    thresholds: Sequence[int] = (),
    progress: bool = True,
    callback: Callback | None = None,
    network: torch.nn.Module | None = None,
    **changes: Any,
) -> RenderResult:
    """Optimize images that maximize ``objective`` (one image per batch item) and return them.

    ``settings`` (default Lucid's) say how; ``changes`` to them may be given by
    name (``steps=64``). ``n`` is the number of images when the objective does
    not fix it; ``keys`` name the batch items for seeding (channel indices, by
    default ``0..n-1``); ``start`` is a ready :class:`Parameterization` (e.g.
    ``FFTParam.from_image``) to start from an existing picture instead of
    ``settings.param``; ``thresholds`` are steps at which to keep intermediate
    images; ``callback(step, images, scores)`` sees every step (scores on the
    transformed images). ``network`` is a
    :func:`~diamond_cutter.featureviz.fold.rendering_network` made once for
    several renders of the same layers (made here when not given). Transforms that
    show the network several views of each image (MACO's crops) have the objective
    averaged over the views.
    """
    s = settings.replace(**changes).for_model(model)
    s = dataclasses.replace(s, steps=small(s.steps, 2))
    keys = batch_keys(objective, n, keys)
    seeds = [item_seed(s.seed, k) for k in keys]
    device = model.device
    if start is not None:
        image_param = start.to(device)
    else:
        h, w = image_size(model, s.size)
        image_param = make_param(s.param, seeds, model.input_size[0], h, w, **s.param_options).to(device)
    chain: Compose = make_transforms(s.transforms, s.blur)
    rng = Randomness(item_generators([seed ^ (1 << 62) for seed in seeds]))  # a stream apart from the initial noise's
    optimizer = OPTIMIZERS[s.optimizer](image_param.parameters(), lr=s.lr, betas=s.betas)
    intermediate: dict[int, torch.Tensor] = {}
    n = len(keys)
    transparency = torch.zeros(n, *image_param.shape[1:], device=device)
    with ExitStack() as stack:
        stack.enter_context(reused_heap())
        stack.enter_context(preserved(model.module, freeze=True))
        net = network if network is not None else rendering_network(model, objective.layers)
        redirect = ExitStack()
        if s.redirect_steps > 0:
            redirect.enter_context(redirected_relus(net))
        stack.enter_context(redirect)
        forward = forward_fn(model, objective.layers, stack, net, s.precision)
        for step in bar(range(1, s.steps + 1), objective.description[:60], enabled=progress):
            if step == s.redirect_steps + 1:
                redirect.close()
            rng.progress = (step - 1) / max(1, s.steps - 1)
            images = image_param()
            scores = view_mean(objective, forward(model.normalize(chain(images, rng))), model, n)
            params = [p for p in image_param.parameters()]
            *grads, pixel_grad = torch.autograd.grad(-scores.sum(), [*params, images])
            for p, g in zip(params, grads):
                p.grad = g
            transparency += pixel_grad.abs().sum(dim=1)
            optimizer.step()
            if callback is not None:
                callback(step, images.detach(), scores.detach())
            if step in thresholds:
                intermediate[step] = image_param().detach().cpu()
        redirect.close()
        with torch.no_grad():
            final = image_param().detach()
            scores = objective(forward(model.normalize(final)), model).detach().cpu()
    return RenderResult(final.cpu(), scores, objective.description, intermediate, transparency.cpu())


def view_mean(objective: Objective, acts: dict[str, torch.Tensor], model: Any, n: int) -> torch.Tensor:
    """The objective per image, averaged over the views a transform made of it (view-major: view ``j``
    of item ``i`` at ``j·n + i``); with one view, the objective itself."""
    views = len(next(iter(acts.values()))) // n
    if views <= 1:
        return objective(acts, model)
    per_view = [objective({k: a[j * n : (j + 1) * n] for k, a in acts.items()}, model) for j in range(views)]
    return torch.stack(per_view).mean(dim=0)


def batch_keys(objective: Objective, n: int | None, keys: Sequence[int] | None) -> list[int]:
    """The seeding key of every image: ``keys``, or ``0..n-1``; ``n``, ``keys`` and the number of images
    the objective asks for must agree."""
    counts = {"the objective": objective.batch, "n": n, "keys": None if keys is None else len(keys)}
    given = {name: count for name, count in counts.items() if count is not None}
    if len(set(given.values())) > 1:
        raise DiamondCutterError("the number of images disagrees: " + ", ".join(f"{k} {v}" for k, v in given.items()))
    count = next(iter(given.values()), 1)
    return list(range(count)) if keys is None else [int(k) for k in keys]


#: On a CPU the layers are bound by memory traffic: a batch whose largest activation outgrows the cache
#: is slower per image (EfficientNet-Lite0 at 224 px, largest activation 4.8 MB per image: 15.7 ms per
#: image-step at batch 8, 21.4 ms at 16).
CPU_ACTIVATION_BUDGET = 40 << 20
#: Bytes a render holds per value of the layer table's activations up to the objective's layer: each is
#: kept once in float32 for the backward pass, plus the padded copies, image transforms and gradients in
#: flight. Measured on EfficientNet-Lite0 at 224 px, peak RSS per image 60 MB at ``blocks.1`` and 72 MB at
#: ``blocks.4``, where this estimate says 65 MB and 111 MB.
BYTES_PER_VALUE = 5


def auto_batch_size(model: Any, layer: str, size: tuple[int, int], cap: int | None = None) -> int:
    """How many images to render at once: the activations up to ``layer`` (forward + backward) against
    the memory budget (:func:`~diamond_cutter.devices.memory_budget`), and on a CPU the largest activation
    against :data:`CPU_ACTIVATION_BUDGET`."""
    table = model.layers
    last = table.resolve(layer).index
    area = size[0] * size[1] / (model.input_size[1] * model.input_size[2])
    counts = [int(np.prod(t.shape)) * area for t in table if t.index <= last and t.shape and t.leaf] or [1.0]
    batch = memory_budget(model.device) // max(1, int(sum(counts) * BYTES_PER_VALUE))
    if model.device.type == "cpu":
        batch = min(batch, CPU_ACTIVATION_BUDGET // max(1, int(max(counts) * 4)))
    cap = cap or (256 if model.device.type == "cuda" else 32)
    return int(max(1, min(cap, batch)))


@dataclass
class Visualization:
    """Feature visualizations of channels of one layer: ``tensor`` N×C×H×W in [0, 1],
    ``scores`` (mean channel activation on its own image), ``images`` as PIL, ``transparency``
    (N×H×W, see :class:`RenderResult`; :attr:`faded` draws it) and ``plausibility`` (per channel,
    when reference images were given; :mod:`~diamond_cutter.featureviz.plausibility`)."""

    layer: str
    channels: list[int]
    tensor: torch.Tensor
    scores: torch.Tensor
    settings: dict[str, Any]
    transparency: torch.Tensor | None = None
    plausibility: torch.Tensor | None = None

    @property
    def faded(self) -> list[Image.Image]:
        """The pictures with unimportant regions faded out by their transparency map (as in MACO's figures)."""
        if self.transparency is None:
            raise DiamondCutterError("this visualization has no transparency map")
        return faded_pictures(self.tensor, self.transparency)

    def __repr__(self) -> str:
        return short_repr(self)

    @property
    def images(self) -> list[Image.Image]:
        return pictures(self.tensor)

    def __getitem__(self, channel_index: int) -> Image.Image:
        """The picture of channel ``channel_index`` (a channel number, not a position)."""
        if channel_index not in self.channels:
            raise DiamondCutterError(f"channel {channel_index} was not rendered (have {self.channels[:8]}...)")
        return to_pil(self.tensor[self.channels.index(channel_index)])

    def _repr_html_(self) -> str:
        cells = [
            f'<figure style="display:inline-block;margin:4px">{image_tag(img, f"{self.layer} channel {ch}")}'
            f"<figcaption>{ch}: {score:.2f}</figcaption></figure>"
            for ch, img, score in zip(self.channels, self.images, self.scores.tolist())
        ]
        return "<div>" + "".join(cells) + "</div>"

    def save(self, folder: str | os.PathLike) -> list[Path]:
        """One PNG per channel: ``<layer>_<channel>.png``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for ch, picture in zip(self.channels, self.images):
            paths.append(folder / f"{self.layer.replace('.', '_')}_{ch:04d}.png")
            picture.save(paths[-1])
        return paths


def layer_channels(model: Any, layer: str, channels: int | Sequence[int] | None) -> list[int]:
    """All channels of a layer (None), one, or a list, range-checked."""
    info = model.layer(layer)
    if not info.channels:
        raise DiamondCutterError(f"layer {layer!r} has no channels to visualize (output {info.output})")
    if channels is None:
        return list(range(info.channels))
    chosen = [int(channels)] if isinstance(channels, int) else [int(c) for c in channels]
    bad = [c for c in chosen if not 0 <= c < info.channels]
    if bad or not chosen:
        raise DiamondCutterError(f"channels {bad or '[]'} are out of range: {layer!r} has {info.channels} channels")
    return chosen


def visualize(
    model: Any,
    layer: str,
    channels: int | Sequence[int] | None = None,
    settings: Settings = LUCID_SCHEDULE,
    *,
    batch_size: int | None = None,
    progress: bool = True,
    network: torch.nn.Module | None = None,
    references: Mapping[int, Any] | None = None,
    judge: Any = None,
    callback: Callback | None = None,
    **changes: Any,
) -> Visualization:
    """Render one image per channel of ``layer`` in ⌈C/B⌉ batched optimizations.

    ``settings`` (default Lucid's; :data:`MACO_SCHEDULE` renders as MACO does;
    ``changes`` to them by name, e.g. ``steps=64, size=64`` for quick icons) go to
    :func:`render_objective`; ``batch_size`` bounds memory (default: what fits).
    With ``references`` (channel → its top natural images: a tensor, PIL images or
    :func:`~diamond_cutter.blocks.dataset_examples`) and a ``judge`` (a different
    network, e.g. EfficientNet-Lite2 for Lite0), each channel gets a ``plausibility``.
    """
    layer = model.layer(layer).name  # the table's own name for an alias (Lucid's mixed4d)
    if references is not None and judge is None:
        raise DiamondCutterError("plausibility needs a judge: a network other than the one visualized "
                                 "(e.g. EfficientNet-Lite2 when visualizing Lite0)")
    s = settings.replace(**changes).for_model(model)
    s = dataclasses.replace(s, steps=small(s.steps, 2))
    chosen = layer_channels(model, layer, channels)
    batch = batch_size or auto_batch_size(model, layer, image_size(model, s.size))
    network = network if network is not None else rendering_network(model, [layer])  # one copy for every chunk
    results = []
    batches = even_batches(chosen, batch)
    with overall(len(batches) * s.steps, f"visualize {layer}", enabled=progress) as tick:
        each_step = chain(callback, tick)
        for chunk in batches:
            objective = channel(layer, chunk)
            results.append(render_objective(model, objective, s, keys=chunk, progress=False, network=network,
                                            callback=each_step))
    tensor = torch.cat([r.tensor for r in results])
    maps = torch.cat([r.transparency for r in results if r.transparency is not None])  # every render has one
    plausible = None if references is None else plausibility(judge, tensor, channel_references(references, chosen))
    return Visualization(layer, chosen, tensor, torch.cat([r.scores for r in results]), s.describe(), maps, plausible)


#: Optimization steps timed by :func:`estimate_seconds` (the first, which also builds the graph, is not counted).
WARMUP_STEPS = 3


def estimate_seconds(model: Any, layer: str, channels: int | Sequence[int] | None = None,
                     settings: Settings = LUCID_SCHEDULE, *, batch_size: int | None = None,
                     **changes: Any) -> float:
    """Seconds :func:`visualize` would take with these settings, from a few timed steps of its first batch."""
    s = settings.replace(**changes).for_model(model)
    chosen = layer_channels(model, layer, channels)
    batch = batch_size or auto_batch_size(model, layer, image_size(model, s.size))
    stamps: list[float] = []
    render_objective(model, channel(layer, chosen[:batch]), s, keys=chosen[:batch], steps=WARMUP_STEPS,
                     progress=False, callback=lambda *_: stamps.append(time.perf_counter()))
    per_step = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    return per_step * s.steps * math.ceil(len(chosen) / batch)
