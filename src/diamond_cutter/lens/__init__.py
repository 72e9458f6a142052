"""The lens: concept-conditional heatmaps (CRP), references by activation and by relevance
from one streamed pass, channel labels in words, and a static site to browse them."""

from .crp import ConditionalHeatmaps, CRPSettings, Relevance, conditional_heatmaps
from .geometry import Geometry, layer_geometry
from .references import Reference, References, ScanSettings, compute_shard, merge_shards, scan_references

__all__ = [
    "CRPSettings", "ConditionalHeatmaps", "Geometry", "Reference", "References", "Relevance", "ScanSettings",
    "compute_shard", "conditional_heatmaps", "layer_geometry", "merge_shards", "scan_references",
]
