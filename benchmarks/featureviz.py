"""Feature visualization speed: lucent (one channel at a time) vs Diamond Cutter (batched), same process.

Renders N channels of one mid layer of the embedded EfficientNet-Lite0 both
ways and prints, for each: channels per second, peak memory above the starting
point, and the mean final channel activation measured on the untransformed
images. Then two ratios:

* ``same-settings ratio``: lucent's time / ours with the same image size,
  steps, parameterization (FFT + decorrelated colour), transformations and
  optimizer (Adam, lr 0.05);
* ``equal-quality ratio``: lucent's time / the time our renderer needs until
  its mean activation reaches lucent's final one (same settings by default;
  ``--quality-lr`` tries another learning rate).

Usage: ``python benchmarks/featureviz.py [--channels 32] [--steps 512] [--layer blocks.4] [--size 224]``
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

import numpy as np
import torch

import diamond_cutter as dc
from diamond_cutter.featureviz.objectives import channel
from diamond_cutter.featureviz.render import auto_batch_size, forward_fn, render_objective


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
        stack.enter_context(dc.preserved(model.module))
        forward = forward_fn(model, [layer], stack)
        acts = torch.cat([forward(model.normalize(pixels[i : i + 16].to(model.device)))[layer] for i in range(0, len(pixels), 16)])
    return acts[torch.arange(len(channels)), torch.tensor(channels)].mean(dim=(1, 2)).cpu()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_lucent(model: dc.Model, layer: str, channels: list[int], steps: int, size: int) -> tuple[float, int, torch.Tensor]:
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


def run_ours(model: dc.Model, layer: str, channels: list[int], steps: int, size: int, lr: float,
             every: int = 0) -> tuple[float, int, torch.Tensor, list[tuple[float, float]]]:
    """Batched rendering; with ``every`` > 0 also a curve of (seconds, mean activation) along the way."""
    batch = auto_batch_size(model, layer, (size, size))
    snapshots: list[tuple[float, int, torch.Tensor]] = []
    paused = [0.0]

    def keep(step: int, images: torch.Tensor, _scores: torch.Tensor, chunk: list[int]) -> None:
        if every and step % every == 0:
            t0 = time.perf_counter()
            sync(model.device)
            snapshots.append((t0 - start - paused[0], chunk[0], images.half().cpu()))
            paused[0] += time.perf_counter() - t0

    results = []
    with PeakMemory(model.device) as mem:
        start = time.perf_counter()
        for i in range(0, len(channels), batch):
            chunk = channels[i : i + batch]
            callback: Callable = lambda s, im, sc, chunk=chunk: keep(s, im, sc, chunk)
            results.append(render_objective(model, channel(layer, chunk), keys=chunk, steps=steps, size=size, lr=lr,
                                            progress=False, callback=callback).tensor)
        sync(model.device)
        elapsed = time.perf_counter() - start - paused[0]
    final = activation(model, layer, torch.cat(results), channels)
    return elapsed, mem.peak, final, quality_curve(model, layer, channels, batch, snapshots)


def quality_curve(model, layer, channels, batch, snapshots) -> list[tuple[float, float]]:
    """Mean activation over all channels as a function of time (chunks run one after another)."""
    if not snapshots:
        return []
    by_chunk: dict[int, list[tuple[float, float]]] = {}
    for t, first, images in snapshots:
        chunk = channels[channels.index(first) : channels.index(first) + len(images)]
        by_chunk.setdefault(first, []).append((t, activation(model, layer, images.float(), chunk).sum().item()))
    # At time t the finished chunks contribute their final value, the running chunk its current one.
    curve = []
    for first, points in by_chunk.items():
        done = sum(p[-1][1] for f, p in by_chunk.items() if f < first)
        curve += [(t, (done + value) / len(channels)) for t, value in points]
    return curve


def mib(n: int) -> str:
    return f"{n / 2**20:8.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--quality-lr", type=float, default=0.05, help="our learning rate for the equal-quality run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    model = dc.load_model("efficientnet_lite0")
    model.module.to(args.device)
    channels = list(range(args.channels))
    print(f"{args.channels} channels of {args.layer}, {args.steps} steps at {args.size}px on {args.device} "
          f"({torch.get_num_threads()} threads), batch {auto_batch_size(model, args.layer, (args.size, args.size))}")

    render_objective(model, channel(args.layer, [0]), steps=2, size=args.size, progress=False)  # warm-up
    lucent_time, lucent_mem, lucent_act = run_lucent(model, args.layer, channels, args.steps, args.size)
    print(f"lucent done in {lucent_time:.1f} s", flush=True)
    ours_time, ours_mem, ours_act, _ = run_ours(model, args.layer, channels, args.steps, args.size, lr=0.05)
    print(f"batched done in {ours_time:.1f} s", flush=True)
    every = max(1, args.steps // 32)
    fast_time, _, fast_act, curve = run_ours(model, args.layer, channels, args.steps, args.size, args.quality_lr, every)

    rows = [("lucent (one at a time)", lucent_time, lucent_mem, lucent_act),
            ("diamond-cutter (batched)", ours_time, ours_mem, ours_act),
            (f"diamond-cutter (lr {args.quality_lr:g})", fast_time, None, fast_act)]
    print(f"{'':28s} {'channels/s':>10s} {'peak memory':>13s} {'mean activation':>16s}")
    for name, t, mem, act in rows:
        print(f"{name:28s} {args.channels / t:10.3f} {mib(mem) if mem is not None else '':>13s} {act.mean().item():16.3f}")
    target = lucent_act.mean().item()
    reached = next((t for t, value in curve if value >= target), None)
    print(f"same-settings ratio: {lucent_time / ours_time:.1f}x")
    if reached is None:
        print(f"equal-quality ratio: not reached (ours ended at {fast_act.mean().item():.3f} < {target:.3f})")
    else:
        print(f"equal-quality ratio: {lucent_time / reached:.1f}x")


if __name__ == "__main__":
    main()
