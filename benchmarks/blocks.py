"""Channel attribution speed against captum, side by side in one process.

Building Blocks' channel attribution (activation × gradient summed over space)
at ``blocks.4`` of the embedded EfficientNet-Lite0, for a positive minus a
negative class: ours takes one probe (a forward that records no autograd
history below the layer, and one backward of the score difference from the
layer up); captum's LayerGradientXActivation explains one target per call, so
the difference costs it two (the same answer by linearity). Both sides get
the same images and batch; the script checks they agree, prints images/s and
a line ``ratio NAME: 1.9x`` (ours over captum) that scripts can read.

    python benchmarks/blocks.py [--images 8] [--repeat 2]
"""

from __future__ import annotations

import argparse

import torch
from captum.attr import LayerGradientXActivation

import diamond_cutter as dc
from diamond_cutter.images import DEMO_SAMPLES

from timing import seconds

LAYER = "blocks.4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    model = dc.load_model("efficientnet_lite0")
    names = [DEMO_SAMPLES[i % len(DEMO_SAMPLES)] for i in range(args.images)]
    images = dc.load_images(names, model)
    top2 = dc.predict(model, images, k=2).indices
    pos, neg = top2[:, 0], top2[:, 1]

    def ours() -> torch.Tensor:
        return dc.channel_attribution(model, images, LAYER, target="auto").per_image

    method = LayerGradientXActivation(model.module, model.module.get_submodule(LAYER))

    def captum() -> torch.Tensor:
        a = method.attribute(images.tensor, target=pos.tolist()).sum(dim=(2, 3))
        b = method.attribute(images.tensor, target=neg.tolist()).sum(dim=(2, 3))
        return (a - b).detach()

    with dc.fast_cpu():  # as the `diamond-cutter` command runs it
        t_ours, r_ours = seconds(ours, args.repeat)
    t_peer, r_peer = seconds(captum, args.repeat)
    torch.testing.assert_close(r_ours, r_peer, rtol=1e-3, atol=1e-4)
    n = len(images)
    print(f"channel attribution at {LAYER}, {n} images, top-1 minus top-2 (results agree)")
    print(f"  diamond_cutter  {n / t_ours:7.2f} images/s")
    print(f"  captum          {n / t_peer:7.2f} images/s")
    print(f"ratio channel_attribution_vs_captum: {t_peer / t_ours:.2f}x")


if __name__ == "__main__":
    main()
