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
    data = load_labelled(colours, val_fraction=0.25, test_fraction=0.25, folds=None, seed=3)
    assert data.classes == ["blue", "green", "red"]
    assert len(data) == 24 and len(data.val) == 6 and len(data.test) == 6 and not data.cross_validated
    parts = [set(data.train), set(data.val), set(data.test)]
    assert sum(map(len, parts)) == 24 and len(set.union(*parts)) == 24
    assert np.bincount(data.labels[data.val]).tolist() == [2, 2, 2] == np.bincount(data.labels[data.test]).tolist()
    again = load_labelled(colours, val_fraction=0.25, test_fraction=0.25, folds=None, seed=3)
    other = load_labelled(colours, val_fraction=0.25, test_fraction=0.25, folds=None, seed=4)
    assert np.array_equal(again.test, data.test) and not np.array_equal(other.val, data.val)
    assert data.fingerprint() == again.fingerprint() != other.fingerprint()


def test_small_sets_are_cross_validated_every_image_tested_and_validated_once(colours):
    data = load_labelled(colours)  # 24 images < SMALL_SET: 5 folds by default
    assert data.cross_validated and len(data.folds) == 5
    assert sorted(data.test_order.tolist()) == list(range(24)) == sorted(data.val_order.tolist())
    for fold in data.folds:
        assert set(fold.train).isdisjoint(fold.val) and set(fold.train).isdisjoint(fold.test)
        assert set(fold.val).isdisjoint(fold.test) and len(fold.train) + len(fold.val) + len(fold.test) == 24
        assert set(np.bincount(data.labels[fold.test], minlength=3).tolist()) <= {1, 2}  # stratified
    assert "5-fold cross-validation" in data.report()
    assert load_labelled(colours, folds=3).fingerprint() != data.fingerprint()


def test_csv_and_separate_validation_and_test_folders(tmp_path, colours):
    rows = ["path,label"] + [f"{p.relative_to(colours)},{p.parent.name}" for p in sorted(colours.rglob("*.png"))]
    (colours / "list.csv").write_text("\n".join(rows))
    data = load_labelled(colours / "list.csv")
    assert len(data) == 24 and data.classes == ["blue", "green", "red"]
    val = make_colour_dataset(tmp_path / "val", per_class=2, size=16, seed=9)
    split = load_labelled(colours, val=val)
    assert len(split.val) == 6 and len(split.train) + len(split.test) == 24 and not split.cross_validated
    test = make_colour_dataset(tmp_path / "test", per_class=3, size=16, seed=10)
    both = load_labelled(colours, val=val, test=test)
    assert (len(both.train), len(both.val), len(both.test)) == (24, 6, 9)


def test_bad_splits_name_the_problem(tmp_path, colours):
    for f in sorted((colours / "red").iterdir())[2:]:
        f.unlink()
    with pytest.raises(DiamondCutterError, match=r"class 'red' has 2 image.*at least 3.*red: 2"):
        load_labelled(colours, folds=None)
    with pytest.raises(DiamondCutterError, match=r"5-fold.*smallest has 2.*blue: 8, green: 8, red: 2"):
        load_labelled(colours, folds=5)
    test = make_colour_dataset(tmp_path / "test", per_class=2, size=16)
    for f in (test / "blue").iterdir():
        f.unlink()
    (test / "blue").rmdir()
    with pytest.raises(DiamondCutterError, match=r"test images' classes \['green', 'red'\] differ"):
        load_labelled(colours, test=test)


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
