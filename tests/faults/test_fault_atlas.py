"""Atlas faults: missing or swapped spritemaps, tampered manifests, two writers at once, SIGKILL mid-write."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import diamond_cutter as dc
from diamond_cutter.errors import StaleCacheWarning

LAYER = "blocks.1"
SETTINGS = dict(steps=2, size=32, progress=False)

#: A child that writes cells of a known colour through the atlas's own save path (no rendering: fast).
WRITER = textwrap.dedent(
    """
    import sys
    from PIL import Image
    import diamond_cutter as dc

    store, channels, rounds = sys.argv[1], [int(c) for c in sys.argv[2].split(",")], int(sys.argv[3])
    a = dc.atlas(dc.load_model("efficientnet_lite0"), "blocks.1", store=store, fill=False, steps=2, size=32,
                 progress=False)
    print("ready", flush=True)
    for _ in range(rounds):
        for c in channels:
            a._add([c], [Image.new("RGB", (32, 32), (c * 15, 255 - c * 15, 100))], [float(c)])
    """
)


def colour(c: int) -> tuple[int, int, int]:
    return (c * 15, 255 - c * 15, 100)


def writer(store: Path, channels: list[int], rounds: int, script: Path) -> subprocess.Popen:
    script.write_text(WRITER)
    return subprocess.Popen([sys.executable, str(script), str(store), ",".join(map(str, channels)), str(rounds)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def assert_cells_are_the_written_ones(a: dc.Atlas) -> None:
    sprites = np.asarray(a.spritemap)
    for c in a.done:
        left, top, right, bottom = a.box(c)
        assert (sprites[top:bottom, left:right] == colour(c)).all(), f"cell {c} is not what was written"
        assert a.scores[c] == float(c)


def load(embedded, store) -> dc.Atlas:
    return dc.atlas(embedded, LAYER, store=store, fill=False, **SETTINGS)


@pytest.fixture(scope="module")
def rendered(embedded, tmp_path_factory) -> tuple[Path, dc.Atlas]:
    store = tmp_path_factory.mktemp("atlas")
    return store, dc.atlas(embedded, LAYER, range(4), store=store, **SETTINGS)


def damaged(rendered, tmp_path, damage) -> dc.Atlas:
    """A copy of the rendered atlas with ``damage(folder)`` applied, loaded again."""
    import shutil

    source, a = rendered
    shutil.copytree(source, tmp_path / "s")
    damage(tmp_path / "s" / a.key)
    return tmp_path / "s"


def swap_in_small(folder: Path) -> None:
    Image.new("RGB", (64, 64), (1, 2, 3)).save(folder / "spritemap.png")


def corrupt_png(folder: Path) -> None:
    data = (folder / "spritemap.png").read_bytes()
    (folder / "spritemap.png").write_bytes(data[:40] + bytes(200) + data[240:])


def manifest_is(value):
    return lambda folder: (folder / "manifest.json").write_text(json.dumps(value))


def edited_done(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["done"] = [0, 1, 2, 3, 99]
    (folder / "manifest.json").write_text(json.dumps(manifest))


DAMAGES = {
    "spritemap deleted": lambda folder: (folder / "spritemap.png").unlink(),
    "64x64 spritemap": swap_in_small,
    "corrupt spritemap": corrupt_png,
    "manifest []": manifest_is([]),
    "manifest {}": manifest_is({}),
    "manifest not JSON": lambda folder: (folder / "manifest.json").write_bytes(b"\x00{"),
    "done out of range": edited_done,
}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_a_damaged_atlas_is_rendered_again_never_trusted(embedded, rendered, tmp_path, damage):
    store = damaged(rendered, tmp_path, DAMAGES[damage])
    with pytest.warns(StaleCacheWarning, match="rendered again"):
        a = load(embedded, store)
    assert a.done == [] and a.spritemap.size == rendered[1].spritemap.size
    a.fill(range(2), progress=False)
    assert a.done == [0, 1]
    cells = [np.asarray(x.spritemap.crop(x.box(1)), dtype=float) for x in (a, rendered[1])]
    assert np.abs(cells[0] - cells[1]).max() <= 2


def test_the_manifest_records_the_spritemap_size_and_hash(rendered):
    import hashlib

    store, a = rendered
    manifest = json.loads((store / a.key / "manifest.json").read_text())
    data = (store / a.key / "spritemap.png").read_bytes()
    assert manifest["spritemap"] == {"sha256": hashlib.sha256(data).hexdigest(), "size": list(a.spritemap.size)}
    assert manifest["pending"] is None


def test_two_writers_in_one_process_keep_each_other_s_cells(embedded, tmp_path):
    first, second = load(embedded, tmp_path), load(embedded, tmp_path)
    first._add([0], [Image.new("RGB", (32, 32), colour(0))], [0.0])
    second._add([1], [Image.new("RGB", (32, 32), colour(1))], [1.0])
    first._add([2], [Image.new("RGB", (32, 32), colour(2))], [2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleCacheWarning)
        merged = load(embedded, tmp_path)
    assert merged.done == [0, 1, 2]
    assert_cells_are_the_written_ones(merged)


def test_two_processes_writing_one_atlas_both_survive(embedded, tmp_path):
    children = [writer(tmp_path / "store", channels, 2, tmp_path / f"w{i}.py")
                for i, channels in enumerate([list(range(0, 16, 2)), list(range(1, 16, 2))])]
    for child in children:
        child.communicate(timeout=120)
        assert child.returncode == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleCacheWarning)
        a = load(embedded, tmp_path / "store")
    assert a.done == list(range(16))
    assert_cells_are_the_written_ones(a)


def test_sigkill_mid_write_leaves_a_consistent_atlas(embedded, tmp_path):
    rng = random.Random(0)
    store = tmp_path / "store"
    for _attempt in range(2):
        child = writer(store, list(range(16)), 1000, tmp_path / "w.py")
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))  # each _add writes the manifest twice and the PNG once: kill anywhere
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL, "the writer ended before it was killed"
        with warnings.catch_warnings():
            warnings.simplefilter("error", StaleCacheWarning)  # a kill never leaves a torn or mismatched atlas
            a = load(embedded, store)
        assert_cells_are_the_written_ones(a)
    assert a.done  # the writers got somewhere
