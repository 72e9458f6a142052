"""Classification metrics shared by the fast estimators and the trained heads."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class Metrics:
    """Accuracy, balanced accuracy (mean per-class recall), per-class accuracy and the confusion matrix on
    the images of ``split`` (``"test"`` or ``"validation"``).

    ``confusion[i][j]`` counts images of class ``i`` predicted as ``j``.
    """

    accuracy: float
    balanced_accuracy: float
    per_class: dict[str, float]
    confusion: list[list[int]]
    train_accuracy: float | None = None
    split: str = "validation"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str],
                           train_accuracy: float | None = None, split: str = "validation") -> Metrics:
    matrix = confusion_matrix(y_true, y_pred, len(classes))
    support = matrix.sum(axis=1)
    recall = np.divide(np.diag(matrix), support, out=np.zeros(len(classes)), where=support > 0)
    present = support > 0
    return Metrics(
        accuracy=float((np.asarray(y_true) == np.asarray(y_pred)).mean()),
        balanced_accuracy=float(recall[present].mean()),
        per_class={name: float(r) for name, r, p in zip(classes, recall, present) if p},
        confusion=matrix.tolist(),
        train_accuracy=train_accuracy,
        split=split,
    )
