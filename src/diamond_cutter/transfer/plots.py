"""Sweep plots: held-out accuracy (with intervals) and each estimator against relative depth, one line per
model, the recommended pair marked.

Depth is relative (0 = first layer, 1 = last) so models of different depth
share one axis; the point to look for is where each curve peaks, and whether
the intervals around the peak overlap.
"""

from __future__ import annotations

import io
from typing import Any

ESTIMATOR_PANELS = (("ridge", "ridge probe (validation accuracy)"), ("knn", "k-NN (validation accuracy)"),
                    ("logme", "LogME (per image)"))


def accuracy_axes(ax: Any, result: Any) -> None:
    """Held-out accuracy with its bootstrap interval vs relative depth, one line per model, a star on the
    recommendation."""
    rec, head = result.recommendation, result.head
    for model in dict.fromkeys(r["model"] for r in result.rows):
        rows = sorted((r for r in result.rows if r["model"] == model and f"{head}_acc" in r),
                      key=lambda r: r["relative_depth"])
        depth = [r["relative_depth"] for r in rows]
        acc = [r[f"{head}_acc"] for r in rows]
        err = [[a - r[f"{head}_acc_ci"][0] for a, r in zip(acc, rows)],
               [r[f"{head}_acc_ci"][1] - a for a, r in zip(acc, rows)]]
        ax.errorbar(depth, acc, yerr=err, marker="o", capsize=3, label=model)
    if result.profile:
        depth = [p.relative_depth for p in result.profile]
        acc = [p.accuracy for p in result.profile]
        err = [[p.accuracy - p.low for p in result.profile], [p.high - p.accuracy for p in result.profile]]
        ax.errorbar(depth, acc, yerr=err, marker="s", linestyle="--", capsize=3, color="black",
                    label=f"{rec['model']} @ {rec['cut']}, one block fine-tuned (first split)")
    ax.plot(rec["relative_depth"], rec[f"{head}_acc"], marker="*", markersize=18, color="gold",
            markeredgecolor="black", zorder=5, linestyle="none", label=f"recommended: {rec['model']} @ {rec['cut']}")
    ax.set_title(f"held-out accuracy, {head} head ({result.select.confidence:.0%} intervals)")
    ax.set_xlabel("relative depth of the cut")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_accuracy(result: Any, dpi: int = 110) -> bytes:
    """PNG bytes of the accuracy panel alone (the report's sweep section)."""
    # deferred: matplotlib is slow to import; no pyplot, so a notebook's backend is left alone
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    accuracy_axes(fig.subplots(), result)
    fig.tight_layout()
    return figure_png(fig, dpi)


def figure_png(figure: Any, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib Figure."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def sweep_figure(result: Any) -> Any:
    """A 2×2 matplotlib Figure; the recommended (model, cut) gets a star in every panel."""
    # deferred: matplotlib is slow to import; no pyplot, so a notebook's backend is left alone
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 7))
    axes = fig.subplots(2, 2, sharex=True)
    accuracy_axes(axes[0, 0], result)
    rec = result.recommendation
    taus = result.kendall.get(result.head, {})
    for ax, (key, title) in zip(list(axes.flat)[1:], ESTIMATOR_PANELS):
        tau = taus.get(key, [float("nan")] * 3)
        title = f"{title}\nKendall τ with held-out accuracy {tau[0]:+.2f} [{tau[1]:+.2f}, {tau[2]:+.2f}]"
        for model in dict.fromkeys(r["model"] for r in result.rows):
            rows = sorted((r for r in result.rows if r["model"] == model), key=lambda r: r["relative_depth"])
            ax.plot([r["relative_depth"] for r in rows], [r[key] for r in rows], marker="o", label=model)
        ax.plot(rec["relative_depth"], rec[key], marker="*", markersize=16, color="gold", markeredgecolor="black",
                zorder=5)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("relative depth of the cut")
    fig.tight_layout()
    return fig
