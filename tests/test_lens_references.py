"""References from one streamed pass: sharding, resuming, RelMax against ActMax, receptive fields."""

from __future__ import annotations

import pytest
import torch
import torchvision
from PIL import Image

import diamond_cutter as dc
from diamond_cutter.lens import references as refs
from diamond_cutter.lens.geometry import layer_geometry
from diamond_cutter.store import Store
from lens_nets import BLUE, RED, gated_net, square


def _write(folder, images: list[torch.Tensor]) -> list[str]:
    folder.mkdir(exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / f"img{i:02d}.png"
        Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def folder(tmp_path):
    """Four red squares (dim) and four blue ones (bright) at varying places."""
    g = torch.Generator().manual_seed(0)
    images = []
    for i in range(8):
        top, left = (int(v) for v in torch.randint(0, 24, (2,), generator=g))
        images.append(square(RED if i % 2 == 0 else BLUE, top, left, strength=0.6 if i % 2 == 0 else 1.0))
    _write(tmp_path / "images", images)
    return tmp_path / "images"


def _same(a: refs.References, b: refs.References) -> None:
    assert a.ids == b.ids
    for layer in a.layers:
        for ranking in refs.RANKINGS:
            x, y = a.tops[layer][ranking], b.tops[layer][ranking]
            assert torch.equal(x.images, y.images) and torch.equal(x.cells, y.cells)
            assert torch.allclose(x.values, y.values, atol=1e-6)
        assert torch.allclose(a.class_relevance[layer], b.class_relevance[layer], atol=1e-5)


def test_top_k_merged_from_shards_equals_a_single_pass(folder, tmp_path):
    model = gated_net()

    def scan(batch_size: int, shard_size: int, store: str) -> refs.References:
        settings = refs.ScanSettings(k=3, target="red", batch_size=batch_size, shard_size=shard_size)
        return refs.scan_references(model, folder, ["1", "3"], settings, store=tmp_path / store)

    single, sharded = scan(8, 8, "a"), scan(2, 3, "b")
    settings = refs.ScanSettings(k=3, target="red")
    _same(single, sharded)
    assert len(Store(tmp_path / "b").list("lens/references")) == 3
    # merging is order-free: shards computed anywhere (reversed here) give the same result
    engine = refs.Relevance(model, settings.crp)
    sources = sorted(str(p) for p in folder.iterdir())
    parts = [refs.compute_shard(model, engine, sources[s : s + 3], s, ["1", "3"], settings) for s in (6, 3, 0)]
    _same(single, refs.merge_shards(parts, ["1", "3"], engine.method, sources, 3))


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
    monkeypatch.setattr(refs, "compute_shard", lambda *a: calls.append(a[3]) or original(*a))
    resumed = refs.scan_references(model, folder, ["3"], settings, store=tmp_path / "s")
    assert calls == [0, 2, 4, 6]
    _same(resumed, refs.scan_references(model, folder, ["3"], settings, store=tmp_path / "fresh"))
    # a changed image recomputes its shard only
    before = len(calls)
    Image.new("RGB", (32, 32), (0, 0, 255)).save(folder / "img05.png")
    refs.scan_references(model, folder, ["3"], settings, store=tmp_path / "s")
    assert calls[before:] == [4]


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
