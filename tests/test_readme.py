"""The README's tour runs as written: its Python blocks, in order, in one fresh interpreter, offline, on the
shipped samples and the data sets the package builds, with small settings (DIAMOND_CUTTER_SMALL=1) so
every optimization and training loop is a token one. Lines marked as needing a download or a cluster are
skipped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from diamond_cutter.small import SMALL_ENV

README = Path(__file__).resolve().parents[1] / "README.md"
#: Lines carrying one of these marks are allowed to need the network or a Ray cluster, and are not run.
MARKS = ("needs a download", "needs a cluster")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def runnable(block: str) -> str:
    return "\n".join(line for line in block.splitlines() if not any(mark in line for mark in MARKS))


def test_readme_has_a_tour():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 5 and blocks[0].startswith("import diamond_cutter as dc")


def test_readme_python_blocks_run_in_order(tmp_path):
    script = "\n\n".join(runnable(b) for b in python_blocks(README.read_text(encoding="utf-8")))
    (tmp_path / "tour.py").write_text(script, encoding="utf-8")
    env = {**os.environ, SMALL_ENV: "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "tour.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "report.html").exists() and (tmp_path / "runs" / "best" / "manifest.json").exists()
