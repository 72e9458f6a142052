"""Class activation maps at any spatial layer: Grad-CAM, Grad-CAM++, LayerCAM, Score-CAM, Guided Grad-CAM.

Maps come back at the layer's resolution (N×1×h×w), unnormalised, so the
strength of evidence stays comparable across images and classes (peers min-max
scale each map, which hides that one class's evidence is many times weaker).
Gradient CAMs differentiate with respect to the captured layer output only: the
forward below the layer records no autograd history, which is both faster and
what lets frozen backbones work.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..capture import fast_layout, probe, read_layers
from ..errors import DiamondCutterError
from ..model import Model
from ..targets import Selector
from .base import Method
from .common import chunks
from .gradients import GuidedBackprop


class GradientCAM(Method):
    """A CAM built from a layer's activations A and the target's gradients dY/dA (one forward + backward)."""

    def __init__(self, model: Model, *, layer: str | None = None, relu: bool = True, batch_size: int | None = None):
        super().__init__(model, batch_size=batch_size)
        self.layer: str = model.spatial_layer(layer).name
        self.relu = relu

    def compute(self, x: torch.Tensor, selector: Selector) -> torch.Tensor:
        rows = torch.arange(len(x))
        return torch.cat(
            [self.layer_maps(x[s], selector, rows[s], [self.layer])[0] for s in chunks(len(x), self.batch_size)]
        )

    def layer_maps(
        self, x: torch.Tensor, selector: Selector, rows: torch.Tensor, layers: Sequence[str]
    ) -> list[torch.Tensor]:
        """One N×1×h×w map per layer from a single forward and backward."""
        reading = read_layers(self.model.module, x, layers, grad="layers", head=self.model.output)
        grads = reading.gradients(selector.score(reading.logits, rows), list(layers))
        maps = []
        for name in layers:
            cam = self.combine(reading[name].detach(), grads[name].detach())
            maps.append((cam.clamp_min(0) if self.relu else cam).unsqueeze(1))
        return maps

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """The N×h×w map (before the final ReLU) from activations and gradients, both N×C×h×w."""
        raise NotImplementedError


class GradCAM(GradientCAM):
    """Grad-CAM (Selvaraju et al. 2017): channels weighted by their spatially averaged gradient."""

    name = "gradcam"

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        weights = grads.mean(dim=(2, 3), keepdim=True)
        return (weights * activations).sum(1)


class GradCAMPlusPlus(GradientCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018), with the usual exponential-score closed form for α."""

    name = "gradcam++"

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        g2 = grads.square()
        denominator = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g2 * grads + 1e-6
        alpha = torch.where(grads != 0, g2 / denominator, torch.zeros_like(grads))
        weights = (alpha * grads.clamp_min(0)).sum(dim=(2, 3), keepdim=True)
        return (weights * activations).sum(1)


class LayerCAM(GradientCAM):
    """LayerCAM (Jiang et al. 2021): each position weighted by its own positive gradient.

    ``layer`` may be a list of layers: their maps are fused as in the LayerCAM
    paper's hierarchical maps: each scaled by tanh(γ·M / max M) (γ = ``gamma``),
    resized to the finest layer's grid and combined by element-wise maximum. A
    fused map is therefore in [0, 1) rather than raw.
    """

    name = "layercam"

    def __init__(
        self,
        model: Model,
        *,
        layer: str | Sequence[str] | None = None,
        gamma: float = 2.0,
        batch_size: int | None = None,
    ):
        names = [layer] if layer is None or isinstance(layer, str) else list(layer)
        if not names:
            raise DiamondCutterError("LayerCAM needs at least one layer")
        layers = [model.spatial_layer(n).name for n in names]
        super().__init__(model, layer=layers[0], batch_size=batch_size)
        self.layers = layers
        self.layer = "+".join(self.layers)
        self.gamma = float(gamma)

    def compute(self, x: torch.Tensor, selector: Selector) -> torch.Tensor:
        rows = torch.arange(len(x))
        out = []
        for s in chunks(len(x), self.batch_size):
            maps = self.layer_maps(x[s], selector, rows[s], self.layers)
            out.append(maps[0] if len(maps) == 1 else self.fuse(maps))
        return torch.cat(out)

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return (grads.clamp_min(0) * activations).sum(1)

    def fuse(self, maps: list[torch.Tensor]) -> torch.Tensor:
        size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
        scaled = []
        for m in maps:
            top = m.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            m = torch.tanh(self.gamma * m / top)
            scaled.append(F.interpolate(m, size=tuple(size), mode="bilinear", align_corners=False))
        return torch.stack(scaled).amax(0)


