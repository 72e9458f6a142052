"""``evaluate_methods``: which map to trust, for this model and these images.

Every method's maps are computed once (batched over the images) and scored by
every metric; a random map is scored alongside as the floor a method must
clear. The result is a methods × metrics table with bootstrap intervals over
images and a one-line verdict per method.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import DiamondCutterError, UnknownNameError
from ...images import as_batch
from ...model import Model
from ...progress import bar
from ..api import LAYER_METHODS, METHODS, attribute, method_class
from ..result import Attribution
from ..sanity import sanity_check
from .faithfulness import ROAD_FRACTIONS, curve_metric, road_metrics
from .inputs import Scored, prepare, target_classes
from .localisation import energy_pointing_game, pointing_game
from .randomization import from_sanity
from .result import MetricResult, Summary
from .robustness import max_sensitivity

#: Every metric by name; True where higher is better.
METRICS: dict[str, bool] = {
    "deletion": False,
    "insertion": True,
    "road_morf": False,
    "road_lerf": True,
    "randomization": False,
    "max_sensitivity": False,
    "pointing_game": True,
    "energy_pointing_game": True,
}
DEFAULT_METRICS = ("deletion", "insertion", "road_morf", "road_lerf", "randomization")
#: Metrics that need the object's region in each image (``regions=``).
REGION_METRICS = ("pointing_game", "energy_pointing_game")
#: Metrics of a map alone, which a random map can be scored on too.
MAP_METRICS = ("deletion", "insertion", "road_morf", "road_lerf", "pointing_game", "energy_pointing_game")
#: Methods evaluated by default: the fast ones (``methods="all"`` adds Score-CAM, SmoothGrad, occlusion, LRP, ...).
DEFAULT_METHODS = (
    "saliency", "input_x_gradient", "guided_backprop", "integrated_gradients", "gradcam", "gradcam++", "layercam",
    "guided_gradcam",
)
#: The reference row: a map of uniform noise, which any explanation worth reading must beat. The noise
#: lies on a coarse grid (bilinearly upsampled, like a CAM): deleting scattered single pixels wrecks
#: an image by itself (such a map beat Grad-CAM on deletion on the sample photographs), so a
#: pixel-noise reference would reward artefacts rather than explanations.
RANDOM = "random"
RANDOM_GRID = 7


@dataclass(frozen=True)
class MetricSettings:
    """How the metrics run (defaults follow the papers, with fewer steps for a CPU).

    ``steps``: deletion/insertion steps; ``deletion_baseline`` / ``insertion_baseline``:
    ``mean``, ``blur``, ``noise`` or ``black``; ``blur``: σ relative to the image side;
    ``road_*``: ROAD's fractions, imputation noise and solver steps; ``randomization_*``:
    sanity-check cascade steps (None: one per layer), pass threshold and init;
    ``sensitivity_*``: max-sensitivity's samples and noise radius (pixel range);
    ``tolerance``: pointing-game tolerance in pixels; ``bootstrap``: resamples for
    the intervals; ``batch_size``: images per forward (None: from the memory budget).
    """

    steps: int = 20
    deletion_baseline: str = "mean"
    insertion_baseline: str = "blur"
    blur: float = 0.025
    road_fractions: tuple[float, ...] = ROAD_FRACTIONS
    road_noise: float = 0.01
    road_iterations: int = 20
    randomization_steps: int | None = 4
    randomization_threshold: float = 0.5
    randomization_init: str = "scaled"
    sensitivity_samples: int = 8
    sensitivity_radius: float = 0.05
    tolerance: int = 0
    bootstrap: int = 1000
    seed: int = 0
    batch_size: int | None = None


@dataclass
class MethodTable:
    """Methods × metrics: ``results[method][metric]`` per image, ``summaries`` with intervals, ``verdicts``.

    ``problems[method]`` explains a method that could not run on this model.
    """

    methods: list[str]
    metrics: list[str]
    results: dict[str, dict[str, MetricResult]]
    summaries: dict[str, dict[str, Summary]]
    verdicts: dict[str, str]
    image_ids: list[str]
    target_names: list[str]
    settings: MetricSettings
    problems: dict[str, str] = field(default_factory=dict)

    def value(self, method: str, metric: str) -> Summary | None:
        """The summary of ``metric`` for ``method`` (None where it does not apply)."""
        return self.summaries.get(method, {}).get(metric)

    def __str__(self) -> str:
        heads = [f"{m} {'↑' if METRICS[m] else '↓'}" for m in self.metrics]
        rows = [[m] + [str(self.value(m, k)) if self.value(m, k) else "-" for k in self.metrics] for m in self.methods]
        widths = [max(len(r[i]) for r in rows + [["method"] + heads]) for i in range(len(heads) + 1)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        out = [line(["method"] + heads)] + [line(r) for r in rows]
        out += [f"{m}: could not run: {p}" for m, p in self.problems.items()]
        out += ["", f"On {len(self.image_ids)} image{'s' if len(self.image_ids) != 1 else ''} "
                f"(mean [95% bootstrap interval]; ↓ lower is better, ↑ higher):"]
        return "\n".join(out + [self.verdicts[m] for m in self.methods if m in self.verdicts])

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.image_ids,
            "targets": self.target_names,
            "metrics": {m: {"higher_is_better": METRICS[m]} for m in self.metrics},
            "methods": {
                m: {
                    "verdict": self.verdicts.get(m),
                    "metrics": {k: r.as_dict() for k, r in self.results.get(m, {}).items()},
                }
                for m in self.methods
            },
            "problems": self.problems,
            "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self.settings).items()},
        }

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"


def evaluate_methods(
    model: Model, images: Any, target: Any = "top1", methods: str | Sequence[str] = DEFAULT_METHODS,
    metrics: Sequence[str] = DEFAULT_METRICS, *, layer: str | None = None, regions: Any = None,
    settings: MetricSettings | None = None, reference: bool = True, maps: Mapping[str, Attribution] | None = None,
    progress: bool = False,
) -> MethodTable:
    """Score each of ``methods`` ("all" for every method) by each of ``metrics`` on ``images``.

    ``target`` is resolved once from the clean images, so every method explains
    the same class; ``layer`` is where CAM methods look (default: the last spatial
    layer); ``regions`` (masks or boxes, see :func:`pointing_game`) are needed by
    the pointing games. ``reference`` adds a random map as the row to beat.
    ``maps`` holds Attributions already computed for some methods (by method
    name, explaining the same classes), which are scored instead of recomputed.
    The model is left as it was, also when a metric raises.
    """
    settings = settings or MetricSettings()
    names = _method_names(methods)
    wanted = _metric_names(metrics, regions)
    batch = as_batch(images, model)
    classes = target_classes(model, batch.tensor.detach().to(model.device), target).tolist()
    results: dict[str, dict[str, MetricResult]] = {}
    problems: dict[str, str] = {}
    rows = names + ([RANDOM] if reference and any(m in MAP_METRICS for m in wanted) else [])
    for name in bar(rows, "evaluate", enabled=progress):
        try:
            found = maps[name] if maps and name in maps else _maps(model, batch, name, classes, layer, settings.seed)
            results[name] = _map_metrics(prepare(model, batch, found, classes), wanted, regions, settings)
            if name != RANDOM and "max_sensitivity" in wanted:
                results[name]["max_sensitivity"] = max_sensitivity(
                    model, batch, name, classes, layer=_layer_for(name, layer), samples=settings.sensitivity_samples,
                    radius=settings.sensitivity_radius, seed=settings.seed,
                )
        except DiamondCutterError as err:
            problems[name] = str(err)
            continue
        for result in results[name].values():
            result.method = name
    if "randomization" in wanted:
        _add_randomization(model, batch, [n for n in names if n in results], classes, layer, settings, results)
    kept = [n for n in rows if n in results]
    summaries = {m: {k: r.summary(settings.bootstrap, settings.seed) for k, r in results[m].items()} for m in kept}
    return MethodTable(
        kept, wanted, results, summaries, verdicts(summaries, wanted, results, len(batch)), list(batch.ids),
        [model.labels[c] for c in classes], settings, problems,
    )


def _method_names(methods: str | Sequence[str]) -> list[str]:
    if isinstance(methods, str):
        return list(METHODS) if methods == "all" else [method_class(methods).name]
    names = [method_class(m).name for m in methods]
    if not names:
        raise DiamondCutterError("no methods to evaluate: give method names, or 'all'")
    return list(dict.fromkeys(names))


def _metric_names(metrics: Sequence[str], regions: Any) -> list[str]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    for name in names:
        if name not in METRICS:
            raise UnknownNameError("metric", name, METRICS)
    needing = [n for n in names if n in REGION_METRICS]
    if needing and regions is None:
        raise DiamondCutterError(
            f"{', '.join(needing)} need{'s' if len(needing) == 1 else ''} the object's region in each image: "
            "pass regions= (N×H×W masks, or one (x0, y0, x1, y1) box or list of boxes per image)"
        )
    if not names:
        raise DiamondCutterError(f"no metrics to compute; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def _layer_for(method: str, layer: str | None) -> str | None:
    return layer if method in LAYER_METHODS else None


def _maps(model: Model, batch, name: str, classes: list[int], layer: str | None, seed: int):
    if name == RANDOM:
        return random_maps(len(batch), tuple(batch.tensor.shape[-2:]), seed)
    where = {"layer": layer} if name in LAYER_METHODS and layer is not None else {}
    return attribute(model, batch, name, target=classes, **where)


def random_maps(n: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """The reference maps: uniform noise on a :data:`RANDOM_GRID` grid, upsampled to ``size`` (N×H×W)."""
    noise = torch.rand((n, 1, RANDOM_GRID, RANDOM_GRID), generator=torch.Generator().manual_seed(seed))
    return F.interpolate(noise, size=size, mode="bilinear", align_corners=False)[:, 0]


def _map_metrics(s: Scored, wanted: list[str], regions: Any, settings: MetricSettings) -> dict[str, MetricResult]:
    """Every metric of a map alone: deletion, insertion, ROAD and the pointing games."""
    out: dict[str, MetricResult] = {}
    for kind, baseline in (("deletion", settings.deletion_baseline), ("insertion", settings.insertion_baseline)):
        if kind in wanted:
            out[kind] = curve_metric(
                s, kind, settings.steps, baseline, settings.blur, settings.seed, settings.batch_size
            )
    orders = tuple(o for o in ("morf", "lerf") if f"road_{o}" in wanted)
    if orders:
        road = road_metrics(
            s, orders, settings.road_fractions, settings.road_noise, settings.road_iterations, settings.seed,
            settings.batch_size,
        )
        out.update({f"road_{o}": r for o, r in road.items()})
    if "pointing_game" in wanted:
        out["pointing_game"] = _named(pointing_game(s.relevance.cpu(), regions, tolerance=settings.tolerance), s)
    if "energy_pointing_game" in wanted:
        out["energy_pointing_game"] = _named(energy_pointing_game(s.relevance.cpu(), regions), s)
    return out


def _named(result: MetricResult, s: Scored) -> MetricResult:
    return replace(result, image_ids=list(s.batch.ids))


def _add_randomization(model, batch, names, classes, layer, settings: MetricSettings, results) -> None:
    """One sanity check for all methods that ran; its per-image final correlations are the scores."""
    if not names:
        return
    check = sanity_check(
        model, batch, names, classes, layer, settings.randomization_steps, settings.seed,
        settings.randomization_threshold, settings.randomization_init,
    )
    for name, result in from_sanity(check).items():
        results[name]["randomization"] = result


def verdicts(
    summaries: dict[str, dict[str, Summary]], metrics: list[str], results: dict[str, dict[str, MetricResult]], n: int
) -> dict[str, str]:
    """One line per method: where it is the most faithful, where no better than a random map,
    and whether it passes the randomization test."""
    real = [m for m in summaries if m != RANDOM]
    images = f"{n} image{'s' if n != 1 else ''}"
    out = {}
    for m in real:
        parts = [_best(m, k, summaries, real, images) for k in metrics if k in MAP_METRICS + ("max_sensitivity",)]
        parts.append(_versus_random(m, [k for k in metrics if k in MAP_METRICS], summaries))
        if "randomization" in summaries[m]:
            r = results[m]["randomization"]
            rho = summaries[m]["randomization"].mean
            parts.append(
                f"passes the randomization test (ρ {rho:.2f})" if r.settings["passes"]
                else f"fails the randomization test (ρ {rho:.2f} after randomizing every layer)"
            )
        kept = [p for p in parts if p]
        out[m] = f"{m}: " + ("; ".join(kept) if kept else "in the middle on every metric")
    if RANDOM in summaries:
        out[RANDOM] = (
            f"{RANDOM}: the reference (smooth uniform noise); a method that does not beat it explains nothing here"
        )
    return out


def _best(method: str, metric: str, summaries, real: list[str], images: str) -> str:
    scored = [m for m in real if metric in summaries[m] and not math.isnan(summaries[m][metric].mean)]
    if len(scored) < 2 or metric not in summaries[method]:
        return ""
    sign = 1 if METRICS[metric] else -1
    ranked = sorted(scored, key=lambda m: -sign * summaries[m][metric].mean)
    if ranked[0] != method:
        return ""
    best, second = summaries[method][metric], summaries[ranked[1]][metric]
    clear = best.low > second.high if sign > 0 else best.high < second.low
    word = "clearly " if clear else ""
    return f"{word}most faithful by {metric} ({best.mean:.3f}) on these {images}" if metric in MAP_METRICS[:4] else \
        f"{word}best by {metric} ({best.mean:.3f})"


def _versus_random(method: str, metrics: list[str], summaries) -> str:
    """Where the method does no better than the random reference, or that it beats it everywhere."""
    compared = [k for k in metrics if RANDOM in summaries and k in summaries[RANDOM] and k in summaries[method]]
    if not compared:
        return ""
    losses = []
    for k in compared:
        ours, floor = summaries[method][k].mean, summaries[RANDOM][k].mean
        if (ours <= floor) if METRICS[k] else (ours >= floor):
            losses.append(f"{k} ({ours:.3f} vs {floor:.3f})")
    if losses:
        return "no better than a random map by " + ", ".join(losses)
    return f"beats the random map on {', '.join(compared)}"
