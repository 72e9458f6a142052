"""Channel atlases: cached, resumable spritemaps of every channel's feature visualization."""

from .fingerprint import layer_fingerprint
from .layer_atlas import Atlas, atlas

__all__ = ["Atlas", "atlas", "layer_fingerprint"]
