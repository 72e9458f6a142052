"""``diamond-cutter models`` and ``diamond-cutter layers MODEL``: what is available, and what is inside."""

from __future__ import annotations

import argparse
import json

from ..layers import LayerTable, block_table_text
from ..zoo import list_models
from . import add_command
from .options import add_compute_options, add_weights_option, load_model_from


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "models")
    p.add_argument("--all", action="store_true", help="also list every torchvision and timm model")
    p.set_defaults(run=run_models)

    p = add_command(sub, "layers")
    p.add_argument("model", help="model name (see `diamond-cutter models`)")
    add_weights_option(p)
    p.add_argument("--spatial", action="store_true", help="only layers with a C×H×W feature map")
    p.add_argument("--blocks", action="store_true",
                   help="only the blocks a network is cut at, with MACs and parameters up to each")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_compute_options(p, batch_size=False)
    p.set_defaults(run=run_layers)


def run_models(args: argparse.Namespace) -> int:
    entries = list_models(include_all=args.all)
    for e in entries:
        mark = "offline-ready" if e.offline else "downloads weights"
        target = "" if e.name == e.architecture else f" -> {e.architecture}"
        print(f"{e.name:28s} {e.source:12s} {mark}{target}")
    if not args.all:
        print("(plus every torchvision and timm classification model: --all lists them)")
    return 0


def run_layers(args: argparse.Namespace) -> int:
    model = load_model_from(args)
    table = model.layers
    if args.json:
        print(json.dumps([b.as_dict() for b in table.blocks()], indent=2) if args.blocks else table.to_json())
        return 0
    print(summary(model))
    if args.blocks:
        print(block_table_text(table.blocks()))
        return 0
    rows = table.spatial() if args.spatial else list(table)
    print(LayerTable(rows, table.input_size, table.output, table.pre_output))
    return 0


def summary(model) -> str:
    """A few lines describing a model: input, normalisation, output and pre-output layers."""
    t = model.layers
    out = t[t.output] if t.output else None
    lines = [
        f"model       {model.name} (weights: {model.weights or 'random'})",
        f"input       {'×'.join(map(str, model.input_size))}, mean {tuple(round(v, 3) for v in model.mean)}, "
        f"std {tuple(round(v, 3) for v in model.std)}",
        f"output      {t.output} ({out.channels if out else '?'} classes)",
        f"pre-output  {t.pre_output} ({t[t.pre_output].channels if t.pre_output else '?'} features)",
        f"layers      {len(t)} ({len(t.spatial())} with a spatial feature map)",
    ]
    return "\n".join(lines)
