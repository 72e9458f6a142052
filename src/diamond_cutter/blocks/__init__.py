"""The Building Blocks of Interpretability: channel attribution, semantic maps, heatmaps,
neuron groups and dataset examples, all computed from one layer's activations and gradients."""

from .channels import ChannelAttribution, channel_attribution
from .examples import DatasetExamples, dataset_examples, shared_position_examples
from .groups import NeuronGroups, neuron_groups
from .spatial import Heatmap, SemanticMap, heatmap, semantic_map

__all__ = [
    "ChannelAttribution",
    "DatasetExamples",
    "Heatmap",
    "NeuronGroups",
    "SemanticMap",
    "channel_attribution",
    "dataset_examples",
    "heatmap",
    "neuron_groups",
    "semantic_map",
    "shared_position_examples",
]
