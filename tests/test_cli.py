"""The command line: the foundation commands print real results and errors are one line."""

from __future__ import annotations

import json

from diamond_cutter.cli import main


def test_layers_json_and_unknown_model(capsys):
    assert main(["layers", "resnet18", "--json", "--weights", "none"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["output"] == "fc" and table["pre_output"] == "avgpool"
    layer4 = next(row for row in table["layers"] if row["name"] == "layer4")
    assert (layer4["channels"], layer4["height"], layer4["grid"]) == (512, 7, 23)
    assert main(["layers", "resnt18"]) == 2
    assert "did you mean 'resnet18'" in capsys.readouterr().err


def test_every_command_defaults_to_imagenet_weights(monkeypatch, capsys):
    """The same default everywhere (every command loads through ``load_model_from``); ``--weights none``
    asks for random ones."""
    from diamond_cutter import cli
    from diamond_cutter.commands import options
    from diamond_cutter.errors import DiamondCutterError

    asked = []

    def load_model(name, weights="unset", **kwargs):
        asked.append(weights)
        raise DiamondCutterError("stop here")

    monkeypatch.setattr(options, "load_model", load_model)
    runs = [["layers", "resnet18"], ["predict", "resnet18", "chelsea"], ["attribute", "resnet18", "chelsea"],
            ["evaluate", "resnet18", "chelsea"], ["report", "resnet18", "chelsea", "--layer", "layer4"],
            ["visualize", "resnet18", "--layer", "layer4", "--out", "x"]]
    for argv in runs:
        assert cli.main(argv) == 2
    assert asked == ["imagenet"] * len(runs)
    assert cli.main(["layers", "resnet18", "--weights", "none"]) == 2 and asked[-1] is None


def test_models_lists_embedded_first(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line, name in zip(lines, ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")):
        assert line.startswith(name) and "offline-ready" in line
    assert "offline-ready" not in lines[3]


def test_predict_on_sample_images(capsys):
    assert main(["predict", "efficientnet_lite0", "coffee", "--json", "-k", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result[0]["image"] == "coffee" and result[0]["top"][0]["name"] == "espresso"
    assert main(["predict", "efficientnet_lite0", "no_such_file.png"]) == 2
    assert "no such file" in capsys.readouterr().err
