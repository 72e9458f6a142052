"""Labelled image sets for transfer learning: folders or CSV, seeded stratified splits, checks.

A sweep is only as trustworthy as its splits. Whatever is chosen (a penalty,
an epoch, a pair) is chosen on validation images and reported on test images
that took no part in any choice. Splits are stratified (every class on every
side) and seeded (the same images land in the same split on every run, which
is also what lets cached results be reused). Sets under :data:`SMALL_SET`
images use k-fold cross-validation instead: fold ``i`` is the test split, fold
``i + 1`` the validation split and the rest trains, so every image is held out
once and every choice is made inside the folds (nested). Bad images are found
up front, all of them named at once, instead of crashing an hour into a sweep.
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
#: Sets with fewer images than this use k-fold cross-validation (``folds="auto"``).
SMALL_SET = 500
#: Folds for small sets.
DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class Fold:
    """Indices of one train / validation / test split (test may be empty)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@dataclass
class LabelledImages:
    """Image files with integer labels, train/validation/test splits and what was skipped.

    ``train``/``val``/``test`` are the first split; ``folds`` holds every split
    when the set is cross-validated (``folds[0]`` is the first).

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
    test: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    folds: list[Fold] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.folds:
            self.folds = [Fold(self.train, self.val, self.test)]

    @property
    def cross_validated(self) -> bool:
        return len(self.folds) > 1

    @property
    def val_order(self) -> np.ndarray:
        """Every fold's validation indices in fold order: the images pooled validation predictions refer to."""
        return np.concatenate([f.val for f in self.folds])

    @property
    def test_order(self) -> np.ndarray:
        """Every fold's test indices in fold order: the images pooled held-out predictions refer to."""
        return np.concatenate([f.test for f in self.folds])

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
        if self.cross_validated:
            split = (f"{len(self.folds)}-fold cross-validation (each fold tested once, the next fold validates, "
                     f"seed {self.seed})")
        else:
            split = f"{len(self.train)} train / {len(self.val)} validation / {len(self.test)} test (seed {self.seed})"
        lines = [f"{len(self)} images in {len(self.classes)} classes ({sizes}); {split}"]
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
        splits = [(f.train.tolist(), f.val.tolist(), f.test.tolist()) for f in self.folds]
        h.update(f"splits={splits};classes={self.classes}".encode())
        return h.hexdigest()[:16]

    def pixels(self, indices: Any, model: Any) -> torch.Tensor:
        """Normalised network input for the images at ``indices`` (decoded on demand, never all at once)."""
        return load_images([self.paths[i] for i in np.asarray(indices).tolist()], model).tensor


def load_labelled(
    source: str | Path | LabelledImages,
    *,
    val: str | Path | None = None,
    test: str | Path | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    folds: int | str | None = "auto",
    seed: int = 0,
    skip_bad: bool = False,
) -> LabelledImages:
    """A labelled set from an ImageFolder-style directory (one subfolder per class) or a ``path,label`` CSV.

    ``val``/``test`` name separate validation/test folders or CSVs; otherwise
    ``val_fraction`` and ``test_fraction`` of each class (at least one image
    each) are split off with ``seed``. ``folds``: ``"auto"`` cross-validates sets
    under :data:`SMALL_SET` images in :data:`DEFAULT_FOLDS` folds (when no
    ``val``/``test`` folder is given), an int always uses that many folds,
    ``None`` never does. Unreadable images raise :class:`ImageError` naming every
    one of them, or are skipped and listed in ``skipped`` with ``skip_bad=True``.
    """
    if isinstance(source, LabelledImages):
        return source
    items = _read_items(Path(source))
    extra = {name: _read_items(Path(where)) for name, where in (("validation", val), ("test", test)) if where}
    classes = sorted({label for _, label in items})
    if len(classes) < 2:
        raise DiamondCutterError(
            f"{source} holds one class only ({classes[0] if classes else 'none'}): a classifier needs at least two"
        )
    for name, listed in extra.items():
        theirs = sorted({label for _, label in listed})
        if theirs != classes and (name == "test" or set(theirs) - set(classes)):
            raise DiamondCutterError(f"the {name} images' classes {theirs} differ from the training classes {classes}")
    paths, labels, hashes, skipped = _check_images(items + [i for v in extra.values() for i in v], classes, skip_bad)
    given = {name: {str(p) for p, _ in listed} for name, listed in extra.items()}
    own = np.array([i for i, p in enumerate(paths) if not any(p in g for g in given.values())], dtype=np.int64)
    fixed = {name: np.array([i for i, p in enumerate(paths) if p in g], dtype=np.int64) for name, g in given.items()}
    if folds not in (None, "auto") and extra:
        raise DiamondCutterError("cross-validation folds and a separate validation or test set exclude each other")
    k = _auto_folds(labels, len(classes)) if folds == "auto" and not extra else (None if folds == "auto" else folds)
    if k is not None:
        splits = kfold_splits(labels, own, int(k), seed, classes)
    else:
        fractions = (0.0 if "validation" in fixed else val_fraction, 0.0 if "test" in fixed else test_fraction)
        train, val_idx, test_idx = stratified_split(labels, own, fractions, seed, classes)
        splits = [Fold(train, fixed.get("validation", val_idx), fixed.get("test", test_idx))]
    first = splits[0]
    return LabelledImages(paths, labels, classes, first.train, first.val, hashes, skipped, seed, first.test, splits)


