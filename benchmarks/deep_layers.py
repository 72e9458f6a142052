"""Deep layers: FFT (Lucid's schedule), FFT (fast schedule) and MACO compared at equal time.

For each model, for an early, a middle and a deep layer, and for each
parameterization, renders the same channels within the same time budget and
prints:

* ``activation``: the mean channel activation on the untransformed pictures;
* ``plausibility``: the mean cosine similarity between each picture and its
  channel's top natural images (dataset examples from ``--images``) in the
  feature space of a different network, the judge (EfficientNet-Lite2 for
  Lite0 and Lite1, Lite0 for Lite2), as in the MACO paper's evaluation;
* ``fid``: the Fréchet distance between the pictures' and the references'
  embeddings over the layer (lower is more natural);
* ``time``: seconds for the whole render.

Equal time: each schedule's seconds per step are measured on two steps first
and its number of steps set so that the render fits ``--budget`` seconds per
(model, layer, parameterization); MACO's steps show the network several crops
of each picture, so it gets fewer of them. At the end,
``maco plausibility vs fft: N.Nx`` compares MACO with the better FFT schedule
on each model's deepest layer, and the picture sheet (a row per run, faded by
its transparency map for MACO) is saved to ``--sheet``.

Usage: ``python benchmarks/deep_layers.py [--models efficientnet_lite0,...] [--channels 8] [--size 224]
[--budget 60] [--images FOLDER] [--sheet deep_layers.png]``; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
from PIL import Image

import diamond_cutter as dc
from diamond_cutter.blocks.examples import dataset_examples
from diamond_cutter.featureviz.optimize import FAST_SCHEDULE, LUCID_SCHEDULE, MACO_SCHEDULE, Settings
from diamond_cutter.featureviz.plausibility import embed, frechet_distance
from diamond_cutter.images import DEMO_SAMPLES
from diamond_cutter.render import grid

SCHEDULES = {"fft-lucid": LUCID_SCHEDULE, "fft-fast": FAST_SCHEDULE, "maco": MACO_SCHEDULE}
#: Early, middle and deep layers of the EfficientNet-Lite family (seven stages).
LAYERS = ("blocks.1", "blocks.4", "blocks.6")


@dataclass
class Row:
    model: str
    layer: str
    param: str
    steps: int
    activation: float
    plausibility: float
    fid: float
    seconds: float
    pictures: list[Image.Image]


def judge_for(name: str, choice: str) -> dc.Model:
    """The judging network: ``choice``, or a different member of the family than the one visualized."""
    if choice == "auto":
        choice = "efficientnet_lite0" if name == "efficientnet_lite2" else "efficientnet_lite2"
    return dc.load_model(choice)


def steps_for(model: dc.Model, layer: str, channels: list[int], schedule: Settings, size: int, budget: float) -> int:
    """How many of the schedule's steps fit the budget: the time of 1 and of 5 steps (after a warm-up run) gives
    the fixed cost and the cost per step."""

    def seconds(steps: int) -> float:
        start = time.perf_counter()
        dc.visualize(model, layer, channels, schedule, size=size, steps=steps, progress=False)
        return time.perf_counter() - start

    seconds(1)
    one, five = seconds(1), seconds(5)
    per_step = max(1e-6, (five - one) / 4)
    return max(1, int((budget - (one - per_step)) / per_step))


def run(model: dc.Model, name: str, layer: str, param: str, channels: list[int], references: dict,
        judge: dc.Model, args: argparse.Namespace) -> Row:
    schedule = SCHEDULES[param]
    steps = args.steps or steps_for(model, layer, channels, schedule, args.size, args.budget)
    start = time.perf_counter()
    vis = dc.visualize(model, layer, channels, schedule, size=args.size, steps=steps, progress=False,
                       references=references, judge=judge)
    seconds = time.perf_counter() - start
    refs = torch.cat([embed(judge, references[c]) for c in channels])
    fid = frechet_distance(embed(judge, vis.tensor), refs)
    shown = vis.faded if param == "maco" else vis.images
    return Row(name, layer, param, steps, float(vis.scores.mean()), float(vis.plausibility.mean()), fid, seconds,
               shown)


def sheet(rows: list[Row], path: str) -> None:
    """One row of pictures per run, on white (MACO's faded pictures composited)."""
    cells = []
    for row in rows:
        for picture in row.pictures:
            canvas = Image.new("RGB", picture.size, "white")
            canvas.paste(picture, mask=picture.split()[-1] if picture.mode == "RGBA" else None)
            cells.append(canvas)
    grid(cells, cols=len(rows[0].pictures)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficientnet_lite0,efficientnet_lite1,efficientnet_lite2")
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--channels", type=int, default=8, help="the first N channels of each layer")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per (model, layer, parameterization)")
    parser.add_argument("--steps", type=int, help="the same number of steps for all (instead of equal time)")
    parser.add_argument("--images", nargs="*", default=list(DEMO_SAMPLES) + ["brick", "grass", "gravel"],
                        help="where the references come from (files, folders, sample names)")
    parser.add_argument("--references", type=int, default=4, help="top natural images per channel")
    parser.add_argument("--judge", default="auto")
    parser.add_argument("--sheet", default="deep_layers.png")
    parser.add_argument("--quick", action="store_true", help="smoke run: one model, two layers, tiny renders")
    args = parser.parse_args()
    if args.quick:
        args.models, args.layers = "efficientnet_lite0", "blocks.1,blocks.6"
        args.channels, args.size, args.steps = 2, 48, 2
    rows = []
    print(f"{'model':20} {'layer':9} {'param':10} {'steps':>5} {'activation':>10} {'plausibility':>12} "
          f"{'fid':>9} {'time s':>7}")
    for name in args.models.split(","):
        model, judge = dc.load_model(name), judge_for(name, args.judge)
        images = dc.load_images(args.images, model)
        for layer in args.layers.split(","):
            channels = list(range(args.channels))
            references = {c: dataset_examples(model, images, layer, c, k=args.references) for c in channels}
            for param in SCHEDULES:
                row = run(model, name, layer, param, channels, references, judge, args)
                rows.append(row)
                print(f"{row.model:20} {row.layer:9} {row.param:10} {row.steps:5d} {row.activation:10.2f} "
                      f"{row.plausibility:12.3f} {row.fid:9.1f} {row.seconds:7.1f}", flush=True)
        deepest = {r.param: r for r in rows if r.model == name and r.layer == args.layers.split(",")[-1]}
        fft = max(deepest["fft-lucid"].plausibility, deepest["fft-fast"].plausibility)
        ratio = deepest["maco"].plausibility / fft
        print(f"{name} {args.layers.split(',')[-1]}: maco plausibility vs fft: {ratio:.1f}x")
    sheet(rows, args.sheet)
    print(f"sheet: {args.sheet}")


if __name__ == "__main__":
    main()
