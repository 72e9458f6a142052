"""The sweep end to end: recommendation rule, real data with the embedded model, resuming, outputs, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import diamond_cutter as dc
from diamond_cutter.cli import main
from diamond_cutter.transfer import Selection, SweepResult, TrainConfig, features, train_head
from diamond_cutter.transfer.data import load_labelled, make_colour_dataset, make_digits_dataset, make_texture_dataset

from helpers import assert_unchanged, snapshot

TINY = dict(weights=None, input_size=(3, 32, 32), progress=False)
TINY_LOAD = dict(weights=None, input_size=(3, 32, 32))


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> dc.transfer.LabelledImages:
    return load_labelled(make_colour_dataset(tmp_path_factory.mktemp("colours"), per_class=10, size=16))


@pytest.fixture(scope="module")
def colour_sweep(colours, tmp_path_factory) -> tuple[SweepResult, Path]:
    out = tmp_path_factory.mktemp("out")
    result = dc.sweep("resnet18", colours, cuts=6, train=TrainConfig(epochs=15), store=tmp_path_factory.mktemp("store"),
                      out=out, **TINY)
    return result, out


@pytest.fixture(scope="module")
def lite0() -> dc.Model:
    return dc.load_model("efficientnet_lite0", input_size=(3, 64, 64))


def test_colour_labels_are_solved_early_and_the_cheap_cut_is_recommended(colour_sweep):
    result, _ = colour_sweep
    first = result.rows[0]
    assert first["cut"] == "conv1" and first["ridge"] >= 0.9 and first["linear_acc"] >= 0.9
    rec = result.recommendation
    assert result.difference(rec).low <= 0 or result.difference(rec).value <= result.select.tolerance
    deepest = max(result.rows, key=lambda r: r["relative_depth"])
    assert rec["macs"] < deepest["macs"] / 5  # an early, cheap cut, not the pre-output map
    assert rec["macs"] == min(r["macs"] for r in result.rows)  # the first cut is as good as any here
    assert "within 1.0 points of the best or not distinguishable" in result.reason
    assert "held-out test accuracy" in result.reason and "[" in result.reason  # intervals quoted
    assert result.selection_accuracy.value >= 0.9


def test_results_table_json_and_plot_are_written(colour_sweep):
    result, out = colour_sweep
    header = (out / "results.csv").read_text().splitlines()
    assert header[0].startswith("model,cut,relative_depth,channels,feature_dim,macs,parameters,knn,ridge,logme,hscore,"
                                "transrate,gbc,sfda,ncti,ncti_seli,ncti_ncc,ncti_vc,"
                                "ridge_test,linear_val_acc,linear_acc,linear_acc_low,linear_acc_high")
    assert len(header) == 1 + len(result.rows) == 7
    saved = json.loads((out / "results.json").read_text())
    assert saved["recommendation"]["cut"] == result.recommendation["cut"]
    assert set(saved["kendall_tau"]["linear"]) == {"knn", "ridge", "logme", "hscore", "transrate", "gbc", "sfda",
                                                  "ncti"}
    assert "unreliably" in saved["note"]
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_embedded_model_on_real_textures_and_digits(lite0, tmp_path):
    """Real photographs of brick/grass/gravel: the best head must be far above chance (1/3).
    Digits are defined by shape, not colour or texture: later cuts must beat the first."""
    before = snapshot(lite0.module)
    textures = make_texture_dataset(tmp_path / "tex", per_class=10, size=64)
    res = dc.sweep([lite0], textures, cuts=4, train=TrainConfig(epochs=20), store=tmp_path / "s", progress=False)
    assert res.accuracy(res.best) >= 0.9
    digits = make_digits_dataset(tmp_path / "dig", per_class=12)
    res = dc.sweep([lite0], digits, cuts=4, train=TrainConfig(epochs=20), store=tmp_path / "s", progress=False)
    first, later = res.rows[0], res.rows[2:]
    assert max(res.accuracy(r) for r in later) >= res.accuracy(first) + 0.2
    assert max(res.accuracy(r) for r in later) >= 0.8  # chance is 0.1
    assert_unchanged(before, lite0.module)


def test_a_killed_sweep_resumes_without_recomputing(colours, tmp_path, monkeypatch):
    data = load_labelled(make_colour_dataset(tmp_path / "c", per_class=4, size=16))  # 12 images: 3 batches of 4
    calls = []
    real = features._forward_batch

    def counted(*args, **kwargs):
        calls.append(1)
        if kill_at and len(calls) == kill_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "_forward_batch", counted)
    plans: list[str] = []
    run = lambda: dc.sweep(["resnet18", "efficientnet_lite0"], data, cuts=3,  # noqa: E731
                           train=TrainConfig(epochs=3, batch_size=4), store=tmp_path / "s", plan=plans.append, **TINY)
    kill_at = 5  # model 1: three batches done and its pairs stored; model 2: one batch cached, killed in the next
    with pytest.raises(KeyboardInterrupt):
        run()
    calls.clear()
    kill_at = 0
    resumed = run()
    assert len(calls) == 2  # only model 2's last two batches
    calls.clear()
    again = run()
    assert calls == []  # the plan's timed warm-up is not a feature batch
    assert plans[0].startswith("sweep of 2 models on 12 images: ") and plans[0].split("\n")[0].endswith(" in all")
    assert "resnet18: 3 of 3 cuts to compute" in plans[0] and "efficientnet_lite0: 3 of 3 cuts" in plans[0]
    assert "resnet18: 0 of 3 cuts to compute, under 1 s" in plans[1] and "efficientnet_lite0: 3 of 3" in plans[1]
    assert "resnet18: 0 of 3" in plans[2] and "efficientnet_lite0: 0 of 3" in plans[2]
    assert [(r["model"], r["cut"], r["ridge"], r["logme"]) for r in again.rows] == \
           [(r["model"], r["cut"], r["ridge"], r["logme"]) for r in resumed.rows]


def test_process_pool_gives_the_same_rows_as_in_process(colours, colour_sweep, tmp_path):
    result, _ = colour_sweep
    pooled = dc.sweep("resnet18", colours, cuts=6, train=TrainConfig(epochs=15), store=tmp_path / "fresh",
                      executor="processes", **TINY)
    for a, b in zip(result.rows, pooled.rows):
        assert (a["cut"], a["knn"], a["ridge"], a["linear_acc"]) == (b["cut"], b["knn"], b["ridge"], b["linear_acc"])
        assert a["logme"] == pytest.approx(b["logme"], rel=1e-6)


def test_conv_heads_on_the_shortlist_and_kendall_tau(colours, tmp_path):
    res = dc.sweep("resnet18", colours, heads=("linear", "conv"), cuts=4, select=Selection(shortlist=2),
                   train=TrainConfig(epochs=4), store=tmp_path / "s", **TINY)
    with_conv = [r for r in res.rows if "conv_acc" in r]
    assert len(with_conv) == 2
    assert {r["cut"] for r in with_conv} == {r["cut"] for r in sorted(res.rows, key=lambda r: -r["ridge"])[:2]}
    assert all(len(r["conv_confusion"]) == 3 and sum(map(sum, r["conv_confusion"])) == len(colours)  # every fold
               for r in with_conv)
    assert res.head == "linear"  # one ranking, like with like: conv is shown, not mixed in
    taus = res.kendall["linear"]
    assert all(np.isnan(t) or -1 <= low <= t <= high <= 1 for t, low, high in taus.values())


def test_bad_sweep_input(colours, tmp_path):
    with pytest.raises(dc.UnknownNameError, match="did you mean.*'layer3'"):
        dc.sweep("resnet18", colours, cuts=["layer33"], store=tmp_path, **TINY)
    with pytest.raises(dc.UnknownNameError, match="head"):
        dc.sweep("resnet18", colours, heads=("mlp",), store=tmp_path, **TINY)


def test_cli_sweep(tmp_path):
    data = make_colour_dataset(tmp_path / "c", per_class=4, size=16)
    args = [
        "sweep",
        "--models",
        "resnet18",
        "--weights",
        "none",
        "--input-size",
        "32",
        "--data",
        str(data),
        "--folds",
        "3",
        "--out",
        str(tmp_path / "out"),
        "--cache",
        str(tmp_path / "cache"),
        "--n-cuts",
        "3",
        "--epochs",
        "3",
        "--save-best",
        str(tmp_path / "best"),
        "--report",
        str(tmp_path / "sweep.html"),
    ]
    assert main(args) == 0
    assert (tmp_path / "out" / "results.csv").is_file() and (tmp_path / "best" / "manifest.json").is_file()
    page = (tmp_path / "sweep.html").read_text()
    assert "Where to cut" in page and "Recommended:" in page and 'class="recommended"' in page
    assert "data:image/png;base64," in page and "held-out" in page
    one = tmp_path / "one"
    (one / "only").mkdir(parents=True)
    (data / "red" / "000.png").rename(one / "only" / "a.png")
    assert main(["sweep", "--models", "resnet18", "--data", str(one), "--out", str(tmp_path / "o2")]) == 2


def test_the_recommended_pair_trains_again_under_callbacks(colour_sweep, colours):
    from diamond_cutter.callbacks import GradCAMCallback
    from diamond_cutter.visuallog import VisualLogSink

    result, _ = colour_sweep
    sink = VisualLogSink()
    images = colours.pixels(colours.val[:2], result.specs[0].load())
    trained = result.train_best(callbacks=[GradCAMCallback(images, sinks=[sink])], epochs=2)
    ((heading, stages),) = sink.log.sections()
    assert heading == "Grad-CAM" and [s.step for s in stages] == [1, 2] and len(stages[0].images) == 2
    assert len(trained.history) == 2


def test_two_user_networks_of_the_same_class_keep_their_own_rows(colours, tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    nets = [dc.load_model(resnet18(num_classes=3), input_size=(3, 32, 32)) for _ in range(2)]
    assert nets[0].name == nets[1].name == "ResNet"
    res = dc.sweep(nets, colours, cuts=["layer1", "layer2"], heads=("linear", "conv"), select=Selection(shortlist=4),
                   train=TrainConfig(epochs=2), store=tmp_path, progress=False)
    assert [(r["model"], r["cut"]) for r in res.rows] == [
        ("ResNet#1", "layer1"), ("ResNet#1", "layer2"), ("ResNet#2", "layer1"), ("ResNet#2", "layer2")]
    assert res.rows[0]["ridge"] != res.rows[2]["ridge"] or res.rows[0]["logme"] != res.rows[2]["logme"]
    assert all("conv_acc" in r for r in res.rows)
    assert res.spec(res.recommendation["model"]).model is nets[int(res.recommendation["model"][-1]) - 1]


def test_train_head_keeps_options_given_with_a_config(colours):
    model = dc.load_model("resnet18", **TINY_LOAD)
    trained = train_head(model, colours, "layer1", config=TrainConfig(epochs=5, lr=0.05), epochs=2, progress=False)
    assert (trained.config.epochs, trained.config.lr) == (2, 0.05) and len(trained.history) <= 2
    assert trained.metrics.split == "test" and len(trained.test_predictions) == len(colours.test)
    with pytest.raises(dc.UnknownNameError, match="did you mean.*'epochs'"):
        train_head(model, colours, "layer1", config=TrainConfig(), epoch=2, progress=False)


def test_sweep_needs_held_out_test_images(tmp_path):
    data = load_labelled(make_colour_dataset(tmp_path / "c", per_class=6, size=16), folds=None, test_fraction=0)
    with pytest.raises(dc.DiamondCutterError, match="held-out test images"):
        dc.sweep("resnet18", data, store=tmp_path / "s", **TINY)


def test_fine_tuning_profile_one_block_at_a_time(colours, tmp_path):
    from diamond_cutter.transfer.profile import fine_tuning_profile

    model = dc.load_model("resnet18", **TINY_LOAD)
    before = snapshot(model.module)
    res = dc.sweep([model], colours, cuts=["layer1"], train=TrainConfig(epochs=2), store=tmp_path, profile=True,
                   progress=False)
    assert [p.block for p in res.profile] == ["conv1", "bn1", "layer1"]  # disjoint blocks with parameters
    assert all(0 <= p.low <= p.accuracy <= p.high <= 1 for p in res.profile)
    assert "fine-tuning profile" in str(res)
    assert_unchanged(before, model.module)
    bare = dc.load_model(torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.LazyLinear(3)),
                         input_size=(3, 16, 16))
    with pytest.raises(dc.DiamondCutterError, match="no blocks with parameters up to 0: there is nothing"):
        fine_tuning_profile(bare, colours, "0")
