"""``diamond-cutter sweep MODEL... --data DIR --out DIR``: where to cut, on your labelled images.

Every default comes from the settings objects (:class:`TrainConfig`, :class:`Selection`),
so the command line and the library never disagree.
"""

from __future__ import annotations

import argparse

from ..errors import DiamondCutterError
from ..report.sweep import SweepPage
from ..transfer.cuts import DEFAULT_CUTS
from ..transfer.data import load_labelled
from ..transfer.executor import EXECUTORS
from ..transfer.result import Selection
from ..transfer.sweep import sweep
from ..transfer.train import OPTIMIZERS, TrainConfig
from . import add_command
from .numbers import COUNT, FRACTION, OPTIONAL_COUNT, SEED, SIDE, integer, real
from .options import add_compute_options

TRAIN, SELECT = TrainConfig(), Selection()


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "sweep")
    p.add_argument("model", nargs="*", help="model names, also comma-separated (e.g. efficientnet_lite0 resnet50)")
    p.add_argument("--models", dest="models_option", action="append", help=argparse.SUPPRESS)  # the older spelling
    p.add_argument("--data", required=True, help="folder with one subfolder per class, or a CSV of path,label")
    p.add_argument("--out", required=True, help="folder (or fsspec URL) for results.csv, results.json, sweep.png")
    add_split_arguments(p)
    p.add_argument("--cuts", default="auto", help="'auto' (default) or comma-separated layer names")
    p.add_argument(
        "--n-cuts", type=COUNT, default=DEFAULT_CUTS, help="cuts per model with --cuts auto"
    )
    p.add_argument("--heads", default="linear", help="comma-separated heads: linear, conv (default linear)")
    p.add_argument("--shortlist", type=COUNT, default=SELECT.shortlist, help="pairs that get the slower heads")
    p.add_argument("--weights", default="imagenet", help="'imagenet' (default) or 'none' for random weights")
    p.add_argument("--input-size", type=SIDE, help="square input side in pixels (default: the model's)")
    p.add_argument("--pooling", choices=("avg", "avgmax"), default=TRAIN.pooling,
                   help="how a cut's C×H×W output becomes a feature vector")
    p.add_argument("--epochs", type=COUNT, default=TRAIN.epochs, help="most epochs a head trains")
    p.add_argument(
        "--lr", type=real(0.0, open_low=True), default=TRAIN.lr, help=f"head learning rate (default {TRAIN.lr:g})"
    )
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=TRAIN.optimizer, help="the heads' optimizer")
    p.add_argument("--augment", action="store_true", help="random flips and shifts while training heads")
    p.add_argument(
        "--unfreeze", type=OPTIONAL_COUNT, default=TRAIN.unfreeze, help="fine-tune this many blocks before the cut"
    )
    p.add_argument("--tolerance", type=FRACTION, default=SELECT.tolerance,
                   help=f"validation accuracy a cheaper cut may give up (default {SELECT.tolerance})")
    p.add_argument("--store", "--cache", dest="store", help="feature/result cache (default: ~/.cache/diamond_cutter)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where jobs run: this process (default), worker processes, or Ray")
    p.add_argument("--ray-address", help="Ray cluster address for --executor ray (default: $RAY_ADDRESS, "
                   "else a local Ray)")
    p.add_argument("--save-best", metavar="DIR", help="train the recommended head again and save it here")
    p.add_argument("--profile", action="store_true",
                   help="also fine-tune the recommended pair one block at a time (the fine-tuning profile; slow)")
    p.add_argument(
        "--report", metavar="FILE", help="also write the sweep section (table, plot, recommendation) as HTML"
    )
    add_compute_options(p, batch_size=f"images per training step of a head (default {TRAIN.batch_size})")
    p.set_defaults(run=run)


def add_split_arguments(p: argparse.ArgumentParser) -> None:
    """How the labelled images are split into train, validation and test images (or folds)."""
    p.add_argument("--val", help="separate validation folder/CSV (default: a stratified split of --data)")
    p.add_argument("--test", help="separate test folder/CSV with the same classes (default: a stratified split)")
    p.add_argument("--val-fraction", type=real(0.0, 1.0, open_low=True, open_high=True), default=0.2,
                   help="validation share per class (default 0.2)")
    p.add_argument("--test-fraction", type=real(0.0, 1.0, open_high=True), default=0.2,
                   help="test share per class (default 0.2)")
    p.add_argument("--folds", type=_folds, default="auto",
                   help="'auto' (k-fold cross-validation under 500 images), a number of folds, or 'none'")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of stopping")
    p.add_argument("--seed", type=SEED, default=TRAIN.seed, help="seed of the splits, the heads and the bootstrap")


def _folds(text: str) -> str | int:
    """``auto``, ``none`` or a number of folds (at least 3: test, validation and training folds)."""
    return text if text in ("auto", "none") else integer(3)(text)


def labelled_from(args: argparse.Namespace):
    folds = None if args.folds == "none" else args.folds
    return load_labelled(args.data, val=args.val, test=args.test, val_fraction=args.val_fraction,
                         test_fraction=args.test_fraction, folds=folds, seed=args.seed, skip_bad=args.skip_bad)


def run(args: argparse.Namespace) -> int:
    data = labelled_from(args)
    size = (3, args.input_size, args.input_size) if args.input_size else None
    train = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size or TRAIN.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        augment=args.augment,
        unfreeze=args.unfreeze,
        pooling=args.pooling,
        seed=args.seed,
    )
    result = sweep(
        models_of(args), data,
        cuts=args.n_cuts if args.cuts == "auto" else [c.strip() for c in args.cuts.split(",")],
        heads=tuple(h.strip() for h in args.heads.split(",")), train=train,
        select=Selection(tolerance=args.tolerance, shortlist=args.shortlist, seed=args.seed),
        weights=None if args.weights == "none" else args.weights, input_size=size,
        store=args.store, out=args.out, executor=args.executor, ray_address=args.ray_address,
        profile=args.profile, device=args.device, plan=lambda text: print(text, flush=True),
    )
    print(result)
    print(f"wrote {args.out}/results.csv, results.json, sweep.png")
    if args.report:
        print(f"report: {SweepPage(result).save(args.report)}")
    if args.save_best:
        result.train_best().save(args.save_best)
        print(f"saved the recommended model to {args.save_best}")
    return 0


def models_of(args: argparse.Namespace) -> list[str]:
    """The models named, as words or comma-separated; at least one."""
    texts = (args.model or []) + (args.models_option or [])
    names = [name.strip() for text in texts for name in text.split(",") if name.strip()]
    if not names:
        raise DiamondCutterError(
            "sweep needs at least one model, e.g. `diamond-cutter sweep efficientnet_lite0 --data DIR`"
        )
    return names
