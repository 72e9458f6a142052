"""The one target grammar: every form means the same score in attribution, Building Blocks and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diamond_cutter as dc
from diamond_cutter.cli import build_parser
from diamond_cutter.commands.options import target_of
from diamond_cutter.featureviz import objectives
from diamond_cutter.targets import needs_logits, parse_target

SIZE = 32


@pytest.fixture
def small(inplace_net) -> dc.Model:
    return dc.load_model(inplace_net, input_size=(3, SIZE, SIZE))


def images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def cam(model, x, target):
    """Grad-CAM without its final ReLU: linear in the score's gradient, so contrasts are exact differences."""
    return dc.attribute(model, x, "gradcam", target=target, relu=False)


def test_numpy_and_tensor_integers_are_class_indices(small):
    x = images()
    assert not needs_logits(np.int64(3)) and not needs_logits([np.int32(1), 2]) and needs_logits(["top1", np.int64(2)])
    plain = cam(small, x, 3)
    for same in (np.int64(3), torch.tensor(3), [np.int64(3)] * 3, np.array([3, 3, 3])):
        result = cam(small, x, same)
        assert result.targets == [3, 3, 3]
        torch.testing.assert_close(result.maps, plain.maps)
    blocks = dc.channel_attribution(small, x, "relu2", target=np.int64(3)).per_image
    torch.testing.assert_close(blocks, dc.channel_attribution(small, x, "relu2", target=3).per_image)
    logits = {objectives.OUTPUT: torch.randn(2, 5)}
    torch.testing.assert_close(objectives.class_logit(np.int64(3))(logits, small), logits[objectives.OUTPUT][:, 3])


def test_a_contrast_is_the_difference_of_its_sides(small):
    x = images()
    both = cam(small, x, (1, 4))
    torch.testing.assert_close(both.maps, cam(small, x, 1).maps - cam(small, x, 4).maps, rtol=1e-4, atol=1e-6)
    assert both.targets == [1, 1, 1] and both.target_names == ["class 1 − class 4"] * 3
    per_image = cam(small, x, [(1, 4), (2, 0), (1, 4)])
    torch.testing.assert_close(per_image.maps, cam(small, x, ([1, 2, 1], [4, 0, 4])).maps)


def test_auto_is_top1_minus_top2_everywhere(small):
    x = images()
    top2 = small(x).topk(2).indices
    auto = cam(small, x, "auto")
    explicit = cam(small, x, (top2[:, 0].tolist(), top2[:, 1].tolist()))
    torch.testing.assert_close(auto.maps, explicit.maps)
    assert auto.targets == top2[:, 0].tolist()
    blocks = dc.channel_attribution(small, x, "relu2", target="auto")
    assert blocks.positive == top2[:, 0].tolist() and blocks.negative == top2[:, 1].tolist()
    torch.testing.assert_close(
        blocks.per_image, dc.channel_attribution(small, x, "relu2", target=("top1", "top2")).per_image
    )


def test_several_targets_per_image_in_blocks_and_attribution(small):
    x = images(2)
    pairs = dc.channel_attribution(small, x, "relu2", target=[[(1, 3), (2, 0)]])
    assert pairs.image_ids == ["image 0", "image 0", "image 1", "image 1"]
    assert pairs.positive == [1, 2, 1, 2] and pairs.negative == [3, 0, 3, 0]
    torch.testing.assert_close(
        pairs.per_image[1::2], dc.channel_attribution(small, x, "relu2", target=(2, 0)).per_image
    )
    singles = dc.attribute(small, x, "gradcam", target=[[4], [1, 2]])
    assert singles.image_ids == ["image 0", "image 1", "image 1"] and singles.targets == [4, 1, 2]
    lrp = dc.attribute(small, x, "lrp", target=(2, 0), rule="epsilon")
    torch.testing.assert_close(
        lrp.maps,
        dc.attribute(small, x, "lrp", target=2, rule="epsilon").maps
        - dc.attribute(small, x, "lrp", target=0, rule="epsilon").maps,
        rtol=1e-4,
        atol=1e-6,
    )


def test_bad_targets_are_clear_errors(small):
    x = images()
    with pytest.raises(dc.DiamondCutterError, match="contrast is a \\(positive, negative\\) pair"):
        cam(small, x, (1, 2, 3))
    with pytest.raises(dc.DiamondCutterError, match="mixes contrasts and single targets"):
        cam(small, x, [(1, 2), 3, 3])
    with pytest.raises(dc.DiamondCutterError, match="2 targets for 3 images"):
        dc.channel_attribution(small, x, "relu2", target=[1, 2])
    with pytest.raises(dc.UnknownNameError, match="did you mean"):
        cam(small, x, ("class 1", "clas 2"))


def test_classes_is_a_deprecated_alias_of_target(small):
    x = images()
    with pytest.warns(DeprecationWarning, match="use target="):
        old = dc.channel_attribution(small, x, "relu2", classes=(1, 2))
    torch.testing.assert_close(old.per_image, dc.channel_attribution(small, x, "relu2", target=(1, 2)).per_image)
    with pytest.warns(DeprecationWarning):
        dc.heatmap(small, x[0], "relu2", classes=1)


def test_the_cli_parses_targets_one_way(caplog):
    assert parse_target("auto") == "auto" and parse_target("281") == 281 and parse_target("top2") == "top2"
    assert parse_target("tabby, tiger cat") == ("tabby", "tiger cat") and parse_target(["tabby", "3"]) == ["tabby", 3]
    with pytest.raises(dc.DiamondCutterError, match="POSITIVE,NEGATIVE"):
        parse_target("a,b,c")
    parser = build_parser()
    report = parser.parse_args(["report", "resnet18", "chelsea", "--classes", "tabby,tiger cat"])
    assert target_of(report) == ("tabby", "tiger cat") and report.layer is None
    assert "--classes is deprecated" in caplog.text
    assert target_of(parser.parse_args(["report", "resnet18", "chelsea"])) == "auto"
    attribute = parser.parse_args(
        ["attribute", "resnet18", "chelsea", "coffee", "--target", "auto", "--target", "5,top1"]
    )
    assert target_of(attribute) == ["auto", (5, "top1")]
    assert target_of(parser.parse_args(["attribute", "resnet18", "chelsea"])) == "top1"
