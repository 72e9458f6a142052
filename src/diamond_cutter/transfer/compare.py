"""Several transferred models' predictions on the same images, side by side (table and plot).

Two cuts with the same validation accuracy can still disagree on which images
they get wrong; seeing their class probabilities next to each picture shows
whether a cheaper cut fails on the same hard cases or on different ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DiamondCutterError
from ..html import short_repr, table_html
from ..images import as_batch
from ..model import Model, batched_logits


@dataclass
class Comparison:
    """``probabilities[model]``: N×K softmax outputs; ``labels[model]`` the class names; ``thumbnails`` uint8 H×W×C."""

    image_ids: list[str]
    probabilities: dict[str, np.ndarray]
    labels: dict[str, list[str]]
    thumbnails: list[np.ndarray]

    def __repr__(self) -> str:
        return short_repr(self)

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

    def plot(self, classes: int = 3, images: int = 12) -> Any:
        """A matplotlib Figure: per image (the first ``images``), its picture and bars of each model's
        probabilities for the classes some model ranks in its top ``classes`` there, so models with
        different label sets share a short axis and the figure stays a readable size."""
        # deferred: matplotlib is slow to import; no pyplot, so a notebook's backend is left alone
        from matplotlib.figure import Figure

        n, models = min(len(self.image_ids), images), list(self.probabilities)
        fig = Figure(figsize=(9, 2.2 * n))
        axes = fig.subplots(n, 2, squeeze=False, gridspec_kw={"width_ratios": [1, 3]})
        width = 0.8 / len(models)
        for i in range(n):
            names = self._shown_classes(i, classes)
            axes[i, 0].imshow(self.thumbnails[i])
            axes[i, 0].set_axis_off()
            axes[i, 0].set_title(self.image_ids[i][-30:], fontsize=8)
            for j, m in enumerate(models):
                lookup = {name: float(p) for name, p in zip(self.labels[m], self.probabilities[m][i])}
                axes[i, 1].bar([k + j * width for k in range(len(names))], [lookup.get(name, 0.0) for name in names],
                               width=width, label=m)
            axes[i, 1].set_xticks(
                [k + 0.4 - width / 2 for k in range(len(names))], [name[:18] for name in names], fontsize=7
            )
            axes[i, 1].set_ylim(0, 1)
        axes[0, 1].legend(fontsize=7)
        fig.tight_layout()
        return fig

    def _shown_classes(self, image: int, k: int) -> list[str]:
        """The classes any model ranks in its top ``k`` for ``image`` (each model's order, no repeats)."""
        names: list[str] = []
        for m, probs in self.probabilities.items():
            names += [self.labels[m][int(c)] for c in np.argsort(-probs[image])[:k]]
        return list(dict.fromkeys(names))

    def _repr_html_(self) -> str:
        rows = self.table()
        columns = list(rows[0]) if rows else ["image"]
        return table_html(columns, [[r[c] for c in columns] for r in rows],
                          caption=f"all models agree on {self.agreement:.0%} of the images")


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
