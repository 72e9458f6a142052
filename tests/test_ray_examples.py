"""Dataset examples on Ray: shards scanned by workers and merged give the in-process top k, ties included."""

from __future__ import annotations

import shutil

import pytest

import diamond_cutter as dc
from diamond_cutter.blocks import shared_position_examples
from diamond_cutter.errors import ImageError
from diamond_cutter.images import SAMPLES, sample_path

from ray_fixtures import tiny_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    for name in SAMPLES:
        shutil.copy(sample_path(name), root / f"{name}{sample_path(name).suffix}")
    shutil.copy(sample_path("chelsea"), root / f"zz-chelsea-again{sample_path('chelsea').suffix}")  # a tie
    return root


def summary(result) -> list[tuple]:
    return [(e.image_id, e.cell, e.image.tobytes(), e.patch.tobytes()) for e in result.examples]


def same(local, sharded) -> None:
    """Same images, cells, pictures and patches in the same order; scores equal up to the float
    rounding of another thread count (shards are whole batches, so batches are the stream's)."""
    assert summary(sharded) == summary(local)
    assert [e.score for e in sharded.examples] == pytest.approx([e.score for e in local.examples], rel=1e-5)


@pytest.mark.parametrize("channel", [0, 5])
def test_channel_examples_on_ray_equal_the_in_process_scan(local_ray, folder, channel):
    model = tiny_model()
    local = dc.dataset_examples(model, folder, "relu1", channel, k=4, batch_size=2)
    sharded = dc.dataset_examples(model, str(folder / "*"), "relu1", channel, k=4, batch_size=2, executor="ray",
                                  shard_size=3)  # 4 images
    assert len(local.examples) == 4 and local.grid == sharded.grid == (16, 16)
    same(local, sharded)


def test_shared_position_examples_on_ray(local_ray, folder):
    model = tiny_model()
    local = shared_position_examples(model, "chelsea", (4, 4), folder, "relu2", k=3)
    sharded = shared_position_examples(model, "chelsea", (4, 4), folder, "relu2", k=3, executor="ray", shard_size=2)
    same(local, sharded)
    ids = [e.image_id for e in sharded.examples]
    assert "chelsea" in ids[0] and "chelsea" in ids[1]  # the query image and its copy


def test_images_in_memory_cannot_be_sharded(local_ray):
    model = tiny_model()
    with pytest.raises(ImageError, match="not images in memory"):
        dc.dataset_examples(model, dc.load_images(["chelsea"], model), "relu1", 0, executor="ray")
