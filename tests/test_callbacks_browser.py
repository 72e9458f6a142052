"""The training log in a real browser (Debian's chromium, driven by Playwright): after three epochs of
a small CNN learning to find a red square next to a blue distractor, the Grad-CAM section shows one row
per epoch, every picture decodes, and the page fetches nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import diamond_cutter as dc
from diamond_cutter import callbacks as cb
from diamond_cutter.visuallog import VisualLog, VisualLogSink

from helpers import InplaceNet

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

BLUE = torch.tensor([0.1, 0.1, 0.9]).view(3, 1, 1)
RED = torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)


def scenes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey noise with a blue 8-pixel square in the left half of every 32-pixel image and, for class 1
    only, a red one in the right half: the blue square is a distractor the network must learn to ignore."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 + 0.2 * torch.rand(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    for image, label in zip(x, y):
        blue_top, red_top = torch.randint(0, 25, (2,), generator=g).tolist()
        blue_left, red_left = torch.randint(0, 9, (2,), generator=g).tolist()
        image[:, blue_top : blue_top + 8, blue_left : blue_left + 8] = BLUE
        if label == 1:
            image[:, red_top : red_top + 8, 16 + red_left : 24 + red_left] = RED
    return x, y


def train_with_log(path: Path, epochs: int = 3) -> VisualLog:
    """Adam on 96 new scenes per epoch; Grad-CAM of "red too" for four class-1 validation scenes."""
    torch.manual_seed(0)
    net = InplaceNet(classes=2)
    model = dc.Model(net, "scenes", (3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3, labels=["blue only", "red too"])
    sink = VisualLogSink(VisualLog(title="Learning to find the red square next to a blue one"), path)
    val_x, val_y = scenes(16, seed=1)
    val_x = val_x[val_y == 1][:4]
    sink.log.add("validation images", val_x, [f"image {i}" for i in range(len(val_x))])
    common = {"sinks": [sink], "model": model, "target": "red too"}
    watch = [cb.GradCAMCallback(model.normalize(val_x), layer="relu2", **common),
             cb.ChannelAttributionCallback(model.normalize(val_x), "relu2", top=6, **common)]
    x, y = scenes(96 * epochs, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for epoch in range(epochs):
        net.train()
        for idx in torch.arange(96 * epoch, 96 * (epoch + 1)).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(model.normalize(x[idx])), y[idx]).backward()
            opt.step()
        for callback in watch:
            callback.on_epoch_end(epoch)
    return sink.log


def test_training_log_in_a_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    path = tmp_path / "log.html"
    log = train_with_log(path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        section = page.locator("section", has_text="Grad-CAM at relu2")
        assert section.locator("h3").all_text_contents() == ["epoch 1", "epoch 2", "epoch 3"]
        widths = page.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
        assert len(widths) == sum(len(s.images) for s in log.stages) and min(widths) > 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "visuallog-gradcam-3-epochs.png"), full_page=True)
        browser.close()
    assert requests == [path.as_uri()]  # nothing fetched beyond the page itself
