"""Image parameterizations: what the optimizer actually changes when it "draws" a feature.

Optimizing raw pixels finds high-frequency adversarial noise. Lucid's remedy is
to optimize a Fourier spectrum scaled by 1/f (so every frequency gets equal
energy at the start), in a decorrelated colour space, squashed through a
sigmoid into ``[0, 1]``. Deep layers of large networks still come out vague;
MACO (Fel et al. 2023) fixes the magnitude spectrum to that of natural images
and optimizes only the phase. Every parameterization here is batched (one image
per objective in the batch), takes any size and channel count, and draws its
initial noise per batch item from that item's own seed, so an image does not
depend on which other images share its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import DiamondCutterError, UnknownNameError

#: Square root of ImageNet's RGB colour covariance (Lucid's ``color_correlation_svd_sqrt``).
IMAGENET_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])

#: Lucid's empirical divisor that keeps the initial FFT image unsaturated.
FFT_MAGIC = 4.0

PARAMS = ("fft", "pixel", "maco")


def normalized_color_matrix(sqrt_cov: torch.Tensor) -> torch.Tensor:
    """Scale a colour-covariance square root so its largest column has unit norm (as Lucid does)."""
    return sqrt_cov / sqrt_cov.norm(dim=0).max()


def default_color_matrix(channels: int) -> torch.Tensor:
    """Lucid's ImageNet colour decorrelation for RGB; identity for any other channel count."""
    if channels == 3:
        return normalized_color_matrix(IMAGENET_COLOR_SQRT)
    return torch.eye(channels)


def estimate_color_matrix(pixels: torch.Tensor) -> torch.Tensor:
    """Colour decorrelation matrix from the user's own images (N×C×H×W in ``[0, 1]``).

    Users who transfer to microscopy or satellite images have colour statistics
    far from ImageNet's; the square root of their own channel covariance makes
    the optimizer's steps "look like" their data the way Lucid's matrix does for ImageNet.
    """
    flat = pixels.detach().float().transpose(0, 1).reshape(pixels.shape[1], -1)
    cov = torch.cov(flat) + 1e-6 * torch.eye(flat.shape[0])
    values, vectors = torch.linalg.eigh(cov)
    sqrt = vectors * values.clamp(min=0).sqrt()
    return normalized_color_matrix(sqrt)


def rfft_freqs(h: int, w: int) -> torch.Tensor:
    """Radial frequency of each rfft2 coefficient of an h×w image."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    """Lucid's 1/f scaling: equalises the energy per frequency of white noise in the spectrum."""
    return 1.0 / rfft_freqs(h, w).clamp(min=1.0 / max(h, w)) ** decay_power


def natural_magnitude(h: int, w: int) -> torch.Tensor:
    """MACO's default magnitude spectrum: the 1/f amplitude law of natural (ImageNet-like) images."""
    return spectrum_scale(h, w, 1.0)


