"""Objectives: values on known activations, algebra, batching, descriptions and errors."""

from __future__ import annotations

import pytest
import torch

import diamond_cutter as dc
from diamond_cutter import objectives as obj


@pytest.fixture
def acts() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"a": torch.randn(3, 5, 4, 4), "b": torch.randn(3, 7, 2, 2), obj.OUTPUT: torch.randn(3, 10)}


def test_channel_neuron_and_layer_values(acts):
    a = acts["a"]
    assert torch.allclose(obj.channel("a", 2)(acts), a[:, 2].mean(dim=(1, 2)))
    assert torch.allclose(
        obj.channel("a", [0, 3, 4])(acts), torch.stack([a[0, 0].mean(), a[1, 3].mean(), a[2, 4].mean()])
    )
    assert torch.allclose(obj.neuron("a", 1)(acts), a[:, 1, 2, 2])
    assert torch.allclose(obj.neuron("a", 1, x=0, y=3)(acts), a[:, 1, 3, 0])
    assert torch.allclose(obj.layer_l2("a")(acts), a.pow(2).mean(dim=(1, 2, 3)))


def test_algebra_combines_values_layers_and_descriptions(acts):
    a, b, c = obj.channel("a", 0), obj.channel("b", 1), obj.neuron("a", 2)
    combo = a + 0.5 * b - c
    expected = a(acts) + 0.5 * b(acts) - c(acts)
    assert torch.allclose(combo(acts), expected)
    assert combo.layers == ("a", "b")
    assert "channel 0 of a" in combo.description and "0.5" in combo.description
    assert torch.allclose((-a)(acts), -a(acts))
    assert torch.allclose((a / 4)(acts), a(acts) / 4)
    assert torch.allclose((1 - a)(acts), 1 - a(acts))
    with pytest.raises(dc.DiamondCutterError):
        a * b


def test_direction_of_a_one_hot_vector_is_the_channel(acts):
    onehot = torch.zeros(5)
    onehot[3] = 1
    assert torch.allclose(obj.direction("a", onehot)(acts), obj.channel("a", 3)(acts), atol=1e-6)
    per_image = torch.eye(5)[[0, 1, 2]]
    assert torch.allclose(obj.direction("a", per_image)(acts), obj.channel("a", [0, 1, 2])(acts), atol=1e-6)
    assert obj.direction("a", per_image).batch == 3
    with pytest.raises(dc.DiamondCutterError, match="5 channels"):
        obj.direction("a", torch.ones(4))(acts)


def test_diversity_is_higher_for_different_images(acts):
    same = {"a": acts["a"][:1].repeat(3, 1, 1, 1)}
    d_same = obj.diversity("a")(same)
    d_diff = obj.diversity("a")(acts)
    assert torch.allclose(d_same, -torch.ones(3), atol=1e-5)  # identical Gram matrices: cosine 1
    assert (d_diff > d_same).all()
    with pytest.raises(dc.DiamondCutterError, match="two images"):
        obj.diversity("a")({"a": acts["a"][:1]})


def test_batched_and_class_objectives(acts, embedded):
    logits = acts[obj.OUTPUT]
    per = obj.batched([obj.channel("a", 1), obj.class_logit(4), obj.neuron("b", 0)])
    assert per.batch == 3 and set(per.layers) == {"a", "b", obj.OUTPUT}
    expected = torch.stack([acts["a"][0, 1].mean(), logits[1, 4], acts["b"][2, 0, 1, 1]])
    assert torch.allclose(per(acts), expected)
    assert torch.allclose(obj.class_probability(2)(acts), logits.softmax(1)[:, 2])
    big = {obj.OUTPUT: torch.randn(2, 1000)}
    tabby = embedded.class_index("tabby")
    assert torch.allclose(obj.class_logit("tabby")(big, embedded), big[obj.OUTPUT][:, tabby])


def test_bad_objectives_are_clear_errors(acts):
    with pytest.raises(dc.DiamondCutterError, match="out of range"):
        obj.channel("a", 9)(acts)
    with pytest.raises(dc.DiamondCutterError, match="2 items but the batch has 3"):
        obj.channel("a", [0, 1])(acts)
    with pytest.raises(dc.DiamondCutterError, match="cannot combine"):
        obj.channel("a", [0, 1]) + obj.channel("a", [0, 1, 2])
