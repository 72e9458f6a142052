"""Diamond Cutter: look inside convolutional networks and find where to cut them.

The public API is re-exported here (the functions a user calls, the model they
may wrap, the errors they may catch); see the README for a tour. Everything
else lives in its module: result types and attribution method classes in their
packages (``diamond_cutter.attribution.GradCAM``), plumbing such as hooks in
:mod:`diamond_cutter.capture`, pictures in :mod:`diamond_cutter.render`.
"""

import importlib
import importlib.util
import sys
import types
from typing import Any

from .errors import (
    CheckpointError,
    DiamondCutterError,
    ImageError,
    UnknownNameError,
    WeightsUnavailableError,
)
from .version import __version__ as __version__

#: Public name -> the module it lives in. Imported on first use, so ``import diamond_cutter`` (and the
#: ``diamond-cutter`` command's ``--help``) does not load PyTorch until something needs it.
_EXPORTS = {
    "atlas": "atlas",
    "attribute": "attribution",
    "evaluate_methods": "attribution",
    "sanity_check": "attribution",
    "channel_attribution": "blocks",
    "dataset_examples": "blocks",
    "heatmap": "blocks",
    "neuron_groups": "blocks",
    "semantic_map": "blocks",
    "objectives": "featureviz",
    "render_objective": "featureviz",
    "visualize": "featureviz",
    "conditional_heatmaps": "lens",
    "fast_cpu": "heap",
    "lens": "lens",
    "load_images": "images",
    "Model": "model",
    "predict": "model",
    "report": "report",
    "compare_predictions": "transfer",
    "load_transferred": "transfer",
    "sweep": "transfer",
    "train_head": "transfer",
    "VisualLog": "visuallog",
    "list_models": "zoo",
    "load_model": "zoo",
}


def __getattr__(name: str) -> Any:
    """A public name or a subpackage (``dc.transfer``), imported when first asked for."""
    if name in _EXPORTS:
        value = _export(name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def _export(name: str) -> Any:
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """The package module, where a public function shares its name with its subpackage (``atlas``,
    ``lens``, ``report``): importing the subpackage would set the attribute to the module, so the attribute is a
    property that always gives the function, as the eager ``from .atlas import atlas`` did."""


def _function_property(name: str) -> property:
    return property(lambda _self: _export(name), lambda _self, _value: None)


for _name in ("atlas", "lens", "report"):
    setattr(_Package, _name, _function_property(_name))
sys.modules[__name__].__class__ = _Package


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
    "conditional_heatmaps",
    "dataset_examples",
    "evaluate_methods",
    "fast_cpu",
    "heatmap",
    "lens",
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
