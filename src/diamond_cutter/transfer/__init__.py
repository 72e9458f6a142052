"""Transfer learning: which model, cut at which layer, transfers best to your images.

``sweep`` runs models × cuts with cached features, fast estimators and trained
heads, and recommends a pair; ``train_head`` trains one; ``load_transferred``
brings a saved one back as a :class:`~diamond_cutter.model.Model`.
"""

from .compare import Comparison, compare_predictions
from .cuts import Cut, CutBackbone, candidate_cuts, list_cuts
from .data import Fold, LabelledImages, load_labelled, make_colour_dataset, make_digits_dataset, make_texture_dataset
from .estimators import knn_accuracy, logistic_probe, logme, ridge_probe
from .executor import InProcess, ProcessPool
from .features import FeatureSet, extract_features
from .heads import TransferNet
from .metrics import Metrics
from .result import Selection, SweepResult
from .saved import load_transferred, save_transferred
from .sweep import sweep
from .train import TrainConfig, TrainedHead, train_head

__all__ = [
    "Comparison", "Cut", "CutBackbone", "FeatureSet", "Fold", "InProcess", "LabelledImages", "Metrics", "ProcessPool",
    "Selection", "SweepResult", "TrainConfig", "TrainedHead", "TransferNet", "candidate_cuts", "compare_predictions",
    "extract_features", "knn_accuracy", "list_cuts", "load_labelled", "load_transferred", "logistic_probe", "logme",
    "make_colour_dataset", "make_digits_dataset", "make_texture_dataset", "ridge_probe", "save_transferred", "sweep",
    "train_head",
]
