"""Saliency and attribution: where in the image the evidence for a class sits.

Every method returns an :class:`Attribution` with raw (signed, unnormalised)
maps; :func:`attribute` dispatches by name and each method is also a class.
"""

from .activations import feature_grid, feature_maps, filter_guided_backprop, first_layer_kernels
from .api import METHODS, attribute, method_class
from .cam import GradCAM, GradCAMPlusPlus, GuidedGradCAM, LayerCAM, ScoreCAM
from .gradients import Deconvnet, GuidedBackprop, InputXGradient, IntegratedGradients, Saliency, SmoothGrad
from .lrp import LRP
from .metrics import MethodTable, MetricResult, MetricSettings, evaluate_methods
from .occlusion import Occlusion
from .result import Attribution
from .sanity import SanityResult, sanity_check

__all__ = [
    "Attribution",
    "Deconvnet",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedBackprop",
    "GuidedGradCAM",
    "InputXGradient",
    "IntegratedGradients",
    "LRP",
    "LayerCAM",
    "METHODS",
    "MethodTable",
    "MetricResult",
    "MetricSettings",
    "Occlusion",
    "Saliency",
    "SanityResult",
    "ScoreCAM",
    "SmoothGrad",
    "attribute",
    "evaluate_methods",
    "feature_grid",
    "feature_maps",
    "filter_guided_backprop",
    "first_layer_kernels",
    "method_class",
    "sanity_check",
]
