"""Saved transferred models: a missing or swapped backbone and hostile manifests are refused before any allocation."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

import diamond_cutter as dc
from diamond_cutter import CheckpointError
from diamond_cutter.transfer import load_transferred, train_head
from diamond_cutter.transfer.data import load_labelled, make_texture_dataset


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Path:
    """A linear head on a backbone whose last block before the cut was fine-tuned (one quick epoch)."""
    lite0 = dc.load_model("efficientnet_lite0", input_size=(3, 64, 64))
    data = load_labelled(make_texture_dataset(tmp_path_factory.mktemp("tex"), per_class=4, size=64))
    trained = train_head(lite0, data, "blocks.2", "linear", epochs=1, unfreeze=1, progress=False)
    path = tmp_path_factory.mktemp("saved") / "tuned"
    trained.save(str(path))
    return path


def copy_of(path: Path, tmp_path: Path) -> tuple[Path, dict]:
    target = tmp_path / "copy"
    shutil.copytree(path, target)
    return target, json.loads((target / "manifest.json").read_text())


def write(path: Path, manifest: dict) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest))


def without_backbone(path: Path, manifest: dict) -> None:
    (path / "backbone.safetensors").unlink()
    del manifest["files"]["backbone.safetensors"]


def test_the_manifest_records_the_backbone_fingerprint_and_fine_tuning(tuned):
    backbone = json.loads((tuned / "manifest.json").read_text())["backbone"]
    assert backbone["fine_tuned"] is True and len(backbone["fingerprint"]) == 64
    assert load_transferred(str(tuned)).name.startswith("efficientnet_lite0@blocks.2")


MISSING_BACKBONE = [
    ({}, "fine-tuned, but its weights"),  # the backbone file and its manifest entry removed
    ({"fine_tuned": False}, "not the ones the head was trained on"),  # ... and the stock backbone claimed
    ({"fine_tuned": False, "weights": None}, "not from the zoo, but its weights"),  # ... or a random one
]


@pytest.mark.parametrize("claims,message", MISSING_BACKBONE, ids=["removed", "stock claimed", "random claimed"])
def test_a_save_without_its_backbone_weights_is_refused(tuned, tmp_path, claims, message):
    path, manifest = copy_of(tuned, tmp_path)
    without_backbone(path, manifest)
    manifest["backbone"].update(claims)
    write(path, manifest)
    with pytest.raises(CheckpointError, match=message):
        load_transferred(str(path))


HOSTILE = [
    ("backbone", "input_size", [3, 2500, 2500], "input_size must be"),
    ("backbone", "input_size", [3, 64], "input_size must be"),
    ("backbone", "input_size", [7, 64, 64], "input_size must be"),
    ("backbone", "std", [0.0, 0.224, 0.225], "std must be positive"),
    ("backbone", "std", [0.229, 0.224], "std must be 3 finite"),
    ("backbone", "mean", [float("nan"), 0.0, 0.0], "mean must be 3 finite"),
    ("backbone", "mean", ["a", 0.0, 0.0], "mean must be 3 finite"),
    ("backbone", "weights", "/etc/passwd", "weights must be 'imagenet' or null"),
    ("backbone", "fingerprint", "x" * 64, "fingerprint is not a SHA-256"),
    ("head", "in_channels", 100_000_000, "in_channels must be 1..16384"),
    ("head", "classes", 0, "classes must be 1..100000"),
    ("head", "classes", 10**9, "classes must be 1..100000"),
    ("head", "width", 10**7, "width must be 1..16384"),
    ("head", "in_channels", 1e8, "malformed"),
    ("head", "in_channels", True, "malformed"),
    # found by the fuzz (test_fault_fuzz.py): they escaped as a plain DiamondCutterError and a TypeError
    ("head", "pooling", "conv", "pooling must be one of"),
    ("head", "kind", "conv", "a conv head needs a width"),
]


@pytest.mark.parametrize("section,field,value,message", HOSTILE, ids=[f"{h[1]}={h[2]!r:.20}" for h in HOSTILE])
def test_hostile_manifest_values_are_refused(tuned, tmp_path, section, field, value, message):
    path, manifest = copy_of(tuned, tmp_path)
    manifest[section][field] = value
    write(path, manifest)
    with pytest.raises(CheckpointError, match=message):
        load_transferred(str(path))


def test_the_head_shape_is_checked_against_the_safetensors_header_first(tuned, tmp_path):
    path, manifest = copy_of(tuned, tmp_path)
    header = json.dumps({"fc.weight": {"dtype": "F32", "shape": [100000, 16384], "data_offsets": [0, 8]}}).encode()
    blob = len(header).to_bytes(8, "little") + header + b"\0" * 8
    (path / "head.safetensors").write_bytes(blob)
    manifest["files"]["head.safetensors"] = hashlib.sha256(blob).hexdigest()
    write(path, manifest)
    with pytest.raises(CheckpointError, match="head.safetensors does not fit"):
        load_transferred(str(path))


@pytest.mark.parametrize("blob", [b"", b"\xff" * 8, (2**62).to_bytes(8, "little") + b"{}", b"\x04\0\0\0\0\0\0\0[1]x"])
def test_a_broken_safetensors_header_is_a_checkpoint_error(tuned, tmp_path, blob):
    path, manifest = copy_of(tuned, tmp_path)
    (path / "head.safetensors").write_bytes(blob)
    manifest["files"]["head.safetensors"] = hashlib.sha256(blob).hexdigest()
    write(path, manifest)
    with pytest.raises(CheckpointError, match="not valid safetensors"):
        load_transferred(str(path))
