"""Attribution metrics: known answers on a model that looks at one region, batching, bad input,
and the model left as it was."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import diamond_cutter as dc
from diamond_cutter.attribution import metrics as M
from diamond_cutter.attribution.metrics.evaluate import random_maps
from diamond_cutter.attribution.metrics.perturb import gaussian_blur, noisy_linear_imputation, ranks
from diamond_cutter.cli import main
from diamond_cutter.errors import DiamondCutterError, UnknownNameError
from diamond_cutter.report.icons import ICON_RENDER, IconSettings

from helpers import assert_unchanged, snapshot

SIZE = 32
REGION = (slice(8, 16), slice(18, 26))  # rows, columns: the only pixels the class depends on


class RegionNet(nn.Module):
    """Class 0's logit grows with the brightness of one 8×8 region; class 1 is its opposite."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1 / 3)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv(x)[:, 0, REGION[0], REGION[1]].mean((1, 2))
        return torch.stack([12 * (s - 0.5), -12 * (s - 0.5)], 1)


@pytest.fixture(scope="module")
def region_model() -> dc.Model:
    return dc.load_model(
        RegionNet(), input_size=(3, SIZE, SIZE), mean=(0, 0, 0), std=(1, 1, 1), labels=["region", "other"]
    )


@pytest.fixture(scope="module")
def region_images() -> torch.Tensor:
    """Dark textured images with a bright region where the model looks."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand((4, 3, SIZE, SIZE), generator=g) * 0.3
    x[:, :, REGION[0], REGION[1]] = 0.8 + 0.2 * torch.rand((4, 3, 8, 8), generator=g)
    return x


def oracle(n: int) -> torch.Tensor:
    maps = torch.zeros(n, SIZE, SIZE)
    maps[:, REGION[0], REGION[1]] = 1.0
    return maps + 1e-3 * torch.rand(n, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def random_map(n: int) -> torch.Tensor:
    return torch.rand(n, SIZE, SIZE, generator=torch.Generator().manual_seed(2))


def test_the_region_map_beats_random_and_inverted_maps_on_deletion_and_insertion(region_model, region_images):
    maps = {"oracle": oracle(4), "random": random_map(4), "inverted": -oracle(4)}
    dele = {k: M.deletion(region_model, region_images, v, 0, steps=16).values for k, v in maps.items()}
    ins = {k: M.insertion(region_model, region_images, v, 0, steps=16, baseline="mean").values for k, v in maps.items()}
    assert (dele["oracle"] + 0.1 < dele["random"]).all() and (dele["random"] + 0.1 < dele["inverted"]).all()
    assert (ins["oracle"] > ins["random"] + 0.1).all() and (ins["random"] > ins["inverted"] + 0.1).all()


@pytest.mark.parametrize("baseline", ["blur", "mean", "noise", "black"])
def test_every_baseline_ranks_the_region_map_first(region_model, region_images, baseline):
    blur = 0.25  # σ = 8 px: wide enough to wash out the 8×8 region
    good = M.deletion(region_model, region_images, oracle(4), 0, steps=8, baseline=baseline, blur=blur).values
    bad = M.deletion(region_model, region_images, -oracle(4), 0, steps=8, baseline=baseline, blur=blur).values
    assert (good + 0.1 < bad).all()


def test_road_ranks_the_maps_the_same_way(region_model, region_images):
    # Imputation restores scattered pixels from their neighbours (ROAD's point), so the random map here
    # is the evaluation's smooth reference, which removes whole patches as a CAM would.
    # One random draw can happen to remove the region last (a seed once put it at 0.93 beside the
    # inverted map's 1.0), so the random reference is the mean over several draws.
    maps = {"oracle": [oracle(4)], "random": [random_maps(4, (SIZE, SIZE), seed=s) for s in range(3, 9)],
            "inverted": [-oracle(4)]}

    def road(order: str) -> dict[str, float]:
        return {k: float(torch.stack([M.road(region_model, region_images, m, 0, order=order).values for m in v]).mean())
                for k, v in maps.items()}

    morf, lerf = road("morf"), road("lerf")
    assert morf["oracle"] + 0.1 < morf["random"] < morf["inverted"] - 0.1
    assert lerf["oracle"] - 0.1 > lerf["random"] > lerf["inverted"] + 0.1


def test_curves_start_and_end_where_they_must(region_model, region_images):
    result = M.deletion(region_model, region_images, oracle(4), 0, steps=4, baseline="black")
    full = torch.softmax(region_model.module(region_images), 1)[:, 0].double()
    assert torch.allclose(result.curves[:, 0], full, atol=1e-6)
    assert torch.allclose(
        result.curves[:, -1],
        torch.full((4,), 1 / (1 + torch.exp(torch.tensor(12.0)).item()), dtype=torch.float64),
        atol=1e-6,
    )
    assert result.fractions.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert torch.allclose(result.values, torch.trapezoid(result.curves, result.fractions))


def test_imputation_reproduces_known_pixels_and_interpolates_a_linear_ramp():
    ramp = torch.linspace(0, 1, 40).view(1, 1, 1, 40).expand(2, 3, 40, 40).contiguous()
    removed = torch.zeros(2, 1, 40, 40, dtype=torch.bool)
    removed[:, :, 10:30, 5:35] = True
    filled = noisy_linear_imputation(ramp, removed, tol=1e-8, max_iter=2000)
    assert torch.allclose(filled, ramp, atol=1e-4)  # a linear function is harmonic: imputed exactly
    noisy = noisy_linear_imputation(ramp, removed, torch.full_like(ramp, 0.5), tol=1e-8, max_iter=2000)
    assert torch.equal(noisy[~removed.expand_as(ramp)], ramp[~removed.expand_as(ramp)])


def test_blur_keeps_the_mean_and_ranks_put_the_largest_first():
    x = torch.rand(1, 3, 20, 20)
    assert abs(gaussian_blur(x, 2.0).mean() - x.mean()) < 0.02
    assert ranks(torch.tensor([[[0.1, 0.9], [0.5, 0.9]]])).tolist() == [[[3, 0], [2, 1]]]


def test_batch_equals_single_calls(region_model, region_images):
    maps = random_map(4)
    for metric in (M.deletion, M.insertion, M.road):
        kwargs = {"baseline": "noise"} if metric is M.deletion else {}
        together = metric(region_model, region_images, maps, 0, batch_size=5, **kwargs).values
        alone = torch.cat(
            [metric(region_model, region_images[i : i + 1], maps[i : i + 1], 0, **kwargs).values for i in range(4)]
        )
        assert torch.allclose(together, alone, atol=1e-5), metric.__name__
    together = M.max_sensitivity(region_model, region_images, "saliency", 0, samples=3).values
    alone = torch.cat(
        [M.max_sensitivity(region_model, region_images[i : i + 1], "saliency", 0, samples=3).values for i in range(4)]
    )
    assert torch.allclose(together, alone, rtol=1e-4)


def test_pointing_games_on_boxes_and_masks():
    maps = torch.zeros(3, 10, 10)
    maps[0, 2, 3] = 1.0  # inside the box
    maps[1, 8, 8] = 1.0  # outside
    maps[2, 2, 3], maps[2, 8, 8] = 1.0, 3.0  # a quarter of the mass inside
    boxes = [(2, 1, 5, 4)] * 3  # x0, y0, x1, y1
    assert M.pointing_game(maps, boxes).values.tolist() == [1, 0, 0]
    assert M.pointing_game(maps, boxes, tolerance=5).values.tolist() == [1, 1, 1]
    assert M.energy_pointing_game(maps, boxes).values.tolist() == [1, 0, 0.25]
    masks = torch.zeros(3, 10, 10, dtype=torch.bool)
    masks[:2, 1:4, 2:5] = True
    energy = M.energy_pointing_game(maps, masks).values
    assert energy[:2].tolist() == [1, 0] and torch.isnan(energy[2])


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_images():
    g = torch.Generator().manual_seed(0)
    small, large = M.bootstrap(torch.randn(8, generator=g)), M.bootstrap(torch.randn(200, generator=g))
    assert small.low < small.mean < small.high and large.low < large.mean < large.high
    assert large.high - large.low < small.high - small.low


@pytest.fixture
def small_model(inplace_net) -> dc.Model:
    return dc.load_model(inplace_net, input_size=(3, 16, 16))


def test_model_unchanged_after_metrics_and_after_an_error(small_model):
    x = torch.randn(2, 3, 16, 16)
    small_model.module.train()
    before = snapshot(small_model.module)
    M.deletion(small_model, x, torch.rand(2, 16, 16), steps=3)
    M.road(small_model, x, torch.rand(2, 16, 16), fractions=(0.5,))
    M.max_sensitivity(small_model, x, "saliency", samples=2)
    M.randomization(small_model, x, ["saliency"], steps=2)
    assert_unchanged(before, small_model.module)

    def boom(_m, _i, _o):
        raise RuntimeError("boom")

    handle = small_model.module.conv2.register_forward_hook(boom)
    before = snapshot(small_model.module)
    with pytest.raises(RuntimeError, match="boom"):
        M.deletion(small_model, x, torch.rand(2, 16, 16), 0, steps=3)
    handle.remove()
    before["hooks"]["conv2"] = tuple(0 for _ in before["hooks"]["conv2"])
    assert_unchanged(before, small_model.module)


def test_bad_input_gets_clear_errors(small_model):
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(DiamondCutterError, match="regions="):
        dc.evaluate_methods(small_model, x, methods=["saliency"], metrics=["pointing_game"])
    with pytest.raises(DiamondCutterError, match="regions"):
        M.pointing_game(torch.rand(2, 16, 16), None)
    with pytest.raises(DiamondCutterError, match="maps are 7×7 but the images are 16×16"):
        M.deletion(small_model, x, torch.rand(2, 7, 7))
    with pytest.raises(DiamondCutterError, match="3 maps for 2 images"):
        M.insertion(small_model, x, torch.rand(3, 16, 16))
    with pytest.raises(UnknownNameError, match="did you mean 'deletion'") as err:
        dc.evaluate_methods(small_model, x, methods=["saliency"], metrics=["delation"])
    assert "deletion" in err.value.suggestions
    with pytest.raises(UnknownNameError, match="did you mean 'blur'"):
        M.deletion(small_model, x, torch.rand(2, 16, 16), baseline="blurr")
    with pytest.raises(DiamondCutterError, match="steps must be at least 1"):
        M.deletion(small_model, x, torch.rand(2, 16, 16), steps=0)


def test_an_attribution_is_upsampled_and_explains_its_own_class(small_model):
    x = torch.randn(2, 3, 16, 16)
    cam = dc.attribute(small_model, x, "gradcam", target=[1, 3])
    assert cam.maps.shape[-1] == 8  # the layer's grid, not the image's
    result = M.deletion(small_model, x, cam, steps=4)
    same = M.deletion(small_model, x, cam.upsampled()[:, 0], [1, 3], steps=4)
    assert torch.allclose(result.values, same.values)


def test_evaluate_methods_table_and_verdicts(small_model):
    x = torch.randn(3, 3, 16, 16)
    settings = M.MetricSettings(
        steps=4, road_fractions=(0.3, 0.6), randomization_steps=2, sensitivity_samples=2, bootstrap=50
    )
    table = dc.evaluate_methods(
        small_model, x, methods=["saliency", "gradcam"], metrics=list(M.METRICS), settings=settings,
        regions=[(0, 0, 8, 8)] * 3,
    )
    assert table.methods == ["saliency", "gradcam", "random"]
    assert set(table.results["gradcam"]) == set(M.METRICS)
    assert "randomization" not in table.results["random"] and "max_sensitivity" not in table.results["random"]
    text = str(table)
    assert "deletion ↓" in text and "insertion ↑" in text and "randomization test" in text
    assert table.verdicts["gradcam"].startswith("gradcam: ")
    data = table.as_dict()
    assert len(data["methods"]["saliency"]["metrics"]["deletion"]["per_image"]) == 3
    summary = table.value("gradcam", "deletion")
    assert summary.low <= summary.mean <= summary.high


def test_evaluate_on_a_transferred_model_scores_its_new_classes(tmp_path, capsys):
    from diamond_cutter.transfer import load_transferred, train_head
    from diamond_cutter.transfer.data import load_labelled, make_texture_dataset

    lite0 = dc.load_model("efficientnet_lite0", input_size=(3, 48, 48))
    data = load_labelled(make_texture_dataset(tmp_path / "tex", per_class=4, size=48))
    train_head(lite0, data, "blocks.1", "conv", epochs=1, progress=False).save(str(tmp_path / "saved"))
    tuned = load_transferred(str(tmp_path / "saved"))
    x = data.pixels(data.val[:2], lite0)
    settings = M.MetricSettings(steps=3, road_fractions=(0.5,), randomization_steps=1, bootstrap=20)
    table = dc.evaluate_methods(tuned, x, methods=["gradcam"], layer="head.conv", settings=settings)
    assert set(table.target_names) <= {"brick", "grass", "gravel"}
    assert table.results["gradcam"]["deletion"].curves.shape == (2, 4)
    page = dc.report(
        tuned,
        x,
        "head.conv",
        groups=0,
        saliency=("gradcam",),
        icons=IconSettings("patches", ICON_RENDER.replace(size=16)),
        scores=settings,
        progress=False,
    )
    assert page.scores.cell("gradcam", 0)["passes"] in (True, False) and 'class="scores"' in page.html()
    image = next((tmp_path / "tex").rglob("*.png"))
    assert main(["evaluate", str(tmp_path / "saved"), str(image), "--methods", "gradcam", "--metrics", "deletion",
                 "--steps", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["targets"][0] in ("brick", "grass", "gravel")


def test_gradcam_deletes_better_than_random_maps_on_the_embedded_model(embedded):
    """For the predicted class on three sample photographs, Grad-CAM's deletion AUC is clearly lower than
    that of the evaluation's random reference maps (averaged over three draws: one draw varies a lot)."""
    images = dc.load_images(["coffee", "astronaut", "rocket"], embedded)
    cam = dc.attribute(embedded, images, "gradcam", target="top1")
    ours = M.deletion(embedded, images, cam, steps=8).values.mean()
    floor = torch.stack(
        [
            M.deletion(embedded, images, random_maps(3, (224, 224), seed), cam.targets, steps=8).values.mean()
            for seed in range(3)
        ]
    ).mean()
    assert ours < floor - 0.03, (ours, floor)


def test_cli_evaluate_prints_json_and_one_line_errors(capsys):
    args = ["evaluate", "efficientnet_lite0", "coffee", "--methods", "gradcam", "--metrics", "deletion,insertion",
            "--steps", "3", "--json"]
    assert main(args) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["targets"] == ["espresso"] and set(table["methods"]) == {"gradcam", "random"}
    gradcam = table["methods"]["gradcam"]
    assert len(gradcam["metrics"]["deletion"]["curves"]["coffee"]) == 4 and gradcam["verdict"].startswith("gradcam: ")
    assert main(["evaluate", "efficientnet_lite0", "coffee", "--metrics", "insertoin"]) == 2
    assert "did you mean 'insertion'" in capsys.readouterr().err


def test_targets_without_a_probability_are_refused(small_model):
    x = torch.randn(2, 3, 16, 16)
    for target in ("auto", (0, 1), lambda logits: logits[:, 0], [[0, 1]]):
        with pytest.raises(DiamondCutterError, match="one class's probability"):
            M.deletion(small_model, x, torch.rand(2, 16, 16), target)
