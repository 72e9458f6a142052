"""Loading images for a model: decode, fix orientation and mode, resize, crop, normalise.

Sources can be files, folders, glob patterns, URLs, PIL images, numpy arrays,
tensors or the names of sample images shipped with scikit-image (so every
command runs offline). The original picture is kept next to the network's input
so overlays can be drawn on what the user actually gave, at display size
(longest side :data:`DISPLAY_SIDE` by default): a folder of phone photos then
costs a few megabytes per image, not forty. JPEGs are decoded straight at a
reduced scale when they are larger than needed, so even an image of a hundred
megapixels never exists at full size in memory. :func:`load_batches` yields a
folder in batches, for callers that need only one batch at a time.
"""

from __future__ import annotations

import glob
import io
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from .download import DownloadLimits, download
from .errors import DiamondCutterError, ImageError, UnknownNameError
from .html import short_repr
from .render import pictures

#: Longest side of the originals an ImageBatch keeps (settable per call with ``display_side``).
DISPLAY_SIDE = 1024
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}

#: Sample images shipped inside scikit-image's package (no download needed).
SAMPLES = {
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "astronaut": "astronaut.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
    "camera": "camera.png",
    "coins": "coins.png",
    "hubble": "hubble_deep_field.jpg",
    "retina": "retina.jpg",
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
}
#: The samples the demo and the docs use: real photographs of ImageNet-like objects.
DEMO_SAMPLES = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle")


def sample_path(name: str) -> Path:
    """Path of a shipped sample image by name (``chelsea``, ``coffee``, ...)."""
    from skimage import data  # deferred: scikit-image is slow to import and only the samples need it

    if name not in SAMPLES:
        raise UnknownNameError("sample image", name, SAMPLES)
    return Path(data.data_dir) / SAMPLES[name]


@dataclass
class ImageBatch:
    """Images prepared for one model.

    ``pixels`` are the resized, cropped images in ``[0, 1]`` (N×C×H×W) for display
    and overlays; ``tensor`` is what the network takes (``pixels`` normalised);
    ``originals`` are the decoded pictures as given; ``ids`` name each image
    (file name, URL or sample name).
    """

    tensor: torch.Tensor
    pixels: torch.Tensor
    originals: list[Image.Image]
    ids: list[str]

    def __repr__(self) -> str:
        return short_repr(self)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int | slice | Sequence[int]) -> ImageBatch:
        if isinstance(index, int):
            index = [index]
        if isinstance(index, slice):
            index = list(range(len(self)))[index]
        index = list(index)
        return ImageBatch(
            self.tensor[index],
            self.pixels[index],
            [self.originals[i] for i in index] if self.originals else [],
            [self.ids[i] for i in index],
        )

    def to(self, device: torch.device | str) -> ImageBatch:
        return ImageBatch(self.tensor.to(device), self.pixels.to(device), self.originals, self.ids)

    def images(self) -> list[Image.Image]:
        """The network's view of each image (resized and cropped) as PIL images."""
        return pictures(self.pixels)


def load_images(
    sources: Any,
    model: Any = None,
    *,
    size: tuple[int, int] | int | None = None,
    skip_bad: bool = False,
    display_side: int = DISPLAY_SIDE,
    download: DownloadLimits | None = None,
) -> ImageBatch:
    """Load images for ``model`` (a :class:`~diamond_cutter.model.Model`), or at ``size`` without one.

    ``sources`` is one source or a list of them: paths, folders (their image
    files, sorted), glob patterns, ``http(s)://`` URLs, sample names, PIL images,
    numpy arrays (H×W or H×W×C, uint8 or floats in [0, 1]) and tensors (C×H×W or
    N×C×H×W in [0, 1]). A file that cannot be decoded raises :class:`ImageError`
    naming it; with ``skip_bad=True`` it is skipped with a warning instead.
    Originals are kept with their longest side at most ``display_side`` (or the
    network's input side, if larger); ``download`` bounds each URL's time and size.
    """
    batch = _decode(list(_expand(sources, _keep(model, size, display_side), download)), model, size, skip_bad)
    if batch is None:
        raise ImageError("no images to load" + (" (every source was unreadable)" if skip_bad else ""))
    return batch


def load_batches(
    sources: Any,
    model: Any = None,
    *,
    batch_size: int,
    size: tuple[int, int] | int | None = None,
    skip_bad: bool = False,
    display_side: int = DISPLAY_SIDE,
    download: DownloadLimits | None = None,
) -> Iterator[ImageBatch]:
    """:func:`load_images` ``batch_size`` images at a time: folders and glob patterns expand
    lazily and only one batch is decoded at once, so a collection larger than memory streams."""
    if batch_size < 1:
        raise DiamondCutterError(f"batch_size must be at least 1, got {batch_size}")
    found = False
    for chunk in _chunked(_expand(sources, _keep(model, size, display_side), download), batch_size):
        batch = _decode(chunk, model, size, skip_bad)
        if batch is not None:
            found = True
            yield batch
    if not found:
        raise ImageError("no images to load" + (" (every source was unreadable)" if skip_bad else ""))


