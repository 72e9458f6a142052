"""``attribute(model, images, method=...)``: every attribution method behind one call."""

from __future__ import annotations

from typing import Any

from ..errors import DiamondCutterError, UnknownNameError
from ..images import ImageBatch, as_batch
from ..model import Model
from .base import Method
from .cam import GradCAM, GradCAMPlusPlus, GuidedGradCAM, LayerCAM, ScoreCAM
from .common import TargetSpec
from .gradients import Deconvnet, GuidedBackprop, InputXGradient, IntegratedGradients, Saliency, SmoothGrad
from .lrp import LRP
from .occlusion import Occlusion
from .result import Attribution

#: Method name -> class; each class can also be held and reused: ``GradCAM(model, layer=...).attribute(images)``.
METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        Saliency, InputXGradient, GuidedBackprop, Deconvnet, SmoothGrad, IntegratedGradients,
        GradCAM, GradCAMPlusPlus, ScoreCAM, LayerCAM, GuidedGradCAM, Occlusion, LRP,
    )
}
#: Methods that work at a layer (``layer=`` picks it; default: the last spatial layer).
LAYER_METHODS = ("gradcam", "gradcam++", "scorecam", "layercam", "guided_gradcam")


def method_class(name: str) -> type[Method]:
    """The class for a method name (suggestions on a typo)."""
    key = name.lower().replace("-", "_")
    key = {"grad_cam": "gradcam", "gradcampp": "gradcam++", "gradcam_plus_plus": "gradcam++"}.get(key, key)
    if key not in METHODS:
        raise UnknownNameError("attribution method", name, METHODS)
    return METHODS[key]


def attribute(
    model: Model, images: Any, method: str = "gradcam", target: TargetSpec = "top1", layer: Any = None, **options: Any
) -> Attribution:
    """Explain ``target`` for ``images`` with ``method``; returns raw maps in an :class:`Attribution`.

    ``target`` is a class index or name, ``"top1"``/``"top2"``/..., a list with
    one per image, a callable on the logits returning one score per image, or a
    list of lists (one list of classes per image, or one list for all) to explain
    several classes per image in one call: the result then has one row per
    (image, class), image by image. ``options`` go to the method's class (e.g.
    ``steps=`` for Integrated Gradients, ``window=`` for occlusion,
    ``batch_size=`` for all).
    """
    cls = method_class(method)
    if layer is not None:
        if cls.name not in LAYER_METHODS:
            raise DiamondCutterError(f"method {cls.name!r} works on the input, not at a layer; layer methods: {', '.join(LAYER_METHODS)}")
        options["layer"] = layer
    batch, target = _expand_targets(as_batch(images, model), target)
    return cls(model, **options).attribute(batch, target)


def _expand_targets(batch: ImageBatch, target: TargetSpec) -> tuple[ImageBatch, TargetSpec]:
    """Repeat images for N×M targets given as a list of lists; other targets pass through."""
    if not isinstance(target, (list, tuple)) or not target or not all(isinstance(t, (list, tuple)) for t in target):
        return batch, target
    per_image = list(target) * len(batch) if len(target) == 1 else list(target)
    if len(per_image) != len(batch):
        raise DiamondCutterError(f"got {len(per_image)} target lists for {len(batch)} images: give one list, or one per image")
    index = [i for i, classes in enumerate(per_image) for _ in classes]
    return batch[index], [c for classes in per_image for c in classes]
