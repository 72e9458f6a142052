"""Without a layer, CAMs, the blocks, the report and the CLI use the last spatial layer before global pooling, and say
so."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision
from torch import nn

import diamond_cutter as dc
from diamond_cutter.cli import main
from diamond_cutter.report.icons import ICON_RENDER, IconSettings


class TinyVGG(nn.Module):
    """torchvision's VGG layout: features, an adaptive average pool to a fixed grid, a classifier."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d(4)
        self.classifier = nn.Linear(8 * 16, 5)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: torchvision.models.resnet18(weights=None), "layer4"),
        (lambda: TinyVGG(), "features"),  # not the adaptive pool after it, although its map is 4×4
        (
            lambda: torchvision.models.mobilenet_v3_small(weights=None),
            "features",
        ),  # squeeze-excitation 1×1 maps skipped
    ],
)
def test_the_last_spatial_layer_before_global_pooling(make, expected):
    model = dc.load_model(make(), input_size=(3, 64, 64))
    assert model.layers.last_spatial().name == expected


def test_cams_and_blocks_default_to_it_and_log_it(embedded, samples, caplog):
    assert embedded.layers.last_spatial().name == "bn2"
    with caplog.at_level(logging.INFO, logger="diamond_cutter"):
        default = dc.attribute(embedded, samples, "gradcam", target="tabby")
    assert default.layer == "bn2" and "layer: bn2 1280×7×7" in caplog.text
    torch.testing.assert_close(
        default.maps, dc.attribute(embedded, samples, "gradcam", target="tabby", layer="bn2").maps
    )
    channels = dc.channel_attribution(embedded, samples, target="tabby")
    assert channels.layer == "bn2" and channels.scores.shape == (1280,)


def test_report_without_a_layer(embedded, samples):
    result = dc.report(
        embedded,
        samples[:1],
        groups=0,
        icons=IconSettings("patches", ICON_RENDER.replace(size=16)),
        saliency=("gradcam",),
        tiles=2,
        progress=False,
    )
    assert result.layer == "bn2" and result.settings["layer"].startswith("bn2 ")


def test_the_cli_says_which_layer_it_chose(tmp_path, capsys):
    assert (
        main(["attribute", "efficientnet_lite0", "chelsea", "--method", "gradcam", "--out", str(tmp_path / "maps")])
        == 0
    )
    err = capsys.readouterr().err
    assert "diamond-cutter: layer: bn2 1280×7×7 (the last spatial layer before global pooling" in err
    assert not logging.getLogger("diamond_cutter").handlers  # the CLI's handler is gone afterwards
    out = tmp_path / "report.html"
    code = main(["report", "efficientnet_lite0", "chelsea", "--icons", "patches", "--icon-size", "16", "--groups", "0",
                 "--saliency", "none", "--classes", "tabby,tiger cat", "--out", str(out)])
    assert code == 0 and "layer: bn2" in capsys.readouterr().err and "tabby − tiger cat" in out.read_text()
