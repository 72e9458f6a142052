"""Feature visualization speed: lucent (one channel at a time) vs Diamond Cutter (batched), same process.

Renders N channels of one mid layer of the embedded EfficientNet-Lite0 both
ways and prints, for each: channels per second, peak memory above the starting
point, and the mean final channel activation measured on the untransformed
images. Then two ratios:

* ``same-settings ratio``: lucent's time / ours with the same image size,
  steps, parameterization (FFT + decorrelated colour), transformations and
  optimizer (Adam, lr 0.05, PyTorch's default betas);
* ``equal-quality ratio``: lucent's time / the time our renderer needs until
  its mean activation reaches lucent's final one. That run uses
  ``FAST_SCHEDULE`` (Adam lr 0.07, betas 0.5/0.8) unless ``--quality-lr`` and
  ``--quality-betas`` say otherwise; its time for s steps is what rendering
  all channels with s steps costs, measured along one run.

Our renderer's speed comes from batching, stopping the forward pass at the
layer, BatchNorm folded into the convolutions of a private copy, channels-last
input and large tensors kept on the heap (``diamond_cutter.heap``). Ours runs as
the ``diamond-cutter`` command runs it, inside ``dc.fast_cpu()``; ``--plain``
times it as a library call gets it by default. ``--lucent-heap`` runs lucent
with the same heap setting, to show how much of the gap is the allocator.

Usage: ``python benchmarks/featureviz.py [--channels 32] [--steps 512] [--layer blocks.4] [--size 224]
[--plain | --lucent-heap] [--quick]``
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import threading
import time
from contextlib import ExitStack, nullcontext

import numpy as np
import torch

import diamond_cutter as dc
from diamond_cutter.capture import preserved
from diamond_cutter.devices import even_batches
from diamond_cutter.featureviz.fold import rendering_network
from diamond_cutter.featureviz.objectives import channel
from diamond_cutter.featureviz.optimize import (
    FAST_SCHEDULE,
    LUCID_SCHEDULE,
    Settings,
    auto_batch_size,
    forward_fn,
    image_size,
    render_objective,
)
from diamond_cutter.heap import fast_cpu, reused_heap


class PeakMemory:
    """Peak memory above the start of the block: CUDA allocator stats, or sampled process RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _sample(self, base: int) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.rss() - base)

    def __enter__(self) -> PeakMemory:
        gc.collect()
        try:  # hand freed heap back to the OS so the RSS baseline is not inflated by the previous run
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._thread = threading.Thread(target=self._sample, args=(self.rss(),), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()


def activation(model: dc.Model, layer: str, pixels: torch.Tensor, channels: list[int]) -> torch.Tensor:
    """Each image's own channel's mean activation on the untransformed image."""
    with ExitStack() as stack, torch.no_grad():
        stack.enter_context(preserved(model.module))
        forward = forward_fn(model, [layer], stack)
        acts = torch.cat(
            [forward(model.normalize(pixels[i : i + 16].to(model.device)))[layer] for i in range(0, len(pixels), 16)]
        )
    return acts[torch.arange(len(channels)), torch.tensor(channels)].mean(dim=(1, 2)).cpu()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_lucent(
    model: dc.Model, layer: str, channels: list[int], steps: int, size: int
) -> tuple[float, int, torch.Tensor]:
    """Lucent's render_vis with its defaults, one channel at a time, on a private copy of the network."""
    from lucent.optvis import param, render, transform

    net = copy.deepcopy(model.module).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    lucent_layer = layer.replace(".", "_")
    transforms = transform.standard_transforms + [model.normalize]
    images = []
    with PeakMemory(model.device) as mem:
        start = time.perf_counter()
        for ch in channels:
            torch.manual_seed(ch)
            out = render.render_vis(net, f"{lucent_layer}:{ch}", lambda: param.image(size), transforms=transforms,
                                    thresholds=(steps,), preprocess=False, progress=False, show_image=False)
            images.append(torch.from_numpy(np.ascontiguousarray(out[-1])).permute(0, 3, 1, 2))
            for m in net.modules():  # lucent never removes its hooks; drop them so later channels are not slowed
                m._forward_hooks.clear()
        sync(model.device)
        elapsed = time.perf_counter() - start
    return elapsed, mem.peak, activation(model, layer, torch.cat(images).float(), channels)


def run_ours(model: dc.Model, layer: str, channels: list[int], settings: Settings, every: int = 0
             ) -> tuple[float, int, torch.Tensor, list[tuple[int, float, float]]]:
    """Batched rendering, chunk after chunk. With ``every`` > 0 also a quality curve: (steps, seconds,
    mean activation) where seconds is what rendering all channels with that many steps costs (the time
    spent measuring the curve is left out)."""
    batch = auto_batch_size(model, layer, image_size(model, settings.size))
    points: dict[int, list[tuple[float, float]]] = {}  # step -> per chunk (seconds into the chunk, activation sum)
    clock = {"start": 0.0, "paused": 0.0}

    def measure(step: int, images: torch.Tensor, chunk: list[int]) -> None:
        if every and step % every == 0:
            t0 = time.perf_counter()
            sync(model.device)
            into_chunk = t0 - clock["start"] - clock["paused"]
            points.setdefault(step - 1, []).append((into_chunk, activation(model, layer, images, chunk).sum().item()))
            clock["paused"] += time.perf_counter() - t0

    results, paused_total = [], 0.0
    with PeakMemory(model.device) as mem:
        start = time.perf_counter()
        network = rendering_network(model, [layer])  # one folded copy for every chunk, as visualize makes it
        for chunk in even_batches(channels, batch):
            clock.update(start=time.perf_counter(), paused=0.0)

            def callback(s: int, im: torch.Tensor, _sc: torch.Tensor, chunk: list[int] = chunk) -> None:
                measure(s, im, chunk)

            results.append(render_objective(model, channel(layer, chunk), settings, keys=chunk, progress=False,
                                            callback=callback, network=network).tensor)
            paused_total += clock["paused"]
        sync(model.device)
        elapsed = time.perf_counter() - start - paused_total
    final = activation(model, layer, torch.cat(results), channels)
    # The images a callback sees at step s are the result of s - 1 updates.
    curve = [(s, sum(t for t, _ in per_chunk), sum(a for _, a in per_chunk) / len(channels))
             for s, per_chunk in sorted(points.items())]
    if every:
        curve.append((settings.steps, elapsed, final.mean().item()))
    return elapsed, mem.peak, final, curve


def mib(n: int) -> str:
    return f"{n / 2**20:8.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--quality-lr", type=float, default=FAST_SCHEDULE.lr, help="our lr for the equal-quality run")
    parser.add_argument("--quality-betas", default=",".join(map(str, FAST_SCHEDULE.betas)),
                        help="our Adam betas for the equal-quality run (two numbers, comma-separated)")
    parser.add_argument("--quality-steps", type=int, help="steps of the equal-quality run (default: half of --steps)")
    parser.add_argument("--lucent-heap", action="store_true", help="run lucent with large tensors kept on the heap too")
    parser.add_argument("--plain", action="store_true",
                        help="run ours without dc.fast_cpu(), as a library call gets it by default")
    parser.add_argument("--quick", action="store_true", help="4 channels, 8 steps at 64 px: checks that it runs")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.quick:
        args.channels, args.steps, args.size = 4, 8, 64

    model = dc.load_model("efficientnet_lite0")
    model.module.to(args.device)
    channels = list(range(args.channels))
    print(f"{args.channels} channels of {args.layer}, {args.steps} steps at {args.size}px on {args.device} "
          f"({torch.get_num_threads()} threads), batch {auto_batch_size(model, args.layer, (args.size, args.size))}")

    render_objective(model, channel(args.layer, [0]), steps=2, size=args.size, progress=False)  # warm-up
    with fast_cpu() if args.lucent_heap else nullcontext(), reused_heap():  # (reused_heap acts inside fast_cpu only)
        lucent_time, lucent_mem, lucent_act = run_lucent(model, args.layer, channels, args.steps, args.size)
    print(f"lucent done in {lucent_time:.1f} s", flush=True)
    print(
        "ours "
        + ("without fast_cpu (a library call's default)" if args.plain else "inside dc.fast_cpu() (as the CLI runs)")
    )
    with nullcontext() if args.plain else fast_cpu():
        ours_time, ours_mem, ours_act, _ = run_ours(model, args.layer, channels,
                                                    LUCID_SCHEDULE.replace(steps=args.steps, size=args.size))
        print(f"batched done in {ours_time:.1f} s", flush=True)
        quality_steps = args.quality_steps or max(1, args.steps // 2)
        betas = tuple(float(b) for b in args.quality_betas.split(","))
        fast = FAST_SCHEDULE.replace(steps=quality_steps, size=args.size, lr=args.quality_lr, betas=betas)
        fast_time, _, fast_act, curve = run_ours(model, args.layer, channels, fast, max(1, quality_steps // 32))

    rows = [("lucent (one at a time)" + (", heap" if args.lucent_heap else ""), lucent_time, lucent_mem, lucent_act),
            ("diamond-cutter (batched)", ours_time, ours_mem, ours_act),
            (f"diamond-cutter (lr {fast.lr:g}, betas {fast.betas[0]:g}/{fast.betas[1]:g})", fast_time, None,
             fast_act)]
    print(f"{'':36s} {'channels/s':>10s} {'peak memory':>13s} {'mean activation':>16s}")
    for name, t, mem, act in rows:
        print(
            f"{name:36s} {args.channels / t:10.3f} {mib(mem) if mem is not None else '':>13s} {act.mean().item():16.3f}"
        )
    target = lucent_act.mean().item()
    reached = next(((s, t) for s, t, value in curve if value >= target), None)
    print(f"same-settings ratio: {lucent_time / ours_time:.1f}x")
    if reached is None:
        print(f"equal-quality ratio: not reached (ours ended at {fast_act.mean().item():.3f} < {target:.3f})")
    else:
        print(f"ours reaches lucent's {target:.3f} after {reached[0]} steps, {reached[1]:.1f} s")
        print(f"equal-quality ratio: {lucent_time / reached[1]:.1f}x")


if __name__ == "__main__":
    main()
