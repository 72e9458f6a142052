"""Attribution with the embedded EfficientNet-Lite0 (real ImageNet weights) on real sample images.

The model runs at reduced input sizes to keep the tests fast on a CPU; it
still classifies the samples correctly there.
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

import diamond_cutter as dc
from diamond_cutter import render
from diamond_cutter.attribution import feature_grid, feature_maps, filter_guided_backprop, first_layer_kernels
from diamond_cutter.cli import main
from diamond_cutter.images import sample_path

from helpers import assert_unchanged, snapshot

SIDE = 160
CAT_BOX = (0, 0, SIDE // 2, SIDE // 2)  # left, top, right, bottom: the cat fills the top-left quadrant


@pytest.fixture(scope="module")
def lite() -> dc.Model:
    model = dc.load_model("efficientnet_lite0", input_size=(3, SIDE, SIDE))
    model.crop_pct = 1.0  # the composed canvas is seen whole, so its quadrants stay where they were pasted
    return model


def _square(name: str, side: int) -> Image.Image:
    picture = Image.open(sample_path(name)).convert("RGB")
    s = min(picture.size)
    left, top = (picture.width - s) // 2, (picture.height - s) // 2
    return picture.crop((left, top, left + s, top + s)).resize((side, side), Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def cat_in_a_corner() -> Image.Image:
    """Chelsea in the top-left quadrant; brick, gravel and grass textures elsewhere."""
    half = SIDE // 2
    canvas = Image.new("RGB", (SIDE, SIDE))
    for name, corner in (("chelsea", (0, 0)), ("brick", (half, 0)), ("gravel", (0, half)), ("grass", (half, half))):
        canvas.paste(_square(name, half), corner)
    return canvas


def _peak(heat: torch.Tensor) -> tuple[float, float]:
    """(x, y) of a map's maximum in input pixels (cell centres for coarse maps)."""
    h, w = heat.shape
    row, col = divmod(int(heat.argmax()), w)
    return (col + 0.5) * SIDE / w, (row + 0.5) * SIDE / h


def _inside(point: tuple[float, float], box: tuple[int, int, int, int]) -> bool:
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


