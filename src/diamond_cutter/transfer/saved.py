"""Saving and loading transferred models as a folder: ``manifest.json`` + weights in safetensors.

Nothing is pickled, so loading a folder from someone else cannot run code.
The manifest names the backbone (zoo name, weights, preprocessing), the cut,
the head's shape and the labels; the head's weights are stored always, the
backbone's only where they cannot be rebuilt from the zoo (fine-tuned, random
or from a local file). Every weight file's SHA-256 is in the manifest, and
so is a fingerprint of the backbone weights the head was trained on, with
whether they were fine-tuned: a backbone rebuilt from the zoo (or from a file)
must have exactly those weights. The manifest is checked field by field, types
and ranges, and the head's shapes are read from its safetensors header and
checked before anything is allocated, so an edited, truncated or hostile file
is a :class:`~diamond_cutter.errors.CheckpointError` rather than a silently
different model or an exhausted memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from ..errors import CheckpointError, DiamondCutterError
from ..images import INTERPOLATIONS
from ..model import Model, weights_digest
from ..store import Store
from ..version import __version__
from ..zoo import _load_state, load_model, resolve
from .cuts import CutBackbone
from .features import POOLINGS
from .heads import HEAD_KINDS, TransferNet, build_head

FORMAT = "diamond-cutter-transferred"
VERSION = 2
MANIFEST = "manifest.json"
HEAD_FILE = "head.safetensors"
BACKBONE_FILE = "backbone.safetensors"

#: Every manifest field and the type it must have.
SCHEMA: dict[str, Any] = {
    "format": str, "version": int, "library_version": str, "cut": str, "labels": list, "metrics": dict,
    "training": dict, "files": dict, "backbone": dict, "head": dict,
}
BACKBONE_SCHEMA: dict[str, Any] = {"name": str, "weights": (str, type(None)), "input_size": list, "mean": list,
                                   "std": list, "interpolation": str, "crop_pct": (float, int), "fingerprint": str,
                                   "fine_tuned": bool}
HEAD_SCHEMA: dict[str, Any] = {"kind": str, "in_channels": int, "classes": int, "pooling": str,
                               "width": (int, type(None))}
#: Bounds a manifest's numbers must lie in: generous for real models, far below what exhausts memory.
MAX_INPUT_SIDE = 1024
MAX_CHANNELS = 16384
MAX_CLASSES = 100_000
MAX_HEADER = 1 << 20
SHA256 = re.compile(r"[0-9a-f]{64}")


def save_transferred(trained: Any, path: str) -> None:
    """Write ``trained`` (a :class:`~diamond_cutter.transfer.train.TrainedHead`) to the folder or URL ``path``."""
    model = trained.model
    try:
        resolve(model.name)
    except DiamondCutterError:
        raise CheckpointError(
            f"cannot save a transfer of {model.name!r}: only zoo models can be rebuilt without pickled code"
        ) from None
    store = Store(path)
    blobs = {HEAD_FILE: save(_contiguous(trained.net.head.state_dict()))}
    backbone = trained.net.backbone.net
    if trained.fine_tuned or model.weights != "imagenet":
        blobs[BACKBONE_FILE] = save(_contiguous(backbone.state_dict()))
    for name, blob in blobs.items():
        store.write_bytes(name, blob)
    store.write_json(MANIFEST, {
        "format": FORMAT, "version": VERSION, "library_version": __version__, "cut": trained.cut,
        "labels": list(trained.classes), "metrics": trained.metrics.as_dict(), "training": asdict(trained.config),
        "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()},
        "backbone": {"name": model.name, "weights": model.weights if model.weights == "imagenet" else None,
                     "input_size": list(model.input_size), "mean": list(model.mean), "std": list(model.std),
                     "interpolation": model.interpolation, "fingerprint": weights_digest(backbone),
                     "fine_tuned": bool(trained.fine_tuned), "crop_pct": model.crop_pct},
        "head": dict(trained.spec),
    })


def load_transferred(path: str, labels: list[str] | None = None, device: str | None = None) -> Model:
    """A saved transferred model as a :class:`Model` whose ``module`` is ``backbone`` + ``head``.

    ``labels``, when given, rename the classes and must match the head's class count.
    """
    store = Store(path)
    if not store.exists(MANIFEST):
        raise CheckpointError(f"{path} is not a saved transferred model (no {MANIFEST})")
    try:
        manifest = store.read_json(MANIFEST)
    except DiamondCutterError as err:
        raise CheckpointError(str(err)) from None
    _check_manifest(manifest, path)
    blobs = {name: _verified(store, name, digest) for name, digest in manifest["files"].items()}
    if HEAD_FILE not in blobs:
        raise CheckpointError(f"{path}/{MANIFEST} lists no {HEAD_FILE}")
    head_spec, bb = manifest["head"], manifest["backbone"]
    classes = _labels(manifest, labels, path)
    if (bb["fine_tuned"] or bb["weights"] != "imagenet") and BACKBONE_FILE not in blobs:
        raise CheckpointError(f"{path}: the backbone was {'fine-tuned' if bb['fine_tuned'] else 'not from the zoo'}, "
                              f"but its weights ({BACKBONE_FILE}) are not in {MANIFEST}")
    _check_header(head_spec, blobs[HEAD_FILE], f"{path}/{HEAD_FILE}")
    model = load_model(bb["name"], weights="imagenet" if bb["weights"] == "imagenet" else None,
                       input_size=bb["input_size"], mean=bb["mean"], std=bb["std"], device=device)
    try:
        cut = model.layers.resolve(manifest["cut"])  # checked as a cut when saved; here only its shape matters
        if cut.channels != head_spec["in_channels"]:
            raise CheckpointError(f"{path}: the head takes {head_spec['in_channels']} channels, "
                                  f"{bb['name']} at {cut.name} gives {cut.channels}")
        if BACKBONE_FILE in blobs:
            _load_state(model.module, load(blobs[BACKBONE_FILE]), f"{path}/{BACKBONE_FILE}")
        head = build_head(head_spec)
        _load_state(head, load(blobs[HEAD_FILE]), f"{path}/{HEAD_FILE}")
    except SafetensorError as err:
        raise CheckpointError(f"{path}: a weight file is not valid safetensors ({err})") from None
    except CheckpointError:
        raise
    except DiamondCutterError as err:
        raise CheckpointError(f"{path}/{MANIFEST} does not fit {bb['name']}: {err}") from None
    if weights_digest(model.module) != bb["fingerprint"]:
        raise CheckpointError(f"{path}: the backbone weights are not the ones the head was trained on "
                              f"(fingerprint {weights_digest(model.module)[:12]}, manifest {bb['fingerprint'][:12]})")
    net = TransferNet(CutBackbone(model.module, cut.name), head.to(model.device)).eval()
    return Model(net, f"{bb['name']}@{cut.name}+{head_spec['kind']}", model.input_size, model.mean, model.std,
                 classes, weights=str(path), interpolation=bb["interpolation"],
                 crop_pct=bb["crop_pct"])


def _check_manifest(manifest: Any, path: str) -> None:
    where = f"{path}/{MANIFEST}"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a Diamond Cutter transferred-model manifest")
    if manifest.get("version") != VERSION:
        raise CheckpointError(f"{where} has format version {manifest.get('version')!r}; this version reads {VERSION}")
    for section, schema in ((manifest, SCHEMA), (manifest.get("backbone"), BACKBONE_SCHEMA),
                            (manifest.get("head"), HEAD_SCHEMA)):
        if not isinstance(section, dict):
            raise CheckpointError(f"{where}: a section is not an object")
        bad = [k for k, t in schema.items() if k not in section or not isinstance(section[k], t)
               or (t is int and isinstance(section[k], bool))]
        extra = sorted(set(section) - set(schema))
        if bad or extra:
            raise CheckpointError(f"{where} is malformed: bad or missing {bad}, unexpected {extra}")
    if manifest["head"]["kind"] not in HEAD_KINDS:
        raise CheckpointError(f"{where}: unknown head kind {manifest['head']['kind']!r}")
    files = manifest["files"]
    if set(files) - {HEAD_FILE, BACKBONE_FILE} or not all(
        isinstance(d, str) and SHA256.fullmatch(d) for d in files.values()
    ):
        raise CheckpointError(f"{where} lists unexpected files or digests: {sorted(files)}")
    problems = _range_problems(manifest["backbone"], manifest["head"])
    if problems:
        raise CheckpointError(f"{where} has values out of range: {'; '.join(problems)}")


def _range_problems(bb: dict[str, Any], head: dict[str, Any]) -> list[str]:
    """What is out of range in the backbone and head sections (empty when all is well)."""
    size = bb["input_size"]
    problems = []
    if not (len(size) == 3 and all(_int(v) for v in size) and size[0] in (1, 3)
            and all(8 <= v <= MAX_INPUT_SIDE for v in size[1:])):
        problems.append(f"input_size must be [1 or 3, H, W] with sides 8..{MAX_INPUT_SIDE}, got {size!r:.80}")
    channels = size[0] if problems == [] else None
    for key in ("mean", "std"):
        values = bb[key]
        if not (len(values) == channels and all(_real(v) for v in values)):
            problems.append(f"{key} must be {channels or 'C'} finite numbers, got {values!r:.80}")
        elif key == "std" and min(values) <= 0:
            problems.append(f"std must be positive, got {values!r}")
    if bb["interpolation"] not in INTERPOLATIONS:
        problems.append(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {bb['interpolation']!r:.40}")
    if not (_real(bb["crop_pct"]) and 0 < bb["crop_pct"] <= 1):
        problems.append(f"crop_pct must be in (0, 1], got {bb['crop_pct']!r:.40}")
    if bb["weights"] not in (None, "imagenet"):
        problems.append(f"backbone weights must be 'imagenet' or null, got {bb['weights']!r:.80}")
    if not SHA256.fullmatch(bb["fingerprint"]):
        problems.append("backbone fingerprint is not a SHA-256")
    for key, top in (("in_channels", MAX_CHANNELS), ("classes", MAX_CLASSES), ("width", MAX_CHANNELS)):
        value = head[key]
        if (value is not None or key != "width") and not 1 <= value <= top:
            problems.append(f"head {key} must be 1..{top}, got {value}")
    if head["pooling"] not in POOLINGS:
        problems.append(f"head pooling must be one of {POOLINGS}, got {head['pooling']!r:.40}")
    if (head["width"] is None) != (head["kind"] == "linear"):
        problems.append(f"a {head['kind']} head {'has no' if head['kind'] == 'linear' else 'needs a'} width")
    return problems


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_header(spec: dict[str, Any], blob: bytes, origin: str) -> None:
    """The head's tensor names and shapes, read from the safetensors header, must be what ``spec`` builds.

    Checked on a skeleton on the ``meta`` device, so nothing the manifest asks for is allocated first.
    """
    declared = _header_shapes(blob, origin)
    with torch.device("meta"):
        skeleton = build_head(spec)
        _load_state(skeleton, {name: torch.empty(shape) for name, shape in declared.items()}, origin)


def _header_shapes(blob: bytes, origin: str) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape from a safetensors file's header (8-byte length, then JSON), without reading tensors."""
    length = int.from_bytes(blob[:8], "little") if len(blob) >= 8 else -1
    if not 2 <= length <= min(MAX_HEADER, len(blob) - 8):
        raise CheckpointError(f"{origin} is not valid safetensors (header length {length})")
    try:
        header = json.loads(blob[8 : 8 + length])
        shapes = {name: tuple(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise CheckpointError(f"{origin} is not valid safetensors (bad header: {err})") from None
    if not all(_int(d) and 0 <= d <= MAX_CHANNELS * MAX_CLASSES for shape in shapes.values() for d in shape):
        raise CheckpointError(f"{origin} declares impossible tensor shapes")
    return shapes


def _verified(store: Store, name: str, digest: Any) -> bytes:
    try:
        blob = store.read_bytes(name)
    except DiamondCutterError:
        raise CheckpointError(f"{store.root}: {name} is missing") from None
    if hashlib.sha256(blob).hexdigest() != digest:
        raise CheckpointError(f"{store.root}/{name} does not match its SHA-256 in {MANIFEST}: modified or corrupted")
    return blob


def _labels(manifest: dict[str, Any], labels: list[str] | None, path: str) -> list[str]:
    classes = manifest["head"]["classes"]
    saved = manifest["labels"]
    if len(saved) != classes or not all(isinstance(s, str) for s in saved):
        raise CheckpointError(f"{path}/{MANIFEST}: {len(saved)} labels for a head of {classes} classes")
    if labels is not None and len(labels) != classes:
        raise DiamondCutterError(f"{len(labels)} labels given, but the saved head predicts {classes} classes: {saved}")
    return list(labels) if labels is not None else list(saved)


def _contiguous(state: dict) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}
