"""Transferred models: train, save, load, predict identically, work with attribution; tampering is caught."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import diamond_cutter as dc
from diamond_cutter import CheckpointError, DiamondCutterError
from diamond_cutter.capture import capture
from diamond_cutter.transfer import TrainedHead, compare_predictions, load_transferred, train_head
from diamond_cutter.transfer.data import load_labelled, make_texture_dataset

from helpers import assert_unchanged, snapshot


@pytest.fixture(scope="module")
def lite0() -> dc.Model:
    return dc.load_model("efficientnet_lite0", input_size=(3, 64, 64))


@pytest.fixture(scope="module")
def textures(tmp_path_factory) -> dc.transfer.LabelledImages:
    return load_labelled(make_texture_dataset(tmp_path_factory.mktemp("tex"), per_class=8, size=64))


@pytest.fixture(scope="module")
def conv_saved(lite0, textures, tmp_path_factory) -> tuple[TrainedHead, Path]:
    trained = train_head(lite0, textures, "blocks.2", "conv", epochs=6, lr=1e-2, progress=False)
    path = tmp_path_factory.mktemp("saved") / "conv"
    trained.save(str(path))
    return trained, path


def logits(model: dc.Model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def test_save_load_predict_gives_identical_logits(conv_saved, textures, lite0):
    trained, path = conv_saved
    loaded = load_transferred(str(path))
    x = textures.pixels(textures.test, lite0)
    assert torch.equal(logits(loaded, x), logits(trained.as_model(), x))
    assert loaded.labels == ["brick", "grass", "gravel"]
    assert set(json.loads((path / "manifest.json").read_text())["files"]) == {"head.safetensors"}
    pred = dc.predict(loaded, x, k=1)
    assert (pred.indices[:, 0].numpy() == textures.labels[textures.test]).mean() == trained.metrics.accuracy


def test_loaded_model_works_with_attribution_on_the_new_conv_layer(conv_saved, textures, lite0):
    _, path = conv_saved
    loaded = load_transferred(str(path))
    assert loaded.layer("head.conv").channels == trained_width(path)
    assert "backbone.net.blocks.2" in loaded.layers
    x = textures.pixels(textures.val[:2], lite0)
    cam = dc.attribute(loaded, x, method="gradcam", layer="head.conv", target="top1")
    maps = cam.maps if hasattr(cam, "maps") else cam
    assert torch.as_tensor(maps).abs().sum() > 0
    with capture(loaded.module, ["head.conv"]) as rec:
        score = loaded(x.requires_grad_(True))[:, 0]
    grad = rec.gradients(score)["head.conv"]
    assert grad.shape == rec["head.conv"].shape and grad.abs().sum() > 0


def trained_width(path: Path) -> int:
    return json.loads((path / "manifest.json").read_text())["head"]["width"]


def copy_saved(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_tampered_head_file_is_refused(conv_saved, tmp_path):
    path = copy_saved(conv_saved[1], tmp_path / "m")
    blob = bytearray((path / "head.safetensors").read_bytes())
    blob[-5] ^= 0xFF
    (path / "head.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        load_transferred(str(path))


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(cut="blocks.22"), "did you mean"),
    (lambda m: m["head"].update(in_channels=41), "head takes 41 channels|does not fit"),
    (lambda m: m["head"].update(kind="mlp"), "unknown head kind"),
    (lambda m: m.update(labels=["brick", "grass"]), "2 labels for a head of 3 classes"),
    (lambda m: m.update(extra="x"), "unexpected \\['extra'\\]"),
    (lambda m: m["files"].update({"head.safetensors": "0" * 64}), "does not match its SHA-256"),
    (lambda m: m.update(format="pickle"), "not a Diamond Cutter"),
])
def test_tampered_manifest_is_refused(conv_saved, tmp_path, edit, message):
    path = copy_saved(conv_saved[1], tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=message):
        load_transferred(str(path))


def test_mismatched_labels_on_reload(conv_saved):
    with pytest.raises(DiamondCutterError, match="4 labels given, but the saved head predicts 3"):
        load_transferred(str(conv_saved[1]), labels=["a", "b", "c", "d"])
    assert load_transferred(str(conv_saved[1]), labels=["x", "y", "z"]).labels == ["x", "y", "z"]


def test_fine_tuning_leaves_the_model_unchanged_and_saves_the_backbone(lite0, textures, tmp_path):
    before = snapshot(lite0.module)
    tuned = train_head(lite0, textures, "blocks.2", "linear", epochs=2, unfreeze=1, augment=True, progress=False)
    assert_unchanged(before, lite0.module)
    changed = [k for k, v in tuned.net.backbone.net.state_dict().items()
               if k.startswith("blocks.2") and not torch.equal(v, lite0.module.state_dict()[k])]
    assert changed  # the unfrozen block was trained on the copy
    tuned.save(str(tmp_path / "tuned"))
    assert (tmp_path / "tuned" / "backbone.safetensors").is_file()
    x = textures.pixels(textures.val, lite0)
    assert torch.equal(logits(load_transferred(str(tmp_path / "tuned")), x), logits(tuned.as_model(), x))


def test_random_weight_backbone_is_saved_and_restored(textures, tmp_path):
    torch.manual_seed(1)
    model = dc.load_model("resnet18", weights=None, input_size=(3, 32, 32))
    trained = train_head(model, textures, "layer2", "linear", epochs=2, progress=False)
    trained.save(str(tmp_path / "r"))
    x = textures.pixels(textures.val, model)
    assert torch.equal(logits(load_transferred(str(tmp_path / "r")), x), logits(trained.as_model(), x))


def test_user_module_cannot_be_saved(textures, tmp_path):
    from helpers import InplaceNet

    model = dc.load_model(InplaceNet().eval(), input_size=(3, 32, 32))
    trained = train_head(model, textures, "relu2", "linear", epochs=1, progress=False)
    with pytest.raises(CheckpointError, match="only zoo models"):
        trained.save(str(tmp_path / "u"))


def test_comparison_of_transferred_models(conv_saved, lite0, textures, tmp_path):
    linear = train_head(lite0, textures, "blocks.4", "linear", epochs=10, lr=1e-2, progress=False)
    models = {"conv@blocks.2": load_transferred(str(conv_saved[1])), "linear@blocks.4": linear.as_model()}
    paths = [textures.paths[i] for i in textures.val[:3]]
    comparison = compare_predictions(models, paths)
    assert [row["image"] for row in comparison.table()] == paths
    for name, probs in comparison.probabilities.items():
        assert probs.shape == (3, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
        x = dc.load_images(paths, models[name]).tensor
        assert np.allclose(probs, logits(models[name], x).softmax(1).numpy(), atol=1e-6)
    assert 0 <= comparison.agreement <= 1
    figure = comparison.plot()
    assert type(figure).__name__ == "Figure" and figure.get_size_inches()[0] <= 10
    assert "all models agree" in str(comparison)


@pytest.mark.parametrize("options", [{"head": "conv"}, {"head": "linear", "unfreeze": 1, "augment": True}])
def test_inputs_over_the_memory_budget_train_from_a_file_the_same(lite0, textures, monkeypatch, options):
    """A conv head's maps and fine-tuning's pixels that outgrow the budget live in a mapped file; the
    training is the same as in RAM."""
    import diamond_cutter.transfer.train as train

    real = train.budgeted_empty

    def run(budget: str | None) -> tuple[TrainedHead, list[str | None]]:
        if budget is None:
            monkeypatch.delenv("DIAMOND_CUTTER_MEMORY", raising=False)
        else:
            monkeypatch.setenv("DIAMOND_CUTTER_MEMORY", budget)
        files: list[str | None] = []

        def spy(*args):
            out = real(*args)
            files.append(getattr(out.untyped_storage(), "filename", None))
            return out

        monkeypatch.setattr(train, "budgeted_empty", spy)
        head = options["head"]
        rest = {k: v for k, v in options.items() if k != "head"}
        return train_head(lite0, textures, "blocks.2", head, epochs=2, lr=1e-2, progress=False, **rest), files

    in_ram, ram_files = run(None)
    on_disk, disk_files = run("16K")
    assert ram_files and not any(ram_files)
    assert len(disk_files) == 3 and all(f and not Path(f).exists() for f in disk_files)  # unlinked at once
    assert [h["val_accuracy"] for h in in_ram.history] == [h["val_accuracy"] for h in on_disk.history]
    np.testing.assert_allclose([h["loss"] for h in in_ram.history], [h["loss"] for h in on_disk.history], rtol=1e-5)
    assert np.array_equal(in_ram.test_predictions, on_disk.test_predictions)
