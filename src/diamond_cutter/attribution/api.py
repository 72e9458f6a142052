"""``attribute(model, images, method=...)``: every attribution method behind one call."""

from __future__ import annotations

from typing import Any

from ..errors import DiamondCutterError, UnknownNameError
from ..images import as_batch
from ..model import Model
from ..targets import TargetSpec, expand
from .base import Method
from .cam import GradCAM, GradCAMPlusPlus, GuidedGradCAM, LayerCAM, ScoreCAM
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
#: Methods that work at a layer (``layer=`` picks it; default: the last spatial layer before global pooling).
LAYER_METHODS = ("gradcam", "gradcam++", "scorecam", "layercam", "guided_gradcam")
#: Layer methods that fuse several layers when ``layer`` is a list.
MULTI_LAYER_METHODS = ("layercam",)


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

    ``target`` follows the one target grammar (:mod:`diamond_cutter.targets`): a
    class index or name, ``"top1"``/``"top2"``/..., ``"auto"`` (top-1 minus
    top-2), a contrast ``(positive, negative)``, a list with one per image, a
    callable on the logits returning one score per image, or a list of lists
    (one list of classes per image, or one list for all) to explain several
    classes per image in one call: the result then has one row per (image,
    class), image by image. ``layer`` (CAM methods) defaults to the last spatial
    layer before global pooling; LayerCAM also takes a list of layers to fuse.
    ``options`` go to the method's class (e.g. ``steps=`` for Integrated
    Gradients, ``window=`` for occlusion, ``batch_size=`` for all).
    """
    cls = method_class(method)
    if layer is not None:
        options["layer"] = _layer_option(cls.name, layer)
    batch = as_batch(images, model)
    rows, target = expand(target, len(batch))
    return cls(model, **options).attribute(batch if rows is None else batch[rows], target)


def _layer_option(method: str, layer: Any) -> Any:
    """``layer`` as the method takes it: one name, or a list for methods that fuse layers."""
    if method not in LAYER_METHODS:
        raise DiamondCutterError(
            f"method {method!r} works on the input, not at a layer; layer methods: {', '.join(LAYER_METHODS)}"
        )
    if isinstance(layer, str) or method in MULTI_LAYER_METHODS:
        return layer
    names = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if len(names) != 1:
        raise DiamondCutterError(
            f"method {method!r} works at one layer, got {len(names)}; only {', '.join(MULTI_LAYER_METHODS)} fuses "
            "several layers"
        )
    return names[0]
