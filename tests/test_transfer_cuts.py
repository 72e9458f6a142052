"""Cut points: the listing, the single-tensor check, the truncated backbone and pooled features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import diamond_cutter as dc
from diamond_cutter import DiamondCutterError, UnknownNameError
from diamond_cutter.capture import capture
from diamond_cutter.store import Store
from diamond_cutter.transfer.cuts import CutBackbone, candidate_cuts, list_cuts
from diamond_cutter.transfer.data import load_labelled, make_colour_dataset
from diamond_cutter.transfer.features import extract_features

from helpers import assert_unchanged, snapshot


@pytest.fixture(scope="module")
def resnet() -> dc.Model:
    torch.manual_seed(0)
    return dc.load_model("resnet18", weights=None, input_size=(3, 32, 32))


def test_auto_cuts_spread_by_depth_and_end_at_the_pre_output_map(resnet):
    before = snapshot(resnet.module)
    cuts = candidate_cuts(resnet, "auto", n=8)
    assert len(cuts) == 8
    depths = [c.relative_depth for c in cuts]
    assert depths == sorted(depths) and depths[0] < 0.05 and depths[-1] > 0.9
    assert cuts[-1].name == "layer4"  # the last spatial map before global pooling
    assert all(c.single_tensor for c in cuts)
    macs = [c.macs for c in cuts]
    assert macs == sorted(macs) and macs[0] < macs[-1] / 10
    assert_unchanged(before, resnet.module)


def test_layers_bypassed_by_a_shortcut_are_listed_as_not_single_tensor(resnet):
    listing = {c.name: c for c in list_cuts(resnet)}
    assert not listing["layer2.0.downsample.0"].single_tensor
    assert "not a single-tensor cut" in listing["layer2.0.downsample.0"].note
    assert listing["layer2.0"].single_tensor
    with pytest.raises(DiamondCutterError, match="not a single-tensor cut"):
        candidate_cuts(resnet, ["layer2.0.downsample.0"])
    with pytest.raises(DiamondCutterError, match="not a single-tensor cut"):
        candidate_cuts(resnet, ["layer2.0.conv1"])  # inside a residual block


class TwoInputCells(nn.Module):
    """NASNet-style: the second cell reads the first cell's output and the stem's."""

    class Cell(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
            return torch.relu(self.conv(x) + (prev if prev is not None else 0))

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.cell1, self.cell2 = self.Cell(), self.Cell()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        c1 = self.cell1(s)
        return self.fc(self.cell2(c1, s).mean((2, 3)))


def test_two_input_cells_are_flagged():
    torch.manual_seed(0)
    model = dc.load_model(TwoInputCells(), input_size=(3, 12, 12))
    listing = {c.name: c.single_tensor for c in list_cuts(model)}
    assert listing == {"stem": True, "cell1": False, "cell2": True}
    assert [c.name for c in candidate_cuts(model)] == ["stem", "cell2"]


def test_unknown_cut_name_suggests(resnet):
    with pytest.raises(UnknownNameError, match="did you mean.*'layer3'"):
        candidate_cuts(resnet, ["layer33"])


def test_cut_backbone_stops_at_the_cut_and_matches_a_full_capture(resnet):
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        with capture(resnet.module, ["layer2", "layer3"], detach=True) as full:
            resnet.module(x)
        with capture(resnet.module, ["layer3"]) as later:
            out = CutBackbone(resnet.module, "layer2")(x)
    torch.testing.assert_close(out, full["layer2"])  # the probe runs channels-last on CPU: equal up to rounding
    assert later.calls["layer3"] == 0  # nothing downstream of the cut ran


def test_features_of_all_cuts_in_one_pass_equal_separate_pooled_captures(resnet, tmp_path):
    data = load_labelled(make_colour_dataset(tmp_path / "c", per_class=3, size=16))
    cuts = ["layer1", "layer3"]
    fs = extract_features(resnet, data, cuts, pooling="avgmax", batch_size=4, store=Store(tmp_path / "s"),
                          progress=False)
    assert fs.computed == 3 and fs.cached == 0
    x = data.pixels(np.arange(len(data)), resnet)
    with torch.no_grad(), capture(resnet.module, cuts, detach=True) as rec:
        resnet.module(x)
    for cut in cuts:
        fmap = rec[cut]
        expected = torch.cat([fmap.mean((2, 3)), fmap.amax((2, 3))], 1).numpy()
        np.testing.assert_allclose(fs.features[cut], expected, rtol=1e-4, atol=1e-5)
    again = extract_features(resnet, data, cuts, pooling="avgmax", batch_size=4, store=Store(tmp_path / "s"),
                             progress=False)
    assert again.computed == 0 and again.cached == 3
    assert all(np.array_equal(again.features[c], fs.features[c]) for c in cuts)
