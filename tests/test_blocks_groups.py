"""NMF neuron groups: non-negative, reconstructing, and attributing consistently."""

from __future__ import annotations

import pytest
import torch

import diamond_cutter as dc
from diamond_cutter.blocks.groups import factorize, group_attribution
from diamond_cutter.blocks.linear import linear_attribution


def test_factorize_recovers_an_exactly_low_rank_activation():
    """Activations built from 3 non-negative parts reconstruct to within 2% with k=3."""
    g = torch.Generator().manual_seed(0)
    strengths = torch.rand(2 * 5 * 5, 3, generator=g)
    directions = torch.rand(3, 12, generator=g) * (torch.rand(3, 12, generator=g) > 0.5)
    acts = (strengths @ directions).reshape(2, 5, 5, 12).permute(0, 3, 1, 2)
    s, d, error = factorize(acts, 3)
    assert (s >= 0).all() and (d >= 0).all()
    assert error < 0.02
    assert factorize(acts, 1)[2] > error  # fewer groups reconstruct worse


def test_groups_on_the_embedded_model(embedded, samples):
    groups = dc.neuron_groups(embedded, samples[0], "blocks.5", k=5, target=["top1", "tabby"])
    assert groups.spatial.shape == (1, 5, 7, 7) and groups.directions.shape == (5, 192)
    assert (groups.spatial >= 0).all() and (groups.directions >= 0).all()
    assert groups.error < 0.6  # stated bound: 5 groups keep most of the (clipped) activation of 192 channels
    assert groups.attributions.shape == (5, 2)
    assert groups.class_names[1] == "tabby" and "cat" in groups.class_names[0]
    assert groups.overlay(0).size == (224, 224)
    more = dc.neuron_groups(embedded, samples[0], "blocks.5", k=10, target="top1")
    assert more.error < groups.error


def test_group_attribution_is_the_attribution_of_the_reconstruction(embedded, samples):
    groups = dc.neuron_groups(embedded, samples[1], "blocks.5", k=4, target="espresso")
    la = linear_attribution(embedded, samples[1], "blocks.5", "espresso")
    n, c, h, w = la.activations.shape
    rebuilt = (
        (groups.spatial.permute(0, 2, 3, 1).reshape(-1, 4) @ groups.directions).reshape(n, h, w, c).permute(0, 3, 1, 2)
    )
    expected = (rebuilt * la.gradients).sum()
    assert float(groups.attributions[:, 0].sum()) == pytest.approx(float(expected), rel=1e-3)
    one = group_attribution(
        groups.spatial[:, :1].permute(0, 2, 3, 1).reshape(-1, 1), groups.directions[:1], la.gradients
    )
    assert float(one[0]) == pytest.approx(float(groups.attributions[0, 0]), rel=1e-4)


def test_too_many_groups_is_a_clear_error():
    with pytest.raises(dc.DiamondCutterError, match="groups"):
        factorize(torch.rand(1, 4, 2, 2), 5)
