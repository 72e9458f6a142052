"""``diamond-cutter visualize`` and ``diamond-cutter atlas``: feature visualizations from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..atlas import atlas
from ..atlas.cluster import fill_atlases
from ..errors import DiamondCutterError
from ..executors import ray_executor
from ..featureviz import visualize
from ..featureviz.param import PARAMS
from ..featureviz.optimize import FAST_SCHEDULE, LUCID_SCHEDULE, estimate_seconds, image_size, layer_channels
from ..progress import duration_text
from . import add_command
from .numbers import COUNT, SEED, SIDE
from .options import add_compute_options, add_layer_option, add_weights_option, layers_of, load_model_from, one_layer


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
    add_weights_option(p)
    p.add_argument("--channels", help="channels to render, e.g. 0-15 or 3,7,9 (default: all)")
    p.add_argument("--param", choices=PARAMS, default="fft", help="image parameterization (default fft)")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default="lucid",
                   help="Adam settings: " + "; ".join(f"{name} (lr {s['lr']}, betas {s['betas']}, {s['steps']} steps)"
                                                      for name, s in SCHEDULES.items())
                        + ". fast gets about as far in a quarter of the time")
    p.add_argument("--steps", type=COUNT, help="optimization steps (default: the schedule's)")
    p.add_argument("--size", type=SIDE, default=size, help="image side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=SEED, default=0)
    add_compute_options(p, batch_size="images per optimization (default: what fits in memory)")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "visualize")
    add_render_options(p, None)
    add_layer_option(p, "layer name (see `diamond-cutter layers MODEL`)", required=True)
    p.add_argument("--out", required=True, help="folder for one PNG per channel")
    p.set_defaults(run=run_visualize)

    a = add_command(sub, "atlas")
    add_render_options(a, 128)
    add_layer_option(a, "layers, repeatable or comma-separated, or 'all' (every spatial layer); --layers also works",
                     required=True, aliases=("--layers",))
    a.add_argument("--store", help="folder or fsspec URL for the cache (default: the user cache; on a cluster, "
                   "a URL every node reaches)")
    a.add_argument("--out", help="also save each layer's spritemap PNG into this folder")
    a.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="render in this process (default) or on a pool of Ray actors")
    a.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    a.set_defaults(run=run_atlas)


def announce(model, layer: str, channels: list[int] | None, args: argparse.Namespace) -> None:
    """Say what the render will do and how long it should take (from a few timed steps), with the
    fast schedule's time beside Lucid's; without ``--channels``, ask first on a terminal."""
    chosen = layer_channels(model, layer, channels)
    settings = schedule(args)
    per_run = estimate_seconds(model, layer, chosen, size=args.size, param=args.param, batch_size=args.batch_size,
                               **settings) / settings["steps"]
    size = image_size(model, args.size)
    plan = (f"{len(chosen)} channels of {layer} × {settings['steps']} steps at {size[0]}×{size[1]} px on "
            f"{model.device.type}: {duration_text(per_run * settings['steps'])}")
    if args.schedule != "fast" and args.steps is None:
        plan += f"; --schedule fast {duration_text(per_run * FAST_SCHEDULE['steps'])}"
    print(plan, flush=True)
    if channels is None:
        if sys.stdin.isatty() and sys.stdout.isatty():
            if input(f"render all {len(chosen)} channels of {layer}? [y/N] ").strip().lower() not in ("y", "yes"):
                raise DiamondCutterError("stopped: pick channels with --channels, e.g. --channels 0-15")
        else:
            print(f"no --channels: rendering the whole layer ({len(chosen)} channels)", flush=True)


def run_visualize(args: argparse.Namespace) -> int:
    model = load_model_from(args)
    layer = one_layer(args)
    announce(model, layer, parse_channels(args.channels), args)
    vis = visualize(model, layer, parse_channels(args.channels), size=args.size, param=args.param,
                    seed=args.seed, batch_size=args.batch_size, **schedule(args))
    paths = vis.save(args.out)
    for ch, score, path in zip(vis.channels, vis.scores.tolist(), paths):
        print(f"{layer} channel {ch}: mean activation {score:.3f} -> {path}")
    return 0


def run_atlas(args: argparse.Namespace) -> int:
    model = load_model_from(args)
    names = layers_of(args)
    names = [layer.name for layer in model.layers.spatial()] if names == ["all"] else names
    channels = parse_channels(args.channels)
    if args.executor == "local":  # a warm-up here says nothing about a cluster's speed
        for layer in names:
            announce(model, layer, channels or list(range(model.layer(layer).channels or 0)), args)
    settings = dict(size=args.size, param=args.param, seed=args.seed, store=args.store, fill=False, **schedule(args))
    report = fill_atlases([atlas(model, layer, **settings) for layer in names], channels,
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
