"""References of the same channels from other scans: what a frozen layer of a transferred model
responds to over the images its backbone was scanned on.

A frozen layer of a transferred model computes exactly what the backbone's layer computes. A
scan of the backbone (its own lens over everyday photos, say) therefore tells what each channel
responds to in general, in the backbone's class words, while the transferred model's own scan
tells what the channel does for the user's classes. Every lens site publishes, per layer, its
top references by activation and its labels under the layer's content fingerprint
(:func:`~diamond_cutter.atlas.layer_fingerprint`, the key the atlas is shared through). A later
site of any model whose layer has the same content shows the largest other scan beside its own.

Entries are sealed in the store, so a torn or edited one is ignored with a warning. They name
images by file path or sample name only: a URL is never fetched again, images in memory are not
published, and references whose files are gone are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DiamondCutterError
from ..images import SAMPLES, ImageBatch
from ..store import SEAL, Store
from .labels import LayerLabels
from .references import References

PREFIX = "lens/by-content"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SharedReference:
    """One image of another scan where the channel fires: its id (a path or sample name), score and peak cell."""

    image: str
    score: float
    cell: tuple[int, int]


@dataclass
class SharedScan:
    """Another scan of a layer with the same content: the model and layer it was made for, how many
    images it saw, and per channel its top references by activation and its label."""

    model: str
    layer: str
    images: int
    key: str
    references: list[list[SharedReference]]
    labels: list[str]


def publish(store: Store, fingerprint: str, model_name: str, layer: str, refs: References,
            labels: LayerLabels) -> None:
    """Store ``refs``' activation references and ``labels`` of ``layer`` under its content ``fingerprint``."""
    if isinstance(refs.sources, ImageBatch):
        return  # images in memory cannot be opened again by another site
    columns = []
    for channel in range(refs.channels(layer)):
        top = refs.tops[layer]["activation"].column(channel)
        columns.append([[refs.ids[i], score, list(cell)] for i, score, cell in top if _reopenable(refs.ids[i])])
    entry = {"version": FORMAT_VERSION, "model": model_name, "layer": layer, "images": len(refs.ids),
             "key": refs.key, "references": columns, "labels": [label.text for label in labels.labels]}
    store.write_checked_json(f"{PREFIX}/{fingerprint[:32]}/{refs.key[:16]}.json", entry)


def other_scan(store: Store, fingerprint: str, own_key: str) -> SharedScan | None:
    """The scan with the most images among those published for ``fingerprint``, other than ``own_key``'s."""
    found = []
    for key in store.list(f"{PREFIX}/{fingerprint[:32]}"):
        if key.endswith(SEAL) or not key.endswith(".json"):
            continue
        entry = store.read_checked_json(key, check=_check)
        if entry is not None and entry["key"] != own_key:
            found.append(entry)
    if not found:
        return None
    best = max(found, key=lambda e: (e["images"], e["key"]))
    references = [
        [SharedReference(image, float(score), (int(cell[0]), int(cell[1])))
         for image, score, cell in column if _reopenable(image)]
        for column in best["references"]
    ]
    return SharedScan(best["model"], best["layer"], best["images"], best["key"], references, best["labels"])


def _reopenable(image_id: str) -> bool:
    """Whether an image id opens again without a network: an existing file or a shipped sample."""
    return "://" not in image_id and (image_id in SAMPLES or Path(image_id).is_file())


def _check(entry: Any) -> None:
    """Reject an entry of another format or shape (the store then ignores it with a warning)."""
    if not isinstance(entry, dict) or entry.get("version") != FORMAT_VERSION:
        raise DiamondCutterError("not a shared-scan entry of this version")
    if len(entry["references"]) != len(entry["labels"]) or not isinstance(entry["images"], int):
        raise DiamondCutterError("references and labels do not match")
    for column in entry["references"]:
        for image, score, cell in column:
            if not (isinstance(image, str) and isinstance(score, (int, float)) and len(cell) == 2
                    and all(isinstance(v, int) for v in cell)):
                raise DiamondCutterError(f"malformed reference {[image, score, cell]!r}")
