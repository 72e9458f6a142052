"""Labelled image sets for transfer learning: folders or CSV, a seeded stratified split, checks.

A sweep is only as trustworthy as its validation split, so the split is
stratified (every class on both sides) and seeded (the same images land in
validation on every run, which is also what lets cached results be reused).
Bad images are found up front, all of them named at once, instead of
crashing an hour into a sweep.
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import DiamondCutterError, ImageError
from ..html import short_repr
from ..images import IMAGE_SUFFIXES, decode_image, load_images, sample_path

#: Imbalance above this ratio (largest class / smallest class) is reported as a warning.
IMBALANCE_WARNING = 1.5


@dataclass
class LabelledImages:
    """Image files with integer labels, a train/validation split and what was skipped.

    ``hashes`` are SHA-256 digests of each file's bytes: feature caches key on
    image content, so renaming files keeps the cache and editing one image
    recomputes only that image's batch.
    """

    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    train: np.ndarray
    val: np.ndarray
    hashes: list[str]
    skipped: list[str] = field(default_factory=list)
    seed: int = 0

    def __repr__(self) -> str:
        return short_repr(self)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(self.labels.tolist())
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}

    @property
    def imbalance(self) -> float:
        """Largest class size over smallest (1.0 = balanced)."""
        sizes = list(self.counts.values())
        return max(sizes) / max(1, min(sizes))

    def report(self) -> str:
        """Class sizes, split sizes, imbalance and skipped files, as a few readable lines."""
        sizes = ", ".join(f"{name}: {n}" for name, n in self.counts.items())
        lines = [
            f"{len(self)} images in {len(self.classes)} classes ({sizes}); "
            f"{len(self.train)} train / {len(self.val)} validation (seed {self.seed})"
        ]
        if self.imbalance > IMBALANCE_WARNING:
            lines.append(
                f"classes are imbalanced ({self.imbalance:.1f}x largest/smallest): read balanced accuracy, not accuracy"
            )
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable image(s): {', '.join(self.skipped)}")
        return "\n".join(lines)

    def fingerprint(self) -> str:
        """One digest of the images, labels and split: results computed on it can be reused only if it matches."""
        h = hashlib.sha256()
        for digest, label in zip(self.hashes, self.labels.tolist()):
            h.update(f"{digest}:{label};".encode())
        h.update(f"train={self.train.tolist()};classes={self.classes}".encode())
        return h.hexdigest()[:16]

    def pixels(self, indices: Any, model: Any) -> torch.Tensor:
        """Normalised network input for the images at ``indices`` (decoded on demand, never all at once)."""
        return load_images([self.paths[i] for i in np.asarray(indices).tolist()], model).tensor


def load_labelled(
    source: str | Path | LabelledImages,
    *,
    val: str | Path | None = None,
    val_fraction: float = 0.25,
    seed: int = 0,
    skip_bad: bool = False,
) -> LabelledImages:
    """A labelled set from an ImageFolder-style directory (one subfolder per class) or a ``path,label`` CSV.

    ``val`` names a separate validation folder/CSV; otherwise ``val_fraction``
    of each class (at least one image) goes to validation, chosen with ``seed``.
    Unreadable images raise :class:`ImageError` naming every one of them, or
    are skipped and listed in ``skipped`` with ``skip_bad=True``.
    """
    if isinstance(source, LabelledImages):
        return source
    items = _read_items(Path(source))
    val_items = _read_items(Path(val)) if val is not None else []
    classes = sorted({label for _, label in items})
    unknown = sorted({label for _, label in val_items} - set(classes))
    if unknown:
        raise DiamondCutterError(f"validation classes {unknown} do not occur in the training images {classes}")
    if len(classes) < 2:
        raise DiamondCutterError(
            f"{source} holds one class only ({classes[0] if classes else 'none'}): a classifier needs at least two"
        )
    paths, labels, hashes, skipped = _check_images(items + val_items, classes, skip_bad)
    index = {p: i for i, p in enumerate(paths)}
    if val is not None:
        val_paths = {str(p) for p, _ in val_items}
        val_idx = np.array([index[p] for p in paths if p in val_paths], dtype=np.int64)
        train_idx = np.array([index[p] for p in paths if p not in val_paths], dtype=np.int64)
    else:
        train_idx, val_idx = stratified_split(labels, val_fraction, seed, classes)
    return LabelledImages(paths, labels, classes, train_idx, val_idx, hashes, skipped, seed)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split: ``round(val_fraction * n)`` (at least 1) of each class to validation."""
    if not 0 < val_fraction < 1:
        raise DiamondCutterError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c, name in enumerate(classes):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            raise DiamondCutterError(f"class {name!r} has {len(members)} image(s): each class needs at least 2 to split")
        members = rng.permutation(members)
        n_val = min(len(members) - 1, max(1, round(val_fraction * len(members))))
        val.extend(members[:n_val].tolist())
        train.extend(members[n_val:].tolist())
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))


