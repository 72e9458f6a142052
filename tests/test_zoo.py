"""Model zoo: the embedded real model, Lucid's inventory, checkpoints and offline behaviour."""

from __future__ import annotations

import math
import pickle
import socket

import pytest
import torch
from torch import nn

import diamond_cutter as dc
from diamond_cutter import zoo

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


EMBEDDED_KEYS = {"efficientnet_lite0": 296, "efficientnet_lite1": 386, "efficientnet_lite2": 386}


@pytest.mark.parametrize("name", list(EMBEDDED_KEYS))
def test_embedded_checkpoint_maps_every_key_with_matching_shapes(name):
    import timm

    state = torch.load(zoo.embedded_checkpoint(name), map_location="cpu", weights_only=True)
    target = timm.create_model(f"tf_{name}", pretrained=False).state_dict()
    mapped = {zoo._lite_key(k, zoo.EMBEDDED_STAGES[name]): v.shape for k, v in state.items()}
    assert len(state) == EMBEDDED_KEYS[name]
    assert set(mapped) == set(target)
    assert all(target[k].shape == shape for k, shape in mapped.items())


@pytest.fixture(scope="module", params=list(EMBEDDED_KEYS))
def any_embedded(request, embedded) -> dc.Model:
    return embedded if request.param == zoo.EMBEDDED else dc.load_model(request.param)


def test_embedded_models_classify_real_images(any_embedded):
    pred = dc.predict(any_embedded, ["chelsea", "coffee"], k=5)
    print(pred)
    cat_prob = float(torch.tensor([p for i, p in zip(pred.indices[0].tolist(), pred.probabilities[0].tolist())
                                   if i in CAT_CLASSES]).sum())
    assert int(pred.indices[0, 0]) in CAT_CLASSES
    assert cat_prob > 0.8
    assert int(pred.indices[1, 0]) in (967, 968)  # espresso, cup
    assert float(pred.probabilities[1, 0]) > 0.5


def test_embedded_models_are_offline_and_listed_first():
    entries = zoo.list_models(include_all=False)
    assert [e.name for e in entries[:3]] == list(EMBEDDED_KEYS)
    assert all(e.offline and e.source == "embedded" for e in entries[:3])
    assert not any(e.offline for e in entries[3:])


def _confidence(module: torch.nn.Module, mean, std) -> tuple[float, float]:
    """(summed cat-class probability on chelsea, espresso probability on coffee) under one normalisation."""
    model = dc.Model(module, "probe", (3, 224, 224), mean, std, crop_pct=0.875)
    with torch.no_grad():
        probs = torch.softmax(model(dc.load_images(["chelsea", "coffee"], model).tensor), 1)
    return float(probs[0, 281:286].sum()), float(probs[1, 967])


def test_embedded_variant_and_normalisation_are_the_better_ones(embedded):
    """The docstring's claim for lite0: timm's tf_ variant with (x-0.5)/0.5 beats ImageNet mean/std,
    and beats the plain variant (PyTorch padding, BatchNorm eps 1e-5) on the shipped samples."""
    import timm

    plain = timm.create_model("efficientnet_lite0", pretrained=False)
    plain.load_state_dict(embedded.module.state_dict())
    ours = _confidence(embedded.module, zoo.LITE_MEAN, zoo.LITE_STD)
    imagenet = _confidence(embedded.module, dc.model.IMAGENET_MEAN, dc.model.IMAGENET_STD)
    other_variant = _confidence(plain.eval(), zoo.LITE_MEAN, zoo.LITE_STD)
    print("tf_ (x-0.5)/0.5", ours, "tf_ ImageNet", imagenet, "plain (x-0.5)/0.5", other_variant)
    assert all(a > b + 0.03 for a, b in zip(ours, imagenet))
    assert sum(ours) > sum(other_variant) + 0.03


LUCID_FACTS = [
    # (name, layer, channels, spatial side or None)
    ("inceptionv1", "inception4d", 528, 14),
    ("vgg16", "features.29", 512, 14),
    ("vgg19", "features.35", 512, 14),
    ("resnet50", "layer4", 2048, 7),
    ("resnet101", "layer4", 2048, 7),
    ("resnet152", "layer3", 1024, 14),
    ("alexnet", "features.12", 256, 6),
    ("inceptionv3", "Mixed_7c", 2048, 8),
    ("inceptionv4", "features.21", 1536, 8),
    ("inception_resnet_v2", "conv2d_7b", 1536, 8),
    ("mobilenet_v1", "blocks", 1024, 7),
    ("nasnet_large", "cell_17", 4032, 11),
    ("pnasnet_large", "cell_11", 4320, 11),
]


