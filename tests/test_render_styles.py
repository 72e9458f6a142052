"""Readable maps: percentile clipping, the signed diverging view, the grey magnitude view, the
overlay; the default style per kind of map; ``attribute --style`` on the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import diamond_cutter as dc
from diamond_cutter import render
from diamond_cutter.cli import main
from diamond_cutter.errors import UnknownNameError

GREY = torch.full((3, 32, 32), 0.5)
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def spiky_map() -> torch.Tensor:
    """A smooth positive ramp with one pixel a thousand times larger (a gradient's typical outlier)."""
    heat = torch.linspace(0.1, 1.0, 32).repeat(32, 1)
    heat[0, 0] = 1000.0
    return heat


def test_percentile_clipping_keeps_the_map_visible_beside_an_outlier():
    clipped = np.asarray(render.attribution_picture(None, spiky_map(), "magnitude"), dtype=float)
    plain = render.scale(spiky_map())
    assert plain[1:, 1:].max() < 0.002  # min-max: everything but the spike is black
    assert clipped[16:, 16:].mean() > 100 and clipped[0, 0] == 255  # p99: the ramp is plainly visible


def test_signed_style_is_red_for_blue_against_and_shows_the_image_where_there_is_nothing():
    heat = torch.zeros(32, 32)
    heat[:, :10], heat[:, -10:] = 1.0, -1.0
    picture = np.asarray(render.attribution_picture(GREY, heat[None], "signed"), dtype=int)
    left, middle, right = picture[:, :8].mean((0, 1)), picture[:, 14:18].mean((0, 1)), picture[:, -8:].mean((0, 1))
    assert left[0] > left[2] + 50 and left[0] > left[1] + 50  # red
    assert right[2] > right[0] + 50 and right[2] > right[1] + 30  # blue
    assert np.ptp(middle) < 3  # grey: the (greyed) image shows through


def test_relevance_picture_shows_where_evidence_sits_under_pixel_to_pixel_sign_flips():
    """Relevance that flips sign from pixel to pixel (a checkerboard) cancels within each square; a patch
    of evidence in one corner stays red, at the picture's size."""
    size = 224
    flips = torch.ones(size, size)
    flips[::2, 1::2] = flips[1::2, ::2] = -1.0
    heat = 5 * flips
    heat[:48, :48] += 1.0  # a little net evidence, far below the flips' magnitude
    grey = torch.full((3, size, size), 0.5)
    picture = np.asarray(render.relevance_picture(grey, heat), dtype=int)
    corner, rest = picture[8:40, 8:40].mean((0, 1)), picture[120:, 120:].mean((0, 1))
    assert picture.shape == (size, size, 3)
    assert corner[0] > corner[2] + 50  # red where the evidence is
    assert np.ptp(rest) < 3  # elsewhere the flips cancel: the (greyed) image shows through
    plain = np.asarray(render.attribution_picture(grey, heat, "signed"), dtype=int)[8:40, 8:40].mean((0, 1))
    assert plain[0] - plain[2] < 20  # pixel by pixel, the flips drown the evidence: the corner is not red


def test_magnitude_is_grey_at_the_image_size_and_overlay_is_coloured():
    grad = torch.randn(3, 16, 16)
    magnitude = render.attribution_picture(torch.rand(3, 32, 32), grad, "magnitude")
    arr = np.asarray(magnitude.convert("RGB"))
    assert magnitude.size == (32, 32) and (arr[..., 0] == arr[..., 2]).all()
    overlay = np.asarray(render.attribution_picture(torch.rand(3, 32, 32), grad, "overlay"), dtype=int)
    assert np.abs(overlay[..., 0] - overlay[..., 2]).mean() > 5


def test_unknown_style_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="did you mean 'signed'"):
        render.attribution_picture(GREY, torch.rand(8, 8), "signd")


def test_defaults_overlay_layer_maps_and_show_pixel_maps_as_magnitude(embedded, samples):
    cam = dc.attribute(embedded, samples[:1], "gradcam")
    gradient = dc.attribute(embedded, samples[:1], "saliency")
    assert cam.default_style() == "overlay" and gradient.default_style() == "magnitude"
    (picture,) = gradient.render()
    arr = np.asarray(picture.convert("RGB"))
    assert picture.size == (224, 224) and (arr[..., 0] == arr[..., 1]).all()
    assert isinstance(cam.render("signed")[0], Image.Image)


def test_cli_attribute_style(tmp_path, capsys):
    out = tmp_path / "maps"
    assert (
        main(
            [
                "attribute",
                "efficientnet_lite0",
                "coffee",
                "--method",
                "saliency",
                "--style",
                "signed",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    (png,) = out.glob("*.png")
    arr = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    assert np.abs(arr[..., 0] - arr[..., 2]).max() > 100  # red and blue evidence
    with pytest.raises(SystemExit) as exited:
        main(["attribute", "efficientnet_lite0", "coffee", "--style", "jet"])
    assert exited.value.code == 2 and "invalid choice: 'jet'" in capsys.readouterr().err


def captum_default_picture(attr: torch.Tensor, pixels: torch.Tensor) -> Image.Image:
    """captum's ``visualize_image_attr`` with its defaults (heat map of the absolute value, 2 % clipped)."""
    import io

    import matplotlib.pyplot as plt
    from captum.attr import visualization as viz

    figure, _ = viz.visualize_image_attr(
        attr.permute(1, 2, 0).numpy(), pixels.permute(1, 2, 0).numpy(), use_pyplot=False
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0)
    plt.close(figure)
    return Image.open(buffer).convert("RGB").resize(tuple(pixels.shape[-2:][::-1]))


def test_styles_side_by_side_with_captums_default(embedded, samples):
    """Writes test-artifacts/map_styles_vs_captum.png (ours in every style, then captum's default) and checks
    that our magnitude view and captum's default light up the same pixels."""
    pytest.importorskip("captum")
    result = dc.attribute(embedded, samples, "integrated_gradients", steps=8)
    row = []
    for pixels, maps in zip(result.pixels, result.maps):
        ours = [render.attribution_picture(pixels, maps, style) for style in render.STYLES]
        captum = captum_default_picture(maps, pixels)
        row += [*ours, captum]
        strong_ours = np.asarray(ours[-1].convert("L"), dtype=float).ravel()
        strong_captum = 255 - np.asarray(captum.convert("L"), dtype=float).ravel()  # captum: dark blue on white
        top = int(0.05 * strong_ours.size)
        overlap = len(set(np.argsort(strong_ours)[-top:]) & set(np.argsort(strong_captum)[-top:])) / top
        assert overlap > 0.3, f"only {overlap:.0%} of the strongest pixels agree with captum"
    ARTIFACTS.mkdir(exist_ok=True)
    render.grid(row, cols=len(render.STYLES) + 1).save(ARTIFACTS / "map_styles_vs_captum.png")
