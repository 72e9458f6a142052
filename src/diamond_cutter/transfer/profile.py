"""The fine-tuning profile: what to unfreeze, next to where to cut.

For the recommended (model, cut), a head is trained once per block up to the
cut with only that block fine-tuned (SubTuning's "finetuning profile", Kaplun
et al. 2023). Its held-out accuracy per block, drawn beside the frozen
cut-depth curve, shows which layers are worth adapting; "where to cut" and
"what to fine-tune" often disagree. Each block trains with the backbone in every
step, so the profile is off by default and runs on the first split only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import DiamondCutterError
from ..model import Model
from ..progress import bar
from .cuts import list_cuts
from .data import LabelledImages
from .intervals import accuracy
from .train import TrainConfig, train_head, tunable_blocks


@dataclass(frozen=True)
class ProfileRow:
    """One block fine-tuned alone: its relative depth and the head's held-out accuracy with its interval."""

    block: str
    relative_depth: float
    accuracy: float
    low: float
    high: float

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def fine_tuning_profile(model: Model, data: LabelledImages, cut: str, head: str = "linear",
                        config: TrainConfig | None = None, *, resamples: int = 1000, confidence: float = 0.95,
                        progress: bool = True) -> list[ProfileRow]:
    """Held-out accuracy of ``head`` on ``model`` cut at ``cut`` with one block at a time fine-tuned."""
    blocks = tunable_blocks(model, cut, disjoint=True)
    if not blocks:
        raise DiamondCutterError(
            f"{model.name} has no blocks with parameters up to {cut}: there is nothing to unfreeze for a profile")
    config = replace(config or TrainConfig(), unfreeze=0)
    depth = {c.name: c.relative_depth for c in list_cuts(model)}
    rows = []
    for block in bar(blocks, f"profile {model.name}@{cut}", enabled=progress):
        trained = train_head(model, data, cut, head, replace(config, unfreeze_block=block), progress=False)
        iv = accuracy(data.labels[data.test], trained.test_predictions, resamples=resamples, confidence=confidence)
        rows.append(ProfileRow(block, depth[block], iv.value, iv.low, iv.high))
    return rows