@pytest.mark.parametrize("name,layer,channels,side", LUCID_FACTS, ids=[f[0] for f in LUCID_FACTS])
def test_lucid_inventory_layer_tables(name, layer, channels, side):
    model = dc.load_model(name, weights=None)
    table = model.layers
    record = table[layer]
    assert record.channels == channels
    assert (record.height, record.width) == (side, side)
    assert record.grid == math.ceil(math.sqrt(channels))
    assert table.output is not None and table[table.output].channels == 1000
    assert table.pre_output is not None
    indices = [layer.index for layer in table]
    assert indices == sorted(indices)


def test_known_output_and_pre_output_layers():
    vgg = dc.load_model("vgg16", weights=None).layers
    assert (vgg.output, vgg.pre_output) == ("classifier.6", "classifier.4")
    assert vgg[vgg.pre_output].channels == 4096
    res = dc.load_model("resnet50", weights=None).layers
    assert (res.output, res.pre_output) == ("fc", "avgpool")
    assert res["layer4"].index < res["avgpool"].index < res["fc"].index


def test_unknown_and_unavailable_models_explain_themselves():
    with pytest.raises(dc.UnknownNameError, match="did you mean 'resnet50'"):
        dc.load_model("resnt50", weights=None)
    with pytest.raises(dc.DiamondCutterError, match="neither torchvision nor timm"):
        dc.load_model("nasnet_mobile", weights=None)
    assert dc.load_model("timm/resnet18", weights=None).module.__class__.__module__.startswith("timm")


