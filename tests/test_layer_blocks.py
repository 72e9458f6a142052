"""Layer views: the blocks a network is cut at, with MACs and parameters, in the table, the CLI and the report."""

from __future__ import annotations

import json

from torch import nn

import diamond_cutter as dc
from diamond_cutter.cli import main


def test_blocks_of_the_embedded_model_are_its_stages(embedded):
    blocks = embedded.layers.blocks()
    names = [b.name for b in blocks]
    assert len(embedded.layers) == 265 and len(blocks) == 20
    assert {"blocks.4", "blocks.4.0", "blocks.6", "conv_head"} <= set(names) and "blocks.4.2" not in names
    assert all(not n.endswith(("act", "drop", "se")) for n in names)  # no activation, dropout or gate modules
    assert [b.macs for b in blocks] == sorted(b.macs for b in blocks)  # cumulative: never shrinks
    head = blocks[-1]
    total = sum(p.numel() for n, p in embedded.module.named_parameters() if not n.startswith("classifier"))
    assert head.parameters == total  # everything before the classifier


def test_block_costs_count_convolutions_exactly():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU()),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model = dc.load_model(net, input_size=(3, 10, 10))
    by_name = {b.name: b for b in model.layers.blocks()}
    assert list(by_name) == ["0", "1", "2.0", "2"]  # "2" stands for its last step, the ReLU
    assert by_name["0"].macs == 8 * 10 * 10 * 27 and by_name["0"].parameters == 8 * 27 + 8
    assert by_name["2"].macs == by_name["0"].macs + 4 * 10 * 10 * 8
    assert by_name["2"].parameters == 224 + 36 and by_name["2"].height == 10


def test_cli_layers_blocks(capsys):
    assert main(["layers", "efficientnet_lite0", "--blocks"]) == 0
    out = capsys.readouterr().out
    assert "MACs to here" in out and "blocks.4 " in out and "blocks.4.1.bn1" not in out
    assert main(["layers", "efficientnet_lite0", "--blocks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[-1]["name"] == "bn2" and rows[-1]["macs"] > 3e8


def test_layer_table_html_shows_blocks_and_folds_every_layer(embedded):
    page = embedded.layers._repr_html_()
    head, _, folded = page.partition("<details>")
    assert "MACs to here" in head and "blocks.4.1.bn1" not in head
    assert "all 265 layers" in folded


def test_report_shows_blocks_with_the_full_table_folded(tiny_report):
    _, path = tiny_report
    page = path.read_text(encoding="utf-8")
    section = page[page.index('<section id="layers">'):]
    section = section[: section.index("</section>")]
    blocks, _, rest = section.partition("<details>")
    assert "MACs to here" in blocks and '<tr class="chosen"><td>blocks.5</td>' in blocks
    assert "<summary>All 265 layers</summary>" in rest
