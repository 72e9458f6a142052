"""The lens: concept-conditional heatmaps (CRP), references by activation and by relevance
from one streamed pass, channel labels in words, and a static site to browse them."""

from .crp import ConditionalHeatmaps, CRPSettings, Relevance, conditional_heatmaps
from .geometry import Geometry, layer_geometry
from .labels import ChannelLabel, ClassLabeler, Labeler, LayerLabels, label_channels
from .references import (
    Reference,
    References,
    ScanSettings,
    compute_shard,
    merge_shards,
    scan_references,
)
from .site import LensSettings, lens

__all__ = [
    "CRPSettings",
    "ChannelLabel",
    "ClassLabeler",
    "ConditionalHeatmaps",
    "Geometry",
    "Labeler",
    "LayerLabels",
    "LensSettings",
    "Reference",
    "References",
    "Relevance",
    "ScanSettings",
    "compute_shard",
    "conditional_heatmaps",
    "label_channels",
    "layer_geometry",
    "lens",
    "merge_shards",
    "scan_references",
]