def _keep(model: Any, size: tuple[int, int] | int | None, display_side: int) -> int:
    """The longest side originals are kept at: the display side, or the network's input if that is larger."""
    if display_side < 1:
        raise DiamondCutterError(f"display_side must be at least 1, got {display_side}")
    _, height, width = _target(model, size)
    return max(display_side, height, width)


def _chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _decode(
    pairs: list[tuple[str, Any]], model: Any, size: tuple[int, int] | int | None, skip_bad: bool
) -> ImageBatch | None:
    """The batch of the ``(id, opener)`` pairs (None when every one was skipped as unreadable)."""
    channels, height, width = _target(model, size)
    pictures: list[Image.Image] = []
    ids: list[str] = []
    for source_id, opener in pairs:
        try:
            picture = opener()
        except ImageError as err:
            if not skip_bad:
                raise
            warnings.warn(f"skipping {err}", stacklevel=3)
            continue
        pictures.append(picture)
        ids.append(source_id)
    if not pictures:
        return None
    crop_pct, interpolation = (model.crop_pct, model.interpolation) if model is not None else (1.0, "bicubic")
    pixels = torch.stack([_to_pixels(p, channels, height, width, crop_pct, interpolation) for p in pictures])
    tensor = model.normalize(pixels) if model is not None else pixels
    return ImageBatch(tensor, pixels, pictures, ids)


def as_batch(images: Any, model: Any) -> ImageBatch:
    """Accept an ImageBatch, a normalised input tensor or any ``load_images`` source.

    A tensor here is taken as the network's input (already normalised), the way
    a user with their own preprocessing passes it; :func:`load_images` instead
    reads tensors as ``[0, 1]`` pixels.
    """
    if isinstance(images, ImageBatch):
        if tuple(images.tensor.shape[1:]) != tuple(model.input_size):
            if images.originals:
                return load_images(images.originals, model)
            raise DiamondCutterError(f"images are {tuple(images.tensor.shape[1:])}, the model wants {model.input_size}")
        return images
    if isinstance(images, torch.Tensor):
        x = images.unsqueeze(0) if images.ndim == 3 else images
        model.check_input(x)
        pixels = model.denormalize(x.detach()).clamp(0, 1)
        return ImageBatch(x, pixels, [], [f"image {i}" for i in range(len(x))])
    return load_images(images, model)


def _target(model: Any, size: tuple[int, int] | int | None) -> tuple[int, int, int]:
    if model is not None:
        c, h, w = model.input_size
    else:
        c, h, w = 3, 224, 224
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
    return c, h, w


def source_ids(sources: Any) -> list[str]:
    """The id of every image that ``sources`` (files, folders, globs, URLs, sample names) names, in
    load order; each id loads again by itself, so a list of them can be cut into shards for other
    processes or machines. In-memory images have no such id and are an error."""
    in_memory = ImageError("a scan in shards needs files, folders, globs or URLs, not images in memory")
    if isinstance(sources, ImageBatch):
        raise in_memory
    ids = [image_id for image_id, _ in _expand(sources, 0, None)]  # ids only: nothing is opened
    if any(image_id.startswith(("image ", "array ", "tensor ")) for image_id in ids):
        raise in_memory
    return ids


def _expand(sources: Any, side: int, limits: DownloadLimits | None) -> Iterable[tuple[str, Any]]:
    """Yield ``(id, opener)`` for every image a source list names, lazily decoded to at most ``side``."""
    if isinstance(sources, (str, os.PathLike, Image.Image, np.ndarray)):
        sources = [sources]
    elif isinstance(sources, torch.Tensor):
        sources = list(sources) if sources.ndim == 4 else [sources]
    for i, source in enumerate(sources):
        if isinstance(source, Image.Image):
            yield getattr(source, "filename", "") or f"image {i}", lambda s=source: _shrunk(_normalise_mode(s), side)
        elif isinstance(source, np.ndarray):
            yield f"array {i}", lambda s=source: _shrunk(_from_array(s), side)
        elif isinstance(source, torch.Tensor):
            yield f"tensor {i}", lambda s=source: _shrunk(_from_array(s.detach().cpu().permute(1, 2, 0).numpy()), side)
        elif isinstance(source, (str, os.PathLike)):
            yield from _expand_path(str(source), side, limits)
        else:
            raise ImageError(f"cannot load an image from a {type(source).__name__}")


