"""Feature visualization: batched rendering of images that excite channels, neurons, directions or classes.

``visualize(model, layer, channels)`` renders a whole set of channels in a few
batched optimizations; :func:`render_objective` takes any objective built with
:mod:`~diamond_cutter.featureviz.objectives`. Both take a :class:`Settings`
(default :data:`LUCID_SCHEDULE`, Lucid's optimizer settings); :data:`FAST_SCHEDULE`
gets about as far in about a quarter of the steps, and :data:`MACO_SCHEDULE`
renders as MACO (Fel et al. 2023) does. Given reference images and a judge
network, :func:`visualize` also scores how natural each picture is
(:mod:`~diamond_cutter.featureviz.plausibility`).
"""

from . import objectives, plausibility
from .optimize import (
    FAST_SCHEDULE,
    LUCID_SCHEDULE,
    MACO_SCHEDULE,
    RenderResult,
    Settings,
    Visualization,
    render_objective,
    visualize,
)
from .param import FFTParam, MacoParam, PixelParam, estimate_color_matrix, estimate_magnitude

__all__ = [
    "FAST_SCHEDULE",
    "LUCID_SCHEDULE",
    "MACO_SCHEDULE",
    "FFTParam",
    "MacoParam",
    "PixelParam",
    "RenderResult",
    "Settings",
    "Visualization",
    "estimate_color_matrix",
    "estimate_magnitude",
    "objectives",
    "plausibility",
    "render_objective",
    "visualize",
]
