"""Icons of a transferred model, as the demo makes them: its new conv layer's channels are rendered for it,
its frozen layers' come from the backbone's atlas without a single render."""

from __future__ import annotations

import numpy as np
import torch

import diamond_cutter as dc
from diamond_cutter.atlas import layer_atlas
from diamond_cutter.commands import demo
from diamond_cutter.report.build import Report
from diamond_cutter.report.icons import ICON_RENDER, IconSettings
from diamond_cutter.transfer.data import load_labelled, make_colour_dataset
from diamond_cutter.transfer.saved import load_transferred
from diamond_cutter.transfer.train import train_head

RENDER = ICON_RENDER.replace(size=16, steps=3)


def test_the_kept_conv_layer_gets_rendered_icons_and_frozen_layers_reuse_the_backbones_atlas(tmp_path, monkeypatch):
    torch.manual_seed(0)
    backbone = dc.load_model("resnet18", weights=None, input_size=(3, 32, 32))
    data = load_labelled(make_colour_dataset(tmp_path / "colours", per_class=6, size=32))
    train_head(backbone, data, "layer2", demo.KEPT_HEAD, epochs=2, progress=False).save(str(tmp_path / "kept"))
    kept = load_transferred(str(tmp_path / "kept"))
    store = str(tmp_path / "atlas")
    original = dc.atlas(backbone, "layer1", settings=RENDER, store=store, progress=False)  # every channel

    renders: list[int] = []
    render_chunk = layer_atlas.render_chunk

    def counted(model, layer, settings, chunk, *args, **kwargs):
        renders.extend(chunk)
        return render_chunk(model, layer, settings, chunk, *args, **kwargs)

    monkeypatch.setattr(layer_atlas, "render_chunk", counted)
    images = [data.paths[i] for i in data.test[:2]]

    def explain(layer: str) -> Report:
        icons = IconSettings("featureviz", RENDER, store=store, limit=3)
        return dc.report(kept, images, layer, "auto", top_k=2, cell_k=1, groups=0, icons=icons, saliency=(),
                         tiles=1, scores=None, progress=False)

    new = explain(demo.KEPT_LAYER)
    shown = [c for c, _ in new.channels.top(2)]
    assert 0 < len(renders) <= 3 and set(shown) <= set(renders)  # rendered on demand, not patches
    assert new.settings["icons"].startswith("feature visualizations")
    own = dc.atlas(kept, demo.KEPT_LAYER, settings=RENDER, store=store, fill=False, progress=False)
    assert own.key != original.key and sorted(own.done) == sorted(set(renders))
    for c in shown:
        assert np.array_equal(np.asarray(new.icons[c]), np.asarray(own.icon(c)))

    renders.clear()
    frozen = explain("backbone.net.layer1")
    assert renders == []  # every icon came from the backbone's atlas
    for c, _ in frozen.channels.top(2):
        assert np.array_equal(np.asarray(frozen.icons[c]), np.asarray(original.icon(c)))