def _expand_path(source: str, side: int, limits: DownloadLimits | None) -> Iterable[tuple[str, Any]]:
    if source.startswith(("http://", "https://")):
        yield source, lambda: decode_image(download(source, limits), source, side)
        return
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise ImageError(f"folder {source} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for f in files:
            yield str(f), lambda f=f: _open(f, side)
    elif path.is_file():
        yield str(path), lambda: _open(path, side)
    elif glob.has_magic(source):
        matches = sorted(glob.glob(source, recursive=True))
        if not matches:
            raise ImageError(f"no files match {source}")
        for m in matches:
            yield m, lambda m=m: _open(Path(m), side)
    elif source.removeprefix("sample:") in SAMPLES:
        name = source.removeprefix("sample:")
        yield name, lambda: _open(sample_path(name), side)
    else:
        raise ImageError(f"no such file, folder or sample image: {source} (samples: {', '.join(SAMPLES)})")


def _open(path: Path, side: int | None = None) -> Image.Image:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageError(f"cannot read {path}: {err.strerror or err}") from None
    return decode_image(data, str(path), side)


def decode_image(data: bytes, name: str, max_side: int | None = None) -> Image.Image:
    """Decode image bytes (EXIF orientation applied, mode normalised); errors name ``name``.

    With ``max_side`` the picture comes back with its longest side at most that,
    and a JPEG larger than needed is decoded at a reduced scale (``draft``), so a
    decompression-bomb-sized photo never exists at full size. Public so every
    reader of image files (e.g. data-set validation) fails the same way.
    """
    if not data:
        raise ImageError(f"{name} is empty (0 bytes), not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # judged below, once the scale is known
            picture = Image.open(io.BytesIO(data))
        if max_side is not None:
            _draft(picture, max_side)
        picture.load()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise ImageError(f"{name} is not a readable image: {err}") from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and picture.width * picture.height > limit:
        warnings.warn(f"{name} was decoded at its full {picture.width}x{picture.height} pixels "
                      f"(only JPEGs decode at a reduced scale)", Image.DecompressionBombWarning, stacklevel=3)
    shown = _shrunk(_normalise_mode(ImageOps.exif_transpose(picture)), max_side)
    shown.filename = name  # type: ignore[attr-defined]
    return shown


def _draft(picture: Image.Image, side: int) -> None:
    """Ask the decoder for the smallest scale that still covers ``side`` (JPEG's DCT scaling; others ignore it)."""
    scale = side / max(picture.size)
    if scale < 1 and picture.format == "JPEG":
        picture.draft(picture.mode, (math.ceil(picture.width * scale), math.ceil(picture.height * scale)))


def _shrunk(picture: Image.Image, side: int | None) -> Image.Image:
    """``picture`` with its longest side at most ``side`` (a resized copy, or the picture itself)."""
    if side is None or max(picture.size) <= side:
        return picture
    scale = side / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _normalise_mode(picture: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB or L: 16-bit scaled, CMYK converted, alpha composited on white."""
    mode = picture.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(picture, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if mode == "F":
        return Image.fromarray(_float_to_bytes(np.asarray(picture, dtype=np.float64)), "L")
    if mode == "P":
        picture = picture.convert("RGBA" if "transparency" in picture.info else "RGB")
    if picture.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", picture.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(background, picture.convert("RGBA")).convert("RGB")
    if picture.mode not in ("RGB", "L"):
        picture = picture.convert("RGB")
    return picture


def _float_to_bytes(arr: np.ndarray) -> np.ndarray:
    """Float pixels to 0–255: read as [0, 1] unless they exceed 1, then as 0–255 (beyond that, up to the maximum).

    Scientific TIFFs store floats on either scale; reading a 0–255 image as [0, 1] turns it all white.
    """
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    top = float(arr.max()) if arr.size else 1.0
    if top > 1.0:
        unit = 255.0 if top <= 255.0 else top
        warnings.warn(f"a float image with values up to {top:g} is read as 0–{unit:g}", stacklevel=4)
        arr = arr / unit
    return (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)


def _from_array(arr: np.ndarray) -> Image.Image:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageError(f"an image array must be H×W or H×W×3/4, got shape {arr.shape}")
    if arr.dtype == np.uint16:
        arr = (arr / 257.0).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    return _normalise_mode(Image.fromarray(arr))


#: Resampling filters by the names timm and torchvision use.
INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                  "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS,
                  "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING}


def _to_pixels(picture: Image.Image, channels: int, height: int, width: int, crop_pct: float = 1.0,
               interpolation: str = "bicubic") -> torch.Tensor:
    """Resize so the image covers ``height×width`` / ``crop_pct``, centre-crop ``height×width``, and return
    C×H×W floats in [0, 1].

    Sizes and the crop offset are rounded as timm's and torchvision's eval
    transforms round them (shorter side ``floor(side / crop_pct)``, longer side
    truncated, offset ``round(margin / 2)``), so a model sees what it was evaluated on.
    """
    picture = picture.convert("L" if channels == 1 else "RGB")
    w, h = picture.size
    scale = max(height / h, width / w) / crop_pct
    short = min(w, h)
    scale = math.floor(short * scale + 1e-6) / short  # the shorter side on whole pixels
    new = (max(width, int(w * scale + 1e-6)), max(height, int(h * scale + 1e-6)))
    picture = picture.resize(new, INTERPOLATIONS[interpolation])
    left, top = int(round((new[0] - width) / 2.0)), int(round((new[1] - height) / 2.0))
    picture = picture.crop((left, top, left + width, top + height))
    arr = np.asarray(picture, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[..., None]
    if channels not in (1, 3):
        raise ImageError(f"cannot make {channels}-channel input from a picture; pass tensors instead")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)
