"""Memory stays bounded with many large photos: predict streams them, originals are kept display-sized.

Peak RSS is measured in a fresh subprocess (``ru_maxrss``), so nothing the test
session did before counts. 64 phone photos of 12 megapixels cost 3.45 GB when
every original was kept at full size; 200 would have cost about 10.8 GB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from test_fault_inputs import photo

PHOTOS = 200
#: Above the child's baseline (torch and the model loaded): one batch of display-sized originals and the decoder's
#: buffers.
PREDICT_MB = 350
#: All 200 display-sized originals (2.4 MB each, 472 MB together) plus the report's own work (measured: +509 MB).
REPORT_MB = 700

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import diamond_cutter as dc
    from diamond_cutter.report.icons import ICON_RENDER, IconSettings

    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model = dc.load_model("efficientnet_lite0", input_size=(3, 64, 64))
    dc.predict(model, "chelsea")  # warm up: allocator pools and lazy initialisation count towards the baseline
    out = {"base": peak()}
    out["predicted"] = len(dc.predict(model, sys.argv[1]).image_ids)
    out["predict"] = peak()
    images = dc.load_images(sys.argv[1], model)
    icons = IconSettings("patches", ICON_RENDER.replace(size=16))
    dc.report(model, images, "blocks.5", "auto", top_k=2, cell_k=1, groups=0, icons=icons, saliency=(), tiles=1,
              progress=False)
    out["report"] = peak()
    out["original"] = list(images.originals[0].size)
    print(json.dumps(out))
    """
)


def test_many_large_photos_through_predict_and_report_stay_bounded(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "p000.jpg").write_bytes(photo(4032, 3024))  # 12 MP, as a phone takes them
    for i in range(1, PHOTOS):
        (folder / f"p{i:03d}.jpg").symlink_to(folder / "p000.jpg")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    run = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["predicted"] == PHOTOS and out["original"] == [1024, 768]
    assert out["predict"] - out["base"] < PREDICT_MB, out
    assert out["report"] - out["base"] < REPORT_MB, out
