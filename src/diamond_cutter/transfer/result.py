"""A sweep's result: one honest ranking, the recommendation with its reason, and how far estimators agree.

Ranking: every pair is scored by the same head kind (``Selection.head``,
linear by default, the one trained on every pair), so like is compared with
like; fast estimators are shown beside it and shortlist pairs for slower heads,
but never stand in for a head's accuracy.

Recommendation rule: take the pair with the best *validation* accuracy; among
the pairs whose validation accuracy cannot be told apart from it (the paired
bootstrap interval of the difference, on the same validation images, reaches
zero) or lies within ``tolerance`` of it, recommend the cheapest to run: fewest
multiply-accumulates up to the cut, then fewest parameters. An earlier cut of a
smaller model that is as good is faster and generalises from less data. The
test images took no part in this choice, so their accuracy is reported as is.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from ..errors import DiamondCutterError, UnknownNameError
from ..html import short_repr, table_html
from ..store import Store
from .data import LabelledImages
from .heads import HEAD_KINDS
from .intervals import CONFIDENCE, RESAMPLES, Bootstrap, Interval, accuracy, paired_difference, statistic
from .plots import figure_png, sweep_figure
from .profile import ProfileRow
from .statistics import NCTI_TERMS, ncti
from .train import TrainConfig, TrainedHead, train_head, training_config

#: Estimators in the table, the plot's τ and the CSV. NCTI is computed from its terms over all the pairs.
ESTIMATORS = ("knn", "ridge", "logme", "hscore", "transrate", "gbc", "sfda", "ncti")
#: How many (model, cut) pairs get the slower heads (conv, fine-tuning) by default.
SHORTLIST = 3
TRUST_NOTE = (
    "Fast estimators rank models unreliably in published studies (k-NN often beats LogME); "
    "they shortlist, trained heads decide. Kendall tau shows how far they agree on this data."
)


@dataclass(frozen=True)
class Selection:
    """How pairs are compared and one is recommended.

    ``head``: the head kind every pair is ranked by; ``tolerance``: validation
    accuracy a cheaper pair may give up even where the bootstrap could tell the
    two apart; ``shortlist``: pairs (best ridge probe first) that get the slower
    heads; ``resamples``/``confidence``/``seed``: the bootstrap intervals.
    """

    head: str = "linear"
    tolerance: float = 0.01
    shortlist: int = SHORTLIST
    resamples: int = RESAMPLES
    confidence: float = CONFIDENCE
    seed: int = 0

    def __post_init__(self) -> None:
        if self.head not in HEAD_KINDS:
            raise UnknownNameError("head", self.head, HEAD_KINDS)
        if not 0 < self.confidence < 1 or self.resamples < 100 or self.tolerance < 0:
            raise DiamondCutterError("confidence must be in (0, 1), resamples at least 100, tolerance at least 0")

    def bootstrap(self) -> Bootstrap:
        """The settings of every bootstrap interval, as keyword arguments of :mod:`.intervals`."""
        return Bootstrap(resamples=self.resamples, confidence=self.confidence, seed=self.seed)


#: Columns of the CSV table, in order (head columns are added per head).
TABLE_COLUMNS = ("model", "cut", "relative_depth", "channels", "feature_dim", "macs", "parameters", *ESTIMATORS,
                 *(name for name, _ in NCTI_TERMS), "ridge_test")
#: Columns each pair's estimates have on their own (NCTI needs the other pairs).
BASE_COLUMNS = tuple(c for c in TABLE_COLUMNS if c != "ncti")
HEAD_COLUMNS = ("val_acc", "acc", "acc_low", "acc_high", "balanced_acc", "balanced_acc_low", "balanced_acc_high",
                "train_acc", "seconds")


@dataclass
class SweepResult:
    """Rows per (model, cut), the recommendation with its reason, and estimator/head rank agreement."""

    rows: list[dict[str, Any]]
    data_report: str
    select: Selection
    specs: list[Any]
    data: LabelledImages
    train_config: TrainConfig
    profile: list[ProfileRow] = field(default_factory=list)

    def __post_init__(self) -> None:
        for row, score in zip(self.rows, ncti(self.rows)):
            row["ncti"] = score

    def __repr__(self) -> str:
        return short_repr(self)

    def _repr_html_(self) -> str:
        header, *body = self.table()
        return table_html(header, body, caption=f"recommended: {self.reason}")

    def plot(self) -> Any:
        """A matplotlib Figure: accuracy and estimators against relative depth, the recommendation starred."""
        return sweep_figure(self)

    @property
    def heads(self) -> list[str]:
        return [h for h in HEAD_KINDS if any(f"{h}_acc" in r for r in self.rows)]

    @property
    def head(self) -> str:
        """The head kind the ranking uses: ``select.head`` where it was trained, else the first trained."""
        if not self.heads:
            raise DiamondCutterError("no head was trained, so no pair can be ranked: add heads=('linear',)")
        return self.select.head if self.select.head in self.heads else self.heads[0]

    @property
    def ranked(self) -> list[dict[str, Any]]:
        """Pairs the ranking head was trained on, best validation accuracy first (ties: the cheaper)."""
        h = self.head
        rows = [r for r in self.rows if f"{h}_val_pred" in r]
        return sorted(rows, key=lambda r: (-r[f"{h}_val_acc"], r["macs"], r["parameters"]))

    def accuracy(self, row: dict[str, Any]) -> float:
        """A pair's held-out test accuracy with the ranking head (NaN where that head was not trained)."""
        return float(row.get(f"{self.head}_acc", math.nan))

    def interval(self, row: dict[str, Any], column: str = "acc") -> Interval:
        """``column`` (``acc``, ``balanced_acc``, ``val_acc``) of the ranking head with its bootstrap interval."""
        h = self.head
        return Interval(row[f"{h}_{column}"], *row[f"{h}_{column}_ci"])

    @property
    def best(self) -> dict[str, Any]:
        """The pair with the best validation accuracy."""
        return self.ranked[0]

    def difference(self, row: dict[str, Any], positions: np.ndarray | None = None) -> Interval:
        """Validation accuracy of the best pair minus ``row``'s, on the same images, with a paired interval."""
        return self._difference(self.best, row, positions)

    def _difference(self, a: dict[str, Any], b: dict[str, Any], positions: np.ndarray | None) -> Interval:
        h = self.head
        where = slice(None) if positions is None else positions
        y = self.data.labels[self.data.val_order][where]
        pa, pb = np.asarray(a[f"{h}_val_pred"])[where], np.asarray(b[f"{h}_val_pred"])[where]
        return paired_difference(y, pa, pb, **self.select.bootstrap())

    def _choose(self, positions: np.ndarray | None = None) -> dict[str, Any]:
        """The recommendation rule on the validation images at ``positions`` (all by default)."""
        h = self.head
        where = slice(None) if positions is None else positions
        y = self.data.labels[self.data.val_order][where]
        score = lambda r: float((np.asarray(r[f"{h}_val_pred"])[where] == y).mean())  # noqa: E731
        best = min(self.ranked, key=lambda r: (-score(r), r["macs"], r["parameters"]))
        near = [r for r in self.ranked if r is best or self._close(self._difference(best, r, positions))]
        return min(near, key=lambda r: (r["macs"], r["parameters"]))

    def _close(self, diff: Interval) -> bool:
        return diff.low <= 0 or diff.value <= self.select.tolerance + 1e-12

    @property
    def recommendation(self) -> dict[str, Any]:
        """The cheapest pair (MACs, then parameters) whose validation accuracy cannot be told from the best's."""
        return self._choose()

    @property
    def selection_accuracy(self) -> Interval:
        """Held-out accuracy of the recommendation rule itself: for each split's test images the rule picks a
        pair on validation images other than those (every other fold's validation images when
        cross-validated), and that pair's predictions on them are scored; pooled over splits."""
        h, test_at = self.head, 0
        val_images = self.data.val_order
        predictions = []
        for fold in self.data.folds:
            chosen = self._choose(np.flatnonzero(~np.isin(val_images, fold.test)))
            predictions.append(np.asarray(chosen[f"{h}_test_pred"])[test_at : test_at + len(fold.test)])
            test_at += len(fold.test)
        return accuracy(self.data.labels[self.data.test_order], np.concatenate(predictions), **self.select.bootstrap())

    @property
    def reason(self) -> str:
        rec, best, h = self.recommendation, self.best, self.head
        text = (f"{rec['model']} cut at {rec['cut']} (depth {rec['relative_depth']:.2f}) with a {h} head: "
                f"validation accuracy {self.interval(rec, 'val_acc')}, held-out test accuracy "
                f"{self.interval(rec)}, balanced {self.interval(rec, 'balanced_acc')}; "
                f"{rec['macs'] / 1e6:.1f}M MACs and {rec['parameters'] / 1e6:.2f}M parameters up to the cut")
        if rec is not best:
            diff = self.difference(rec)
            text += (f". The best on validation, {best['model']} at {best['cut']}, has validation accuracy "
                     f"{self.interval(best, 'val_acc')} and test accuracy {self.interval(best)}, "
                     f"{diff.value * 100:+.1f} points [{diff.low * 100:+.1f}, {diff.high * 100:+.1f}] on the same "
                     f"validation images, at {best['macs'] / max(1, rec['macs']):.1f}x the compute")
        level = f"{self.select.confidence:.0%}"
        return text + (f". Rule: the cheapest pair (fewest MACs up to the cut, then fewest parameters) whose "
                       f"validation accuracy is within {self.select.tolerance * 100:.1f} points of the best or not "
                       f"distinguishable from it ({level} paired bootstrap); intervals are {level} bootstrap "
                       f"intervals over images.")

    @cached_property
    def kendall(self) -> dict[str, dict[str, list[float]]]:
        """Kendall τ between each estimator and each head's held-out accuracy over the pairs having both,
        with a bootstrap interval over pairs: ``{head: {estimator: [tau, low, high]}}`` (computed once)."""
        def tau(a: np.ndarray, b: np.ndarray) -> float:
            if len(set(a.tolist())) < 2 or len(set(b.tolist())) < 2:
                return math.nan
            return float(kendalltau(a, b).statistic)

        out: dict[str, dict[str, list[float]]] = {}
        for head in self.heads:
            rows = [r for r in self.rows if f"{head}_acc" in r]
            heads = np.array([r[f"{head}_acc"] for r in rows])
            out[head] = {}
            for est in ESTIMATORS:
                if len(rows) < 3:
                    out[head][est] = [math.nan] * 3
                    continue
                scores = np.array([r[est] for r in rows])
                out[head][est] = statistic((scores, heads), tau, **self.select.bootstrap()).as_list()
        return out

    def columns(self) -> list[str]:
        cols = list(TABLE_COLUMNS)
        for h in self.heads:
            cols += [f"{h}_{c}" for c in HEAD_COLUMNS]
        return cols + ["feature_seconds", "estimator_seconds"]

    def _flat(self, row: dict[str, Any]) -> dict[str, Any]:
        flat = dict(row)
        for h in self.heads:
            for c in ("acc", "balanced_acc"):
                if f"{h}_{c}_ci" in row:
                    flat[f"{h}_{c}_low"], flat[f"{h}_{c}_high"] = row[f"{h}_{c}_ci"]
        return flat

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.columns(), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self._flat(r) for r in self.rows)
        return buf.getvalue()

    def to_json(self) -> dict[str, Any]:
        rec = self.recommendation
        return {"rows": self.rows, "ranking_head": self.head,
                "recommendation": {"model": rec["model"], "cut": rec["cut"], "head": self.head, "reason": self.reason,
                                   "selection_accuracy": self.selection_accuracy.as_list()},
                "kendall_tau": self.kendall, "data": self.data_report, "note": TRUST_NOTE,
                "fine_tuning_profile": [row.as_dict() for row in self.profile],
                "selection": asdict(self.select)}

    def table(self) -> list[list[str]]:
        """The printed table: a header row, then one row per pair (held-out figures with their intervals)."""
        h = self.head
        header = ["model", "cut", "depth", *ESTIMATORS, f"{h} val", f"{h} test [95%]", "balanced [95%]",
                  *(f"{x} test" for x in self.heads if x != h)]
        body = []
        for r in self.rows:
            trained = f"{h}_acc" in r
            cells = [r["model"], r["cut"], f"{r['relative_depth']:.2f}", *(f"{r[e]:.3f}" for e in ESTIMATORS),
                     f"{r[f'{h}_val_acc']:.3f}" if trained else "-", str(self.interval(r)) if trained else "-",
                     str(self.interval(r, "balanced_acc")) if trained else "-",
                     *(f"{r[f'{x}_acc']:.3f}" if f"{x}_acc" in r else "-" for x in self.heads if x != h)]
            body.append(cells)
        return [header, *body]

    def __str__(self) -> str:
        lines = ["\t".join(cells) for cells in self.table()]
        taus = "; ".join(f"{h}: " + ", ".join(f"{e} {t[0]:+.2f} [{t[1]:+.2f}, {t[2]:+.2f}]" for e, t in v.items())
                         for h, v in self.kendall.items())
        nested = f"the rule itself, chosen inside each split, scores {self.selection_accuracy} held out"
        profile = ["fine-tuning profile of the recommendation, one block unfrozen at a time (first split): "
                   + ", ".join(f"{p.block} {p.accuracy:.1%} [{p.low:.1%}, {p.high:.1%}]" for p in self.profile)]
        return "\n".join([self.data_report, *lines, f"recommended: {self.reason}", nested,
                          *(profile if self.profile else []), f"Kendall tau with held-out accuracy ({taus})",
                          TRUST_NOTE])

    def save(self, out: str | Path) -> None:
        """``results.csv``, ``results.json`` and ``sweep.png`` (accuracy and estimators vs depth) under ``out``."""
        target = Store(out)
        target.write_bytes("results.csv", self.to_csv().encode())
        target.write_bytes("results.json", json.dumps(self.to_json(), indent=2, default=float).encode())
        target.write_bytes("sweep.png", figure_png(sweep_figure(self), dpi=110))

    def spec(self, label: str) -> Any:
        return next(s for s in self.specs if s.label == label)

    def train_best(self, head: str | None = None, config: TrainConfig | None = None,
                   callbacks: Sequence[Any] = (), **options: Any) -> TrainedHead:
        """Train the recommended pair's head (the ranking head, or ``head``) on the first split again and
        return it, ready to save; ``config``/``options`` replace the sweep's training settings, and
        ``callbacks`` (:mod:`diamond_cutter.callbacks`) watch its explanations evolve while it trains."""
        rec = self.recommendation
        config = training_config(config or self.train_config, **options)
        return train_head(self.spec(rec["model"]).load(), self.data, rec["cut"], head or self.head, config,
                          callbacks=callbacks)

