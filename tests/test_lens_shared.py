"""Scans shared by layer content: published per layer, found by another model's site, sealed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diamond_cutter.atlas import layer_fingerprint
from diamond_cutter.errors import StaleCacheWarning
from diamond_cutter.lens import label_channels
from diamond_cutter.lens import references as refs
from diamond_cutter.lens.shared import PREFIX, other_scan, publish
from diamond_cutter.store import Store
from lens_nets import gated_net
from lens_scans import square_folder


def test_a_published_scan_is_found_by_content_and_loses_what_is_gone(tmp_path):
    model, store = gated_net(), Store(tmp_path / "store")
    folder = square_folder(tmp_path / "images")
    scan = refs.scan_references(model, folder, ["3"], refs.ScanSettings(k=3), store=store)
    labels = label_channels(model, scan, "3", store=store)
    fingerprint = layer_fingerprint(model, "3")
    publish(store, fingerprint, model.name, "3", scan, labels)

    assert other_scan(store, fingerprint, scan.key) is None  # a site never shows its own scan as another
    found = other_scan(store, fingerprint, "another scan")
    assert found is not None and (found.model, found.layer, found.images) == (model.name, "3", 8)
    assert found.labels == [label.text for label in labels.labels]
    assert [r.image for r in found.references[0]] == [r.image_id for r in scan.top("3", 0)]
    assert other_scan(store, layer_fingerprint(model, "1"), "another scan") is None  # other content, other scans

    gone = Path(found.references[0][0].image)
    gone.unlink()  # an image deleted since the scan: its references are left out, the rest stay
    again = other_scan(store, fingerprint, "another scan")
    assert again is not None and str(gone) not in {r.image for column in again.references for r in column}
    assert len(again.references[0]) == len(found.references[0]) - 1

    key = next(k for k in store.list(PREFIX) if k.endswith(".json") and not k.endswith(".seal.json"))
    entry = json.loads(store.read_bytes(key))
    entry["references"][0][0][0] = "/etc/passwd"  # an edited entry is ignored, never opened
    store.write_bytes(key, json.dumps(entry).encode())
    with pytest.warns(StaleCacheWarning, match="recomputing"):
        assert other_scan(store, fingerprint, "another scan") is None
    entry["references"][0][0][2] = "not a cell"  # sealed again, but malformed: ignored, never a crash
    store.write_checked_json(key, entry)
    with pytest.warns(StaleCacheWarning, match="malformed"):
        assert other_scan(store, fingerprint, "another scan") is None
