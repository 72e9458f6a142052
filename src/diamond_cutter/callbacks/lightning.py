"""The callbacks inside PyTorch Lightning: one Lightning ``Callback`` that runs them after each training epoch.

After the training epoch, not in a validation hook: the epoch's validation has
run by then, the hook fires once per epoch whether or not there is validation
data, and Lightning's sanity check never reaches it. Lightning is imported only
when this is called, so it stays an optional dependency.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from ..errors import DiamondCutterError
from .base import ExplanationCallback, all_sinks


def lightning_callback(callbacks: Sequence[ExplanationCallback]) -> Any:
    """A Lightning ``Callback`` running ``callbacks`` on rank 0 after each training epoch.

    Sinks that can use the trainer's own logger (a :class:`~diamond_cutter.visuallog.TensorBoardSink`
    without a writer of its own writes to Lightning's TensorBoard logger) are bound to it first.
    """
    return callback_class()(callbacks)


@lru_cache(maxsize=1)
def callback_class() -> type:
    """The Lightning ``Callback`` subclass, built on first use (Lightning is optional)."""

    class LightningCallbacks(lightning_base()):  # type: ignore[misc]
        def __init__(self, callbacks: Sequence[ExplanationCallback]):
            super().__init__()
            self.callbacks = list(callbacks)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.is_global_zero:
                return
            for sink in all_sinks(self.callbacks):
                if hasattr(sink, "bind_lightning"):
                    sink.bind_lightning(trainer)
            for callback in self.callbacks:
                callback.on_epoch_end(trainer.current_epoch)

    LightningCallbacks.__qualname__ = LightningCallbacks.__name__
    return LightningCallbacks


def __getattr__(name: str) -> Any:
    """Lets pickle find the class built on first use: spawn-based strategies pickle the callbacks."""
    if name == "LightningCallbacks":
        return callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def lightning_base() -> type:
    """Lightning's ``Callback`` class (``lightning`` or the older ``pytorch_lightning`` package)."""
    # Lightning is optional (and slow to import): only a Lightning user asks for it.
    try:
        from lightning.pytorch import Callback
    except ImportError:
        try:
            from pytorch_lightning import Callback  # type: ignore[assignment]
        except ImportError:
            raise DiamondCutterError("PyTorch Lightning is not installed: pip install lightning") from None
    return Callback
