"""``diamond-cutter sweep MODEL... --data DIR --out DIR``: where to cut, on your labelled images."""

from __future__ import annotations

import argparse

from ..errors import DiamondCutterError
from ..transfer.data import load_labelled
from ..transfer.sweep import SHORTLIST, sweep
from . import add_command
from .numbers import COUNT, FRACTION, OPTIONAL_COUNT, SEED, SIDE, real
from .options import add_compute_options


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "sweep")
    p.add_argument("model", nargs="*", help="model names, also comma-separated (e.g. efficientnet_lite0 resnet50)")
    p.add_argument("--models", dest="models_option", action="append", help=argparse.SUPPRESS)  # the older spelling
    p.add_argument("--data", required=True, help="folder with one subfolder per class, or a CSV of path,label")
    p.add_argument("--out", required=True, help="folder (or fsspec URL) for results.csv, results.json, sweep.png")
    p.add_argument("--val", help="separate validation folder/CSV (default: a stratified split of --data)")
    p.add_argument("--val-fraction", type=real(0.0, 1.0, open_low=True, open_high=True), default=0.25, help="validation share per class (default 0.25)")
    p.add_argument("--cuts", default="auto", help="'auto' (default) or comma-separated layer names")
    p.add_argument("--n-cuts", type=COUNT, default=10, help="cuts per model with --cuts auto (default 10)")
    p.add_argument("--heads", default="linear", help="comma-separated heads: linear, conv (default linear)")
    p.add_argument("--shortlist", type=COUNT, default=SHORTLIST, help="pairs that get the slower heads")
    p.add_argument("--weights", default="imagenet", help="'imagenet' (default) or 'none' for random weights")
    p.add_argument("--input-size", type=SIDE, help="square input side in pixels (default: the model's)")
    p.add_argument("--pooling", choices=("avg", "avgmax"), default="avg")
    p.add_argument("--epochs", type=COUNT, default=30)
    p.add_argument("--lr", type=real(0.0, open_low=True), default=1e-2)
    p.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    p.add_argument("--augment", action="store_true", help="random flips and shifts while training heads")
    p.add_argument("--unfreeze", type=OPTIONAL_COUNT, default=0, help="fine-tune this many blocks before the cut")
    p.add_argument("--tolerance", type=FRACTION, default=0.01, help="accuracy a cheaper cut may give up (default 0.01)")
    p.add_argument("--store", "--cache", dest="store", help="feature/result cache (default: ~/.cache/diamond_cutter)")
    p.add_argument("--executor", choices=("local", "processes"), default="local")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of stopping")
    p.add_argument("--save-best", metavar="DIR", help="train the recommended head again and save it here")
    p.add_argument("--seed", type=SEED, default=0)
    add_compute_options(p, batch_size="images per training step of a head (default 32)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    data = load_labelled(args.data, val=args.val, val_fraction=args.val_fraction, seed=args.seed,
                         skip_bad=args.skip_bad)
    size = (3, args.input_size, args.input_size) if args.input_size else None
    result = sweep(
        models_of(args), data,
        cuts=args.cuts if args.cuts == "auto" else [c.strip() for c in args.cuts.split(",")],
        heads=tuple(h.strip() for h in args.heads.split(",")), n_cuts=args.n_cuts,
        weights=None if args.weights == "none" else args.weights, input_size=size, pooling=args.pooling,
        shortlist=args.shortlist, tolerance=args.tolerance, epochs=args.epochs, batch_size=args.batch_size or 32,
        lr=args.lr, optimizer=args.optimizer, augment=args.augment, unfreeze=args.unfreeze, seed=args.seed,
        store=args.store, out=args.out, executor=args.executor, device=args.device,
    )
    print(result)
    print(f"wrote {args.out}/results.csv, results.json, sweep.png")
    if args.save_best:
        result.train_best().save(args.save_best)
        print(f"saved the recommended model to {args.save_best}")
    return 0


def models_of(args: argparse.Namespace) -> list[str]:
    """The models named, as words or comma-separated; at least one."""
    texts = (args.model or []) + (args.models_option or [])
    names = [name.strip() for text in texts for name in text.split(",") if name.strip()]
    if not names:
        raise DiamondCutterError("sweep needs at least one model, e.g. `diamond-cutter sweep efficientnet_lite0 --data DIR`")
    return names
