"""The lens site: its files and links, the CLI, and a real browser (Debian's chromium via Playwright)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from diamond_cutter.cli import main
from diamond_cutter.lens import LensSettings, lens
from lens_nets import BLUE, RED, gated_net, square

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
HOSTILE_CLASS = "<img src=x onerror=alert(1)>red"
HOSTILE_FILE = "<img src=y onerror=alert(2)>'\"x"
QUICK = LensSettings(k=3, heatmaps=2, detail=1, variants=2, icon_size=32, icon_steps=8, class_images=2)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("lens")
    images = root / "images"
    images.mkdir()
    for i in range(6):
        img = square(RED if i % 2 == 0 else BLUE, 3 * i, 4 * i, strength=0.7 if i % 2 == 0 else 1.0)
        name = f"{HOSTILE_FILE}{i}.png" if i == 0 else f"image{i}.png"
        Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy()).save(images / name)
    model = gated_net((HOSTILE_CLASS, "other"))
    index = lens(model, images, ["1", "3"], root / "site", QUICK, store=root / "store", progress=False)
    return index


def test_the_site_has_stable_links_and_escapes_every_name(site):
    root = site.parent
    data = json.loads((root / "data" / "lens.json").read_text())
    assert [layer["page"] for layer in data["layers"]] == ["layer/1/index.html", "layer/3/index.html"]
    assert (root / "layer" / "3" / "0.html").exists() and (root / "layer" / "3" / "1.html").exists()
    assert [c["page"] for c in data["classes"]] == ["class/img_src_x_onerror_alert_1_red-0.html"]
    for page in root.rglob("*.html"):
        html = page.read_text()
        assert "<img src=x" not in html and "<img src=y" not in html, page
        assert "http://" not in html and "https://" not in html, page
    channel = (root / "layer" / "3" / "0.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;red" in channel


def test_cli_writes_a_site(tmp_path, monkeypatch, capsys):
    model = gated_net()
    monkeypatch.setattr("diamond_cutter.commands.options.load_model", lambda name, weights, device: model)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, colour in enumerate((RED, BLUE)):
        Image.fromarray((square(colour, 4, 4).permute(1, 2, 0) * 255).byte().numpy()).save(folder / f"{i}.png")
    code = main(["lens", "gated", "--layers", "3", "--images", str(folder), "--out", str(tmp_path / "site"), "--store",
                 str(tmp_path / "store"), "-k", "2", "--detail", "0", "--icon-size", "32", "--icon-steps", "4"])
    assert code == 0 and (tmp_path / "site" / "layer" / "3" / "index.html").exists()
    out = capsys.readouterr().out.strip()
    assert out.endswith("index.html")
    channels = model.layers.resolve("3").shape[0]
    assert out.startswith(f"lens of 2 images at 3 on cpu: {channels} atlas icons to render: ")
    assert main(["lens", "gated", "--layers", "nope", "--images", str(folder), "--out", str(tmp_path / "x")]) == 2


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)
def test_browse_index_layer_channel_class_and_search(site):
    from playwright.sync_api import sync_playwright

    root = site.parent
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu",
                                    "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        requests, dialogs, errors = [], [], []
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(site.as_uri())
        page.locator("a.layer-link", has_text="3").click()
        assert page.url.endswith("/layer/3/index.html")
        cells = page.locator("#channels .cell")
        assert cells.count() == 2
        page.fill("#search", "onerror")  # the hostile class name is searchable text, not markup
        assert page.locator("#channels .cell:not(.hidden)").count() >= 1
        page.fill("#search", "no such label")
        assert page.locator("#channels .cell:not(.hidden)").count() == 0
        assert page.locator("#count").text_content() == "0 channels"
        page.fill("#search", "")
        cells.first.click()
        assert page.url.endswith("/layer/3/0.html")
        assert page.locator("#by-relevance .ref").count() >= 1 and page.locator("#by-activation img").count() >= 2
        assert HOSTILE_CLASS in page.locator("#label").text_content()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "lens-channel.png"), full_page=True)
        page.locator("#by-relevance a").first.click()
        assert "/class/" in page.url
        assert page.locator("#class-name").text_content() == HOSTILE_CLASS
        assert page.locator("a.concept").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "lens-class.png"), full_page=True)
        broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
        assert broken == 0
        browser.close()
    assert dialogs == [] and errors == []
    outside = [u for u in requests if not (u.startswith(("data:", root.as_uri())))]
    assert outside == []
    assert any(u.endswith("atlas.png") for u in requests)  # the sprite loaded from the folder itself


def test_a_transferred_model_gets_its_own_classes_and_head_and_reuses_the_backbone_atlas(tmp_path):
    import diamond_cutter as dc
    from diamond_cutter.atlas import atlas
    from diamond_cutter.featureviz import FAST_SCHEDULE
    from diamond_cutter.transfer import load_transferred, train_head
    from diamond_cutter.transfer.data import load_labelled, make_texture_dataset

    lite0 = dc.load_model("efficientnet_lite0", input_size=(3, 64, 64))
    data = make_texture_dataset(tmp_path / "tex", per_class=4, size=64)
    train_head(lite0, load_labelled(data), "blocks.1", "conv", epochs=1, progress=False).save(str(tmp_path / "saved"))
    model = load_transferred(str(tmp_path / "saved"))
    store = tmp_path / "store"
    atlas(lite0, "blocks.1", settings=FAST_SCHEDULE, steps=QUICK.icon_steps, size=QUICK.icon_size, store=store,
          progress=False)

    def folders() -> set[str]:
        return {k.split("/")[1] for k in dc.store.Store(store).list("atlas")}

    backbone = folders()
    photos = lens(lite0, ["chelsea", "coffee", "astronaut"], ["blocks.1"], tmp_path / "lite0", QUICK, store=store,
                  progress=False).parent  # the backbone's own lens, over everyday photos
    images = sorted(str(p) for p in Path(data).rglob("*.png"))[::2]
    index = lens(
        model, images, ["backbone.net.blocks.1", "head.conv"], tmp_path / "site", QUICK, store=store, progress=False
    )
    summary = json.loads((index.parent / "data" / "lens.json").read_text())
    assert summary["classes"] and {c["name"] for c in summary["classes"]} <= {"brick", "grass", "gravel"}
    assert (index.parent / "layer" / "head.conv" / "0.html").exists()
    assert len(backbone) == 1 and backbone < folders() and len(folders()) == 2  # only the head's atlas is new
    labels = (index.parent / "layer" / "head.conv" / "0.html").read_text()
    assert any(name in labels for name in ("brick", "grass", "gravel"))
    assert "by-shared" not in labels
    # the frozen layer shows the backbone's references and its label from the backbone's lens
    shared = {layer["name"]: layer["shared"] for layer in summary["layers"]}
    assert shared == {"backbone.net.blocks.1": {"model": lite0.name, "layer": "blocks.1", "images": 3},
                      "head.conv": None}
    frozen = (index.parent / "layer" / "backbone.net.blocks.1" / "5.html").read_text()
    own = re.search(r'<p id="label"><b>(.*?)</b>', (photos / "layer" / "blocks.1" / "5.html").read_text())
    assert own is not None and f"<b>{own.group(1)}</b></p>" in frozen.split('id="shared-label"')[1]
    patches = re.findall(r'id="by-shared">(.*?)</div>\n</div>', frozen, re.S)
    assert patches and 1 <= patches[0].count("<img") <= QUICK.k
    assert all((index.parent / p).exists() for p in re.findall(r'src="\.\./\.\./(img/[^"]+shared[^"]+)"', frozen))
