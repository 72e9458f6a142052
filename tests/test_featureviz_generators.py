"""Classic generators on the real embedded model: each must do what its paper says it does."""

from __future__ import annotations

import pytest
import torch

import diamond_cutter as dc
from diamond_cutter.featureviz import generators as gen
from diamond_cutter.featureviz import objectives

from helpers import assert_unchanged, snapshot


def small_photo(model: dc.Model, name: str = "chelsea", side: int = 64) -> torch.Tensor:
    pixels = dc.load_images([name], size=side).pixels
    return model.normalize(pixels)


def test_deep_dream_amplifies_the_layer_on_the_photo_it_starts_from(embedded):
    before = snapshot(embedded.module)
    photo = small_photo(embedded)
    start = gen.deep_dream(embedded, photo, "blocks.3", steps=1, step_size=0.0, jitter=0)
    dream = gen.deep_dream(embedded, photo, "blocks.3", steps=12)
    assert dream.scores[0] > 1.3 * start.scores[0]
    original = embedded.denormalize(photo).clamp(0, 1)
    corr = torch.corrcoef(torch.stack([dream.tensor.flatten(), original.flatten()]))[0, 1]
    assert corr > 0.7  # still the cat
    assert_unchanged(before, embedded.module)


@pytest.mark.parametrize("seed", [0, 1])
def test_class_image_makes_the_class_win(embedded, seed):
    """From noise the model sees no tabby; 60 steps later tabby wins outright (a near-synonym such as
    tiger cat must not take over), with a wide margin over the thresholds on any seed and CPU."""
    tabby = embedded.class_index("tabby")
    start = gen.class_image(embedded, "tabby", steps=1, size=64, step_size=0.0, restarts=1, seed=seed)
    result = gen.class_image(embedded, "tabby", steps=60, size=64, seed=seed)
    with torch.no_grad():
        before = embedded(embedded.normalize(start.tensor)).softmax(1)[0]
        logits = embedded(embedded.normalize(result.tensor))
    probs = logits.softmax(1)[0]
    assert int(probs.argmax()) == tabby
    assert probs[tabby] >= 0.5
    assert probs[tabby] >= 10 * before[tabby]
    margin = objectives.class_margin(tabby)({objectives.OUTPUT: logits}, embedded)
    assert torch.isclose(result.scores[0], margin[0], atol=1e-3)


def test_inversion_recovers_the_photo_better_than_its_start(embedded):
    photo = small_photo(embedded, "astronaut")
    original = embedded.denormalize(photo).clamp(0, 1)
    start = gen.invert(embedded, photo, "blocks.1", steps=1, lr=0.0)
    result = gen.invert(embedded, photo, "blocks.1", steps=80)
    assert result.scores[0] < 0.3 * start.scores[0]
    err_start = (start.tensor - original).abs().mean()
    err_end = (result.tensor - original).abs().mean()
    assert err_end < 0.9 * err_start


def test_filter_ascent_raises_each_filter(embedded):
    start = gen.filter_ascent(embedded, "blocks.2", [3, 9], steps=1, step_size=0.0, size=48)
    result = gen.filter_ascent(embedded, "blocks.2", [3, 9], steps=20, size=48)
    assert result.tensor.shape == (2, 3, 48, 48)
    assert (result.scores > start.scores + 1).all()
