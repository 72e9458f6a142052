"""The HTML report: self-contained, escaped, consistent with the building blocks; the CLI."""

from __future__ import annotations

import re

import numpy as np
import torch

import diamond_cutter as dc
from diamond_cutter.atlas import atlas
from diamond_cutter.cli import main
from diamond_cutter.report.costs import icons_to_render
from diamond_cutter.report.icons import ICON_RENDER, IconSettings

from helpers import assert_unchanged, snapshot
from report_fixtures import EVIL, LAYER


def test_every_section_is_there(tiny_report):
    result, path = tiny_report
    html = path.read_text()
    for section in ("predictions", "channels", "semantic", "groups", "saliency", "layers", "settings"):
        assert f'<section id="{section}">' in html
    assert html == result._repr_html_()
    assert html.count('class="cell') >= 2 * 7 * 7
    assert "conv_head" in html and "tiger cat" in html


def test_self_contained(tiny_report):
    """Nothing is fetched at view time: every src/href is a data URI or an in-page anchor."""
    html = tiny_report[1].read_text()
    links = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert links and all(link.startswith(("data:", "#")) for link in links)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html


def test_user_strings_are_escaped(tiny_report):
    html = tiny_report[1].read_text()
    assert EVIL not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in html


def test_panels_start_at_the_strongest_cell(tiny_report):
    result, _ = tiny_report
    for section in result.sections:
        values = section.semantic.attributions.sum(0).flatten()
        assert section.heatmap_cell == int(values.argmax())
        assert len(section.cells) == 49 and len(section.cells[0]["act"]) == 3


def test_channels_match_channel_attribution(embedded, tiny_report):
    result, _ = tiny_report
    images = [s.picture for s in result.sections]  # the network's view: already resized and cropped
    pixels = dc.load_images(images, size=embedded.input_size[1:]).pixels
    direct = dc.channel_attribution(embedded, embedded.normalize(pixels), LAYER, "auto")
    assert [c for c, _ in result.channels.top(4)] == [c for c, _ in direct.top(4)]
    icons_needed = {c for c, _ in direct.top(4) + direct.bottom(4)}
    assert icons_needed <= set(result.icons)


def test_cli_writes_a_report_and_rejects_bad_classes(tmp_path, capsys):
    out = tmp_path / "r.html"
    code = main(["report", "efficientnet_lite0", "chelsea", "--layer", LAYER, "--classes", "tabby,tiger cat",
                 "--icons", "patches", "--groups", "2", "--saliency", "gradcam", "--out", str(out)])
    assert code == 0 and out.exists()
    plan = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(rf"report of 1 image at {LAYER} on cpu: 0 channel icons to render .*, 1 saliency maps per "
                        r"image with their scores: about \d+ (s|min)", plan), plan
    html = out.read_text()
    assert "tabby − tiger cat" in html and ">gradcam</figcaption>" in html and "guided_gradcam" not in html
    assert (
        main(["report", "efficientnet_lite0", "chelsea", "--layer", LAYER, "--classes", "tabbby", "--out", str(out)])
        == 2
    )
    assert "did you mean 'tabby'" in capsys.readouterr().err


def test_results_render_in_a_notebook(inplace_net):
    model = dc.Model(inplace_net.eval(), "inplace", (3, 16, 16), labels=["<b>zero</b>", "one", "two", "three", "four"])
    x = torch.rand(2, 3, 16, 16)
    channels = dc.channel_attribution(model, x, "relu2", target=(0, 1))._repr_html_()
    assert "&lt;b&gt;zero&lt;/b&gt; − one" in channels and "<b>zero</b>" not in channels
    groups = dc.neuron_groups(model, x, "relu2", k=2, target=0)._repr_html_()
    assert groups.count("data:image/png") == 2 and "&lt;b&gt;zero&lt;/b&gt;" in groups
    assert dc.heatmap(model, x[0], "relu2", target=0)._repr_html_().startswith('<img src="data:image/png;base64,')
    examples = dc.dataset_examples(model, dc.load_images(list(x), model), "relu2", channel=3, k=2)._repr_html_()
    assert examples.count("<figure") == 2


def test_icon_budget_visualizes_the_most_important_channels(inplace_net, tmp_path):
    """With ``limit=2`` the two channels listed first are feature visualizations from the atlas
    (the same pictures the atlas store then holds) and the others are patches. The network comes
    back as it went in (training mode, a frozen layer)."""
    inplace_net.train()
    inplace_net.conv1.weight.requires_grad_(False)
    before = snapshot(inplace_net)
    model = dc.Model(inplace_net, "inplace", (3, 16, 16))
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    settings = IconSettings("featureviz", ICON_RENDER.replace(size=16, steps=3), store=str(tmp_path), limit=2)
    result = dc.report(
        model, x, "relu2", 0, top_k=2, groups=2, icons=settings, saliency=("gradcam",), tiles=2, progress=False
    )
    assert_unchanged(before, inplace_net)
    first = [c for c, _ in result.channels.top(2)]
    stored = dc.atlas(model, "relu2", settings=settings.render, store=str(tmp_path), fill=False, progress=False)
    assert sorted(stored.manifest["done"]) == sorted(first)
    for c in first:
        assert np.array_equal(np.asarray(result.icons[c]), np.asarray(stored.icon(c)))
    assert len(result.icons) > 2 and "2 most important channels" in result.settings["icons"]
    assert len(result.group_icons) == 2 and result.group_icons[0].size == (16, 16)


def test_demo_settings_fit_the_embedded_model(embedded):
    from diamond_cutter.attribution import METHODS
    from diamond_cutter.commands import demo

    assert set(demo.DEMO_SALIENCY) <= set(METHODS)


def test_plan_counts_only_the_icons_the_atlas_lacks(embedded, tmp_path):
    icons = IconSettings(render=ICON_RENDER.replace(steps=2, size=16), store=str(tmp_path))
    atlas(embedded, LAYER, [0, 1], icons.render, store=icons.store, progress=False)
    assert icons_to_render(embedded, LAYER, [1, 0, 5, 5, 7], icons) == [5, 7]
    icons.limit = 3
    assert icons_to_render(embedded, LAYER, [1, 0, 5, 7], icons) == [5]
    assert icons_to_render(embedded, LAYER, [5], IconSettings("patches")) == []