def estimate_magnitude(pixels: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Average amplitude spectrum (H×W//2+1, channel-averaged) of the user's images, for MACO."""
    x = pixels.detach().float()
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    return torch.fft.rfft2(x, norm="ortho").abs().mean(dim=(0, 1))


def item_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per batch item, so each image's randomness depends only on its own seed."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def per_item_randn(generators: Sequence[torch.Generator], shape: Sequence[int]) -> torch.Tensor:
    return torch.stack([torch.randn(*shape, generator=g) for g in generators])


def mix_channels(matrix: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``matrix`` (C×C) applied to every pixel's channel vector of ``images`` (N×C×H×W).

    A matmul over flattened pixels: on a CPU it is about 5x faster forward+backward than
    the equivalent einsum, which PyTorch turns into a badly shaped batched product.
    """
    return torch.matmul(matrix, images.flatten(2)).view_as(images)


class Parameterization(nn.Module):
    """Base: ``forward()`` returns the batch of images (N×C×H×W in ``[0, 1]``)."""

    color: torch.Tensor  # a buffer (declared for the type checker)

    def __init__(self, channels: int, height: int, width: int, color: torch.Tensor | None):
        super().__init__()
        if channels < 1 or height < 2 or width < 2:
            raise DiamondCutterError(f"cannot parameterize an image of {channels}×{height}×{width}")
        self.shape = (channels, height, width)
        color = default_color_matrix(channels) if color is None else torch.as_tensor(color, dtype=torch.float32)
        if color.shape != (channels, channels):
            raise DiamondCutterError(f"colour matrix must be {channels}×{channels}, got {tuple(color.shape)}")
        self.register_buffer("color", color)

    def to_rgb(self, decorrelated: torch.Tensor) -> torch.Tensor:
        """Decorrelated space → colour space → ``[0, 1]`` by sigmoid (what Lucid calls to_valid_rgb)."""
        return torch.sigmoid(mix_channels(self.color, decorrelated))

    def from_rgb(self, pixels: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_rgb` for pixels strictly inside ``(0, 1)``."""
        logits = torch.logit(pixels.clamp(1e-4, 1 - 1e-4))
        return mix_channels(torch.linalg.inv(self.color), logits)


class PixelParam(Parameterization):
    """Raw pixels (in decorrelated logit space): the baseline, prone to high-frequency noise."""

    def __init__(self, seeds: Sequence[int], channels: int, height: int, width: int, *, sd: float = 0.01,
                 color: torch.Tensor | None = None):
        super().__init__(channels, height, width, color)
        self.pixels = nn.Parameter(per_item_randn(item_generators(seeds), self.shape) * sd)

    def forward(self) -> torch.Tensor:
        return self.to_rgb(self.pixels)

    @classmethod
    def from_image(cls, pixels: torch.Tensor, color: torch.Tensor | None = None) -> PixelParam:
        n, c, h, w = pixels.shape
        param = cls(range(n), c, h, w, color=color)
        param.pixels.data = param.from_rgb(pixels.float())
        return param


class FFTParam(Parameterization):
    """Lucid's Fourier parameterization: a 1/f-scaled spectrum, decorrelated colour, sigmoid."""

    scale: torch.Tensor  # a buffer

    def __init__(self, seeds: Sequence[int], channels: int, height: int, width: int, *, sd: float = 0.01,
                 decay_power: float = 1.0, color: torch.Tensor | None = None):
        super().__init__(channels, height, width, color)
        self.register_buffer("scale", spectrum_scale(height, width, decay_power))
        freq_shape = (channels, *self.scale.shape, 2)
        self.spectrum = nn.Parameter(per_item_randn(item_generators(seeds), freq_shape) * sd)

    def forward(self) -> torch.Tensor:
        _, h, w = self.shape
        spectrum = torch.view_as_complex(self.spectrum.float()) * self.scale
        image = torch.fft.irfft2(spectrum, s=(h, w), norm="ortho") / FFT_MAGIC
        return self.to_rgb(image)

    @classmethod
    def from_image(cls, pixels: torch.Tensor, color: torch.Tensor | None = None, decay_power: float = 1.0) -> FFTParam:
        """The parameters that reproduce ``pixels`` (values strictly inside (0, 1)) exactly."""
        n, c, h, w = pixels.shape
        param = cls(range(n), c, h, w, color=color, decay_power=decay_power)
        spectrum = torch.fft.rfft2(param.from_rgb(pixels.float()) * FFT_MAGIC, norm="ortho") / param.scale
        param.spectrum.data = torch.view_as_real(spectrum).contiguous()
        return param


class MacoParam(Parameterization):
    """MACO (Fel et al. 2023): a fixed natural-image magnitude spectrum; only the phase is optimized.

    As in the published method, the phase is standardised before use, and the
    image is standardised per item (one mean and spread over all its channels)
    before the colour transform and the sigmoid: the optimizer cannot cheat by
    blowing up contrast or energy at some frequency, it can only move structure
    around, which keeps deep-layer visualizations natural. ``contrast`` scales
    the standardised image (1 as published).
    """

    magnitude: torch.Tensor  # a buffer

    def __init__(self, seeds: Sequence[int], channels: int, height: int, width: int, *,
                 magnitude: torch.Tensor | None = None, color: torch.Tensor | None = None, contrast: float = 1.0):
        super().__init__(channels, height, width, color)
        magnitude = natural_magnitude(height, width) if magnitude is None else torch.as_tensor(magnitude).float()
        expected = (height, width // 2 + 1)
        if tuple(magnitude.shape[-2:]) != expected:
            raise DiamondCutterError(
                f"MACO magnitude must be {expected[0]}×{expected[1]}, got {tuple(magnitude.shape)}")
        self.register_buffer("magnitude", magnitude.expand(channels, *expected).clone())
        self.contrast = contrast
        self.phase = nn.Parameter(per_item_randn(item_generators(seeds), (channels, *expected)))

    def decorrelated(self) -> torch.Tensor:
        """The standardised image before colour and sigmoid: its spectrum's amplitude is the fixed magnitude
        up to one factor per item, whatever the phase."""
        _, h, w = self.shape
        spectrum = torch.polar(self.magnitude.expand_as(self.phase), standardized(self.phase.float()))
        return standardized(torch.fft.irfft2(spectrum, s=(h, w), norm="ortho")) * self.contrast

    def forward(self) -> torch.Tensor:
        return self.to_rgb(self.decorrelated())


def standardized(x: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit spread per batch item (over all its other dimensions)."""
    dims = tuple(range(1, x.ndim))
    return (x - x.mean(dim=dims, keepdim=True)) / (x.std(dim=dims, keepdim=True) + 1e-5)


def make_param(kind: str, seeds: Sequence[int], channels: int, height: int, width: int, **options) -> Parameterization:
    """A parameterization by name: ``"fft"`` (default, Lucid), ``"pixel"`` or ``"maco"``."""
    classes = {"fft": FFTParam, "pixel": PixelParam, "maco": MacoParam}
    if kind not in classes:
        raise UnknownNameError("parameterization", kind, PARAMS)
    return classes[kind](seeds, channels, height, width, **options)
