"""Whole-model atlases on Ray actors: the same spritemaps and manifests as in-process, and a driver
killed mid-run resumes from the chunks the store holds without rendering them again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from diamond_cutter.atlas import Atlas
from diamond_cutter.atlas.cluster import fill_atlases
from diamond_cutter.executors import Ray
from diamond_cutter.featureviz.optimize import Settings
from diamond_cutter.store import Store

from ray_fixtures import tiny_model

LAYERS = ("conv1", "relu2")  # 8 and 16 channels
BATCH = 4  # so 2 + 4 chunks


def atlases(root: Path, steps: int = 8) -> list[Atlas]:
    model = tiny_model()
    return [Atlas(model, layer, Settings(steps=steps, size=(16, 16)), Store(root)) for layer in LAYERS]


def pixels(a: Atlas) -> np.ndarray:
    return np.asarray(a.spritemap, dtype=np.int16)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> list[Atlas]:
    report = fill_atlases(atlases(tmp_path_factory.mktemp("local")), batch_size=BATCH, progress=False)
    assert (report.rendered, report.reused) == (6, 0)
    return report.atlases


def test_ray_actors_give_the_in_process_spritemaps_and_manifests(local_ray, in_process, tmp_path):
    report = fill_atlases(atlases(tmp_path), batch_size=BATCH, executor=Ray(), progress=False)
    assert (report.rendered, report.reused) == (6, 0)
    for local, remote in zip(in_process, report.atlases):
        assert remote.done == local.done == list(range(local.channels))
        assert np.abs(pixels(remote) - pixels(local)).max() <= 1  # float rounding of another process at most
        assert remote.scores == pytest.approx(local.scores, rel=1e-4, abs=1e-5)
        assert (pixels(remote) != 128).any(axis=-1).mean() > 0.5  # real renders, not the grey background
    again = atlases(tmp_path)  # reloaded from the store: the driver wrote spritemaps and manifests
    assert all(a.done == list(range(a.channels)) for a in again)
    assert fill_atlases(again, batch_size=BATCH, executor=Ray(), progress=False).rendered == 0


DRIVER = """
    import os
    import signal
    import sys
    from diamond_cutter.atlas import Atlas
    from diamond_cutter.atlas.cluster import fill_atlases
    from diamond_cutter.executors import Ray
    from diamond_cutter.featureviz.optimize import Settings
    from diamond_cutter.store import Store
    from ray_fixtures import tiny_model

    def add_then_die(self, *rendered):  # the driver is SIGKILLed right after its first chunk is in
        first_add(self, *rendered)
        os.kill(os.getpid(), signal.SIGKILL)

    first_add, Atlas._add = Atlas._add, add_then_die
    model = tiny_model()
    store = Store(sys.argv[1])
    todo = [Atlas(model, layer, Settings(steps=int(sys.argv[3]), size=(16, 16)), store) for layer in ("conv1", "relu2")]
    fill_atlases(todo, batch_size=4, executor=Ray(sys.argv[2]), progress=False)
"""


def test_a_killed_driver_resumes_without_rendering_finished_chunks_again(local_ray, tmp_path):
    steps = 30
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(DRIVER), str(tmp_path), local_ray, str(steps)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = Store(tmp_path)
    deadline = time.monotonic() + 120
    while not [k for k in store.list() if "/chunks/" in k] and time.monotonic() < deadline:
        assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(3)  # the actors die with their driver; a chunk being written lands or vanishes whole
    finished = len([k for k in store.list() if "/chunks/" in k])
    assert 1 <= finished < 6
    report = fill_atlases(atlases(tmp_path, steps), batch_size=BATCH, executor=Ray(), progress=False)
    assert report.rendered == 6 - finished  # nothing finished is redone
    assert all(a.done == list(range(a.channels)) for a in report.atlases)


def test_atlas_command_on_ray(local_ray, tmp_path, capsys):
    from diamond_cutter.cli import main

    args = ["atlas", "efficientnet_lite0", "--layers", "blocks.0", "--channels", "0-3", "--steps", "2", "--size", "32",
            "--batch-size", "2", "--store", str(tmp_path), "--executor", "ray", "--ray-address", local_ray]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "blocks.0: 4/16 channels" in out and "2 chunks rendered, 0 finished chunks taken from the store" in out
    assert main(args) == 0
    assert "0 chunks rendered" in capsys.readouterr().out
