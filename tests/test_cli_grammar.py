"""One CLI grammar: every command takes the shared flags under the same names, help shows examples,
--version answers, --help loads no PyTorch, and errors speak in flags."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys

import pytest

from diamond_cutter.cli import build_parser, main
from diamond_cutter.commands import COMMANDS
from diamond_cutter.commands.options import SHARED_FLAGS, layers_of
from diamond_cutter.version import __version__

#: Commands that load a model and compute (``models`` only lists names).
COMPUTING = [name for name in COMMANDS if name != "models"]
#: The one spelling of flags that several commands share.
SPELLINGS = {"--layer": ("attribute", "visualize", "atlas", "report"), "--store": ("atlas", "report", "sweep"),
             "--top": ("predict", "report"), "--out": ("attribute", "visualize", "atlas", "report", "sweep", "demo")}


def options_of(name: str) -> set[str]:
    parser = build_parser()
    return set(parser._subparsers._group_actions[0].choices[name]._option_string_actions)


@pytest.mark.parametrize("name", COMPUTING)
def test_every_computing_command_takes_the_shared_flags(name):
    expected = set(SHARED_FLAGS) - ({"--batch-size"} if name == "layers" else set())
    assert expected <= options_of(name)


@pytest.mark.parametrize("flag", list(SPELLINGS))
def test_shared_flags_are_spelled_the_same_everywhere(flag):
    for name in SPELLINGS[flag]:
        assert flag in options_of(name), f"{name} lacks {flag}"


def test_layer_is_repeatable_or_comma_separated():
    parser = build_parser()
    args = parser.parse_args(["atlas", "m", "--layer", "blocks.3,blocks.4", "--layer", "blocks.5"])
    assert layers_of(args) == ["blocks.3", "blocks.4", "blocks.5"]
    assert layers_of(parser.parse_args(["atlas", "m", "--layers", "blocks.3"])) == ["blocks.3"]  # older spelling


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_shows_examples(name, capsys):
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0 and "examples:" in out and f"diamond-cutter {name}" in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_hides_no_default(name):
    """Every option with a default has help, and the help says the default."""
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    parser = sub.choices[name]
    text = "".join(parser.format_help().split())  # argparse wraps lines, also at hyphens
    for action in parser._actions:
        if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
            continue
        assert action.help, f"{name} {action.option_strings[0]} has no help"
        shown = parser._get_formatter()._expand_help(action)
        assert "default" in shown and "".join(shown.split()) in text, f"{name} {action.option_strings[0]}: {shown!r}"


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"diamond-cutter {__version__}"


def test_top_level_help_lists_every_command_without_loading_pytorch():
    code = (
        "import sys\nfrom diamond_cutter.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch loaded' if 'torch' in sys.modules else 'no torch')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().endswith("no torch")
    assert all(name in done.stdout for name in COMMANDS)


def test_offline_weights_error_speaks_in_flags(monkeypatch, capsys):
    def unreachable(*_args, **_kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    assert main(["predict", "alexnet", "coffee"]) == 2
    err = capsys.readouterr().err
    assert "--weights none" in err and "weights=None" not in err


def test_sweep_takes_models_as_words_or_the_older_flag():
    from diamond_cutter.commands.sweep import models_of

    parser = build_parser()
    assert models_of(parser.parse_args(["sweep", "a", "b,c", "--data", "d", "--out", "o"])) == ["a", "b", "c"]
    assert models_of(parser.parse_args(["sweep", "--models", "a,b", "--data", "d", "--out", "o"])) == ["a", "b"]
