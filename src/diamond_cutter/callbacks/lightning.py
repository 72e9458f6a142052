"""The callbacks inside PyTorch Lightning: one Lightning ``Callback`` that runs them after each training epoch.

After the training epoch, not in a validation hook: the epoch's validation has
run by then, the hook fires once per epoch whether or not there is validation
data, and Lightning's sanity check never reaches it. Lightning is imported only
when this is called, so it stays an optional dependency.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import DiamondCutterError
from .base import ExplanationCallback, all_sinks


def lightning_callback(callbacks: Sequence[ExplanationCallback]) -> Any:
    """A Lightning ``Callback`` running ``callbacks`` on rank 0 after each training epoch.

    Sinks that can use the trainer's own logger (a :class:`~diamond_cutter.visuallog.TensorBoardSink`
    without a writer of its own writes to Lightning's TensorBoard logger) are bound to it first.
    """
    watched = list(callbacks)

    class DiamondCutterCallbacks(lightning_base()):  # type: ignore[misc]
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.is_global_zero:
                return
            for sink in all_sinks(watched):
                if hasattr(sink, "bind_lightning"):
                    sink.bind_lightning(trainer)
            for callback in watched:
                callback.on_epoch_end(trainer.current_epoch)

    return DiamondCutterCallbacks()


def lightning_base() -> type:
    """Lightning's ``Callback`` class (``lightning`` or the older ``pytorch_lightning`` package)."""
    try:
        from lightning.pytorch import Callback
    except ImportError:
        try:
            from pytorch_lightning import Callback
        except ImportError:
            raise DiamondCutterError("PyTorch Lightning is not installed: pip install lightning") from None
    return Callback
