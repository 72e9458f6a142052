"""Diamond Cutter: look inside convolutional networks and find where to cut them.

The public API is re-exported here; see the README for a tour.
"""

from .atlas import Atlas, atlas
from .attribution import (
    LRP, Attribution, Deconvnet, GradCAM, GradCAMPlusPlus, GuidedBackprop, GuidedGradCAM, InputXGradient,
    IntegratedGradients, LayerCAM, Occlusion, Saliency, SanityResult, ScoreCAM, SmoothGrad, attribute, sanity_check,
)
from .blocks import channel_attribution, dataset_examples, heatmap, neuron_groups, semantic_map
from .capture import capture, forward_hooks, preserved, truncated
from .featureviz import RenderResult, Visualization, objectives, render_objective, visualize
from .errors import CheckpointError, DiamondCutterError, ImageError, UnknownNameError, WeightsUnavailableError
from .images import DEMO_SAMPLES, SAMPLES, ImageBatch, load_images, sample_path
from .layers import Layer, LayerTable
from .model import Model, Prediction, predict
from .report import Report, report
from .transfer import SweepResult, TrainedHead, compare_predictions, load_transferred, sweep, train_head
from .visuallog import VisualLog
from .zoo import list_models, load_model

from .version import __version__

__all__ = [
    "LRP",
    "Attribution",
    "Deconvnet",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedBackprop",
    "GuidedGradCAM",
    "InputXGradient",
    "IntegratedGradients",
    "LayerCAM",
    "Occlusion",
    "Saliency",
    "SanityResult",
    "ScoreCAM",
    "SmoothGrad",
    "attribute",
    "sanity_check",
    "Atlas",
    "RenderResult",
    "Visualization",
    "atlas",
    "objectives",
    "render_objective",
    "visualize",
    "CheckpointError",
    "DEMO_SAMPLES",
    "DiamondCutterError",
    "ImageBatch",
    "ImageError",
    "Layer",
    "LayerTable",
    "Model",
    "Prediction",
    "Report",
    "SAMPLES",
    "UnknownNameError",
    "VisualLog",
    "WeightsUnavailableError",
    "capture",
    "channel_attribution",
    "dataset_examples",
    "heatmap",
    "neuron_groups",
    "semantic_map",
    "forward_hooks",
    "list_models",
    "load_images",
    "load_model",
    "predict",
    "report",
    "preserved",
    "sample_path",
    "truncated",
    "SweepResult",
    "TrainedHead",
    "compare_predictions",
    "load_transferred",
    "sweep",
    "train_head",
]
