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
from ..devices import memory_budget
from ..errors import DiamondCutterError, UnknownNameError
from ..heap import reused_heap
from ..html import image_tag, images_html, short_repr
from ..progress import bar, chain, overall
from ..render import faded_pictures, pictures, to_pil
from ..small import small
from .fold import rendering_network
from .objectives import OUTPUT, Objective, channel
from .param import Parameterization, item_generators, make_param
from .plausibility import channel_references, plausibility
from .transforms import Compose, Randomness, Transform, make_transforms, redirected_relus

#: Lucid's defaults (Adam with PyTorch's default betas).
DEFAULT_STEPS = 512
DEFAULT_LR = 0.05
DEFAULT_BETAS = (0.9, 0.999)

#: A schedule that climbs faster: Adam with short memories (betas 0.5, 0.8) and lr 0.07. In 144 steps
#: it reaches the mean channel activation that lucent reaches in 512 steps with Lucid's defaults
#: (EfficientNet-Lite0, ``blocks.4``, 224 px; ``benchmarks/featureviz.py``), with pictures of the same
#: structures; Lucid's defaults here need about 220 steps for that.
FAST_SCHEDULE = {"steps": 144, "lr": 0.07, "betas": (0.5, 0.8)}
LUCID_SCHEDULE = {"steps": DEFAULT_STEPS, "lr": DEFAULT_LR, "betas": DEFAULT_BETAS}
#: MACO as published (Fel et al. 2023; Xplique's defaults): phase-only parameterization with a fixed
#: natural magnitude spectrum, random crops and noise every step, NAdam with lr 1.0 for 256 steps.
MACO_SCHEDULE = {"steps": 256, "lr": 1.0, "betas": DEFAULT_BETAS, "optimizer": "nadam", "param": "maco",
                 "transforms": "maco"}

#: Optimizers by name: Adam (Lucid) and NAdam (MACO).
OPTIMIZERS = {"adam": torch.optim.Adam, "nadam": torch.optim.NAdam}

Callback = Callable[[int, torch.Tensor, torch.Tensor], None]


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


