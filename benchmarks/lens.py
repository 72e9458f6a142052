"""The lens's two costs, side by side in one process.

1. ``streamed pass vs forward+backward: N.Nx``: the reference scan (both rankings,
   by activation and by relevance, top-``k`` of every channel of two layers,
   shards written to a fresh store) over the images, divided by a plain forward
   and backward of the same images in the same batches (the top-1 logit back
   to the input). Target: at most 1.5.
2. ``crp ratio: N.Nx``: conditional heatmaps of 32 channels of one image with the
   same zennit composite: the baseline runs the whole network forward and
   backward once per concept (zennit-crp's ``CondAttribution`` when ``crp`` is
   importable, otherwise the same per-concept loop written on zennit, and the
   line says which); ours runs the part above the layer once and the part below
   it once for all concepts. The script checks both give the same maps. Target: at least 3.

zennit-crp 0.6.0 pins ``zennit<=0.4.6``; ``pip install --no-deps zennit-crp==0.6.0``
installs it without touching zennit (it runs on zennit 0.5).

    python benchmarks/lens.py [--images 16] [--repeat 2] [--crp-model resnet50] [--size 224]
    python benchmarks/lens.py --quick        # seconds: proves the script runs
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import torchvision

import diamond_cutter as dc
from diamond_cutter.capture import capture, preserved
from diamond_cutter.images import DEMO_SAMPLES
from diamond_cutter.lens import CRPSettings, Relevance, ScanSettings, scan_references
from diamond_cutter.lens.crp import concept_weights

from timing import seconds

SCAN_LAYERS = ["blocks.3", "blocks.5"]
CRP_LAYERS = {"resnet18": "layer3", "resnet50": "layer3"}


def streamed(args: argparse.Namespace) -> None:
    model = dc.load_model("efficientnet_lite0", input_size=(3, args.size, args.size))
    images = dc.load_images([DEMO_SAMPLES[i % len(DEMO_SAMPLES)] for i in range(args.images)], model)
    settings = ScanSettings(k=8, batch_size=args.batch)

    def scan() -> None:
        with tempfile.TemporaryDirectory() as store:
            scan_references(model, images, SCAN_LAYERS, settings, store=store)

    def plain() -> None:
        with preserved(model.module, freeze=True):
            for start in range(0, len(images), args.batch):
                x = images.tensor[start : start + args.batch].requires_grad_(True)
                logits = model(x)
                torch.autograd.grad(logits.max(1).values.sum(), x)

    plain()  # warm up both sides on the timed shapes
    scan()
    t_plain, _ = seconds(plain, args.repeat)
    t_scan, _ = seconds(scan, args.repeat)
    print(f"scan {t_scan:.2f}s, forward+backward {t_plain:.2f}s ({args.images} images at {args.size} px, "
          f"{', '.join(SCAN_LAYERS)}, {Relevance(model).method})")
    print(f"streamed pass vs forward+backward: {t_scan / t_plain:.1f}x")


def per_concept_zennit(
    engine: Relevance, x: torch.Tensor, layer: str, weights: torch.Tensor, target: int
) -> torch.Tensor:
    """The per-concept loop on zennit: a whole forward and backward for each concept, the layer's
    relevance masked by a tensor hook (what zennit-crp does)."""
    maps = []
    for w in weights:
        xs = x.detach().requires_grad_(True)
        with engine.active(xs) as net, capture(net, [f"module.{layer}"]) as rec:
            logits = net(xs)
            rec[f"module.{layer}"].register_hook(lambda g, w=w: g * w.view(1, -1, 1, 1))
            seed = torch.zeros_like(logits)
            seed[:, target] = logits[:, target].detach()
            (grad,) = torch.autograd.grad(logits, xs, grad_outputs=seed)
        maps.append(grad.sum(1)[0])
    return torch.stack(maps)


def per_concept_crp(model: dc.Model, x: torch.Tensor, layer: str, channels: list[int], target: int, engine: Relevance,
                    generate: bool = False) -> torch.Tensor:
    """zennit-crp with one condition per channel, same composite: ``CondAttribution(...)`` (every
    concept a row of one batch), or ``generate`` with one concept per backward through one forward."""
    from crp.attribution import (
        CondAttribution,  # optional: only this benchmark uses zennit-crp
    )

    attribution = CondAttribution(model.module, no_param_grad=True)
    conditions = [{layer: [c], "y": [target]} for c in channels]
    composite = engine.composite(x)
    xs = x.detach().requires_grad_(True)
    if not generate:
        return attribution(xs, conditions, composite).heatmap
    results = attribution.generate(xs, conditions, composite, batch_size=1, verbose=False)
    return torch.cat([r.heatmap for r in results])


def crp_ratio(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    net = getattr(torchvision.models, args.crp_model)(weights=None).eval()
    model = dc.load_model(net, input_size=(3, args.size, args.size))
    layer = CRP_LAYERS[args.crp_model]
    x = model.normalize(dc.load_images("chelsea", model).pixels)
    engine = Relevance(model, CRPSettings(method="lrp", batch_size=32))
    sig = engine.signal(x, [layer], "top1")
    target = int(sig.classes[0])
    channels = sig.signals[layer].sum((2, 3))[0].topk(32).indices.tolist()
    weights, _ = concept_weights(channels, None, sig.signals[layer].shape[1])

    def ours() -> torch.Tensor:
        s = engine.signal(x, [layer], [target])
        return engine.heatmaps(x, layer, s.signals[layer], weights)

    baselines = {"a per-concept loop on zennit": lambda: per_concept_zennit(engine, x, layer, weights, target)}
    try:
        import crp  # noqa: F401  (optional: only this benchmark uses zennit-crp)

        baselines = {
            "zennit-crp CondAttribution": lambda: per_concept_crp(model, x, layer, channels, target, engine),
            "zennit-crp generate": lambda: per_concept_crp(model, x, layer, channels, target, engine, generate=True),
            **baselines,
        }
    except ImportError:
        print("zennit-crp is not installed: the per-concept loop on zennit stands in for it")
    t_ours, a = seconds(ours, args.repeat)
    for i, (name, baseline) in enumerate(baselines.items()):
        t_base, b = seconds(baseline, args.repeat)
        agree = torch.allclose(a, b.to(a), atol=1e-6 * float(b.abs().max()) + 1e-12, rtol=1e-3)
        print(f"ours {t_ours:.2f}s, {name} {t_base:.2f}s: 32 channels of {layer} in {args.crp_model} at "
              f"{args.size} px; maps agree: {agree}")
        print(f"crp ratio{'' if i == 0 else ' vs ' + name}: {t_base / t_ours:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--crp-model", default="resnet50", choices=sorted(CRP_LAYERS))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the script runs, times nothing useful")
    args = parser.parse_args()
    if args.quick:
        args.images, args.batch, args.repeat, args.size, args.crp_model = 4, 4, 1, 64, "resnet18"
    streamed(args)
    crp_ratio(args)


if __name__ == "__main__":
    main()
