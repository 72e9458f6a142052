"""Where-to-cut sweep vs the naive way, on the embedded model and scikit-learn's handwritten digits.

(a) Diamond Cutter: one truncated forward per image gives pooled features of
    every cut; per cut a closed-form ridge probe and a linear head trained by
    SGD on the cached features.
(b) Naive: per cut, build the cut model and train the same linear head by SGD
    on the images, running the frozen backbone in every step, for the same
    number of epochs (validation after each epoch for early stopping, as (a) does).

Then the estimators that read sufficient statistics (H-score, GBC, SFDA's LDA)
and TransRate: from one Statistics accumulated batch by batch as features
stream past, vs each estimator computing its own statistics from the stored
features, on the same cuts (``streamed estimators: N.Nx``).

Both start from images on disk (a) or decoded in memory (b) and an empty
cache; the cut listing is computed once beforehand for both. (a) runs
``--repeats`` times and its median time counts. Prints both best-cut
accuracies, the times and the ratio:

    python benchmarks/sweep.py [--per-class 20] [--size 64] [--epochs 30] [--cuts 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from torch import nn

import diamond_cutter as dc
from diamond_cutter.capture import preserved
from diamond_cutter.store import Store
from diamond_cutter.transfer.cuts import CutBackbone, candidate_cuts
from diamond_cutter.transfer.data import load_labelled, make_digits_dataset
from diamond_cutter.transfer.estimators import ridge_probe, standardise
from diamond_cutter.transfer.features import extract_features
from diamond_cutter.transfer.heads import LinearHead
from diamond_cutter.transfer.statistics import Statistics, gbc, hscore, sfda_lda, transrate
from diamond_cutter.transfer.train import TrainConfig, train_head


def ours(model, data, cuts, config) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Validation accuracy per cut of (linear head on cached features, ridge probe), and the time per stage."""
    times = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        fs = extract_features(model, data, cuts, store=Store(cache), batch_size=config.batch_size, progress=False)
    times["features"] = time.perf_counter() - start
    heads, probes = {}, {}
    start = time.perf_counter()
    for cut in cuts:
        f = fs.features[cut]
        xt, xv = standardise(f[data.train], f[data.val])
        probes[cut] = ridge_probe(xt, data.labels[data.train], xv, data.labels[data.val]).accuracy
    times["ridge probes"] = time.perf_counter() - start
    start = time.perf_counter()
    for cut in cuts:
        f = fs.features[cut]
        trained = train_head(model, data, cut, "linear", config, progress=False, features=f)
        heads[cut] = max(h["val_accuracy"] for h in trained.history)  # the best epoch, as naive() reports
    times["linear heads"] = time.perf_counter() - start
    return heads, probes, times


def estimators(features: dict[str, np.ndarray], data, repeats: int = 5) -> tuple[float, float]:
    """Seconds for all statistic-based estimators on every cut: (streamed, separately); best of ``repeats``."""
    pairs = []
    for f in features.values():
        x, _ = standardise(f[data.train], f[data.val])
        pairs.append((x, data.labels[data.train]))

    def streamed() -> None:
        for x, y in pairs:
            stats = Statistics(x.shape[1], len(data.classes))
            for start in range(0, len(x), 32):  # as batches come out of the network
                stats.update(x[start : start + 32], y[start : start + 32])
            hscore(stats), gbc(stats, x, y), sfda_lda(stats, x, y), transrate(x, y)

    def separately() -> None:
        for x, y in pairs:
            hscore(Statistics.of(x, y)), gbc(Statistics.of(x, y), x, y), sfda_lda(Statistics.of(x, y), x, y),
            transrate(x, y)

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    return best(streamed), best(separately)


