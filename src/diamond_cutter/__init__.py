"""Diamond Cutter: look inside convolutional networks and find where to cut them.

The public API is re-exported here (the functions a user calls, the model they
may wrap, the errors they may catch); see the README for a tour. Everything
else lives in its module: result types and attribution method classes in their
packages (``diamond_cutter.attribution.GradCAM``), plumbing such as hooks in
:mod:`diamond_cutter.capture`, pictures in :mod:`diamond_cutter.render`.
"""

from .atlas import atlas
from .attribution import attribute, evaluate_methods, sanity_check
from .blocks import channel_attribution, dataset_examples, heatmap, neuron_groups, semantic_map
from .errors import CheckpointError, DiamondCutterError, ImageError, UnknownNameError, WeightsUnavailableError
from .featureviz import objectives, render_objective, visualize
from .images import load_images
from .model import Model, predict
from .report import report
from .transfer import compare_predictions, load_transferred, sweep, train_head
from .version import __version__ as __version__
from .visuallog import VisualLog
from .zoo import list_models, load_model

__all__ = [
    "CheckpointError",
    "DiamondCutterError",
    "ImageError",
    "Model",
    "UnknownNameError",
    "VisualLog",
    "WeightsUnavailableError",
    "atlas",
    "attribute",
    "channel_attribution",
    "compare_predictions",
    "dataset_examples",
    "evaluate_methods",
    "heatmap",
    "list_models",
    "load_images",
    "load_model",
    "load_transferred",
    "neuron_groups",
    "objectives",
    "predict",
    "render_objective",
    "report",
    "sanity_check",
    "semantic_map",
    "sweep",
    "train_head",
    "visualize",
]
