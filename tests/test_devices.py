"""Devices: names resolve to devices that exist, Model.to moves the network, and the computing paths
run wherever the model lives (checked on the ``meta`` device, where nothing can silently fall back
to the CPU: mixing a meta tensor with a CPU tensor raises)."""

from __future__ import annotations

import os

import pytest
import torch

import diamond_cutter as dc
from diamond_cutter.devices import MEMORY_ENV, even_batches, memory_budget, parse_size, resolve_device
from diamond_cutter.errors import DiamondCutterError

from helpers import InplaceNet

#: Methods without a random generator (a generator cannot live on the meta device).
META_METHODS = ("saliency", "input_x_gradient", "guided_backprop", "deconvnet", "gradcam", "gradcam++",
                "layercam", "guided_gradcam", "integrated_gradients", "occlusion")


def tiny_model() -> dc.Model:
    torch.manual_seed(0)
    return dc.load_model(InplaceNet(), input_size=(3, 32, 32), labels=[f"c{i}" for i in range(5)])


@pytest.fixture
def meta_copies_out_as_zeros(monkeypatch):
    """A meta tensor holds no data, so copying a result back to the CPU gives zeros of its shape; every
    other operation still runs on the meta device, where a stray CPU tensor is an error."""
    original = torch.Tensor.cpu

    def cpu(self, *args, **kwargs):
        if self.device.type == "meta":
            return torch.zeros(self.shape, dtype=self.dtype)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", cpu)


def test_auto_is_cuda_where_available_else_cpu():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("CPU") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu"])
def test_unknown_device_names_are_refused(spec):
    with pytest.raises(DiamondCutterError, match="unknown device"):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(DiamondCutterError, match="no CUDA GPU"):
        resolve_device("cuda:0")


def test_model_to_moves_the_network_and_returns_the_model():
    model = tiny_model()
    assert model.to("cpu") is model and model.device.type == "cpu"
    assert model.to("meta") is model
    assert model.device.type == "meta"
    assert all(p.device.type == "meta" for p in model.module.parameters())


def test_load_model_takes_a_device():
    model = dc.load_model(InplaceNet(), input_size=(3, 32, 32), device="meta")
    assert model.device.type == "meta"


@pytest.mark.parametrize("method", META_METHODS)
def test_attribution_runs_on_the_models_device(method, meta_copies_out_as_zeros):
    model = tiny_model()
    images = torch.rand(2, 3, 32, 32)
    options = (
        {"steps": 4}
        if method == "integrated_gradients"
        else {"window": 8, "stride": 8}
        if method == "occlusion"
        else {}
    )
    result = dc.attribute(model.to("meta"), images, method, target=3, **options)
    assert result.maps.device.type == "cpu" and len(result.maps) == 2
    assert result.target_names == ["c3", "c3"]


def test_predict_runs_on_the_models_device(meta_copies_out_as_zeros):
    model = tiny_model().to("meta")
    prediction = dc.predict(model, torch.rand(3, 3, 32, 32), k=2)
    assert prediction.probabilities.shape == (3, 2)


def test_parse_size_reads_bytes_and_suffixes():
    assert parse_size("1500") == 1500
    assert parse_size("2G") == 2 << 30
    assert parse_size("512M") == 512 << 20
    assert parse_size("1.5g") == int(1.5 * (1 << 30))
    for bad in ("lots", "-1G", "0"):
        with pytest.raises(DiamondCutterError):
            parse_size(bad)


def test_memory_budget_prefers_the_argument_then_the_environment(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv(MEMORY_ENV, "300M")
    assert memory_budget(cpu) == 300 << 20
    assert memory_budget(cpu, "1G") == 1 << 30
    monkeypatch.delenv(MEMORY_ENV)
    assert 0 < memory_budget(cpu) <= 512 << 20


def test_cli_computes_on_the_chosen_device(capsys):
    from diamond_cutter.cli import main

    assert main(["predict", "efficientnet_lite0", "coffee", "--device", "cpu", "--json", "-k", "1"]) == 0
    assert '"espresso"' in capsys.readouterr().out
    assert main(["predict", "efficientnet_lite0", "coffee", "--device", "gpu"]) == 2
    assert "unknown device 'gpu'" in capsys.readouterr().err


def test_cli_memory_flag_lasts_for_the_command_only(monkeypatch, capsys):
    from diamond_cutter.cli import main

    monkeypatch.delenv(MEMORY_ENV, raising=False)
    assert main(["predict", "efficientnet_lite0", "coffee", "--memory", "1G", "-k", "1"]) == 0
    assert MEMORY_ENV not in os.environ
    assert main(["predict", "efficientnet_lite0", "coffee", "--memory", "lots"]) == 2
    assert "cannot read memory size" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("n", "batch", "sizes"), [(8, 5, [4, 4]), (9, 4, [3, 3, 3]), (3, 8, [3]), (0, 4, []), (5, 1, [1] * 5)]
)
def test_even_batches_keep_order_and_differ_by_at_most_one(n, batch, sizes):
    batches = even_batches(list(range(n)), batch)
    assert [len(b) for b in batches] == sizes
    assert [i for b in batches for i in b] == list(range(n))
