"""Attribution speed against captum and pytorch-grad-cam, side by side in one process.

Runs on the embedded EfficientNet-Lite0 at 224 px with a batch of sample images
(16, or 2 with ``--quick``) and explicit class targets (the top-1 predictions),
so every library explains the same classes:

- Grad-CAM at ``bn2``: ours vs pytorch-grad-cam's GradCAM and captum's LayerGradCam
- Score-CAM at ``blocks.5`` (192 channels): ours vs pytorch-grad-cam's ScoreCAM
- LayerCAM at ``bn2``: ours vs pytorch-grad-cam's LayerCAM
- Integrated Gradients, 50 Gauss–Legendre steps: ours vs captum's IntegratedGradients
- Occlusion, 32 px window, stride 16: ours vs captum's Occlusion

Peers and ours get the same batch sizes (forward batch of 32 for Score-CAM and
occlusion, 50 path points per backward for IG). Each pair prints images/s and a
line ``ratio NAME: 1.3x`` (ours over the faster peer) that scripts can read.
Ours runs as the ``diamond-cutter`` command runs it: inside ``dc.fast_cpu()``, which keeps large CPU
tensors on the heap during a call (``diamond_cutter.heap``). ``--plain`` times ours as a library call
gets it by default (no ``fast_cpu``); ``--peers-heap`` gives the peers the heap setting too, to separate
that from the rest.

    python benchmarks/attribution.py [--quick] [--repeat 2] [--plain | --peers-heap]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's Score-CAM progress bars

import torch  # noqa: E402
from captum import attr as captum  # noqa: E402
from pytorch_grad_cam import GradCAM, LayerCAM, ScoreCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

import diamond_cutter as dc  # noqa: E402
from diamond_cutter.heap import fast_cpu, reused_heap  # noqa: E402
from diamond_cutter.images import SAMPLES  # noqa: E402

from timing import images_per_second  # noqa: E402  (benchmarks/timing.py, beside this script)


@contextmanager
def peers_heap(on: bool) -> Iterator[None]:
    """The heap setting ours gets inside ``fast_cpu``, for a peer's whole run (when ``on``)."""
    if not on:
        yield
        return
    with fast_cpu(), reused_heap():
        yield


def pytorch_grad_cam(
    cls: type,
    net: torch.nn.Module,
    layer: torch.nn.Module,
    x: torch.Tensor,
    targets: list[int],
    batch_size: int | None = None,
) -> object:
    with cls(net, [layer]) as cam:
        if batch_size:
            cam.batch_size = batch_size
        return cam(x, targets=[ClassifierOutputTarget(t) for t in targets])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 images instead of 16")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (best is kept)")
    parser.add_argument("--peers-heap", action="store_true",
                        help="run the peers with large tensors kept on the heap too, as ours are (diamond_cutter.heap)")
    parser.add_argument("--plain", action="store_true",
                        help="time ours without dc.fast_cpu(), as a library call gets it by default")
    args = parser.parse_args()
    n = 2 if args.quick else 16

    model = dc.load_model("efficientnet_lite0")
    names = [list(SAMPLES)[i % len(SAMPLES)] for i in range(n)]
    batch = dc.load_images(names, model)
    x = batch.tensor
    net = model.module.eval()
    targets = dc.predict(model, batch, k=1).indices[:, 0].tolist()
    t = torch.tensor(targets)
    modules = dict(net.named_modules())
    print(f"{n} images at 224 px, {torch.get_num_threads()} threads, targets {targets}")

    pairs: dict[str, tuple[Callable[[], object], dict[str, Callable[[], object]]]] = {
        "gradcam": (
            lambda: dc.attribute(model, batch, "gradcam", target=targets, layer="bn2"),
            {
                "captum": lambda: captum.LayerGradCam(net, modules["bn2"]).attribute(
                    x, target=t, relu_attributions=True
                ),
                "pytorch-grad-cam": lambda: pytorch_grad_cam(GradCAM, net, modules["bn2"], x, targets),
            },
        ),
        "scorecam": (
            lambda: dc.attribute(model, batch, "scorecam", target=targets, layer="blocks.5", batch_size=32),
            {
                "pytorch-grad-cam": lambda: pytorch_grad_cam(
                    ScoreCAM, net, modules["blocks.5"], x, targets, batch_size=32
                )
            },
        ),
        "layercam": (
            lambda: dc.attribute(model, batch, "layercam", target=targets, layer="bn2"),
            {"pytorch-grad-cam": lambda: pytorch_grad_cam(LayerCAM, net, modules["bn2"], x, targets)},
        ),
        "integrated_gradients": (
            # the same internal batch on both sides: 16 path points, which measured fastest for both on 2 CPU cores
            lambda: dc.attribute(
                model, batch, "integrated_gradients", target=targets, steps=50, baseline="zero", batch_size=16
            ),
            {
                "captum": lambda: captum.IntegratedGradients(net).attribute(
                    x, target=t, n_steps=50, internal_batch_size=16
                )
            },
        ),
        "occlusion": (
            lambda: dc.attribute(model, batch, "occlusion", target=targets, window=32, stride=16, batch_size=32),
            {
                "captum": lambda: captum.Occlusion(net).attribute(
                    x,
                    sliding_window_shapes=(3, 32, 32),
                    strides=(3, 16, 16),
                    baselines=0,
                    target=t,
                    perturbations_per_eval=max(1, 32 // n),
                )
            },
        ),
    }
    # warm-up outside the timings: the layer table (built once per model) and both memory layouts
    dc.attribute(model, batch, "gradcam", target=targets, layer="bn2")
    captum.LayerGradCam(net, modules["bn2"]).attribute(x, target=t)
    print(
        "ours "
        + ("without fast_cpu (a library call's default)" if args.plain else "inside dc.fast_cpu() (as the CLI runs)")
    )
    for name, (ours, peers) in pairs.items():
        with nullcontext() if args.plain else fast_cpu():
            speed = {"diamond-cutter": images_per_second(ours, n, args.repeat)}
        for peer, fn in peers.items():
            with peers_heap(args.peers_heap):
                speed[peer] = images_per_second(fn, n, args.repeat)
        print(f"{name}: " + ", ".join(f"{k} {v:.2f} img/s" for k, v in speed.items()), flush=True)
        best_peer = max(v for k, v in speed.items() if k != "diamond-cutter")
        print(f"ratio {name}: {speed['diamond-cutter'] / best_peer:.2f}x", flush=True)


if __name__ == "__main__":
    main()