def test_gradcam_and_occlusion_find_the_cat(lite, cat_in_a_corner):
    prediction = dc.predict(lite, [cat_in_a_corner], k=3)
    assert int(prediction.indices[0, 0]) in range(281, 286), prediction  # a cat class (tabby) wins
    cam = dc.attribute(lite, [cat_in_a_corner], "gradcam", target="top1")
    assert cam.layer == "bn2" and cam.maps.shape == (1, 1, 5, 5)
    assert _inside(_peak(cam.maps[0, 0]), CAT_BOX)
    occlusion = dc.attribute(lite, [cat_in_a_corner], "occlusion", target="top1", window=32, stride=16)
    heat = occlusion.maps[0, 0]
    assert _inside(_peak(heat), CAT_BOX)
    inside = heat[: SIDE // 2, : SIDE // 2].mean()
    assert inside > 2 * heat[SIDE // 2 :, :].mean() and inside > 2 * heat[:, SIDE // 2 :].mean()
    # the two maps agree: the cell Grad-CAM ranks first is among occlusion's stronger half
    pooled = torch.nn.functional.adaptive_avg_pool2d(heat[None, None], cam.maps.shape[-2:])[0, 0]
    assert pooled.flatten()[cam.maps.flatten().argmax()] >= pooled.median()


def test_integrated_gradients_completeness_and_gauss_legendre_beats_trapezoid():
    """Sum of attributions equals f(x) - f(baseline) within 1 % at 512 steps on the real, non-linear model
    (TF "SAME" padding makes the path rougher: 3.6 % at 128 steps, 0.4 % at 512)."""
    model = dc.load_model("efficientnet_lite0", input_size=(3, 64, 64))
    images = dc.load_images(["coffee"], model)
    target = int(dc.predict(model, images, k=1).indices[0, 0])
    black = model.normalize(torch.zeros_like(images.pixels))
    with torch.no_grad():
        gap = float(model(images.tensor)[0, target] - model(black)[0, target])

    def error(steps: int, rule: str) -> float:
        result = dc.attribute(
            model, images, "integrated_gradients", target=target, steps=steps, rule=rule, batch_size=64
        )
        return abs(float(result.maps.sum()) - gap) / abs(gap)

    assert error(512, "gausslegendre") < 0.01
    assert error(16, "gausslegendre") < error(16, "trapezoid")


def test_sanity_check_gradients_and_gradcam_depend_on_the_weights(lite):
    model = dc.load_model("efficientnet_lite0", input_size=(3, 96, 96))
    before = snapshot(model.module)
    result = dc.sanity_check(model, ["chelsea", "coffee"], methods=("saliency", "gradcam", "guided_backprop"), steps=2)
    assert_unchanged(before, model.module)
    for method in result.methods:
        assert result.repeat[method] > 0.999  # the same model gives the same map twice
        assert len(result.correlations[method]) == 2
    for method in ("saliency", "gradcam"):
        assert result.correlations[method][-1] < 0.5 and result.depends_on_weights(method)
    assert "guided_backprop" in str(result) and result.as_dict()["methods"]["guided_backprop"]["correlations"]


def test_layercam_fuses_several_layers_on_the_finest_grid(lite, cat_in_a_corner):
    fused = dc.attribute(lite, [cat_in_a_corner], "layercam", layer=["blocks.3", "bn2"], target="tiger cat")
    assert fused.layer == "blocks.3+bn2"
    assert fused.maps.shape == (1, 1, SIDE // 16, SIDE // 16)
    assert 0 <= float(fused.maps.min()) and float(fused.maps.max()) < 1
    assert _inside(_peak(fused.maps[0, 0]), CAT_BOX)


def test_activation_views(lite):
    maps = feature_maps(lite, "chelsea", "blocks.2")
    assert maps.shape == (40, SIDE // 8, SIDE // 8)
    sheet = feature_grid(lite, "chelsea", "blocks.2", channels=range(6), cols=3, size=20)
    assert sheet.size == (3 * 20 + 4 * 2, 2 * 20 + 3 * 2)
    busiest = int(maps.flatten(1).sum(1).argmax())
    grad = filter_guided_backprop(lite, "chelsea", "blocks.2", busiest)
    assert grad.shape == (3, SIDE, SIDE) and grad.abs().sum() > 0
    kernels = first_layer_kernels(lite, scale=4)
    assert len(kernels) == 32 and kernels[0].size == (12, 12)
    with pytest.raises(dc.DiamondCutterError, match="out of range"):
        filter_guided_backprop(lite, "chelsea", "blocks.2", 40)


def test_result_renders_saves_and_escapes(lite, tmp_path):
    images = dc.load_images(["chelsea"], lite)
    images.ids[0] = "<b>cat</b>"
    result = dc.attribute(lite, images, "saliency", target="tiger cat")
    assert result.maps.shape == (1, 3, SIDE, SIDE)
    overlay = result.overlay(cmap="magma", alpha=0.3)[0]
    assert overlay.size == (SIDE, SIDE)
    assert "&lt;b&gt;cat&lt;/b&gt;" in result._repr_html_() and "<b>cat</b>" not in result._repr_html_()
    keys = result.save(str(tmp_path))
    meta = json.loads((tmp_path / "attribution.json").read_text())
    assert meta["targets"] == [282] and meta["method"] == "saliency" and (tmp_path / keys[0]).exists()


def test_render_helpers():
    image = torch.rand(3, 40, 60)
    heat = torch.zeros(5, 5)
    heat[1, 3] = 2.0
    out = render.heatmap_overlay(image, heat, cmap="viridis", alpha=1.0)
    assert out.size == (60, 40)
    signed = render.colored_map(torch.tensor([[-1.0, 0.0, 1.0]]), cmap="bwr", signed=True)
    assert signed.getpixel((1, 0))[0] > 200 and signed.getpixel((1, 0))[2] > 200  # zero is white in bwr
    grad = torch.randn(3, 8, 8)
    positive, negative = render.positive_negative_saliency(grad)
    assert positive.size == negative.size == (8, 8)
    assert render.grayscale_saliency(grad).size == render.colored_saliency(grad).size == (8, 8)
    assert render.grid([positive] * 5, cols=2, pad=1).size == (2 * 8 + 3, 3 * 8 + 4)
    with pytest.raises(dc.UnknownNameError, match="did you mean 'viridis'"):
        render.heatmap_overlay(image, heat, cmap="viridiss")
    with pytest.raises(dc.DiamondCutterError, match="alpha"):
        render.heatmap_overlay(image, heat, alpha=2)


def test_cli_writes_overlays_and_reports_bad_input(tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "attribute",
                "efficientnet_lite0",
                "chelsea",
                "--method",
                "gradcam",
                "--layer",
                "blocks.5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "chelsea → tiger cat" in capsys.readouterr().out
    assert len(list(out.glob("*.png"))) == 1 and (out / "maps.safetensors").exists()
    assert main(["attribute", "efficientnet_lite0", "chelsea", "--method", "gradcam", "--target", "tabby catt"]) == 2
    assert "did you mean 'tabby'" in capsys.readouterr().err
