"""Reference-scan faults: a torn or bit-flipped shard in the store is recomputed with a warning, never trusted."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest
import torch

from diamond_cutter.errors import StaleCacheWarning
from diamond_cutter.lens import references as refs
from diamond_cutter.store import Store
from lens_nets import gated_net
from lens_scans import assert_same, count_shards, square_folder, stored_shards

LAYERS = ["1", "3"]
#: Eight images in four shards of two.
SCAN = dict(k=2, target="red", batch_size=2, shard_size=2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return square_folder(tmp_path_factory.mktemp("squares"))


@pytest.fixture(scope="module")
def clean(folder, tmp_path_factory) -> refs.References:
    """The uninterrupted scan every damaged one must reproduce."""
    return scan(folder, tmp_path_factory.mktemp("clean"))[0]


def scan(folder: Path, store: Path) -> tuple[refs.References, list[str]]:
    """The scan and the stale-cache warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = refs.scan_references(gated_net(), folder, LAYERS, refs.ScanSettings(**SCAN), store=store)
    return found, [str(w.message) for w in caught if issubclass(w.category, StaleCacheWarning)]


def truncate(data: bytes) -> bytes:
    """What a store without an atomic rename keeps of a write that was killed half way."""
    return data[: len(data) // 2]


def flip_a_score(data: bytes) -> bytes:
    """One bit flipped in a stored score: the container and ``torch.load`` notice nothing."""
    values = torch.load(io.BytesIO(data), weights_only=True)["tensors"]["3|activation|values"]
    at = data.find(values.numpy().tobytes()) + 3  # the top byte of the first float: sign and exponent
    flipped = data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]
    assert not torch.equal(torch.load(io.BytesIO(flipped), weights_only=True)["tensors"]["3|activation|values"], values)
    return flipped


@pytest.mark.parametrize("damage", [truncate, flip_a_score])
def test_a_damaged_shard_is_recomputed_with_a_warning_never_trusted(folder, clean, tmp_path, monkeypatch, damage):
    store = tmp_path / "store"
    scan(folder, store)
    victim = Path(Store(store).path(stored_shards(store)[0]))
    victim.write_bytes(damage(victim.read_bytes()))
    computed = count_shards(monkeypatch)
    resumed, stale = scan(folder, store)
    assert len(computed) == 1 and len(stale) == 1 and str(victim) in stale[0]
    assert_same(resumed, clean)
