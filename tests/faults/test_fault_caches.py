"""Cache faults: swapped, edited and structurally broken sweep cache files are recomputed with a warning, never
trusted."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import diamond_cutter as dc
from diamond_cutter.errors import StaleCacheWarning
from diamond_cutter.store import SEAL, Store
from diamond_cutter.transfer import TrainConfig
from diamond_cutter.transfer.data import load_labelled, make_colour_dataset
from diamond_cutter.transfer.features import extract_features

SWEEP = dict(cuts=3, train=TrainConfig(epochs=5, batch_size=8), weights=None, input_size=(3, 32, 32), progress=False)


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return load_labelled(make_colour_dataset(tmp_path_factory.mktemp("colours"), per_class=8, size=16))


@pytest.fixture(scope="module")
def swept(colours, tmp_path_factory) -> tuple[Path, dc.SweepResult]:
    store = tmp_path_factory.mktemp("store")
    return store, dc.sweep("resnet18", colours, store=store, **SWEEP)


def network() -> dc.Model:
    """The sweep's network: random weights seeded as the sweep seeds them, so the feature cache keys match."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return dc.load_model("resnet18", weights=None, input_size=(3, 32, 32))


def copy(swept, tmp_path) -> Path:
    shutil.copytree(swept[0], tmp_path / "store")
    return tmp_path / "store"


def rerun(colours, store) -> tuple[dc.SweepResult, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = dc.sweep("resnet18", colours, store=store, **SWEEP)
    return result, [str(w.message) for w in caught if issubclass(w.category, StaleCacheWarning)]


def same_answer(a: dc.SweepResult, b: dc.SweepResult) -> bool:
    keys = ("cut", "knn", "ridge", "logme", "linear_acc")
    return [[r[k] for k in keys] for r in a.rows] == [[r[k] for k in keys] for r in b.rows]


def test_swapped_feature_files_are_recomputed_not_used(colours, swept, tmp_path):
    store = copy(swept, tmp_path)
    cut = swept[1].rows[1]["cut"]
    model = network()
    files = sorted(p for p in store.glob(f"features/*/avg/{cut}/*.npy"))
    assert len(files) == 3  # 24 images in batches of 8
    a, b = files[0].read_bytes(), files[1].read_bytes()
    files[0].write_bytes(b), files[1].write_bytes(a)
    clean = extract_features(model, colours, [cut], batch_size=8, progress=False)
    with pytest.warns(StaleCacheWarning) as caught:
        fs = extract_features(model, colours, [cut], batch_size=8, store=Store(store), progress=False)
    assert {str(files[0]), str(files[1])} <= {str(w.message).split()[1] for w in caught}
    np.testing.assert_array_equal(fs.features[cut], clean.features[cut])
    assert fs.computed == 2 and fs.cached == 1


def test_swapped_files_with_their_seals_are_caught_by_the_key(colours, swept, tmp_path):
    store = copy(swept, tmp_path)
    cut = swept[1].rows[1]["cut"]
    files = sorted(store.glob(f"features/*/avg/{cut}/*.npy"))
    for suffix in ("", SEAL):
        a, b = (Path(str(f) + suffix) for f in files[:2])
        data_a = a.read_bytes()
        a.write_bytes(b.read_bytes()), b.write_bytes(data_a)
    model = network()
    with pytest.warns(StaleCacheWarning, match="sealed for another key"):
        extract_features(model, colours, [cut], batch_size=8, store=Store(store), progress=False)


def edit_estimates(path: Path) -> None:
    row = json.loads(path.read_text())
    row.update(ridge=0.0, linear_acc=0.0)
    path.write_text(json.dumps(row))


BROKEN = {
    "edited estimates": ("estimates.json", edit_estimates),
    "estimates []": ("estimates.json", lambda p: p.write_text("[]")),
    "estimates {}": ("estimates.json", lambda p: p.write_text("{}")),
    "estimates truncated": ("estimates.json", lambda p: p.write_bytes(p.read_bytes()[:20])),
    "seal removed": ("estimates.json", lambda p: Path(str(p) + SEAL).unlink()),
    "seal garbage": ("estimates.json", lambda p: Path(str(p) + SEAL).write_text("[1, 2")),
    "bad npy": (".npy", lambda p: p.write_bytes(b"\x93NUMPY garbage")),
    "npy of the wrong shape": (".npy", lambda p: np.save(p, np.zeros((3, 3), np.float32))),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_broken_cache_files_are_recomputed_with_a_warning_naming_them(colours, swept, tmp_path, case):
    store = copy(swept, tmp_path)
    suffix, damage = BROKEN[case]
    victims = sorted(p for p in store.rglob(f"*{suffix}"))
    damage(victims[0])
    if suffix == ".npy":  # features are read again only where the estimates are not cached
        for row in store.rglob("estimates.json*"):
            row.unlink()
    result, messages = rerun(colours, store)
    assert any(str(victims[0]) in m for m in messages), messages
    assert same_answer(result, swept[1])


def test_a_sealed_but_malformed_row_is_recomputed(colours, swept, tmp_path):
    store = copy(swept, tmp_path)
    victim = sorted(store.rglob("estimates.json"))[0]
    Store(store).write_checked_json(str(victim.relative_to(store)), {"model": "resnet18"})
    result, messages = rerun(colours, store)
    assert any("does not parse" in m and str(victim) in m for m in messages)
    assert same_answer(result, swept[1])


def test_read_checked_is_quiet_about_absence_and_loud_about_the_rest(tmp_path):
    store = Store(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.read_checked("nothing/here.bin") is None
    store.write_checked("a.bin", b"payload")
    assert store.read_checked("a.bin") == b"payload"
    (tmp_path / "a.bin").write_bytes(b"pAyload")
    with pytest.warns(StaleCacheWarning, match="a.bin does not match its seal"):
        assert store.read_checked("a.bin") is None


def test_a_killed_writers_temporary_files_are_removed_and_live_or_foreign_ones_kept(tmp_path):
    """The first write into a folder removes what a dead writer on this host left; a running writer's
    file and another host's file (whose processes cannot be checked from here) stay."""
    import os
    import subprocess
    import sys

    from diamond_cutter.store import _host

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead = int(gone.stdout)  # that process has exited
    folder = tmp_path / "store" / "cache"
    folder.mkdir(parents=True)
    orphan = folder / f".tmp-{_host()}-{dead}-abc.pt"
    live = folder / f".tmp-{_host()}-{os.getpid()}-def.pt"
    foreign = folder / f".tmp-otherhost-{dead}-ghi.pt"
    for path in (orphan, live, foreign):
        path.write_bytes(b"half a shard")
    store = Store(tmp_path / "store")
    store.write_bytes("cache/artifact.pt", b"whole")
    assert not orphan.exists() and live.exists() and foreign.exists()
    assert store.read_bytes("cache/artifact.pt") == b"whole" and store.list("cache") == ["cache/artifact.pt"]
