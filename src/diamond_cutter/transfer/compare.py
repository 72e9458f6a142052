"""Several transferred models' predictions on the same images, side by side (table and plot).

Two cuts with the same validation accuracy can still disagree on which images
they get wrong; seeing their class probabilities next to each picture shows
whether a cheaper cut fails on the same hard cases or on different ones.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DiamondCutterError
from ..images import as_batch
from ..model import Model, batched_logits


@dataclass
class Comparison:
    """``probabilities[model]``: N×K softmax outputs; ``labels[model]`` the class names; ``thumbnails`` uint8 H×W×C."""

    image_ids: list[str]
    probabilities: dict[str, np.ndarray]
    labels: dict[str, list[str]]
    thumbnails: list[np.ndarray]

    def top(self, model: str) -> list[tuple[str, float]]:
        probs = self.probabilities[model]
        return [(self.labels[model][int(i)], float(p[i])) for p, i in zip(probs, probs.argmax(axis=1))]

    @property
    def agreement(self) -> float:
        """Fraction of images on which every model predicts the same class name."""
        tops = [[name for name, _ in self.top(m)] for m in self.probabilities]
        return float(np.mean([len(set(names)) == 1 for names in zip(*tops)]))

    def table(self) -> list[dict[str, Any]]:
        """One row per image: its id and each model's top class with probability."""
        tops = {m: self.top(m) for m in self.probabilities}
        return [{"image": image, **{m: f"{tops[m][i][0]} {tops[m][i][1]:.1%}" for m in tops}}
                for i, image in enumerate(self.image_ids)]

    def __str__(self) -> str:
        rows = self.table()
        cols = list(rows[0]) if rows else []
        widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
        lines += ["  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)) for r in rows]
        return "\n".join(lines + [f"all models agree on {self.agreement:.0%} of the images"])

    def plot(self, dpi: int = 100) -> bytes:
        """PNG: per image, its picture and grouped bars of every model's class probabilities."""
        from matplotlib.figure import Figure  # deferred: matplotlib is slow to import; no pyplot, so a notebook's backend is left alone

        n, models = len(self.image_ids), list(self.probabilities)
        names = list(dict.fromkeys(name for m in models for name in self.labels[m]))
        fig = Figure(figsize=(4 + 0.5 * len(names) * len(models) / 2, 2.2 * n))
        axes = fig.subplots(n, 2, squeeze=False, gridspec_kw={"width_ratios": [1, 3]})
        width = 0.8 / len(models)
        for i in range(n):
            axes[i, 0].imshow(self.thumbnails[i])
            axes[i, 0].set_axis_off()
            axes[i, 0].set_title(self.image_ids[i][-30:], fontsize=8)
            for j, m in enumerate(models):
                pos = [names.index(name) + j * width for name in self.labels[m]]
                axes[i, 1].bar(pos, self.probabilities[m][i], width=width, label=m)
            axes[i, 1].set_xticks([k + 0.4 - width / 2 for k in range(len(names))], names, fontsize=7)
            axes[i, 1].set_ylim(0, 1)
        axes[0, 1].legend(fontsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()


def compare_predictions(models: Sequence[Model] | Mapping[str, Model], images: Any, batch_size: int = 32) -> Comparison:
    """Class probabilities of each model on ``images`` (anything :func:`~diamond_cutter.load_images` takes)."""
    named = dict(models) if isinstance(models, Mapping) else {m.name: m for m in models}
    if not named:
        raise DiamondCutterError("compare_predictions needs at least one model")
    probs, labels, batch = {}, {}, None
    for name, model in named.items():
        batch = as_batch(images, model)
        probs[name] = batched_logits(model, batch.tensor, batch_size).softmax(dim=1).numpy()
        labels[name] = list(model.labels)
    assert batch is not None
    thumbs = [np.asarray(img.convert("RGB")) for img in batch.images()]
    return Comparison(list(batch.ids), probs, labels, thumbs)
