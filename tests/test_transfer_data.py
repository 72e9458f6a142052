"""Labelled image sets: folder and CSV loading, the stratified split and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diamond_cutter import DiamondCutterError, ImageError
from diamond_cutter.transfer.data import load_labelled, make_colour_dataset, make_digits_dataset


@pytest.fixture
def colours(tmp_path) -> Path:
    return make_colour_dataset(tmp_path / "colours", per_class=8, size=16)


def test_folder_split_is_stratified_seeded_and_disjoint(colours):
    data = load_labelled(colours, val_fraction=0.25, seed=3)
    assert data.classes == ["blue", "green", "red"]
    assert len(data) == 24 and len(data.val) == 6
    assert set(data.train).isdisjoint(data.val) and len(data.train) + len(data.val) == 24
    assert np.bincount(data.labels[data.val]).tolist() == [2, 2, 2]
    again = load_labelled(colours, val_fraction=0.25, seed=3)
    other = load_labelled(colours, val_fraction=0.25, seed=4)
    assert np.array_equal(again.val, data.val) and not np.array_equal(other.val, data.val)
    assert data.fingerprint() == again.fingerprint() != other.fingerprint()


def test_csv_and_separate_validation_folder(tmp_path, colours):
    rows = ["path,label"] + [f"{p.relative_to(colours)},{p.parent.name}" for p in sorted(colours.rglob("*.png"))]
    (colours / "list.csv").write_text("\n".join(rows))
    data = load_labelled(colours / "list.csv")
    assert len(data) == 24 and data.classes == ["blue", "green", "red"]
    val = make_colour_dataset(tmp_path / "val", per_class=2, size=16, seed=9)
    split = load_labelled(colours, val=val)
    assert len(split.val) == 6 and len(split.train) == 24


def test_imbalance_is_reported(tmp_path):
    root = make_digits_dataset(tmp_path / "d", per_class=12, digits=(0, 1))
    for f in sorted((root / "1").iterdir())[4:]:
        f.unlink()
    data = load_labelled(root)
    assert data.counts == {"0": 12, "1": 4}
    assert "imbalanced (3.0x" in data.report()


def test_empty_class_folder_is_named(colours):
    (colours / "purple").mkdir()
    with pytest.raises(DiamondCutterError, match="purple holds no images"):
        load_labelled(colours)


def test_one_class_only(tmp_path):
    root = make_colour_dataset(tmp_path / "c", per_class=3, size=8)
    for name in ("green", "blue"):
        for f in (root / name).iterdir():
            f.unlink()
        (root / name).rmdir()
    with pytest.raises(DiamondCutterError, match="one class only"):
        load_labelled(root)


def test_unreadable_images_are_all_named_or_skipped(colours):
    (colours / "red" / "broken.png").write_bytes(b"not an image")
    (colours / "blue" / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="2 unreadable") as err:
        load_labelled(colours)
    assert "broken.png" in str(err.value) and "empty.jpg" in str(err.value)
    with pytest.warns(UserWarning, match="skipping 2"):
        data = load_labelled(colours, skip_bad=True)
    assert len(data) == 24 and {Path(s).name for s in data.skipped} == {"broken.png", "empty.jpg"}
    assert "skipped 2 unreadable" in data.report()


def test_validation_class_unknown_to_training(tmp_path, colours):
    val = make_colour_dataset(tmp_path / "v", per_class=2, size=8)
    (val / "red").rename(val / "yellow")
    with pytest.raises(DiamondCutterError, match="yellow"):
        load_labelled(colours, val=val)
