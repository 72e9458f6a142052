"""Bounded memory: batches come from a budget, and the report's peak stays under it.

The peak is the resident set of a fresh interpreter (``VmHWM`` of a child process), so
nothing the test process loaded before counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import diamond_cutter as dc
from diamond_cutter.attribution import IntegratedGradients, Occlusion
from diamond_cutter.devices import MEMORY_ENV

from helpers import InplaceNet

#: The report of 2 images on the embedded model must peak below this (resident set, whole process).
REPORT_PEAK_LIMIT = 1.5 * 2**30

PEAK = r"""
import json, sys
import diamond_cutter as dc
from diamond_cutter.report.icons import ICON_RENDER, IconSettings
model = dc.load_model("efficientnet_lite0")
images = dc.load_images(["chelsea", "coffee"], model)
icons = IconSettings("featureviz", ICON_RENDER.replace(size=32, steps=2), limit=4)
dc.report(model, images, "blocks.4", icons=icons, groups=2, progress=False)  # the default saliency methods, IG included
# VmHWM is this program's own peak: ru_maxrss would also count the forked copy of the test process
# that existed before exec (Linux keeps the larger of the two), which grows as the suite runs.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak": int(hwm.split()[1]) * 1024}))
"""


def test_batches_follow_the_memory_budget(embedded, monkeypatch):
    monkeypatch.setenv(MEMORY_ENV, "200M")
    small = embedded.fitting_batch()
    monkeypatch.setenv(MEMORY_ENV, "2G")
    large = embedded.fitting_batch()
    assert 1 <= small < large
    assert embedded.fitting_batch(backward=False) > large  # a forward alone keeps few activations
    assert IntegratedGradients(embedded).batch_size == large
    assert Occlusion(embedded).batch_size == embedded.fitting_batch(backward=False)
    assert IntegratedGradients(embedded, batch_size=3).batch_size == 3


def test_a_tiny_budget_still_makes_progress():
    torch.manual_seed(0)
    model = dc.load_model(InplaceNet(), input_size=(3, 32, 32))
    assert model.fitting_batch(memory=1) == 1
    result = dc.attribute(model, torch.rand(2, 3, 32, 32), "integrated_gradients", target=1, steps=4, batch_size=1)
    assert result.maps.shape == (2, 3, 32, 32)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc, which Linux has")
def test_report_peak_memory_stays_under_budget(tmp_path):
    # A clean environment and cache: what a user's fresh process gets, whatever the suite ran before.
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(OMP_NUM_THREADS="1", DIAMOND_CUTTER_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, "-c", PEAK], capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    peak = json.loads(done.stdout.strip().splitlines()[-1])["peak"]
    assert peak < REPORT_PEAK_LIMIT, f"the report peaked at {peak / 2**30:.2f} GiB"
