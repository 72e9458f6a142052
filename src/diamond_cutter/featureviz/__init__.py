"""Feature visualization: batched rendering of images that excite channels, neurons, directions or classes.

``visualize(model, layer, channels)`` renders a whole set of channels in a few
batched optimizations; :func:`render_objective` takes any objective built with
:mod:`~diamond_cutter.featureviz.objectives`. Both default to Lucid's optimizer
settings; ``**FAST_SCHEDULE`` gets about as far in about a quarter of the steps.
"""

from . import objectives
from .param import FFTParam, MacoParam, PixelParam, estimate_color_matrix, estimate_magnitude
from .optimize import FAST_SCHEDULE, RenderResult, Visualization, render_objective, visualize

__all__ = [
    "FAST_SCHEDULE",
    "FFTParam",
    "MacoParam",
    "PixelParam",
    "RenderResult",
    "Visualization",
    "estimate_color_matrix",
    "estimate_magnitude",
    "objectives",
    "render_objective",
    "visualize",
]
