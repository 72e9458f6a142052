"""Explanations while a network trains (after tf-explain's callbacks): every few epochs, the same
fixed images explained with the project's own tools, written to the sinks the user picks.

```python
from diamond_cutter.callbacks import GradCAMCallback, lightning_callback
from diamond_cutter.visuallog import TensorBoardSink, VisualLogSink

sinks = [VisualLogSink(path="runs/log.html"), TensorBoardSink("runs/tb")]
gradcam = GradCAMCallback(images, layer="layer3", sinks=sinks, model=model)
for epoch in range(epochs):
    train_one_epoch(...)
    gradcam.on_epoch_end(epoch)          # or Trainer(callbacks=[lightning_callback([gradcam])])
```
"""

from .base import ExplanationCallback, Panel, Sink, explaining, is_rank_zero
from .lightning import lightning_callback
from .methods import (
    ActivationsCallback,
    AttributionCallback,
    ChannelAttributionCallback,
    FeatureVisualizationCallback,
    GradCAMCallback,
    IntegratedGradientsCallback,
    OcclusionSensitivityCallback,
    SmoothGradCallback,
    VanillaGradientsCallback,
)

__all__ = [
    "ActivationsCallback",
    "AttributionCallback",
    "ChannelAttributionCallback",
    "ExplanationCallback",
    "FeatureVisualizationCallback",
    "GradCAMCallback",
    "IntegratedGradientsCallback",
    "OcclusionSensitivityCallback",
    "Panel",
    "Sink",
    "SmoothGradCallback",
    "VanillaGradientsCallback",
    "explaining",
    "is_rank_zero",
    "lightning_callback",
]
