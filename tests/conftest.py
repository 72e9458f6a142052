"""Shared fixtures: the embedded real model (loaded once) and small fast networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import diamond_cutter as dc
from diamond_cutter.images import ImageBatch

from helpers import InplaceNet
from ray_fixtures import local_ray  # noqa: F401  (one local Ray for every test_ray*.py)
from report_fixtures import tiny_report  # noqa: F401  (shared by test_report*.py)

#: Modules whose tests compare numbers against a peer (captum, pytorch-grad-cam, zennit) or a
#: threshold. ``.ci/run`` reruns them under another CPU kernel set and one thread (``-m numerical``),
#: so a test that only holds on one machine's float rounding fails here first.
NUMERICAL_MODULES = {
    "test_attribution_peers",
    "test_attribution_real",
    "test_blocks_channels",
    "test_blocks_groups",
    "test_featureviz_fold",
    "test_featureviz_generators",
    "test_featureviz_optimize",
    "test_transfer_estimators",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__ in NUMERICAL_MODULES:
            item.add_marker(pytest.mark.numerical)

@pytest.fixture(scope="session")
def embedded() -> dc.Model:
    """EfficientNet-Lite0 with its real ImageNet weights (offline)."""
    return dc.load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def samples(embedded) -> ImageBatch:
    return dc.load_images(["chelsea", "coffee"], embedded)


@pytest.fixture
def inplace_net() -> nn.Module:
    torch.manual_seed(0)
    net = InplaceNet()
    with torch.no_grad():  # non-trivial BN statistics so the network is not near-linear
        for bn in (net.bn1, net.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.3, 0.3)
    return net.eval()