def _auto_folds(labels: np.ndarray, n_classes: int) -> int | None:
    """:data:`DEFAULT_FOLDS` for small sets (fewer where a class is smaller; a split below 3), else a split."""
    smallest = int(np.bincount(labels, minlength=n_classes).min())
    k = min(DEFAULT_FOLDS, smallest)
    return k if len(labels) < SMALL_SET and k >= 3 else None


def _counts(labels: np.ndarray, members: np.ndarray, classes: list[str]) -> str:
    counts = np.bincount(labels[members], minlength=len(classes))
    return ", ".join(f"{name}: {n}" for name, n in zip(classes, counts))


def stratified_split(labels: np.ndarray, members: np.ndarray, fractions: tuple[float, float], seed: int,
                     classes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded per-class train/validation/test split of ``members``: ``round(fraction * n)`` of each class
    (at least one where the fraction is positive) to validation and to test, the rest to training."""
    if any(not 0 <= f < 1 for f in fractions) or sum(fractions) >= 1:
        raise DiamondCutterError(f"validation and test fractions must be in [0, 1) and leave images to train, "
                                 f"got {fractions}")
    needed = 1 + sum(f > 0 for f in fractions)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c, name in enumerate(classes):
        mine = rng.permutation(members[labels[members] == c])
        if len(mine) < needed:
            raise DiamondCutterError(
                f"class {name!r} has {len(mine)} image(s): a train/validation/test split needs at least {needed} per "
                f"class (images per class: {_counts(labels, members, classes)})")
        sizes = [max(1, round(f * len(mine))) if f > 0 else 0 for f in fractions]
        while sum(sizes) >= len(mine):  # keep at least one image to train on
            sizes[sizes.index(max(sizes))] -= 1
        parts[1] += mine[: sizes[0]].tolist()
        parts[2] += mine[sizes[0] : sizes[0] + sizes[1]].tolist()
        parts[0] += mine[sizes[0] + sizes[1] :].tolist()
    train, val, test = (np.sort(np.array(p, dtype=np.int64)) for p in parts)
    return train, val, test


def kfold_splits(labels: np.ndarray, members: np.ndarray, k: int, seed: int, classes: list[str]) -> list[Fold]:
    """Seeded stratified k-fold: fold ``i`` tests, fold ``i + 1`` validates, the other ``k - 2`` train."""
    smallest = min(int((labels[members] == c).sum()) for c in range(len(classes)))
    if k < 3:
        raise DiamondCutterError(f"cross-validation needs at least 3 folds (test, validation, train), got {k}")
    if k > smallest:
        raise DiamondCutterError(
            f"{k}-fold cross-validation needs at least {k} images in every class; the smallest has {smallest} "
            f"(images per class: {_counts(labels, members, classes)}). Use fewer folds.")
    rng = np.random.default_rng(seed)
    fold_of = np.full(len(labels), -1)
    for c in range(len(classes)):
        mine = rng.permutation(members[labels[members] == c])
        fold_of[mine] = (np.arange(len(mine)) + rng.integers(k)) % k  # a random start spreads the remainders
    index = [np.flatnonzero(fold_of == i) for i in range(k)]
    return [Fold(np.sort(np.concatenate([index[j] for j in range(k) if j not in (i, (i + 1) % k)])),
                 index[(i + 1) % k], index[i]) for i in range(k)]


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
