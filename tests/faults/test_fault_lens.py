"""Reference-scan faults: a scan SIGKILLed inside a shard's write resumes to exactly the uninterrupted
answer, and a torn or bit-flipped shard in the store is recomputed with a warning, never trusted."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from diamond_cutter.errors import StaleCacheWarning
from diamond_cutter.lens import references as refs
from diamond_cutter.store import SEAL, Store
from lens_nets import gated_net
from lens_scans import assert_same, count_shards, square_folder, stored_shards

LAYERS = ["1", "3"]
#: Eight images in four shards of two, so a kill in the second shard's write has a finished shard before it.
SCAN = dict(k=2, target="red", batch_size=2, shard_size=2)
TESTS = Path(__file__).parents[1]

#: A scan that stops inside the write of shard number ``stop_at`` (0 = first) and waits for its SIGKILL.
#: ``write``: half the shard's bytes are on disk (under the writer's temporary name); ``seal``: the shard
#: is in place, its seal not yet written. It prints what it wrote, so the parent can check the disk first.
CHILD = textwrap.dedent(
    f"""
    import io, itertools, os, signal, sys
    from diamond_cutter.lens import references as refs
    from diamond_cutter.store import Store
    from lens_nets import gated_net

    folder, store, stop_in, stop_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    shard_writes, real_write = itertools.count(), Store.write_bytes

    def stop(*facts):
        print(*facts, flush=True)
        signal.pause()

    class Torn(io.BufferedWriter):
        def write(self, data):
            super().write(data[: len(data) // 2])
            self.flush()
            stop(len(data) // 2, len(data))

    def write_bytes(self, key, data):
        shard = key.endswith(".pt") and next(shard_writes) == stop_at
        if shard and stop_in == "write":
            os.fdopen = lambda fd, mode: Torn(io.FileIO(fd, mode))  # the store's own writer tears
        real_write(self, key, data)
        if shard and stop_in == "seal":
            stop(len(data), len(data))

    Store.write_bytes = write_bytes
    refs.scan_references(gated_net(), folder, {LAYERS!r}, refs.ScanSettings(**{SCAN!r}), store=store)
    print("finished", flush=True)
    """
)


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


def kill_inside_the_second_shard_write(folder: Path, store: Path, stop_in: str) -> tuple[int, int]:
    """Runs the scan in a child until it stops inside its second shard's write, then SIGKILLs it.

    Returns (bytes of the shard on disk, bytes of the whole shard) at the moment of the kill.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    errors = store.parent / "child.err"
    with errors.open("w") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(folder), str(store), stop_in, "1"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    with child.stdout:
        line = child.stdout.readline()
        stopped = child.poll() is None  # still alive, waiting where it stopped: the kill lands there
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert stopped and line.strip() not in ("", "finished"), errors.read_text()[-2000:]
    assert child.returncode == -signal.SIGKILL
    written, total = (int(n) for n in line.split())
    return written, total


def test_a_scan_killed_while_writing_a_shard_resumes_to_the_uninterrupted_answer(folder, clean, tmp_path, monkeypatch):
    store = tmp_path / "store"
    written, total = kill_inside_the_second_shard_write(folder, store, "write")
    torn = list(store.rglob(".tmp-*"))
    assert 0 < written < total and [p.stat().st_size for p in torn] == [written]  # half a shard really is on disk
    assert len(stored_shards(store)) == 1  # only the finished first shard bears a shard's name
    computed = count_shards(monkeypatch)
    resumed, stale = scan(folder, store)
    assert computed == [2, 4, 6] and stale == []  # the finished shard is reused, the torn one never read
    assert_same(resumed, clean)
    assert scan(folder, store)[1] == [] and computed == [2, 4, 6]  # and now everything is sealed and reused
    assert not any(p.exists() for p in torn)  # the killed writer's half shard is gone from the folder


def test_a_shard_killed_before_its_seal_is_recomputed_with_a_warning(folder, clean, tmp_path, monkeypatch):
    store = tmp_path / "store"
    written, total = kill_inside_the_second_shard_write(folder, store, "seal")
    unsealed = [k for k in stored_shards(store) if not Store(store).exists(k + SEAL)]
    assert written == total and len(stored_shards(store)) == 2 and len(unsealed) == 1
    computed = count_shards(monkeypatch)
    resumed, stale = scan(folder, store)
    assert computed == [2, 4, 6]
    assert len(stale) == 1 and Store(store).path(unsealed[0]) in stale[0]
    assert_same(resumed, clean)


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
