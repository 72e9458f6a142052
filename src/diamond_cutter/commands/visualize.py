"""``diamond-cutter visualize`` and ``diamond-cutter atlas``: feature visualizations from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..atlas import atlas
from ..atlas.cluster import fill_atlases
from ..atlas.layer_atlas import DEFAULT_ICON
from ..errors import DiamondCutterError
from ..executors import ray_executor
from ..featureviz import visualize
from ..featureviz.optimize import (
    FAST_SCHEDULE,
    LUCID_SCHEDULE,
    PRECISIONS,
    Settings,
    estimate_seconds,
    image_size,
    layer_channels,
)
from ..featureviz.param import PARAMS
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


def render_settings(args: argparse.Namespace) -> Settings:
    """The ``--schedule``'s settings, with the options given on the command line replacing its values."""
    given = {
        "steps": args.steps,
        "size": args.size,
        "param": args.param,
        "seed": args.seed,
        "precision": args.precision,
    }
    return SCHEDULES[args.schedule].replace(**{k: v for k, v in given.items() if v is not None})


def add_render_options(p: argparse.ArgumentParser, size: str) -> None:
    p.add_argument("model", help="model name (see `diamond-cutter models`)")
    add_weights_option(p)
    p.add_argument("--channels", help="channels to render, e.g. 0-15 or 3,7,9 (default: all)")
    p.add_argument("--param", choices=PARAMS, help=f"image parameterization (default {LUCID_SCHEDULE.param})")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default="lucid",
                   help="Adam settings: " + "; ".join(f"{name} (lr {s.lr}, betas {s.betas}, {s.steps} steps)"
                                                      for name, s in SCHEDULES.items())
                        + ". fast gets about as far in a quarter of the time")
    p.add_argument("--steps", type=COUNT, help="optimization steps (default: the schedule's)")
    p.add_argument("--size", type=SIDE, help=f"image side in pixels (default: {size})")
    p.add_argument("--seed", type=SEED, help=f"seed of the images' randomness (default {LUCID_SCHEDULE.seed})")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="arithmetic of the network: auto (default) is bfloat16 on a GPU, float32 on a CPU")
    add_compute_options(p, batch_size="images per optimization (default: what fits in memory)")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "visualize")
    add_render_options(p, "the model's input size")
    add_layer_option(p, "layer name (see `diamond-cutter layers MODEL`)", required=True)
    p.add_argument("--out", required=True, help="folder for one PNG per channel")
    p.set_defaults(run=run_visualize)

    a = add_command(sub, "atlas")
    add_render_options(a, str(DEFAULT_ICON))
    add_layer_option(a, "layers, repeatable or comma-separated, or 'all' (every spatial layer); --layers also works",
                     required=True, aliases=("--layers",))
    a.add_argument("--store", help="folder or fsspec URL for the cache (default: the user cache; on a cluster, "
                   "a URL every node reaches)")
    a.add_argument("--out", help="also save each layer's spritemap PNG into this folder")
    a.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="render in this process (default) or on a pool of Ray actors")
    a.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    a.set_defaults(run=run_atlas)


def announce(model, layer: str, channels: list[int] | None, args: argparse.Namespace,
             settings: Settings | None = None) -> None:
    """Say what the render will do and how long it should take (from a few timed steps), with the
    fast schedule's time beside Lucid's; without ``--channels``, ask first on a terminal. ``settings``
    default to the command line's (:func:`render_settings`)."""
    settings = settings or render_settings(args)
    chosen = layer_channels(model, layer, channels)
    per_step = estimate_seconds(model, layer, chosen, settings, batch_size=args.batch_size) / settings.steps
    size = image_size(model, settings.size)
    plan = (f"{len(chosen)} channels of {layer} × {settings.steps} steps at {size[0]}×{size[1]} px on "
            f"{model.device.type}: {duration_text(per_step * settings.steps)}")
    if args.schedule != "fast" and args.steps is None:
        plan += f"; --schedule fast {duration_text(per_step * FAST_SCHEDULE.steps)}"
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
    assert layer is not None  # --layer is required
    settings = render_settings(args)
    announce(model, layer, parse_channels(args.channels), args, settings)
    vis = visualize(model, layer, parse_channels(args.channels), settings, batch_size=args.batch_size)
    paths = vis.save(args.out)
    for ch, score, path in zip(vis.channels, vis.scores.tolist(), paths):
        print(f"{layer} channel {ch}: mean activation {score:.3f} -> {path}")
    return 0


def run_atlas(args: argparse.Namespace) -> int:
    model = load_model_from(args)
    names = layers_of(args)
    names = [layer.name for layer in model.layers.spatial()] if names == ["all"] else names
    channels = parse_channels(args.channels)
    settings = render_settings(args)
    if args.executor == "local":  # a warm-up here says nothing about a cluster's speed
        for layer in names:
            cells = settings.replace(size=settings.size or DEFAULT_ICON)
            announce(model, layer, channels or list(range(model.layer(layer).channels or 0)), args, cells)
    atlases = [atlas(model, layer, settings=settings, store=args.store, fill=False) for layer in names]
    report = fill_atlases(atlases, channels, batch_size=args.batch_size,
                          executor=ray_executor(args.executor, args.ray_address))
    for result in report.atlases:
        print(f"{result.layer}: {len(result.done)}/{result.channels} channels in {result.store.path(result.key)}")
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            target = Path(args.out) / f"{result.layer.replace('.', '_')}_atlas.png"
            result.spritemap.save(target)
            print(f"  spritemap -> {target}")
    print(report)
    return 0
