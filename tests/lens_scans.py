"""What the reference-scan tests share: a folder of coloured squares, counting the shards a scan
computes or finds stored, and comparing two scans (import as ``from lens_scans import ...``)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from diamond_cutter.lens import references as refs
from diamond_cutter.store import Store
from lens_nets import BLUE, RED, square

_COMPUTE_SHARD = refs.compute_shard


def write_images(folder: Path, images: list[torch.Tensor]) -> list[str]:
    """``images`` (3×H×W in [0, 1]) saved as ``img00.png``, ``img01.png``, ... in ``folder``."""
    folder.mkdir(exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / f"img{i:02d}.png"
        Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
        paths.append(str(path))
    return paths


def square_folder(folder: Path) -> Path:
    """Eight images in ``folder``: four red squares (dim) and four blue ones (bright) at varying places."""
    g = torch.Generator().manual_seed(0)
    images = []
    for i in range(8):
        top, left = (int(v) for v in torch.randint(0, 24, (2,), generator=g))
        images.append(square(RED if i % 2 == 0 else BLUE, top, left, strength=0.6 if i % 2 == 0 else 1.0))
    write_images(folder, images)
    return folder


def count_shards(monkeypatch) -> list[int]:
    """From now on every shard a scan computes appends its first image's index to the returned list."""
    calls: list[int] = []
    monkeypatch.setattr(refs, "compute_shard", lambda *a: calls.append(a[3]) or _COMPUTE_SHARD(*a))
    return calls


def stored_shards(store: Path) -> list[str]:
    """The keys of the shards in ``store`` (without their seals)."""
    return [k for k in Store(store).list("lens/references") if k.endswith(".pt")]


def assert_same(a: refs.References, b: refs.References) -> None:
    """The same images, references and peak cells, and the same scores and class sums up to rounding."""
    assert a.ids == b.ids
    for layer in a.layers:
        for ranking in refs.RANKINGS:
            x, y = a.tops[layer][ranking], b.tops[layer][ranking]
            assert torch.equal(x.images, y.images) and torch.equal(x.cells, y.cells)
            assert torch.allclose(x.values, y.values, atol=1e-6)
        assert torch.allclose(a.class_relevance[layer], b.class_relevance[layer], atol=1e-5)