def _read_items(source: Path) -> list[tuple[str, str]]:
    if source.is_dir():
        return _read_folder(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return _read_csv(source)
    raise DiamondCutterError(f"{source} is neither a folder of class subfolders nor a .csv file of path,label rows")


def _read_folder(root: Path) -> list[tuple[str, str]]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DiamondCutterError(f"{root} has no class subfolders (expected {root}/CLASS/image.jpg)")
    items = []
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DiamondCutterError(f"class folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        items += [(str(f), folder.name) for f in files]
    return items


def _read_csv(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    bad = [i + 1 for i, r in enumerate(rows) if len(r) < 2 or not r[1].strip()]
    if bad:
        raise DiamondCutterError(f"{path}: rows {bad[:5]} are not 'path,label'")
    if not rows:
        raise DiamondCutterError(f"{path} lists no images")
    resolve = lambda p: str(Path(p) if Path(p).is_absolute() else path.parent / p)  # noqa: E731
    return [(resolve(r[0].strip()), r[1].strip()) for r in rows]


def _check_images(
    items: list[tuple[str, str]], classes: list[str], skip_bad: bool
) -> tuple[list[str], np.ndarray, list[str], list[str]]:
    """Decode every image once: hash its bytes, collect every failure before raising."""
    paths, labels, hashes, bad, reasons = [], [], [], [], []
    for path, label in items:
        try:
            data = Path(path).read_bytes()
            decode_image(data, path)
        except (OSError, ImageError) as err:
            bad.append(path)
            reasons.append(f"{path} ({err})" if not isinstance(err, ImageError) else str(err))
            continue
        paths.append(path)
        labels.append(classes.index(label))
        hashes.append(hashlib.sha256(data).hexdigest())
    if bad and not skip_bad:
        raise ImageError(f"{len(bad)} unreadable image(s) (pass skip_bad=True to skip them): " + "; ".join(reasons))
    if bad:
        warnings.warn(f"skipping {len(bad)} unreadable image(s): " + "; ".join(reasons), stacklevel=3)
    return paths, np.array(labels, dtype=np.int64), hashes, bad


# --- small real data sets from installed packages (offline) ------------------------------------

#: scikit-image's texture photographs, one class each.
TEXTURES = ("brick", "grass", "gravel")


def make_texture_dataset(root: str | Path, per_class: int = 20, size: int = 64, seed: int = 0,
                         textures: tuple[str, ...] = TEXTURES) -> Path:
    """Write random ``size``-pixel crops of scikit-image's texture photographs as ``root/TEXTURE/NNN.png``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for name in textures:
        picture = np.asarray(Image.open(sample_path(name)).convert("L"))
        h, w = picture.shape
        for i in range(per_class):
            y, x = rng.integers(0, h - size), rng.integers(0, w - size)
            _write(root / name / f"{i:03d}.png", picture[y : y + size, x : x + size])
    return root


def make_digits_dataset(root: str | Path, per_class: int = 20, digits: tuple[int, ...] = tuple(range(10))) -> Path:
    """Write scikit-learn's 8×8 handwritten digits (real scans) as ``root/DIGIT/NNN.png``."""
    try:  # deferred: scikit-learn's data sets are slow to import and only this helper needs them
        from sklearn.datasets import load_digits
    except ImportError:
        raise DiamondCutterError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    bunch = load_digits()
    root = Path(root)
    for d in digits:
        images = bunch.images[bunch.target == d][:per_class]
        for i, img in enumerate(images):
            _write(root / str(d) / f"{i:03d}.png", (img / 16.0 * 255).round().astype(np.uint8))
    return root


def make_colour_dataset(root: str | Path, per_class: int = 12, size: int = 32, seed: int = 0) -> Path:
    """Noise images whose class is their dominant colour channel: early layers already separate them.

    The known answer (colour is visible at the very first convolution) is what
    makes this a test of the cut recommendation, which should then prefer a
    cheap early cut.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for c, name in enumerate(("red", "green", "blue")):
        for i in range(per_class):
            img = rng.uniform(0, 0.6, (size, size, 3))
            img[..., c] += 0.4
            _write(root / name / f"{i:03d}.png", (img * 255).round().astype(np.uint8))
    return root


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