def naive(model, data, cuts, config) -> dict[str, float]:
    """Per cut: SGD on images through the frozen cut backbone, best validation epoch."""
    x_train, x_val = data.pixels(data.train, model), data.pixels(data.val, model)
    y_train, y_val = torch.as_tensor(data.labels[data.train]), torch.as_tensor(data.labels[data.val])
    accuracy = {}
    with preserved(model.module, freeze=True):
        for cut in cuts:
            torch.manual_seed(config.seed)
            backbone = CutBackbone(model.module, cut)
            head = LinearHead(model.layer(cut).channels, len(data.classes))
            opt = torch.optim.SGD(head.parameters(), lr=config.lr, momentum=0.9)
            best = 0.0
            for _ in range(config.epochs):
                order = torch.randperm(len(y_train))
                for start in range(0, len(order), config.batch_size):
                    idx = order[start : start + config.batch_size]
                    if len(idx) < 2:
                        continue
                    with torch.no_grad():
                        fmap = backbone(x_train[idx])
                    loss = nn.functional.cross_entropy(head(fmap), y_train[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    preds = torch.cat([head(backbone(x_val[s : s + config.batch_size])).argmax(1)
                                       for s in range(0, len(x_val), config.batch_size)])
                best = max(best, float((preds == y_val).float().mean()))
            accuracy[cut] = best
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs,
                        help="epochs of every head, both ways (default: the library's TrainConfig)")
    parser.add_argument("--cuts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="runs of (a), each with an empty cache; median time")
    args = parser.parse_args()

    model = dc.load_model("efficientnet_lite0", input_size=(3, args.size, args.size))
    with tempfile.TemporaryDirectory() as root:
        data = load_labelled(make_digits_dataset(root, per_class=args.per_class), folds=None)  # one split, as naive
        with torch.no_grad():  # warm-up: the first forward at a batch shape pays one-off allocation costs
            model(data.pixels(data.train[:32], model))
        cuts = [c.name for c in candidate_cuts(model, "auto", n=args.cuts)]
        config = TrainConfig(epochs=args.epochs, batch_size=32, lr=0.05, optimizer="sgd", patience=args.epochs)
        print(f"{len(data)} digits images ({len(data.classes)} classes, {len(data.train)} train / {len(data.val)} val) "
              f"at {args.size}px, {len(cuts)} cuts of efficientnet_lite0: {', '.join(cuts)}; {args.epochs} epochs")
        runs = []
        for _ in range(args.repeats):  # ours is short, so one busy moment on a shared machine skews it: median
            start = time.perf_counter()
            with dc.fast_cpu():  # as `diamond-cutter sweep` runs it
                head_acc, probe_acc, stages = ours(model, data, cuts, config)
            runs.append((time.perf_counter() - start, stages))
        t_ours, stages = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        start = time.perf_counter()
        naive_acc = naive(model, data, cuts, config)
        t_naive = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as cache:
            cached = extract_features(model, data, cuts, store=Store(cache), progress=False).features
        t_streamed, t_separate = estimators(cached, data)

    best_ours = max(cuts, key=lambda c: max(head_acc[c], probe_acc[c]))
    best_naive = max(cuts, key=lambda c: naive_acc[c])
    ours_score = max(head_acc[best_ours], probe_acc[best_ours])
    print("cut            ours: head  ridge   naive: head")
    for c in cuts:
        print(f"{c:14s} {head_acc[c]:10.3f} {probe_acc[c]:6.3f} {naive_acc[c]:13.3f}")
    split = ", ".join(f"{k} {v:.1f} s" for k, v in stages.items())
    print(f"ours:  best cut {best_ours}, val accuracy {ours_score:.3f}, {t_ours:.1f} s ({split})")
    print(f"naive: best cut {best_naive}, val accuracy {naive_acc[best_naive]:.3f}, {t_naive:.1f} s")
    print(f"best-cut accuracy difference (ours - naive): {100 * (ours_score - naive_acc[best_naive]):+.1f} points")
    print(f"speed ratio: {t_naive / t_ours:.1f}x")
    print(f"statistic estimators on {len(cuts)} cuts: streamed {t_streamed:.3f} s, separately {t_separate:.3f} s")
    print(f"streamed estimators: {t_separate / t_streamed:.1f}x")


if __name__ == "__main__":
    torch.manual_seed(0)
    np.random.seed(0)
    main()
