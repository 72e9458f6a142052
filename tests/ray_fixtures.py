"""One local Ray (2 CPUs) shared by every Ray test of a run, the check that it leaves nothing behind, and
the helpers the Ray tests share (a driver killed mid-run, the tiny model, the tiny sweep).

Starting Ray costs seconds, so the tests share one (conftest.py imports the
fixture, so there is one for the whole run); its teardown shuts it down and
fails if a ``raylet`` or ``gcs_server`` of that Ray is still running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from diamond_cutter.executors import Ray


def ray_daemons(session_dir: str) -> list[int]:
    """PIDs of the raylet and GCS server processes started for the Ray session in ``session_dir``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            name = (proc / "comm").read_text().strip()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if name in ("raylet", "gcs_server") and session_dir in cmdline:
            pids.append(int(proc.name))
    return pids


def wait_gone(session_dir: str, seconds: float = 30.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := ray_daemons(session_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def session_dir(ray) -> str:
    return ray._private.worker._global_node.get_session_dir_path()


@pytest.fixture(scope="session")
def local_ray() -> Iterator[str]:
    """A local Ray limited to 2 CPUs for the whole test run; yields its GCS address. Its workers
    import job functions defined in the tests, so they get the tests' folder on their path."""
    here = str(Path(__file__).parent)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
        env.delenv("RAY_ADDRESS", raising=False)
        yield from _started()


def _started() -> Iterator[str]:
    with Ray(workers=2).session() as ray:
        where = session_dir(ray)
        assert ray_daemons(where), "the local Ray's raylet and GCS server should be running"
        yield ray.get_runtime_context().gcs_address
    left = wait_gone(where)
    assert left == [], f"Ray processes were left behind after the tests: {describe(left)}"


def describe(pids: list[int]) -> list[str]:
    return [(Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200] for pid in pids]


def tiny_model():
    """The seeded small CNN of the Ray tests (rebuilt identically in a driver subprocess)."""
    import torch

    import diamond_cutter as dc

    from helpers import InplaceNet

    torch.manual_seed(0)
    return dc.Model(InplaceNet().eval(), "tiny", (3, 16, 16))


def killed_driver(script: str, *args: str, started: Callable[[], bool], seconds: float = 120) -> None:
    """Run ``script`` (a driver on the test Ray, given ``args``) in a subprocess, SIGKILL it once ``started()``
    holds, and give the workers it leased time to die with it (a result being written lands or vanishes whole).
    The driver finds the tests' helpers (this module) on its path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + seconds
    while not started() and time.monotonic() < deadline:
        assert driver.poll() is None, driver.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(3)


def stage(fn: Callable[..., Any]) -> str:
    """The name of the function a job runs (a sweep's stage), also through a ``functools.partial``."""
    return getattr(fn, "func", fn).__name__


SWEPT = ("resnet18", "mobilenet_v3_small")


def tiny_sweep(data: Any, store: Any, **options: Any):
    """The sweep of the Ray tests (run identically by a driver subprocess): 2 random-weight models × 4 cuts
    at 32 px, with conv heads on the 2 best pairs, so all three stages run."""
    import diamond_cutter as dc
    from diamond_cutter.transfer import Selection, TrainConfig

    return dc.sweep(list(SWEPT), data, store=store, weights=None, input_size=(3, 32, 32), progress=False, cuts=4,
                    heads=("linear", "conv"), train=TrainConfig(epochs=8), select=Selection(shortlist=2), **options)
