"""Ray's cost and gain against in-process runs, on two workloads:

(a) an atlas of ``--channels`` channels of one layer of the embedded model at ``--size`` px;
(b) a sweep of 2 models × ``--cuts`` cuts on scikit-learn's handwritten digits.

Each runs in this process, then through a local Ray with ``--workers`` workers (its start and
shutdown included: that fixed cost is what the ratio shows on one machine), each time with an
empty store. Prints both times and ``ray speedup atlas: N.Nx`` / ``ray speedup sweep: N.Nx``
(in-process time over Ray time). Where GPUs exist it also prints the atlas's renders per second
with one actor per GPU.

    python benchmarks/scale.py [--channels 64] [--size 64] [--steps 64] [--cuts 8] [--workers 2]
    python benchmarks/scale.py --quick        # a smoke run with tiny settings
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import torch

import diamond_cutter as dc
from diamond_cutter.atlas import Atlas
from diamond_cutter.atlas.cluster import fill_atlases
from diamond_cutter.executors import Ray
from diamond_cutter.featureviz.optimize import Settings
from diamond_cutter.store import Store
from diamond_cutter.transfer.data import load_labelled, make_digits_dataset
from diamond_cutter.transfer.train import TrainConfig

LAYER = "blocks.5"
MODELS = ("efficientnet_lite0", "resnet18")


def timed(run: Callable[[str], object]) -> float:
    """Seconds ``run(store_folder)`` takes with an empty store."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        run(folder)
        return time.perf_counter() - start


def atlas_run(model: dc.Model, args: argparse.Namespace, executor: Ray | None) -> Callable[[str], object]:
    settings = Settings(steps=args.steps, size=(args.size, args.size))
    chunk = max(1, args.channels // args.workers)  # the same chunks in-process and on Ray

    def run(folder: str) -> object:
        layer_atlas = Atlas(model, LAYER, settings, Store(folder))
        return fill_atlases([layer_atlas], range(args.channels), batch_size=chunk, executor=executor, progress=False)

    return run


def sweep_run(data, args: argparse.Namespace, executor: Ray | None) -> Callable[[str], object]:
    def run(folder: str) -> object:
        return dc.sweep(list(MODELS), data, cuts=args.cuts, weights=None, input_size=(3, args.image, args.image),
                        train=TrainConfig(epochs=args.epochs), store=folder, executor=executor or "local",
                        progress=False)

    return run


def report(name: str, local: float, ray: float, workers: int) -> None:
    print(f"{name}: in-process {local:.1f}s, local Ray with {workers} workers {ray:.1f}s")
    print(f"ray speedup {name}: {local / ray:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--cuts", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--image", type=int, default=64, help="sweep input side in pixels")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny settings, to check that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.channels, args.size, args.steps, args.cuts, args.per_class, args.image, args.epochs = 4, 32, 2, 2, 3, 32, 1
    model = dc.load_model("efficientnet_lite0")
    print(f"atlas: {args.channels} channels of {LAYER} at {args.size} px, {args.steps} steps; "
          f"sweep: {len(MODELS)} models x {args.cuts} cuts; Ray with {args.workers} workers")
    report("atlas", timed(atlas_run(model, args, None)), timed(atlas_run(model, args, Ray(workers=args.workers))),
           args.workers)
    with tempfile.TemporaryDirectory() as folder:
        data = load_labelled(make_digits_dataset(folder, per_class=args.per_class))
        report("sweep", timed(sweep_run(data, args, None)), timed(sweep_run(data, args, Ray(workers=args.workers))),
               args.workers)
    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        on_gpu = dc.load_model("efficientnet_lite0", device="cuda")
        seconds = timed(atlas_run(on_gpu, args, Ray()))  # one actor per GPU
        print(f"atlas on {gpus} GPU(s), one actor each: {args.channels / seconds:.1f} renders per second")


if __name__ == "__main__":
    main()
