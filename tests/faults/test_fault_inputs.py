"""Inputs that used to be silently wrong: huge photos, float TIFFs, negative channels, paths with spaces, modes."""

from __future__ import annotations

import os
import stat
import warnings

import numpy as np
import pytest
from PIL import Image

import diamond_cutter as dc
from diamond_cutter.featureviz import objectives
from diamond_cutter.images import decode_image
from diamond_cutter.store import Store
from diamond_cutter.transfer.data import load_labelled, make_colour_dataset


def photo(width: int, height: int, fmt: str = "JPEG") -> bytes:
    """A smooth synthetic photo (quick to encode at any size)."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    arr = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    from io import BytesIO

    buffer = BytesIO()
    Image.fromarray(arr).save(buffer, format=fmt)
    return buffer.getvalue()


def test_originals_are_kept_display_sized(tmp_path):
    (tmp_path / "big.jpg").write_bytes(photo(3000, 2000))
    batch = dc.load_images(str(tmp_path / "big.jpg"), size=224)
    assert batch.originals[0].size == (1024, 683) and batch.pixels.shape[-2:] == (224, 224)
    assert dc.load_images(str(tmp_path / "big.jpg"), size=64, display_side=300).originals[0].size == (300, 200)
    assert dc.load_images(str(tmp_path / "big.jpg"), size=512, display_side=300).originals[0].size == (512, 341)


def test_a_decompression_bomb_sized_jpeg_is_decoded_at_a_reduced_scale(monkeypatch):
    data = photo(2400, 1800)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_500_000)  # 4.3 MP: a "bomb", below PIL's hard limit of 2x
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        picture = decode_image(data, "bomb.jpg", max_side=512)
    assert picture.size == (512, 384)
    with pytest.warns(Image.DecompressionBombWarning, match="bomb.png was decoded at its full"):
        decode_image(photo(2400, 1800, "PNG"), "bomb.png", max_side=512)  # PNG cannot decode at a reduced scale


def test_a_float_tiff_on_a_0_255_scale_is_not_all_white(tmp_path):
    arr = np.tile(np.linspace(0, 255, 64, dtype=np.float32), (32, 1))
    Image.fromarray(arr, "F").save(tmp_path / "float.tif")
    with pytest.warns(UserWarning, match="read as 0–255"):
        pixels = dc.load_images(str(tmp_path / "float.tif"), size=(32, 64)).pixels[0, 0]
    assert pixels[:, 0].max() < 0.05 and pixels[:, -1].min() > 0.95
    assert abs(float(pixels.mean()) - 0.5) < 0.05


@pytest.mark.parametrize("channels", [[0, -1], [0, -41], -1])
def test_negative_channels_in_objectives_are_refused(channels):
    with pytest.raises(dc.DiamondCutterError, match="out of range"):
        objectives.channel("blocks.2", channels)


def test_out_of_range_channels_in_a_list_objective_get_visualize_s_check(embedded):
    with pytest.raises(dc.DiamondCutterError, match="channel 40 is out of range: the layer has 40 channels"):
        dc.render_objective(embedded, objectives.channel("blocks.2", [0, 40]), steps=1, size=32, progress=False)


def test_skipped_files_keep_their_whole_path(tmp_path):
    root = make_colour_dataset(tmp_path / "data", per_class=4, size=16)
    bad = root / "red" / "holiday photo (1).png"
    bad.write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="skipping 1 unreadable"):
        data = load_labelled(root, skip_bad=True)
    assert data.skipped == [str(bad)]
    assert str(bad) in data.report()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_store_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        Store(tmp_path).write_bytes("a/b.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "b.bin").stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("target", [np.int64(281), [np.int64(281)], np.array([281]), np.array(281), np.int32(281)],
                         ids=["int64", "list of int64", "array", "0-d array", "int32"])
def test_numpy_integer_targets_are_classes(embedded, samples, target):
    result = dc.attribute(embedded, samples[0], method="saliency", target=target)
    assert list(result.targets) == [281]