@dataclass
class Settings:
    """Everything besides the objective that decides what a render looks like (and an atlas's cache key)."""

    steps: int = DEFAULT_STEPS
    size: tuple[int, int] | None = None
    param: str = "fft"
    lr: float = DEFAULT_LR
    betas: tuple[float, float] = DEFAULT_BETAS
    seed: int = 0
    transforms: str | Transform | Sequence[Transform] | None = "standard"
    blur: float = 0.0
    redirect_steps: int = 0
    param_options: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (the parts that change the pictures)."""
        transforms = self.transforms if isinstance(self.transforms, (str, type(None))) else repr(self.transforms)
        options = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in self.param_options.items()}
        return {
            "steps": self.steps, "size": list(self.size) if self.size else None, "param": self.param, "lr": self.lr,
            "betas": list(self.betas),
            "seed": self.seed, "transforms": transforms, "blur": self.blur, "redirect_steps": self.redirect_steps,
            "param_options": options, "optimizer": self.optimizer,
        }


def image_size(model: Any, size: int | Sequence[int] | None) -> tuple[int, int]:
    if size is None:
        return tuple(model.input_size[1:])  # type: ignore[return-value]
    if isinstance(size, int):
        size = (size, size)
    h, w = (int(v) for v in size)
    if h < 8 or w < 8:
        raise DiamondCutterError(f"image size {h}×{w} is too small to visualize (at least 8×8)")
    return h, w


def forward_fn(model: Any, layers: Sequence[str], stack: ExitStack,
               module: torch.nn.Module | None = None) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """A function image→activations that runs the network (``model.module``, or a rendering
    copy of it with the same layer names) only as far as the objective needs."""
    net = model.module if module is None else module
    hooked = [name for name in layers if name != OUTPUT]
    for name in hooked:
        model.layer(name)
    read = stack.enter_context(probe(net, hooked, grad="through", stop=OUTPUT not in layers, head=model.output))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if model.device.type == "cuda" else nullcontext()

    def forward(x: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast:
            reading = read(x)
        out = {name: reading[name].float() for name in hooked}
        return out if reading.logits is None else {**out, OUTPUT: reading.logits.float()}

    return forward


def render_objective(
    model: Any,
    objective: Objective,
    *,
    n: int | None = None,
    keys: Sequence[int] | None = None,
    steps: int = DEFAULT_STEPS,
    size: int | Sequence[int] | None = None,
    param: str | Parameterization = "fft",
    lr: float = DEFAULT_LR,
    betas: tuple[float, float] = DEFAULT_BETAS,
    seed: int = 0,
    transforms: str | Transform | Sequence[Transform] | None = "standard",
    blur: float = 0.0,
    redirect_steps: int = 0,
    thresholds: Sequence[int] = (),
    progress: bool = True,
    param_options: dict[str, Any] | None = None,
    callback: Callback | None = None,
    network: torch.nn.Module | None = None,
    optimizer: str = "adam",
) -> RenderResult:
    """Optimize images that maximize ``objective`` (one image per batch item) and return them.

    ``keys`` name the batch items for seeding (channel indices, by default
    ``0..n-1``); ``thresholds`` are steps at which to keep intermediate images;
    ``redirect_steps`` applies Lucid's ReLU gradient redirection for that many
    first steps; ``callback(step, images, scores)`` sees every step (scores on
    the transformed images). ``param`` may be a ready :class:`Parameterization`
    (e.g. ``FFTParam.from_image``) to start from an existing picture. ``network``
    is a :func:`~diamond_cutter.featureviz.fold.rendering_network` made once for
    several renders of the same layers (made here when not given). ``optimizer`` is
    ``"adam"`` (Lucid) or ``"nadam"`` (MACO). Transforms that show the network several
    views of each image (MACO's crops) have the objective averaged over the views.
    """
    if optimizer not in OPTIMIZERS:
        raise UnknownNameError("optimizer", optimizer, list(OPTIMIZERS))
    if steps < 1:
        raise DiamondCutterError("steps must be at least 1")
    steps = small(steps, 2)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise DiamondCutterError(f"Adam's betas must be two numbers in [0, 1), got {tuple(betas)}")
    n = objective.batch or n or (len(keys) if keys is not None else 1)
    keys = list(range(n)) if keys is None else list(keys)
    if len(keys) != n:
        raise DiamondCutterError(f"{len(keys)} seeds keys for {n} images")
    seeds = [item_seed(seed, k) for k in keys]
    h, w = image_size(model, size)
    device = model.device
    if isinstance(param, Parameterization):
        image_param = param.to(device)
    else:
        image_param = make_param(param, seeds, model.input_size[0], h, w, **(param_options or {})).to(device)
    chain: Compose = make_transforms(transforms, blur)
    rng = Randomness(item_generators([s ^ (1 << 62) for s in seeds]))  # a stream apart from the initial noise's
    step_params = OPTIMIZERS[optimizer](image_param.parameters(), lr=lr, betas=betas)
    intermediate: dict[int, torch.Tensor] = {}
    transparency = torch.zeros(n, *image_param.shape[1:], device=device)
    with ExitStack() as stack:
        stack.enter_context(reused_heap())
        stack.enter_context(preserved(model.module, freeze=True))
        net = network if network is not None else rendering_network(model, objective.layers)
        redirect = ExitStack()
        if redirect_steps > 0:
            redirect.enter_context(redirected_relus(net))
        stack.enter_context(redirect)
        forward = forward_fn(model, objective.layers, stack, net)
        for step in bar(range(1, steps + 1), objective.description[:60], enabled=progress):
            if step == redirect_steps + 1:
                redirect.close()
            rng.progress = (step - 1) / max(1, steps - 1)
            images = image_param()
            scores = view_mean(objective, forward(model.normalize(chain(images, rng))), model, n)
            params = [p for p in image_param.parameters()]
            *grads, pixel_grad = torch.autograd.grad(-scores.sum(), [*params, images])
            for p, g in zip(params, grads):
                p.grad = g
            transparency += pixel_grad.abs().sum(dim=1)
            step_params.step()
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


#: On a CPU the layers are bound by memory traffic: a batch whose largest activation outgrows the cache
#: is slower per image (EfficientNet-Lite0 at 224 px, largest activation 4.8 MB per image: 15.7 ms per
#: image-step at batch 8, 21.4 ms at 16).
CPU_ACTIVATION_BUDGET = 40 << 20


def auto_batch_size(model: Any, layer: str, size: tuple[int, int], cap: int | None = None) -> int:
    """How many images to render at once: the activations up to ``layer`` (forward + backward) against
    the memory budget (:func:`~diamond_cutter.devices.memory_budget`), and on a CPU the largest activation against :data:`CPU_ACTIVATION_BUDGET`."""
    table = model.layers
    last = table.resolve(layer).index
    area = size[0] * size[1] / (model.input_size[1] * model.input_size[2])
    counts = [int(np.prod(t.shape)) * area for t in table if t.index <= last and t.shape and t.leaf] or [1.0]
    batch = memory_budget(model.device) // max(1, int(sum(counts) * 4 * 3))
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
    *,
    steps: int = DEFAULT_STEPS,
    size: int | Sequence[int] | None = None,
    param: str = "fft",
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = True,
    references: Mapping[int, Any] | None = None,
    judge: Any = None,
    **options: Any,
) -> Visualization:
    """Render one image per channel of ``layer`` in ⌈C/B⌉ batched optimizations.

    ``batch_size`` bounds memory (default: what fits); further ``options``
    (``lr``, ``betas``, ``optimizer``, ``transforms``, ``blur``, ``redirect_steps``,
    ``param_options``) go to :func:`render_objective`; ``**MACO_SCHEDULE`` renders as
    MACO does. ``steps=64, size=64`` gives quick icons. With ``references`` (channel →
    its top natural images: a tensor, PIL images or
    :func:`~diamond_cutter.blocks.dataset_examples`) and a ``judge`` (a different
    network, e.g. EfficientNet-Lite2 for Lite0), each channel gets a ``plausibility``.
    """
    layer = model.layer(layer).name  # the table's own name for an alias (Lucid's mixed4d)
    if references is not None and judge is None:
        raise DiamondCutterError("plausibility needs a judge: a network other than the one visualized "
                                 "(e.g. EfficientNet-Lite2 when visualizing Lite0)")
    chosen = layer_channels(model, layer, channels)
    hw = image_size(model, size)
    batch = batch_size or auto_batch_size(model, layer, hw)
    steps = small(steps, 2)
    if options.get("network") is None:
        options["network"] = rendering_network(model, [layer])  # one folded copy for every chunk
    results = []
    batches = range(0, len(chosen), batch)
    with overall(len(batches) * steps, f"visualize {layer}", enabled=progress) as tick:
        callback = chain(options.pop("callback", None), tick)
        for start in batches:
            chunk = chosen[start : start + batch]
            results.append(render_objective(model, channel(layer, chunk), keys=chunk, steps=steps, size=hw,
                                            param=param, seed=seed, progress=False, callback=callback, **options))
    known = {k: v for k, v in options.items() if k in Settings.__dataclass_fields__}
    settings = Settings(steps=steps, size=hw, param=param, seed=seed, **known).describe()
    tensor = torch.cat([r.tensor for r in results])
    maps = torch.cat([r.transparency for r in results if r.transparency is not None])  # every render has one
    plausible = None if references is None else plausibility(judge, tensor, channel_references(references, chosen))
    return Visualization(layer, chosen, tensor, torch.cat([r.scores for r in results]), settings, maps, plausible)


#: Optimization steps timed by :func:`estimate_seconds` (the first, which also builds the graph, is not counted).
WARMUP_STEPS = 3


def estimate_seconds(model: Any, layer: str, channels: int | Sequence[int] | None = None, *, steps: int = DEFAULT_STEPS,
                     size: int | Sequence[int] | None = None, param: str = "fft", batch_size: int | None = None,
                     **options: Any) -> float:
    """Seconds :func:`visualize` would take with these settings, from a few timed steps of its first batch."""
    chosen = layer_channels(model, layer, channels)
    hw = image_size(model, size)
    batch = batch_size or auto_batch_size(model, layer, hw)
    stamps: list[float] = []
    render_objective(model, channel(layer, chosen[:batch]), keys=chosen[:batch], steps=WARMUP_STEPS, size=hw,
                     param=param, progress=False, callback=lambda *_: stamps.append(time.perf_counter()),
                     **{k: v for k, v in options.items() if k not in ("callback", "thresholds")})
    per_step = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    return per_step * steps * math.ceil(len(chosen) / batch)
