"""A sweep killed with SIGKILL while it writes its cache resumes to the same answer (the reference scan's
kill test is in test_fault_lens.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import diamond_cutter as dc
from diamond_cutter.transfer import TrainConfig
from diamond_cutter.transfer.data import make_colour_dataset

SWEEP = dict(cuts=3, weights=None, input_size=(3, 32, 32), progress=False)
TRAIN = dict(epochs=5, batch_size=4)

CHILD = textwrap.dedent(
    f"""
    import sys
    import diamond_cutter as dc
    from diamond_cutter.transfer import TrainConfig
    dc.sweep("resnet18", sys.argv[1], store=sys.argv[2], train=TrainConfig(**{TRAIN!r}), **{SWEEP!r})
    """
)


def test_a_sweep_killed_mid_write_resumes_to_the_same_answer(tmp_path):
    data = make_colour_dataset(tmp_path / "data", per_class=8, size=16)
    clean = dc.sweep("resnet18", str(data), store=tmp_path / "clean", train=TrainConfig(**TRAIN), **SWEEP)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    store = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, str(script), str(data), str(store)],
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None and not list(store.glob("features/*/avg/*/*.npy")):
        time.sleep(0.01)
    time.sleep(random.Random(0).uniform(0.0, 0.2))  # somewhere among the feature and estimate writes
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the sweep finished before it was killed"
    resumed = dc.sweep("resnet18", str(data), store=store, train=TrainConfig(**TRAIN), **SWEEP)
    keys = ("cut", "knn", "ridge", "logme", "linear_acc")
    assert [[r[k] for k in keys] for r in resumed.rows] == [[r[k] for k in keys] for r in clean.rows]
    assert resumed.recommendation["cut"] == clean.recommendation["cut"]
