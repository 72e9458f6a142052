"""Whole-model atlases on Ray actors: the same spritemaps and manifests as in-process, also when an actor's
process dies mid-chunk; a driver killed mid-run resumes from the chunks the store holds without rendering
them again; the command line renders every channel of every layer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from diamond_cutter.atlas import Atlas
from diamond_cutter.atlas.cluster import Chunk, Renderer, fill_atlases
from diamond_cutter.executors import Ray
from diamond_cutter.featureviz.optimize import Settings
from diamond_cutter.store import Store

from ray_fixtures import killed_driver, tiny_model

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


def same_atlases(local: list[Atlas], remote: list[Atlas]) -> None:
    for a, b in zip(local, remote):
        assert b.done == a.done == list(range(a.channels))
        assert np.abs(pixels(b) - pixels(a)).max() <= 1  # float rounding of another process at most
        assert b.scores == pytest.approx(a.scores, rel=1e-4, abs=1e-5)
        assert (pixels(b) != 128).any(axis=-1).mean() > 0.5  # real renders, not the grey background


def test_ray_actors_give_the_in_process_spritemaps_and_manifests(local_ray, in_process, tmp_path):
    report = fill_atlases(atlases(tmp_path), batch_size=BATCH, executor=Ray(), progress=False)
    assert (report.rendered, report.reused) == (6, 0)
    same_atlases(in_process, report.atlases)
    again = atlases(tmp_path)  # reloaded from the store: the driver wrote spritemaps and manifests
    assert all(a.done == list(range(a.channels)) for a in again)
    assert fill_atlases(again, batch_size=BATCH, executor=Ray(), progress=False).rendered == 0


class DyingRenderer(Renderer):
    """A renderer whose process dies in the middle of a chunk, once in the whole run (the first to create
    the marker file), after rendering it and before handing it back."""

    def __init__(self, marker: Path, *args):
        super().__init__(*args)
        self.marker = marker

    def render(self, chunk: Chunk):
        rendered = super().render(chunk)
        try:
            self.marker.touch(exist_ok=False)
        except FileExistsError:
            return rendered
        os._exit(1)


class DyingActors(Ray):
    def __init__(self, marker: Path):
        super().__init__()
        self.marker = marker

    def actors(self, ray, cls, *args):
        return super().actors(ray, DyingRenderer, self.marker, *args)


def test_an_actor_killed_mid_chunk_is_restarted_and_the_spritemaps_are_the_same(local_ray, in_process, tmp_path):
    marker = tmp_path / "killed"
    report = fill_atlases(atlases(tmp_path / "store"), batch_size=BATCH, executor=DyingActors(marker), progress=False)
    assert marker.exists()  # an actor's process really died
    assert report.rendered == 6
    same_atlases(in_process, report.atlases)


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
    store = Store(tmp_path)
    chunks = lambda: [k for k in store.list() if "/chunks/" in k]  # noqa: E731
    killed_driver(DRIVER, str(tmp_path), local_ray, str(steps), started=lambda: bool(chunks()))
    finished = len(chunks())
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


def test_atlas_command_renders_every_channel_of_every_layer_on_ray(local_ray, tmp_path, capsys, monkeypatch):
    from diamond_cutter.cli import main
    from diamond_cutter.commands import visualize

    model = tiny_model()
    monkeypatch.setattr(visualize, "load_model_from", lambda args: model)  # every layer of a zoo model takes hours
    args = ["atlas", "tiny", "--layer", "all", "--steps", "2", "--size", "16", "--batch-size", "16",
            "--store", str(tmp_path), "--executor", "ray", "--ray-address", local_ray]
    assert main(args) == 0
    out = capsys.readouterr().out
    spatial = model.layers.spatial()
    assert len(spatial) >= 3 and f"{len(spatial)} layers: " in out
    for layer in spatial:
        assert f"{layer.name}: {layer.channels}/{layer.channels} channels" in out
    assert " 0 finished chunks taken from the store" in out