def test_pretrained_download_fails_fast_offline(monkeypatch, tmp_path):
    """The real download path, stopped at the network boundary: a clear error, no hang, no traceback wall."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(dc.WeightsUnavailableError, match="weights=None"):
        dc.load_model("resnet18", weights="imagenet")
    with pytest.raises(dc.WeightsUnavailableError, match="huggingface.co"):
        dc.load_model("timm/resnet18", weights="imagenet")


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoint_with_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"weight": Evil()}, f)
    with pytest.raises(dc.CheckpointError, match="refusing"):
        dc.load_model("resnet18", weights=path)
    torch.save({"state_dict": {"fc.weight": torch.zeros(2)}, "note": object.__new__(nn.Module)}, tmp_path / "obj.pt")
    with pytest.raises(dc.CheckpointError):
        dc.load_model("resnet18", weights=tmp_path / "obj.pt")


def test_local_checkpoints_round_trip_and_shape_mismatch(tmp_path):
    from safetensors.torch import save_file

    source = dc.load_model("resnet18", weights=None)
    save_file(source.module.state_dict(), str(tmp_path / "r18.safetensors"))
    torch.save({"state_dict": source.module.state_dict()}, tmp_path / "r18.pth")
    x = torch.randn(1, 3, 64, 64)
    for file in ("r18.safetensors", "r18.pth"):
        loaded = dc.load_model("resnet18", weights=tmp_path / file)
        assert torch.equal(loaded(x), source(x))
    with pytest.raises(dc.CheckpointError, match="wrong shape|missing|unexpected"):
        dc.load_model("resnet34", weights=tmp_path / "r18.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(dc.CheckpointError, match="not a valid safetensors"):
        dc.load_model("resnet18", weights=tmp_path / "junk.safetensors")


def test_fine_tuned_checkpoint_with_own_labels(tmp_path):
    model = dc.load_model("resnet18", weights=None, labels=["cat", "dog"])
    assert model.num_classes == 2 and model.layers[model.layers.output].channels == 2
    assert model.class_index("dog") == 1


def test_user_module_gets_defaults(inplace_net):
    model = dc.load_model(inplace_net, input_size=(3, 32, 32))
    assert model.mean == dc.model.IMAGENET_MEAN and len(model.labels) == 5
    assert model.layers.output == "fc" and model.layers.pre_output == "pool"
    gray = dc.load_model(
        nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(3)).eval(), input_size=(1, 28, 28)
    )
    assert gray.mean == (0.5,) and gray.input_size == (1, 28, 28)


def test_class_names_and_bad_targets(embedded):
    assert embedded.class_index("tiger cat") == 282
    assert embedded.class_index(282) == 282
    with pytest.raises(dc.UnknownNameError, match="did you mean 'tiger cat'"):
        embedded.class_index("tigre cat")
    with pytest.raises(dc.DiamondCutterError, match="out of range"):
        embedded.class_index(1000)


def test_timm_pretrained_tags_are_accepted_and_unknown_tags_suggest_real_ones():
    model = dc.load_model("resnet18.a1_in1k", weights=None)
    assert model.name == "resnet18.a1_in1k" and model.layer("layer4").channels == 512
    assert dc.load_model("timm/resnet18.a1_in1k", weights=None).name == "resnet18.a1_in1k"
    with pytest.raises(dc.UnknownNameError, match=r"did you mean 'resnet18\."):
        dc.load_model("resnet18.zz_in1k", weights=None)


def test_lucid_inceptionv1_layer_names_map_to_torchvision_googlenet():
    model = dc.load_model("inceptionv1", weights=None)
    assert model.layer("mixed4d").name == "inception4d" and model.layer("conv2d0").name == "conv1"
    result = dc.attribute(model, torch.rand(1, 3, 224, 224), "gradcam", layer="mixed4d", target=3)
    assert result.layer == "inception4d"
    vis = dc.visualize(model, "mixed4d", [0], steps=1, size=32, progress=False)
    assert vis.layer == "inception4d"
    with pytest.raises(dc.UnknownNameError, match="mixed4e"):
        model.layer("mixed4x")


def test_labels_that_cannot_name_the_pretrained_classes_are_refused(monkeypatch):
    """Checked before any download: ImageNet weights classify 1000 classes, so 10 names cannot be theirs."""
    monkeypatch.setattr(zoo, "_check_online", lambda *a, **k: pytest.fail("must be refused before the network"))
    names = [f"kind {i}" for i in range(10)]
    for name in ("resnet50", "timm/resnet18", "efficientnet_lite0"):
        with pytest.raises(dc.DiamondCutterError, match="10 labels given.*1000 classes"):
            dc.load_model(name, labels=names)
    assert dc.load_model("resnet18", weights=None, labels=names).num_classes == 10


@pytest.mark.parametrize("error, kind, message", [
    (OSError("connection reset"), dc.WeightsUnavailableError, "downloading pretrained weights .* failed"),
    (RuntimeError('invalid hash value (expected "abc", got "def")'), dc.WeightsUnavailableError, "corrupt"),
    (RuntimeError("Error(s) in loading state_dict for ResNet: size mismatch"), dc.CheckpointError, "do not fit"),
    (RuntimeError("out of memory"), RuntimeError, "out of memory"),
])
def test_download_failures_say_what_failed(monkeypatch, error, kind, message):
    import torchvision

    def build(*args, **kwargs):
        raise error

    monkeypatch.setattr(zoo, "_check_online", lambda *a, **k: None)
    monkeypatch.setattr(torchvision.models, "get_model", build)
    with pytest.raises(kind, match=message):
        dc.load_model("resnet18")


def test_timm_weights_in_the_local_cache_load_offline(monkeypatch, tmp_path):
    """A Hugging Face cache holding timm's file (made here, nothing downloaded) is enough without a network."""
    import huggingface_hub
    import timm
    from safetensors.torch import save_file

    arch = "test_resnet"
    repo = timm.models.get_pretrained_cfg(arch).hf_hub_id
    commit = "0" * 40
    cached = tmp_path / f"models--{repo.replace('/', '--')}"
    (cached / "refs").mkdir(parents=True)
    (cached / "refs" / "main").write_text(commit)
    (cached / "snapshots" / commit).mkdir(parents=True)
    torch.manual_seed(1)
    state = timm.create_model(arch, pretrained=False).state_dict()
    save_file(state, str(cached / "snapshots" / commit / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    model = dc.load_model(f"timm/{arch}")
    assert all(torch.equal(v, state[k]) for k, v in model.module.state_dict().items())


def test_named_model_overrides_are_checked():
    with pytest.raises(dc.DiamondCutterError, match="mean/std need 3 values"):
        dc.load_model("resnet18", weights=None, mean=(0.5, 0.5))
    with pytest.raises(dc.DiamondCutterError, match="input_size must be"):
        dc.load_model("resnet18", weights=None, input_size=(64, 64))
    gray = dc.load_model("resnet18", weights=None, input_size=[3, 64, 64], mean=[0.5], std=[0.25])
    assert gray.input_size == (3, 64, 64) and gray.mean == (0.5, 0.5, 0.5) and gray.std == (0.25,) * 3
