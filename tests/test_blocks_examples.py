"""Dataset examples over a folder: the ranking matches activations computed directly."""

from __future__ import annotations

import shutil

import pytest
import torch

import diamond_cutter as dc
from diamond_cutter.capture import capture, preserved
from diamond_cutter.images import sample_path

LAYER = "blocks.5"
NAMES = ("chelsea", "coffee", "brick", "rocket")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    for name in NAMES:
        shutil.copy(sample_path(name), root / f"{name}{sample_path(name).suffix}")
    return root


def peaks(model, batch) -> torch.Tensor:
    """N×C peak activation per channel, by a plain captured forward."""
    with torch.no_grad(), preserved(model.module), capture(model.module, [LAYER], detach=True) as rec:
        model(batch.tensor)
    return rec[LAYER].amax(dim=(2, 3))


def test_top_images_for_a_channel(embedded, folder):
    batch = dc.load_images(folder, embedded)
    p = peaks(embedded, batch)
    chelsea = [i for i, name in enumerate(batch.ids) if "chelsea" in name][0]
    margin = p[chelsea] - torch.cat([p[:chelsea], p[chelsea + 1 :]]).amax(0)
    channel = int(margin.argmax())  # the channel where chelsea wins by the most
    result = dc.dataset_examples(embedded, folder, LAYER, channel, k=3, batch_size=3)
    assert len(result.examples) == 3 and result.grid == (7, 7)
    assert "chelsea" in result.examples[0].image_id
    expected = p[:, channel].sort(descending=True).values[:3]
    torch.testing.assert_close(torch.tensor([e.score for e in result.examples]), expected, rtol=1e-4, atol=1e-4)
    assert result.examples[0].patch.size == (96, 96)


def test_images_sharing_a_position(embedded, folder):
    result = dc.blocks.shared_position_examples(embedded, "chelsea", (3, 3), folder, LAYER, k=2)
    assert "chelsea" in result.examples[0].image_id
    assert result.examples[0].score == pytest.approx(1.0, abs=1e-4)
    assert result.examples[1].score < 0.999 and all(e.cell == (3, 3) for e in result.examples)


def test_bad_channel_and_cell(embedded, folder):
    with pytest.raises(dc.DiamondCutterError, match="out of range"):
        dc.dataset_examples(embedded, folder, LAYER, 192)
    with pytest.raises(dc.DiamondCutterError, match="outside"):
        dc.blocks.shared_position_examples(embedded, "chelsea", (7, 0), folder, LAYER)


def test_a_glob_streams_in_batches(embedded, folder):
    """A glob of four images with batch_size=2 runs the network on two images at a time."""
    sizes = []
    handle = embedded.module.register_forward_pre_hook(lambda _m, args: sizes.append(len(args[0])))
    try:
        result = dc.dataset_examples(embedded, str(folder / "*"), LAYER, 0, k=4, batch_size=2)
    finally:
        handle.remove()
    assert max(sizes) == 2 and len(result.examples) == 4  # (a first single-image forward may discover the layers)
