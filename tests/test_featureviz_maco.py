"""MACO as published: only the phase moves, crops and noise per item, transparency maps, batched renders."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import diamond_cutter as dc
from diamond_cutter.featureviz import objectives as obj
from diamond_cutter.featureviz.optimize import LUCID_SCHEDULE, MACO_SCHEDULE, render_objective
from diamond_cutter.featureviz.param import MacoParam, item_generators
from diamond_cutter.featureviz.transforms import MacoCrops, Randomness
from diamond_cutter.render import faded_pictures


def small_net(channels: int = 8) -> dc.Model:
    """Two 3×3 convolutions (receptive field 5 px): a gradient stays close to where the objective reads."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 4))
    return dc.Model(net, "small", (3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3)


def amplitude_ratio(param: MacoParam) -> torch.Tensor:
    """|rfft2(image before colour)| / fixed magnitude, on the columns an rfft keeps complex."""
    with torch.no_grad():
        amplitude = torch.fft.rfft2(param.decorrelated(), norm="ortho").abs()[..., 1:-1]
    return amplitude / param.magnitude.expand_as(param.phase)[..., 1:-1]


def test_magnitude_stays_fixed_and_only_the_phase_changes():
    model = small_net()
    param = MacoParam([3, 4], 3, 32, 32)
    assert [name for name, _ in param.named_parameters()] == ["phase"]
    magnitude, phase = param.magnitude.clone(), param.phase.detach().clone()
    before = amplitude_ratio(param)
    render_objective(model, obj.channel("2", [0, 1]), MACO_SCHEDULE, start=param, steps=8, progress=False)
    after = amplitude_ratio(param)
    assert torch.equal(param.magnitude, magnitude)
    assert (param.phase.detach() - phase).abs().mean() > 0.1  # NAdam at lr 1 moves the phase a lot
    # The spectrum's amplitude is the fixed magnitude times one factor per image (the standardisation), before and
    # after: the relative spread of the ratio is float rounding only.
    for ratio in (before, after):
        flat = ratio.flatten(1)
        assert (flat.std(dim=1) / flat.mean(dim=1)).max() < 1e-3


def test_crops_are_per_item_view_major_and_follow_the_box_schedule():
    x = torch.rand(3, 3, 40, 40)
    crops = MacoCrops(crops=4, noise=0.0)
    rng = Randomness(item_generators([1, 2, 3]))
    views = crops(x, rng)
    assert views.shape == (12, 3, 40, 40)
    alone = crops(x[1:2], Randomness(item_generators([2])))
    assert torch.allclose(views[1::3], alone, atol=1e-6)  # item 1's views depend only on its own seed
    # Early crops are large (mean 0.35 of the side): a crop's pixels vary less than a whole image's neighbours do
    # after zooming in, so zoomed crops are smoother than the source.
    step = (views[:, :, :, 1:] - views[:, :, :, :-1]).abs().mean()
    assert step < 0.6 * (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean()


def test_transparency_is_non_negative_image_sized_and_where_the_gradient_is():
    model = small_net()

    def top_left(acts, _model):
        return acts["2"][:, 0, :8, :8].flatten(1).mean(dim=1)

    objective = obj.Objective(top_left, ["2"], "channel 0 of 2 in the top-left quarter")
    for schedule in (LUCID_SCHEDULE, MACO_SCHEDULE):
        result = render_objective(model, objective, schedule, n=2, steps=10, transforms="none", progress=False)
        t = result.transparency
        assert t.shape == (2, 32, 32) and (t >= 0).all() and t.sum() > 0
        # Receptive field 5 px: every gradient lies within the top-left 10×10 pixels, none elsewhere.
        assert t[:, :10, :10].sum() / t.sum() > 0.999, schedule.param


def test_faded_pictures_are_opaque_where_important():
    images = torch.rand(2, 3, 16, 16)
    importance = torch.zeros(2, 16, 16)
    importance[:, :8] = 1.0
    faded = faded_pictures(images, importance, quantile=0.8)
    alpha = torch.tensor([list(p.getchannel("A").tobytes()) for p in faded]).view(2, 16, 16)
    assert all(p.mode == "RGBA" for p in faded)
    assert (alpha[:, :8] == 255).all() and (alpha[:, 8:] == 0).all()
    with pytest.raises(dc.DiamondCutterError, match="N×H×W"):
        faded_pictures(images, importance[0])


def test_batched_equals_one_at_a_time_within_the_seed_to_seed_difference(embedded):
    small = MACO_SCHEDULE.replace(steps=6, size=40, transforms=[MacoCrops(crops=2)])
    batched = dc.visualize(embedded, "blocks.2", [1, 5, 9], small, progress=False)
    alone = dc.visualize(embedded, "blocks.2", [5], small, progress=False)
    other_seed = dc.visualize(embedded, "blocks.2", [5], small, seed=1, progress=False)
    same = (batched.tensor[1] - alone.tensor[0]).abs().mean()
    seeds = (other_seed.tensor[0] - alone.tensor[0]).abs().mean()
    assert seeds > 0.02 and same < 0.01 * seeds
    scale = alone.transparency.max()
    assert torch.allclose(batched.transparency[1], alone.transparency[0], rtol=1e-2, atol=1e-6 * scale)


def test_unknown_optimizer_and_transform_names_are_clear_errors(embedded):
    with pytest.raises(dc.UnknownNameError, match="did you mean 'nadam'"):
        dc.visualize(embedded, "blocks.2", [0], steps=1, size=16, optimizer="nadm", progress=False)
    with pytest.raises(dc.UnknownNameError, match="did you mean 'maco'"):
        dc.visualize(embedded, "blocks.2", [0], steps=1, size=16, transforms="mcao", progress=False)


#: The small deep-layer comparison behind the default parameterization (a scaled-down run of
#: ``benchmarks/deep_layers.py``): the last stage of the embedded model, four channels at 64 px, FFT with the fast
#: schedule against MACO as published given the same number of network passes (MACO shows six crops per step).
DEEP_LAYER, DEEP_CHANNELS, DEEP_SIZE, FFT_STEPS = "blocks.6", [0, 1, 2, 3], 64, 72


def deep_plausibility(model: dc.Model, judge: dc.Model) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel plausibility of FFT (fast schedule) and MACO renders of the deep channels, judged by ``judge``
    against each channel's top three of the shipped photographs and textures."""
    from diamond_cutter.blocks.examples import dataset_examples
    from diamond_cutter.featureviz.optimize import FAST_SCHEDULE
    from diamond_cutter.images import DEMO_SAMPLES

    images = dc.load_images([*DEMO_SAMPLES, "brick", "grass", "gravel"], model)
    refs = {c: dataset_examples(model, images, DEEP_LAYER, c, k=3) for c in DEEP_CHANNELS}
    common = dict(size=DEEP_SIZE, references=refs, judge=judge, progress=False)
    fft = dc.visualize(model, DEEP_LAYER, DEEP_CHANNELS, FAST_SCHEDULE, steps=FFT_STEPS, **common)
    crops = MacoCrops().crops
    maco = dc.visualize(model, DEEP_LAYER, DEEP_CHANNELS, MACO_SCHEDULE, steps=FFT_STEPS // crops, **common)
    return fft.plausibility, maco.plausibility


def test_fft_is_more_plausible_than_maco_for_deep_channels_of_the_embedded_model(embedded):
    """What the small run measured (EfficientNet-Lite0 in timm's tf_ form, judged by Lite2): FFT 0.199, 0.181,
    0.173, 0.164 (mean 0.179) against MACO 0.129, 0.128, 0.136, 0.155 (mean 0.137). So FFT stays the default."""
    judge = lite2_judge()
    fft, maco = deep_plausibility(embedded, judge)
    assert fft.mean() > maco.mean() + 0.02
    assert (fft > maco).sum() >= 3


def lite2_judge() -> dc.Model:
    """EfficientNet-Lite2 with its shipped ImageNet weights, when the zoo has it offline."""
    try:
        return dc.load_model("efficientnet_lite2")
    except dc.DiamondCutterError as error:
        pytest.skip(f"EfficientNet-Lite2, the judge, is not available offline: {error}")
