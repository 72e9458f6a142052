"""The callback set: tf-explain's six (Grad-CAM, activations, occlusion sensitivity, SmoothGrad,
Integrated Gradients, vanilla gradients), plus channel attribution for a class and feature
visualizations of a layer's channels.

Each is a few lines on :class:`~diamond_cutter.callbacks.base.ExplanationCallback`
around one of the project's own calls (:func:`~diamond_cutter.attribute`,
:func:`~diamond_cutter.channel_attribution`, :func:`~diamond_cutter.visualize`),
so what is watched during training is exactly what those calls show afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from PIL import Image

from .. import render
from ..attribution import attribute
from ..blocks import channel_attribution
from ..blocks.examples import layer_activations
from ..errors import DiamondCutterError
from ..featureviz import FAST_SCHEDULE, visualize
from ..model import Model
from .base import COMMON_SETTINGS, ExplanationCallback

Pictures = tuple[list[Image.Image], list[str]]


class AttributionCallback(ExplanationCallback):
    """An :func:`~diamond_cutter.attribute` method's maps of ``target`` for the images; ``options`` go
    to the method (``window=`` for occlusion, ``samples=`` for SmoothGrad, ``steps=`` for IG...)."""

    #: Input-gradient maps are drawn as grey magnitudes (as tf-explain does), the others over the image.
    gradient_map: ClassVar[bool] = False

    def __init__(self, images: Any, **settings: Any):
        common = {k: settings.pop(k) for k in COMMON_SETTINGS if k in settings}
        super().__init__(images, **common)
        self.options = settings

    def explain(self, model: Model) -> Pictures:
        where = {"layer": self.layer} if self.layer is not None else {}
        result = attribute(model, self.batch(model), method=self.name, target=self.target, **where, **self.options)
        pictures = [render.grayscale_saliency(m) for m in result.maps] if self.gradient_map else result.overlay()
        return pictures, result.captions()


class GradCAMCallback(AttributionCallback):
    """Grad-CAM at ``layer`` (any spatial layer; default: the last one)."""

    name, label = "gradcam", "Grad-CAM"


class OcclusionSensitivityCallback(AttributionCallback):
    """How much the class score drops when a ``window`` of the image is covered."""

    name, label = "occlusion", "Occlusion sensitivity"


class SmoothGradCallback(AttributionCallback):
    """Input gradients averaged over noisy copies of each image."""

    name, label, gradient_map = "smoothgrad", "SmoothGrad", True


class IntegratedGradientsCallback(AttributionCallback):
    """Gradients integrated along the path from a black image."""

    name, label, gradient_map = "integrated_gradients", "Integrated Gradients", True


class VanillaGradientsCallback(AttributionCallback):
    """The plain gradient of the class score with respect to the input."""

    name, label, gradient_map = "saliency", "Vanilla gradients", True


class ActivationsCallback(ExplanationCallback):
    """The ``tiles`` most active channels of ``layer`` for each image, one map per channel."""

    layer: str
    name, label = "activations", "Activations"

    def __init__(self, images: Any, layer: str, *, tiles: int = 4, **common: Any):
        super().__init__(images, layer=layer, **common)
        self.tiles = tiles

    def explain(self, model: Model) -> Pictures:
        batch = self.batch(model)
        size = (batch.pixels.shape[-1], batch.pixels.shape[-2])
        pictures, captions = [], []
        for image_id, acts in zip(batch.ids, layer_activations(model, batch, self.layer)):
            for channel, value, tile in render.activation_tiles(acts, size, self.tiles):
                pictures.append(tile)
                captions.append(f"{image_id} · channel {channel} · {value:.2g}")
        return pictures, captions


class ChannelAttributionCallback(ExplanationCallback):
    """The ``top`` channels of ``layer`` with the largest attribution to ``target`` over the images
    (Building Blocks' view): which channels take over as training goes on."""

    layer: str
    name, label = "channels", "Channel attribution"

    def __init__(self, images: Any, layer: str, *, top: int = 8, **common: Any):
        super().__init__(images, layer=layer, **common)
        self.top = top

    def explain(self, model: Model) -> Pictures:
        channels = channel_attribution(model, self.batch(model), self.layer, self.target)
        best = channels.top(self.top)
        chart = render.bar_chart([f"channel {c}" for c, _ in best], [s for _, s in best])
        return [chart], [f"{channels.title}: " + ", ".join(f"{c} ({s:+.2g})" for c, s in best)]


class FeatureVisualizationCallback(ExplanationCallback):
    """Feature visualizations of ``channels`` of ``layer`` (default: the first 8), rendered with the
    fast schedule at ``size`` pixels in ``steps`` steps from the same seed each time, so changes
    between epochs come from the weights. Rendering costs far more than the other callbacks: use ``every``."""

    layer: str
    name, label = "featureviz", "Feature visualization"

    def __init__(self, layer: str, *, channels: Sequence[int] | None = None, steps: int = 64, size: int = 64,
                 **common: Any):
        if steps < 1 or size < 8:
            raise DiamondCutterError(f"feature visualization needs steps >= 1 and size >= 8, got {steps} and {size}")
        super().__init__(None, layer=layer, **common)
        self.channels, self.steps, self.size = channels, steps, size

    def explain(self, model: Model) -> Pictures:
        channels = self.channels if self.channels is not None else range(min(8, model.layer(self.layer).channels or 0))
        vis = visualize(model, self.layer, list(channels), FAST_SCHEDULE, steps=self.steps, size=self.size,
                        progress=False)
        return vis.images, [f"channel {c}" for c in vis.channels]
