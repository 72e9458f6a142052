"""Peak memory of the report: the resident set of a fresh process that writes the default report
(2 sample images, the embedded model, blocks.4), against the 1.5 GB target, and of the same process
stopped right after the imports, so the share of the analysis itself is visible.

Prints ``peak report memory: 1.31 GiB`` (a line scripts can read). ``--quick`` makes the icons tiny
(a smoke run of the script; the analysis is the default one).

    python benchmarks/memory.py [--quick] [--memory 512M]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

RUN = r"""
import json, resource, sys
import diamond_cutter as dc
from diamond_cutter.report.icons import ICON_RENDER, IconSettings
model = dc.load_model("efficientnet_lite0")
images = dc.load_images(["chelsea", "coffee"], model)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
quick = IconSettings("featureviz", ICON_RENDER.replace(size=32, steps=2), limit=4)
icons = quick if sys.argv[1] == "quick" else IconSettings()
dc.report(model, images, "blocks.4", icons=icons, progress=False).save(sys.argv[2])
print(json.dumps({"base": base, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny icons (smoke run)")
    parser.add_argument("--memory", help="DIAMOND_CUTTER_MEMORY for the run (default: unset)")
    parser.add_argument("--out", default="memory-report.html", help="where the report is written")
    args = parser.parse_args()
    env = {**os.environ}
    env.pop("DIAMOND_CUTTER_MEMORY", None)
    if args.memory:
        env["DIAMOND_CUTTER_MEMORY"] = args.memory
    mode = "quick" if args.quick else "full"
    done = subprocess.run(
        [sys.executable, "-c", RUN, mode, args.out], capture_output=True, text=True, env=env, check=True
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"after imports and loading: {measured['base'] / 2**30:.2f} GiB")
    print(f"peak report memory: {measured['peak'] / 2**30:.2f} GiB (target 1.5 GB)")


if __name__ == "__main__":
    main()
