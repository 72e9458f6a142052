"""Which map to trust: faithfulness, robustness, randomization and localisation metrics, batched.

Each metric returns a :class:`MetricResult` (one value per image and a
bootstrap summary); :func:`evaluate_methods` scores many methods by many
metrics on the same images and says which to trust.
"""

from .evaluate import DEFAULT_METHODS, DEFAULT_METRICS, METRICS, MethodTable, MetricSettings, evaluate_methods
from .faithfulness import BASELINES, ROAD_FRACTIONS, deletion, insertion, road
from .localisation import energy_pointing_game, pointing_game
from .perturb import noisy_linear_imputation
from .randomization import randomization
from .result import MetricResult, Summary, bootstrap
from .robustness import max_sensitivity

__all__ = [
    "BASELINES",
    "DEFAULT_METHODS",
    "DEFAULT_METRICS",
    "METRICS",
    "MethodTable",
    "MetricResult",
    "MetricSettings",
    "ROAD_FRACTIONS",
    "Summary",
    "bootstrap",
    "deletion",
    "energy_pointing_game",
    "evaluate_methods",
    "insertion",
    "max_sensitivity",
    "noisy_linear_imputation",
    "pointing_game",
    "randomization",
    "road",
]
