"""Notebook views: every result has a short text repr (shapes, not tensors) and an escaped HTML view of
bounded size; plots are matplotlib Figures of a sane size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import diamond_cutter as dc
from diamond_cutter.model import Prediction
from diamond_cutter.transfer.compare import Comparison
from diamond_cutter.transfer.data import load_labelled, make_colour_dataset
from diamond_cutter.transfer.metrics import classification_metrics
from diamond_cutter.transfer.train import TrainConfig, TrainedHead

EVIL = "<script>alert(1)</script>"
#: No text repr may be longer than this, whatever the result holds.
REPR_LIMIT = 600
#: No HTML view may be larger than this (inline pictures included).
HTML_LIMIT = 2_000_000


def check_views(result, images: bool = False) -> str:
    text = repr(result)
    assert len(text) < REPR_LIMIT, text[:200]
    assert "tensor(" not in text and "object at 0x" not in text and "Sequential(" not in text
    page = result._repr_html_()
    assert len(page) < HTML_LIMIT
    assert EVIL not in page  # user strings are escaped
    if images:
        assert "data:image/png;base64," in page
    return page


def test_prediction_repr_and_table_escape_image_names():
    prediction = Prediction(torch.tensor([[3, 1]]), torch.tensor([[0.7, 0.2]]), [["tabby", "tiger <cat>"]], [EVIL])
    page = check_views(prediction)
    assert "&lt;script&gt;" in page and "tiger &lt;cat&gt; 20.0%" in page and "<table" in page


def test_layer_table_is_a_summary_in_text_and_a_bounded_table_in_html(embedded):
    table = embedded.layers
    assert repr(table).startswith(f"LayerTable({len(table)} layers")
    page = check_views(table)
    assert page.count("<tr>") < 80 and "more rows" in page  # 20 blocks, then the first of 265 layers folded


def test_analysis_results_show_shapes_and_pictures(embedded, samples):
    page = check_views(dc.attribute(embedded, samples[:1], "gradcam"), images=True)
    assert "<figcaption>" in page
    semantic = dc.semantic_map(embedded, samples[:1], "blocks.4", target="auto")
    assert "112×14×14" in repr(semantic)
    check_views(semantic, images=True)
    render = dc.render_objective(embedded, dc.objectives.channel("blocks.2", 1), steps=2, size=32)
    assert "1×3×32×32" in repr(render)
    check_views(render, images=True)


def test_trained_head_and_sweep_views(tmp_path):
    model = dc.load_model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)),
                          input_size=(3, 16, 16), labels=["a", EVIL])
    metrics = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", EVIL])
    head = TrainedHead(model, "0", {"kind": "linear"}, nn.Linear(4, 2), metrics, ["a", EVIL], TrainConfig())
    assert "validation accuracy" in check_views(head)
    colours = load_labelled(make_colour_dataset(tmp_path / "colours", per_class=8, size=16))
    sweep = dc.sweep("resnet18", colours, cuts=3, train=TrainConfig(epochs=3), store=tmp_path / "store",
                     weights=None, input_size=(3, 32, 32), progress=False)
    for row in sweep.rows:  # a hostile model name must come out escaped
        row["model"] = EVIL
    page = check_views(sweep)
    assert page.count("<tr>") == len(sweep.rows) + 1 and "test [95%]" in page
    figure = sweep.plot()
    assert type(figure).__name__ == "Figure" and max(figure.get_size_inches()) <= 12


def test_comparison_plot_is_a_sane_figure_with_mixed_label_sets():
    rng = np.random.default_rng(0)
    a, b = rng.dirichlet(np.ones(1000), size=2), rng.dirichlet(np.ones(7), size=2)
    comparison = Comparison(["x", "y"], {"imagenet": a, "tuned": b},
                            {"imagenet": [f"class {i}" for i in range(1000)], "tuned": [f"part {i}" for i in range(7)]},
                            [np.zeros((8, 8, 3), np.uint8)] * 2)
    figure = comparison.plot()
    width, height = figure.get_size_inches() * figure.dpi
    assert width <= 1000 and height <= 1000  # it was 50,550 px wide with every class of both label sets
    assert len(figure.axes[1].get_xticklabels()) <= 6  # each model's top 3
    check_views(comparison)


@pytest.mark.parametrize("text", ["x" * 10_000])
def test_short_repr_cuts_long_text(text):
    from dataclasses import dataclass

    from diamond_cutter.html import short_repr

    @dataclass
    class Holder:
        name: str
        values: list

    assert len(short_repr(Holder(text, list(range(10_000))))) < 120
