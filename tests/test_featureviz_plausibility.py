"""Plausibility: cosine similarity to natural references in a judge's space, Fréchet distance, and where they show."""

from __future__ import annotations

import pytest
import torch

import diamond_cutter as dc
from diamond_cutter.featureviz.plausibility import embed, frechet_distance, plausibility
from diamond_cutter.render import pictures


def test_a_reference_judges_itself_plausible_and_noise_less_so_than_a_blurred_copy(embedded, samples):
    photo = samples.pixels[:1]
    blurred = torch.nn.functional.avg_pool2d(photo, 5, stride=1, padding=2, count_include_pad=False)
    noise = torch.rand(1, *photo.shape[1:], generator=torch.Generator().manual_seed(0))
    refs = [pictures(photo)]  # PIL references, as dataset examples hold them
    scores = plausibility(embedded, torch.cat([photo, blurred, noise]), refs * 3)
    assert scores[0] > 0.999
    assert scores[1] > scores[2] + 0.1


def test_frechet_distance_is_zero_for_one_set_and_the_squared_shift_for_a_moved_one():
    a = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0])
    assert abs(frechet_distance(a, a)) < 1e-6
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift.pow(2).sum()), abs=1e-6)
    assert frechet_distance(a, 2 * a) > 0.5  # another spread
    with pytest.raises(dc.DiamondCutterError, match="two embeddings"):
        frechet_distance(a[:1], a)


def test_visualize_returns_plausibility_per_channel_and_the_atlas_stores_it(embedded, samples, tmp_path):
    refs = {c: samples.pixels for c in (0, 1)}
    quick = dict(steps=2, size=32, progress=False)
    vis = dc.visualize(embedded, "blocks.1", [0, 1], references=refs, judge=embedded, **quick)
    expected = plausibility(embedded, vis.tensor, [samples.pixels] * 2)
    assert vis.plausibility.shape == (2,) and torch.allclose(vis.plausibility, expected, atol=1e-5)
    assert embed(embedded, samples.pixels).shape == (2, embedded.layer(embedded.spatial_layer().name).channels)
    atlas = dc.atlas(embedded, "blocks.1", [0, 1], store=tmp_path, references=refs, judge=embedded, **quick)
    assert atlas.plausibility == pytest.approx(dict(enumerate(vis.plausibility.tolist())), abs=1e-5)
    again = dc.atlas(embedded, "blocks.1", store=tmp_path, fill=False, **quick)
    assert again.plausibility == atlas.plausibility
    with pytest.raises(dc.DiamondCutterError, match="judge"):
        dc.visualize(embedded, "blocks.1", [0], references=refs, **quick)
    with pytest.raises(dc.DiamondCutterError, match=r"channels \[2\]"):
        dc.visualize(embedded, "blocks.1", [2], references=refs, judge=embedded, **quick)
