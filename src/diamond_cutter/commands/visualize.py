"""``diamond-cutter visualize`` and ``diamond-cutter atlas``: feature visualizations from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..atlas import atlas
from ..atlas.cluster import fill_atlases
from ..errors import DiamondCutterError
from ..executors import ray_executor
from ..featureviz import visualize
from ..featureviz.param import PARAMS
from ..featureviz.optimize import FAST_SCHEDULE, LUCID_SCHEDULE
from ..zoo import load_model
from .numbers import COUNT, SEED, SIDE


def parse_channels(text: str | None) -> list[int] | None:
    """``"0-15"``, ``"3,7,9"`` or ``"0-3,10"`` to a list of channel indices (None: all)."""
    if text is None:
        return None
    channels: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            channels.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        raise DiamondCutterError(f"cannot read channels {text!r}: use a list like 0-15 or 3,7,9") from None
    return channels


SCHEDULES = {"lucid": LUCID_SCHEDULE, "fast": FAST_SCHEDULE}


def schedule(args: argparse.Namespace) -> dict:
    """Steps, learning rate and betas from ``--schedule``, with ``--steps`` overriding the schedule's."""
    chosen = dict(SCHEDULES[args.schedule])
    if args.steps is not None:
        chosen["steps"] = args.steps
    return chosen


def add_render_options(p: argparse.ArgumentParser, size: int | None) -> None:
    p.add_argument("model", help="model name (see `diamond-cutter models`)")
    p.add_argument("--weights", default="imagenet", help="'imagenet' (default), 'none', or a checkpoint path")
    p.add_argument("--channels", help="channels to render, e.g. 0-15 or 3,7,9 (default: all)")
    p.add_argument("--param", choices=PARAMS, default="fft", help="image parameterization (default fft)")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default="lucid",
                   help="Adam settings: " + "; ".join(f"{name} (lr {s['lr']}, betas {s['betas']}, {s['steps']} steps)"
                                                      for name, s in SCHEDULES.items())
                        + ". fast gets about as far in a quarter of the time")
    p.add_argument("--steps", type=COUNT, help="optimization steps (default: the schedule's)")
    p.add_argument("--size", type=SIDE, default=size, help="image side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--batch-size", type=COUNT, help="images per optimization (default: what fits in memory)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("visualize", help="render feature visualizations of channels of a layer")
    add_render_options(p, None)
    p.add_argument("--layer", required=True, help="layer name (see `diamond-cutter layers MODEL`)")
    p.add_argument("--out", required=True, help="folder for one PNG per channel")
    p.set_defaults(run=run_visualize)

    a = sub.add_parser("atlas", help="build (or resume) cached spritemaps of every channel of layers")
    add_render_options(a, 128)
    a.add_argument("--layers", required=True, help="comma-separated layer names, or 'all' (every spatial layer)")
    a.add_argument("--store", help="folder or fsspec URL for the cache (default: the user cache; on a cluster, "
                   "a URL every node reaches)")
    a.add_argument("--out", help="also save each layer's spritemap PNG into this folder")
    a.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="render in this process (default) or on a pool of Ray actors")
    a.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    a.set_defaults(run=run_atlas)


def model_from(args: argparse.Namespace):
    return load_model(args.model, weights=None if args.weights == "none" else args.weights)


def run_visualize(args: argparse.Namespace) -> int:
    model = model_from(args)
    vis = visualize(model, args.layer, parse_channels(args.channels), size=args.size, param=args.param,
                    seed=args.seed, batch_size=args.batch_size, **schedule(args))
    paths = vis.save(args.out)
    for ch, score, path in zip(vis.channels, vis.scores.tolist(), paths):
        print(f"{args.layer} channel {ch}: mean activation {score:.3f} -> {path}")
    return 0


def run_atlas(args: argparse.Namespace) -> int:
    model = model_from(args)
    names = [layer.name for layer in model.layers.spatial()] if args.layers.strip() == "all" else \
        [name.strip() for name in args.layers.split(",") if name.strip()]
    settings = dict(size=args.size, param=args.param, seed=args.seed, store=args.store, fill=False, **schedule(args))
    report = fill_atlases([atlas(model, layer, **settings) for layer in names], parse_channels(args.channels),
                          batch_size=args.batch_size, executor=ray_executor(args.executor, args.ray_address))
    for result in report.atlases:
        print(f"{result.layer}: {len(result.done)}/{result.channels} channels in {result.store.path(result.key)}")
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            target = Path(args.out) / f"{result.layer.replace('.', '_')}_atlas.png"
            result.spritemap.save(target)
            print(f"  spritemap -> {target}")
    print(report)
    return 0
