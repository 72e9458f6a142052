"""Channel atlases: cached, resumable spritemaps of every channel's feature visualization."""

from .layer_atlas import Atlas, atlas
from .fingerprint import layer_fingerprint

__all__ = ["Atlas", "atlas", "layer_fingerprint"]
