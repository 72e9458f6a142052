"""References from one streamed pass: sharding, resuming, RelMax against ActMax, receptive fields."""

from __future__ import annotations

import pytest
import torch
import torchvision
from PIL import Image

import diamond_cutter as dc
from diamond_cutter.lens import references as refs
from diamond_cutter.lens.geometry import layer_geometry
from lens_nets import gated_net
from lens_scans import assert_same, count_shards, square_folder, stored_shards


@pytest.fixture
def folder(tmp_path):
    return square_folder(tmp_path / "images")


def test_top_k_merged_from_shards_equals_a_single_pass(folder, tmp_path):
    model = gated_net()

    def scan(batch_size: int, shard_size: int, store: str) -> refs.References:
        settings = refs.ScanSettings(k=3, target="red", batch_size=batch_size, shard_size=shard_size)
        return refs.scan_references(model, folder, ["1", "3"], settings, store=tmp_path / store)

    single, sharded = scan(8, 8, "a"), scan(2, 3, "b")
    settings = refs.ScanSettings(k=3, target="red")
    assert_same(single, sharded)
    assert len(stored_shards(tmp_path / "b")) == 3
    # merging is order-free: shards computed anywhere (reversed here) give the same result
    engine = refs.Relevance(model, settings.crp)
    sources = sorted(str(p) for p in folder.iterdir())
    parts = [refs.compute_shard(model, engine, sources[s : s + 3], s, ["1", "3"], settings) for s in (6, 3, 0)]
    assert_same(single, refs.merge_shards(parts, ["1", "3"], engine.method, sources, 3))


def test_a_killed_scan_resumes_without_recomputing_finished_shards(folder, tmp_path, monkeypatch):
    model, calls = gated_net(), []
    original = refs.compute_shard

    def dies_on_the_third(model, engine, sources, start, *rest):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(start)
        return original(model, engine, sources, start, *rest)

    settings = refs.ScanSettings(k=2, target="red", batch_size=2, shard_size=2)
    monkeypatch.setattr(refs, "compute_shard", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        refs.scan_references(model, folder, ["3"], settings, store=tmp_path / "s")
    assert calls == [0, 2]
    computed = count_shards(monkeypatch)
    resumed = refs.scan_references(model, folder, ["3"], settings, store=tmp_path / "s")
    assert computed == [4, 6]
    assert_same(resumed, refs.scan_references(model, folder, ["3"], settings, store=tmp_path / "fresh"))
    # a changed image recomputes its shard only
    before = len(computed)
    Image.new("RGB", (32, 32), (0, 0, 255)).save(folder / "img05.png")
    refs.scan_references(model, folder, ["3"], settings, store=tmp_path / "s")
    assert computed[before:] == [4]


def test_relmax_and_actmax_differ_on_a_channel_with_an_irrelevant_pattern(folder, tmp_path):
    model = gated_net()
    found = refs.scan_references(model, folder, ["3"], refs.ScanSettings(k=4, target="red"), store=tmp_path)
    by_act = found.top("3", 0, "activation")
    by_rel = found.top("3", 0, "relevance")
    assert {r.image for r in by_act} == {1, 3, 5, 7}  # the bright blue squares excite channel 0 most
    assert {r.image for r in by_rel} == {0, 2, 4, 6}  # only the red ones reach the class
    assert all(r.score > 0 for r in by_rel)
    assert found.class_channels("3", 0)[0] > 0 and torch.equal(found.classes, torch.zeros(8, dtype=torch.long))
    blue = [
        r
        for r in refs.scan_references(model, folder, ["3"], refs.ScanSettings(k=8, target="red"), store=tmp_path).top(
            "3", 0, "relevance"
        )
        if r.image % 2 == 1
    ]
    assert max(abs(r.score) for r in blue) < 1e-6
    with pytest.raises(dc.DiamondCutterError, match="activation"):
        found.top("3", 0, "gradient")


def test_references_peak_where_the_square_was_drawn(folder, tmp_path):
    model = gated_net()
    found = refs.scan_references(
        model, str(folder / "*.png"), ["3"], refs.ScanSettings(k=1, target="red"), store=tmp_path
    )
    best = found.top("3", 0, "relevance")[0]
    pixels = found.load([best.image], model).pixels[0]
    assert pixels[0, best.cell[0], best.cell[1]] > 0.5  # the peak cell is inside the red square


def test_receptive_field_follows_the_layer_geometry():
    torch.manual_seed(0)
    model = dc.load_model(torchvision.models.resnet18(weights=None).eval(), input_size=(3, 96, 96))
    geometry = layer_geometry(model, "layer1")
    assert geometry.grid == (24, 24) and geometry.field == (
        43,
        43,
    )  # 7×7/2 conv, 3×3/2 pool, four 3×3 convs at stride 4
    assert layer_geometry(gated_net(), "3").field == (1, 1)
    assert geometry.box((0, 0)) == (0, 0, 43, 43)
