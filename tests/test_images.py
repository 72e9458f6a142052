"""Image loading: every source kind, odd formats, and bad files named in the error."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import diamond_cutter as dc


@pytest.fixture(scope="module")
def model():
    return dc.load_model(torch.nn.Conv2d(3, 4, 3), input_size=(3, 32, 48), labels=["a"])


def gradient_rgb(h=40, w=60) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 128)], -1).astype(np.uint8)


def test_odd_formats_decode_to_the_same_picture(tmp_path, model):
    rgb = Image.fromarray(gradient_rgb())
    rgb.save(tmp_path / "rgb.png")
    rgb.convert("L").save(tmp_path / "gray.png")
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(tmp_path / "rgba.png")
    rgb.quantize(64).save(tmp_path / "palette.png")
    Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).save(tmp_path / "gray16.png")
    batch = dc.load_images(sorted(tmp_path.iterdir()), model)
    assert batch.tensor.shape == (6, 3, 32, 48)
    ref = batch.pixels[batch.ids.index(str(tmp_path / "rgb.png"))]
    for image_id, pixels in zip(batch.ids, batch.pixels):
        gray = image_id.endswith(("gray.png", "gray16.png"))
        luma = (torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1) * ref).sum(0, keepdim=True)
        expected = luma.expand_as(ref) if gray else ref
        tol = 0.05 if image_id.endswith(("cmyk.jpg", "palette.png")) else 0.02
        assert (pixels - expected).abs().mean() < tol, image_id
    assert torch.allclose(batch.pixels[batch.ids.index(str(tmp_path / "gray16.png"))],
                          batch.pixels[batch.ids.index(str(tmp_path / "gray.png"))], atol=1 / 255)


def test_transparent_pixels_become_white_and_exif_orientation_is_applied(tmp_path, model):
    rgba = np.zeros((32, 48, 4), np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    assert dc.load_images(tmp_path / "clear.png", model).pixels.min() == 1.0
    tall = np.zeros((60, 40, 3), np.uint8)
    tall[:10] = 255  # white band on top
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers rotate 90° clockwise
    Image.fromarray(tall).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    picture = dc.load_images(tmp_path / "rotated.jpg", model).originals[0]
    assert picture.size == (60, 40)
    arr = np.asarray(picture.convert("L"))
    assert arr[:, -8:].mean() > 200 and arr[:, :8].mean() < 50  # the band is now on the right


def test_arrays_tensors_pil_and_samples(model):
    arr = gradient_rgb()
    from_array = dc.load_images(arr, model)
    from_float = dc.load_images(arr.astype(np.float32) / 255, model)
    from_tensor = dc.load_images(torch.from_numpy(arr).permute(2, 0, 1).float() / 255, model)
    from_pil = dc.load_images(Image.fromarray(arr), model)
    for other in (from_float, from_tensor, from_pil):
        assert torch.allclose(other.pixels, from_array.pixels, atol=1 / 255)
    assert torch.allclose(from_array.tensor, model.normalize(from_array.pixels))
    samples = dc.load_images(["chelsea", "sample:coffee"], model)
    assert samples.ids == ["chelsea", "coffee"] and samples.originals[0].size == (451, 300)
    with pytest.raises(dc.ImageError, match="H×W or H×W×3"):
        dc.load_images(np.zeros((4, 4, 7)), model)


def test_folders_globs_and_bad_files(tmp_path, model):
    Image.fromarray(gradient_rgb()).save(tmp_path / "good.png")
    Image.fromarray(gradient_rgb()).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is text, not a picture")
    for bad, reason in (
        ("truncated.jpg", "not a readable image"),
        ("empty.png", "empty"),
        ("notes.png", "not a readable"),
    ):
        with pytest.raises(dc.ImageError, match=f"{bad}.*{reason}"):
            dc.load_images(tmp_path / bad, model)
    with pytest.raises(dc.ImageError, match="truncated.jpg|empty.png|notes.png"):
        dc.load_images(tmp_path, model)
    with pytest.warns(UserWarning, match="skipping"):
        batch = dc.load_images(tmp_path, model, skip_bad=True)
    assert sorted(i.rsplit("/", 1)[-1] for i in batch.ids) == ["full.jpg", "good.png"]
    assert len(dc.load_images(str(tmp_path / "g*.png"), model)) == 1
    with pytest.raises(dc.ImageError, match="no such file.*samples: chelsea"):
        dc.load_images("chelsae", model)


@pytest.fixture
def local_server(tmp_path):
    Image.fromarray(gradient_rgb()).save(tmp_path / "served.png")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_urls_from_a_local_server(local_server, tmp_path, model):
    batch = dc.load_images(f"{local_server}/served.png", model)
    local = dc.load_images(tmp_path / "served.png", model)
    assert torch.equal(batch.pixels, local.pixels)
    assert batch.ids == [f"{local_server}/served.png"]
    with pytest.raises(dc.ImageError, match="HTTP 404"):
        dc.load_images(f"{local_server}/missing.png", model)


def test_grayscale_model_gets_one_channel():
    gray = dc.load_model(torch.nn.Conv2d(1, 2, 3), input_size=(1, 28, 28), labels=["x"])
    batch = dc.load_images("chelsea", gray)
    assert batch.tensor.shape == (1, 1, 28, 28)
    assert batch.images()[0].mode == "L"


PHOTOS = ["chelsea", "coffee", "astronaut", "rocket"]  # landscape and square, odd and even margins


def _pictures():
    from PIL import Image

    from diamond_cutter.images import sample_path

    return [Image.open(sample_path(name)).convert("RGB") for name in PHOTOS]


def test_timm_models_get_timms_own_eval_transform():
    """Same resize (crop_pct, bicubic), crop offset and normalisation as timm: equal within 1e-5 (float32)."""
    from timm.data import create_transform, resolve_data_config

    model = dc.load_model("timm/resnet18", weights=None)
    theirs = create_transform(**resolve_data_config({}, model=model.module))
    assert (model.crop_pct, model.interpolation) == (0.95, "bicubic")
    ours = dc.load_images(PHOTOS, model).tensor
    assert torch.allclose(ours, torch.stack([theirs(p) for p in _pictures()]), atol=1e-5)


def test_torchvision_models_get_their_weights_transform():
    """resnet50's weights resize to 232 (bilinear) and crop 224: equal within 1e-5 (float32)."""
    from torchvision.models import ResNet50_Weights

    model = dc.load_model("resnet50", weights=None)
    theirs = ResNet50_Weights.DEFAULT.transforms()
    assert model.interpolation == "bilinear" and round(model.input_size[1] / model.crop_pct) == 232
    ours = dc.load_images(PHOTOS, model).tensor
    assert torch.allclose(ours, torch.stack([theirs(p) for p in _pictures()]), atol=1e-5)


def test_preprocessing_enters_the_feature_cache_key(model):
    from diamond_cutter.transfer.features import model_key

    cropped = dc.Model(model.module, model.name, model.input_size, model.mean, model.std, crop_pct=0.875)
    other_filter = dc.Model(model.module, model.name, model.input_size, model.mean, model.std, interpolation="bilinear")
    assert len({model_key(model), model_key(cropped), model_key(other_filter)}) == 3
    with pytest.raises(dc.DiamondCutterError, match="crop_pct"):
        dc.Model(model.module, "x", model.input_size, crop_pct=1.5)
    with pytest.raises(dc.DiamondCutterError, match="bicubic"):
        dc.Model(model.module, "x", model.input_size, interpolation="bicubc")
