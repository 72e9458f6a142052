"""Parameterizations: exact round trips, colour decorrelation, MACO's fixed magnitude, any shape."""

from __future__ import annotations

import pytest
import torch

import diamond_cutter as dc
from diamond_cutter.featureviz.param import (
    FFTParam,
    MacoParam,
    PixelParam,
    default_color_matrix,
    estimate_color_matrix,
    estimate_magnitude,
    make_param,
    natural_magnitude,
)


def smooth_pixels(n=2, c=3, h=24, w=30) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(n, c, h, w) * 0.9 + 0.05


@pytest.mark.parametrize("shape", [(2, 3, 24, 30), (1, 1, 32, 32), (3, 3, 31, 17), (1, 4, 16, 16)])
def test_fft_round_trip_image_to_param_to_image(shape):
    pixels = smooth_pixels(*shape)
    param = FFTParam.from_image(pixels)
    assert torch.allclose(param(), pixels, atol=1e-4)


def test_fft_round_trip_with_colour_estimated_from_user_images():
    photos = dc.load_images(["coffee", "brick"], size=32).pixels
    color = estimate_color_matrix(photos)
    assert color.shape == (3, 3)
    assert not torch.allclose(color, default_color_matrix(3), atol=0.05)  # not ImageNet's matrix
    # The estimated matrix is a square root of the photos' colour covariance (up to scale).
    cov = torch.cov(photos.transpose(0, 1).reshape(3, -1))
    ratio = (color @ color.T) / cov
    assert torch.allclose(ratio, ratio.mean().expand(3, 3), rtol=1e-2)
    param = FFTParam.from_image(photos.clamp(0.02, 0.98), color=color)
    assert torch.allclose(param(), photos.clamp(0.02, 0.98), atol=1e-4)


def test_pixel_round_trip_and_lucid_colour_matrix():
    pixels = smooth_pixels()
    assert torch.allclose(PixelParam.from_image(pixels)(), pixels, atol=1e-4)
    m = default_color_matrix(3)
    assert torch.isclose(m.norm(dim=0).max(), torch.tensor(1.0))
    assert torch.equal(default_color_matrix(1), torch.eye(1))


def test_fft_scale_is_one_over_frequency_and_initial_image_is_grey():
    param = FFTParam(range(2), 3, 32, 32)
    assert param.scale[0, 0] == 32  # DC clamped to 1/max side
    assert torch.isclose(param.scale[0, 1], torch.tensor(32.0))  # f = 1/32
    assert torch.isclose(param.scale[0, 16], torch.tensor(2.0))  # f = 1/2
    img = param()
    assert img.shape == (2, 3, 32, 32)
    assert (img - 0.5).abs().max() < 0.2


def test_maco_optimizes_phase_only_and_keeps_the_magnitude():
    param = MacoParam(range(2), 3, 32, 32)
    names = [n for n, _ in param.named_parameters()]
    assert names == ["phase"]
    opt = torch.optim.Adam(param.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        param()[:, 0].mean().backward()
        opt.step()
    assert torch.equal(param.magnitude[0], natural_magnitude(32, 32))
    # The (pre-standardisation) spectrum's amplitude is the fixed magnitude whatever the phase.
    spectrum = torch.polar(param.magnitude.expand_as(param.phase), param.phase.detach())
    image = torch.fft.irfft2(spectrum, s=(32, 32), norm="ortho")
    amplitude = torch.fft.rfft2(image, norm="ortho").abs()
    inner = amplitude[..., 1:-1]  # DC/Nyquist columns are real-only in an rfft
    assert torch.allclose(inner, param.magnitude.expand_as(amplitude)[..., 1:-1], rtol=1e-3, atol=1e-4)


def test_maco_magnitude_from_user_images():
    photos = dc.load_images(["grass", "gravel", "brick"], size=48).pixels
    mag = estimate_magnitude(photos, size=(32, 32))
    assert mag.shape == (32, 17)
    # Natural textures: energy falls with frequency.
    assert mag[1, 1] > mag[8, 8] > mag[16, 16]
    img = MacoParam(range(1), 3, 32, 32, magnitude=mag)()
    assert img.shape == (1, 3, 32, 32) and 0 <= img.min() and img.max() <= 1


def test_items_depend_only_on_their_own_seed():
    a = FFTParam([5, 9], 3, 16, 16)
    b = FFTParam([9], 3, 16, 16)
    assert torch.equal(a.spectrum[1], b.spectrum[0])
    assert not torch.equal(a.spectrum[0], a.spectrum[1])


def test_bad_parameterization_requests_are_clear_errors():
    with pytest.raises(dc.UnknownNameError, match="did you mean 'fft'"):
        make_param("fftt", [0], 3, 16, 16)
    with pytest.raises(dc.DiamondCutterError, match="magnitude"):
        MacoParam([0], 3, 16, 16, magnitude=torch.ones(8, 8))
    with pytest.raises(dc.DiamondCutterError, match="colour matrix"):
        FFTParam([0], 3, 16, 16, color=torch.eye(2))
