"""Channel labels from the model's own classes, and their cache."""

from __future__ import annotations

import pytest
from PIL import Image, ImageOps

from diamond_cutter.images import sample_path
from diamond_cutter.lens import ScanSettings, scan_references
from diamond_cutter.lens import labels as lab
from lens_nets import BLUE, RED, gated_net, square

#: ImageNet's domestic cats: tabby, tiger cat, Persian cat, Siamese cat, Egyptian cat.
CATS = range(281, 286)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three photographs of the cat (as given, mirrored, cropped) and four photographs without one."""
    folder = tmp_path_factory.mktemp("photos")
    cat = Image.open(sample_path("chelsea")).convert("RGB")
    cat.save(folder / "cat1.png")
    ImageOps.mirror(cat).save(folder / "cat2.png")
    cat.crop((50, 0, 400, 300)).save(folder / "cat3.png")
    for name in ("coffee", "rocket", "astronaut", "motorcycle"):
        Image.open(sample_path(name)).convert("RGB").save(folder / f"{name}.png")
    return folder


def test_a_channel_whose_references_are_the_cat_photos_names_a_cat_class(embedded, photos, tmp_path):
    found = scan_references(embedded, photos, ["blocks.5"], ScanSettings(k=3), store=tmp_path)
    labels = lab.label_channels(embedded, found, "blocks.5", store=tmp_path)
    cats = {i for i, name in enumerate(found.ids) if "cat" in name}
    channels = [c for c in range(found.channels("blocks.5")) if {r.image for r in found.top("blocks.5", c)} == cats]
    assert len(channels) >= 5
    leads = 0
    for c in channels:
        label = labels[c]
        named = [embedded.class_index(name) for name, _ in label.classes]
        assert any(i in CATS for i in named), str(label)
        leads += named[0] in CATS
        assert 0 < label.score <= 1 and label.text.startswith(label.classes[0][0])
    assert leads >= 0.75 * len(channels)
    # a channel whose best images are not cats is not called a cat
    coffee = [
        c
        for c in range(found.channels("blocks.5"))
        if found.top("blocks.5", c)[0].image_id.endswith("coffee.png")
        and not cats & {r.image for r in found.top("blocks.5", c)[:2]}
    ]
    assert coffee and all(embedded.class_index(labels[c].classes[0][0]) not in CATS for c in coffee)
    assert labels.search("cat") and all("cat" in x.text.lower() for x in labels.search("CAT"))


def _folder(tmp_path, strength: float):
    folder = tmp_path / f"images{strength}"
    folder.mkdir()
    for i, colour in enumerate((RED, BLUE, RED)):
        img = square(colour, 4 * i, 4 * i, strength=strength)
        Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / f"{i}.png")
    return folder


def test_labels_are_cached_with_their_key_and_a_stale_cache_is_recomputed(tmp_path, monkeypatch):
    model, store = gated_net(), tmp_path / "store"
    first = scan_references(model, _folder(tmp_path, 1.0), ["3"], ScanSettings(k=2, target="red"), store=store)
    labels = lab.label_channels(model, first, "3", store=store)
    assert labels[0].text and labels.key
    calls = []
    original = lab.ClassLabeler.describe
    monkeypatch.setattr(lab.ClassLabeler, "describe", lambda self, *a: calls.append(1) or original(self, *a))
    again = lab.label_channels(model, first, "3", store=store)
    assert calls == [] and [str(x) for x in again.labels] == [str(x) for x in labels.labels]
    other = scan_references(model, _folder(tmp_path, 0.5), ["3"], ScanSettings(k=2, target="red"), store=store)
    assert other.key != first.key
    stale = lab.label_channels(model, other, "3", store=store)
    assert calls == [1] and stale.key != labels.key
