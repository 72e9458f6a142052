"""Saving and loading transferred models as a folder: ``manifest.json`` + weights in safetensors.

Nothing is pickled, so loading a folder from someone else cannot run code.
The manifest names the backbone (zoo name, weights, preprocessing), the cut,
the head's shape and the labels; the head's weights are stored always, the
backbone's only where they cannot be rebuilt from the zoo (fine-tuned, random
or from a local file). Every weight file's SHA-256 is in the manifest, and
the manifest is checked field by field, so an edited or truncated file is a
:class:`~diamond_cutter.errors.CheckpointError` rather than a silently
different model.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load, save

from ..errors import CheckpointError, DiamondCutterError
from ..model import Model
from ..store import Store
from ..version import __version__
from ..zoo import _load_state, load_model, resolve
from .cuts import CutBackbone
from .heads import HEAD_KINDS, TransferNet, build_head

FORMAT = "diamond-cutter-transferred"
VERSION = 1
MANIFEST = "manifest.json"
HEAD_FILE = "head.safetensors"
BACKBONE_FILE = "backbone.safetensors"

#: Every manifest field and the type it must have.
SCHEMA: dict[str, Any] = {
    "format": str, "version": int, "library_version": str, "cut": str, "labels": list, "metrics": dict,
    "training": dict, "files": dict, "backbone": dict, "head": dict,
}
BACKBONE_SCHEMA: dict[str, Any] = {"name": str, "weights": (str, type(None)), "input_size": list, "mean": list,
                                   "std": list, "interpolation": str}
HEAD_SCHEMA: dict[str, Any] = {"kind": str, "in_channels": int, "classes": int, "pooling": str,
                               "width": (int, type(None))}


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
    if trained.fine_tuned or model.weights != "imagenet":
        blobs[BACKBONE_FILE] = save(_contiguous(trained.net.backbone.net.state_dict()))
    for name, blob in blobs.items():
        store.write_bytes(name, blob)
    store.write_json(MANIFEST, {
        "format": FORMAT, "version": VERSION, "library_version": __version__, "cut": trained.cut,
        "labels": list(trained.classes), "metrics": trained.metrics.as_dict(), "training": asdict(trained.config),
        "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()},
        "backbone": {"name": model.name, "weights": model.weights if model.weights == "imagenet" else None,
                     "input_size": list(model.input_size), "mean": list(model.mean), "std": list(model.std),
                     "interpolation": model.interpolation},
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
    model = load_model(bb["name"], weights="imagenet" if bb["weights"] == "imagenet" else None,
                       input_size=bb["input_size"], mean=bb["mean"], std=bb["std"], device=device)
    try:
        if BACKBONE_FILE in blobs:
            _load_state(model.module, load(blobs[BACKBONE_FILE]), f"{path}/{BACKBONE_FILE}")
        cut = model.layers.resolve(manifest["cut"])  # checked as a cut when saved; here only its shape matters
        head = build_head(head_spec)
        _load_state(head, load(blobs[HEAD_FILE]), f"{path}/{HEAD_FILE}")
    except SafetensorError as err:
        raise CheckpointError(f"{path}: a weight file is not valid safetensors ({err})") from None
    except CheckpointError:
        raise
    except DiamondCutterError as err:
        raise CheckpointError(f"{path}/{MANIFEST} does not fit {bb['name']}: {err}") from None
    if cut.channels != head_spec["in_channels"]:
        raise CheckpointError(f"{path}: the head takes {head_spec['in_channels']} channels, "
                              f"{bb['name']} at {cut.name} gives {cut.channels}")
    net = TransferNet(CutBackbone(model.module, cut.name), head.to(model.device)).eval()
    return Model(net, f"{bb['name']}@{cut.name}+{head_spec['kind']}", model.input_size, model.mean, model.std,
                 classes, weights=str(path), interpolation=bb["interpolation"])


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
    if set(manifest["files"]) - {HEAD_FILE, BACKBONE_FILE}:
        raise CheckpointError(f"{where} lists unexpected files {sorted(manifest['files'])}")


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
