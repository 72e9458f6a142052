"""The whole callback set on the tiny CNN, and readers for what the sinks wrote (shared by the
plain-loop and the Lightning tests)."""

from __future__ import annotations

from pathlib import Path

from diamond_cutter import callbacks as cb
from diamond_cutter.store import Store

#: Each callback's stable tag, in the order :func:`callback_set` creates them.
TAGS = ["gradcam/relu2", "activations/relu2", "occlusion", "smoothgrad", "integrated_gradients", "saliency",
        "channels/relu2", "featureviz/conv2"]


def callback_set(images, sinks, model=None) -> list[cb.ExplanationCallback]:
    """Every callback with settings small enough for a 16-pixel image and a test's time budget."""
    common = {"sinks": sinks, "model": model}
    return [
        cb.GradCAMCallback(images, layer="relu2", **common),
        cb.ActivationsCallback(images, "relu2", tiles=2, **common),
        cb.OcclusionSensitivityCallback(images, window=8, stride=4, **common),
        cb.SmoothGradCallback(images, samples=4, **common),
        cb.IntegratedGradientsCallback(images, steps=8, **common),
        cb.VanillaGradientsCallback(images, **common),
        cb.ChannelAttributionCallback(images, "relu2", target=1, **common),
        cb.FeatureVisualizationCallback("conv2", channels=[0, 1], steps=4, size=16, **common),
    ]


def tensorboard_images(log_dir: Path) -> dict[str, list[int]]:
    """Tag -> the steps of its images, read back from the event files with tensorboard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: dict[str, list[int]] = {}
    for events in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        for tag in acc.Tags()["images"]:
            steps.setdefault(tag, []).extend(e.step for e in acc.Images(tag))
    return steps


def stored_panels(root: Path) -> dict[str, list[int]]:
    """Tag -> the epochs in a StoreSink's index, after checking every listed PNG exists."""
    store = Store(root)
    epochs: dict[str, list[int]] = {}
    for panel in store.read_json("index.json")["panels"]:
        assert panel["images"] and all(store.exists(i["file"]) for i in panel["images"])
        epochs.setdefault(panel["tag"], []).append(panel["epoch"])
    return epochs