class ScoreCAM(Method):
    """Score-CAM (Wang et al. 2020): channels weighted by the softmax of the target score of masked inputs.

    Each channel's map, upsampled and min-max scaled to [0, 1], masks the input;
    the target logits of all masked copies come from batched forwards without
    gradients (``batch_size`` masked images per forward), and channels whose
    maps are flat share one forward since they give the same masked image.
    """

    name = "scorecam"
    multipass = True
    backward = False

    def __init__(self, model: Model, *, layer: str | None = None, batch_size: int | None = None):
        super().__init__(model, batch_size=batch_size)
        self.layer: str = model.spatial_layer(layer).name

    def compute(self, x: torch.Tensor, selector: Selector) -> torch.Tensor:
        activations = self.layer_activations(x)
        weights = torch.stack([self._weights(x[i], activations[i], selector, i) for i in range(len(x))])
        return (weights[:, :, None, None] * activations).sum(1, keepdim=True).clamp_min(0)

    def layer_activations(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output for ``x``; the forward stops at the layer."""
        name = str(self.layer)
        with probe(self.model.module, [name], stop=True) as read:
            return torch.cat([read(x[s])[name].float() for s in chunks(len(x), self.batch_size)])

    def _weights(self, image: torch.Tensor, activations: torch.Tensor, selector: Selector, index: int) -> torch.Tensor:
        """Softmax over channels of the target score of the image masked by each channel's map; the
        masks are made ``batch_size`` channels at a time, so memory does not grow with the channels."""
        scores = torch.empty(len(activations), device=image.device)
        rows = torch.full((self.batch_size,), index)
        blank = None
        with torch.inference_mode():
            for s in chunks(len(activations), self.batch_size):
                masks, flat = unit_masks(activations[s], image.shape[-2:])
                part, active = scores[s], (~flat).nonzero().view(-1)
                if len(active):
                    logits = self.model(fast_layout(image[None] * masks[active, None]))
                    part[active] = selector.score(logits, rows[: len(active)]).float()
                if flat.any():
                    if blank is None:
                        blank = selector.score(self.model(torch.zeros_like(image)[None]), rows[:1]).float()
                    part[flat] = blank
        return scores.softmax(0)


def unit_masks(activations: torch.Tensor, size: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel maps (C×h×w) upsampled to ``size`` and min-max scaled to [0, 1] each, and which are flat
    (flat maps mask nothing: they all give the same image)."""
    masks = F.interpolate(activations[None], size=size, mode="bilinear", align_corners=True)[0]
    low = masks.amin(dim=(1, 2), keepdim=True)
    high = masks.amax(dim=(1, 2), keepdim=True)
    return (masks - low) / (high - low + 1e-8), (high - low).view(-1) == 0


class GuidedGradCAM(Method):
    """Guided Grad-CAM: guided backprop (N×3×H×W) times Grad-CAM upsampled to the input.

    ``interpolate`` is the upsampling mode for the CAM (``"bilinear"``, or
    ``"nearest"`` as captum's GuidedGradCam uses).
    """

    name = "guided_gradcam"

    def __init__(
        self, model: Model, *, layer: str | None = None, interpolate: str = "bilinear", batch_size: int | None = None
    ):
        super().__init__(model, batch_size=batch_size)
        self.gradcam = GradCAM(model, layer=layer, batch_size=self.batch_size)
        self.guided = GuidedBackprop(model, batch_size=self.batch_size)
        self.layer = self.gradcam.layer
        if interpolate not in ("bilinear", "nearest", "bicubic"):
            raise DiamondCutterError(f"interpolate must be 'bilinear', 'nearest' or 'bicubic', got {interpolate!r}")
        self.interpolate = interpolate

    def compute(self, x: torch.Tensor, selector: Selector) -> torch.Tensor:
        cams = self.gradcam.compute(x, selector)
        with self.guided.context():
            guided = self.guided.compute(x, selector)
        align = False if self.interpolate != "nearest" else None
        return guided * F.interpolate(cams, size=x.shape[-2:], mode=self.interpolate, align_corners=align)
