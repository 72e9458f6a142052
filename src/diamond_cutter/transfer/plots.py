"""Sweep plots: head accuracy and each estimator against relative depth, one line per model, best cut marked.

Depth is relative (0 = first layer, 1 = last) so models of different depth
share one axis; the point to look for is where each curve peaks.
"""

from __future__ import annotations

import io
from typing import Any

PANELS = (("accuracy", "validation accuracy (best head)"), ("ridge", "ridge probe accuracy"),
          ("knn", "k-NN accuracy"), ("logme", "LogME (per image)"))


def figure_png(figure: Any, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib Figure."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def sweep_figure(result: Any) -> Any:
    """A 2×2 matplotlib Figure; the recommended (model, cut) gets a star in every panel."""
    from matplotlib.figure import Figure  # deferred: matplotlib is slow to import; no pyplot, so a notebook's backend is left alone

    fig = Figure(figsize=(10, 7))
    axes = fig.subplots(2, 2, sharex=True)
    rec = result.recommendation
    for ax, (key, title) in zip(axes.flat, PANELS):
        for model in dict.fromkeys(r["model"] for r in result.rows):
            rows = sorted((r for r in result.rows if r["model"] == model), key=lambda r: r["relative_depth"])
            values = [result.accuracy(r) if key == "accuracy" else r[key] for r in rows]
            ax.plot([r["relative_depth"] for r in rows], values, marker="o", label=model)
            for r, v in zip(rows, values):
                if (r["model"], r["cut"]) == (rec["model"], rec["cut"]):
                    ax.plot(r["relative_depth"], v, marker="*", markersize=16, color="gold", markeredgecolor="black",
                            zorder=5, label=f"recommended: {r['cut']}")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("relative depth of the cut")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig
