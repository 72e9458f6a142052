"""Semantic map and heatmap: the layer's grid, consistency with channel attribution, and
the evidence for "cat" lying on the cat."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import diamond_cutter as dc
from diamond_cutter.images import ImageBatch, sample_path
from diamond_cutter.render import tint

LAYER = "blocks.5"


def test_cells_match_the_layer_grid(embedded, samples):
    sm = dc.semantic_map(embedded, samples[0], LAYER)
    layer = embedded.layer(LAYER)
    assert sm.grid == (layer.height, layer.width)
    assert len(sm.cells()) == layer.height * layer.width
    assert sm.activations.shape == (layer.channels, layer.height, layer.width)
    assert sm.attributions is None
    boxes = [sm.cell_box(c) for c in sm.cells()]
    covered = sum((r - left) * (b - t) for left, t, r, b in boxes)
    assert covered == 224 * 224 and boxes[0][:2] == (0, 0) and boxes[-1][2:] == (224, 224)
    with pytest.raises(dc.DiamondCutterError, match="no attributions"):
        sm.heatmap()
    with pytest.raises(dc.DiamondCutterError, match="no attributions"):
        sm.top_channels((0, 0), by="attribution")
    with pytest.raises(dc.UnknownNameError, match="did you mean 'activation'"):
        sm.top_channels((0, 0), by="activations")


def test_cell_top_channels_are_the_largest_activations(embedded, samples):
    sm = dc.semantic_map(embedded, samples[0], LAYER, target="tiger cat")
    for cell in [(0, 0), (3, 4), (6, 6)]:
        top = sm.top_channels(cell, k=4)
        column = sm.activations[:, cell[0], cell[1]]
        assert [c for c, _ in top] == column.argsort(descending=True)[:4].tolist()
        by_attr = sm.top_channels(cell, k=3, by="attribution")
        assert [c for c, _ in by_attr] == sm.attributions[:, cell[0], cell[1]].argsort(descending=True)[:3].tolist()


def test_heatmap_sums_to_the_channel_attribution(embedded, samples):
    hm = dc.heatmap(embedded, samples[1], LAYER, target=("espresso", "cup"))
    channels = dc.channel_attribution(embedded, samples[1], LAYER, target=("espresso", "cup"))
    assert hm.values.shape == (7, 7)
    assert float(hm.values.sum()) == pytest.approx(float(channels.scores.sum()), rel=1e-4, abs=1e-5)
    assert hm.overlay().size == (224, 224)


def half_and_half(model) -> ImageBatch:
    """A 224×224 picture: chelsea's face squeezed into the left half, a brick wall in the right half."""
    cat = Image.open(sample_path("chelsea")).convert("RGB").crop((60, 0, 360, 300)).resize((112, 224))
    wall = Image.open(sample_path("brick")).convert("RGB").resize((112, 224))
    canvas = Image.new("RGB", (224, 224))
    canvas.paste(cat, (0, 0))
    canvas.paste(wall, (112, 0))
    return dc.load_images(canvas, model)


def test_largest_cat_attribution_lies_on_the_cat(embedded):
    """The cat occupies columns 0–111 (grid columns 0–3 at 7×7, the middle column straddling the seam)."""
    picture = half_and_half(embedded)
    hm = dc.heatmap(embedded, picture, LAYER, target="tiger cat")
    row, col = hm.argmax()
    assert col <= 2, f"strongest 'tiger cat' evidence at cell {(row, col)}, off the cat"


def test_chelsea_cat_box(embedded, samples):
    """On chelsea itself the strongest evidence for its top class sits on the cat's face:
    the box from the eyes to the chin (network-view pixels 16–208 × 32–224)."""
    hm = dc.heatmap(embedded, samples[0], LAYER, target="top1")
    sm = dc.semantic_map(embedded, samples[0], LAYER)
    left, top, right, bottom = sm.cell_box(hm.argmax())
    cx, cy = (left + right) / 2, (top + bottom) / 2
    assert 16 <= cx <= 208 and 32 <= cy <= 224


def test_tint_colours_positive_orange_and_negative_blue():
    grey = Image.fromarray(np.full((8, 8, 3), 128, np.uint8))
    values = torch.tensor([[1.0, -1.0]])
    out = np.asarray(tint(grey, values, alpha=1.0)).astype(int)
    left, right = out[4, 0], out[4, 7]
    assert left[0] > left[2] and right[2] > right[0]
