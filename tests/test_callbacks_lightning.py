"""The callbacks inside a real ``lightning.Trainer`` fit, written to Lightning's own TensorBoard logger
(read back with tensorboard's event reader) and a store folder; a fit without them ends identical."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import diamond_cutter as dc
from diamond_cutter import callbacks as cb
from diamond_cutter.visuallog import StoreSink, TensorBoardSink

from callback_fixtures import TAGS, callback_set, stored_panels, tensorboard_images
from helpers import InplaceNet, snapshot

L = pytest.importorskip("lightning")
pytest.importorskip("tensorboard")

EPOCHS = 2
ACCELERATORS = ["cpu", pytest.param("gpu", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


class LitTiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = InplaceNet()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _index):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, _index):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)


class Spy(L.Callback):
    """Records, at the end of each training epoch, what the callbacks must leave as they found it."""

    def __init__(self):
        self.seen = []

    def on_train_epoch_end(self, trainer, pl_module):
        params = [p.detach().clone() for p in pl_module.parameters()]
        self.seen.append((pl_module.training, trainer.state.fn, trainer.state.stage, trainer.global_step, params))


def tiny(lit: LitTiny) -> dc.Model:
    """The network inside the LightningModule, with its preprocessing (parameters shared, not copied)."""
    return dc.Model(lit.net, "tiny", (3, 16, 16), mean=(0.5,) * 3, std=(0.5,) * 3)


def loader(seed: int, shuffle: bool) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.rand(24, 3, 16, 16, generator=g), torch.randint(0, 5, (24,), generator=g))
    return DataLoader(data, batch_size=8, shuffle=shuffle)  # the shuffle draws from the global generator


def fit(tmp_path, accelerator="cpu", inference_mode=True, watch=None, logger=False):
    """A seeded 2-epoch fit with sanity checking; ``watch(lit)`` gives the callbacks to run."""
    L.seed_everything(0, verbose=False)
    lit = LitTiny()
    before, after = Spy(), Spy()
    extra = [before, cb.lightning_callback(watch(lit)), after] if watch else []
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator=accelerator, devices=1, inference_mode=inference_mode,
                        num_sanity_val_steps=1, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=1, default_root_dir=tmp_path, callbacks=extra,
                        deterministic=accelerator == "gpu")  # cuDNN's weight gradients vary from run to run otherwise
    flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        trainer.fit(lit, loader(1, True), loader(2, False))
    finally:  # Lightning sets these for the whole process
        torch.use_deterministic_algorithms(flags[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[1:]
    return lit.cpu(), (before.seen, after.seen)


@pytest.mark.parametrize("accelerator", ACCELERATORS)
@pytest.mark.parametrize("inference_mode", [True, False])
def test_every_callback_in_a_lightning_fit(tmp_path, accelerator, inference_mode):
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    board = TensorBoardSink()  # no folder: it writes through the trainer's TensorBoard logger
    logger = L.pytorch.loggers.TensorBoardLogger(tmp_path / "tb", name="run")
    watched, (before, after) = fit(tmp_path, accelerator, inference_mode,
                                   lambda lit: callback_set(images, [board, StoreSink(tmp_path / "store")], tiny(lit)),
                                   logger)
    assert stored_panels(tmp_path / "store") == {tag: [1, 2] for tag in TAGS}
    assert tensorboard_images(tmp_path / "tb") == {tag: [1, 2] for tag in TAGS}
    for (mode, fn, stage, step, params), (mode2, fn2, stage2, step2, params2) in zip(before, after, strict=True):
        assert (mode, fn, stage, step) == (mode2, fn2, stage2, step2)  # module mode and trainer state untouched
        assert all(torch.equal(a, b) for a, b in zip(params, params2))
    plain, _ = fit(tmp_path / "plain", accelerator, inference_mode)
    for key, value in plain.state_dict().items():
        assert torch.equal(value, watched.state_dict()[key]), key  # the callbacks changed nothing
    hooks = snapshot(watched)["hooks"]
    assert hooks == snapshot(plain)["hooks"] and not any(any(counts) for counts in hooks.values())


def test_monitor_in_lightning(tmp_path):
    monitors = []

    def watch(lit):
        monitors.append(dc.visuallog.TrainingMonitor(tiny(lit), torch.rand(1, 3, 16, 16), "relu2", tiles=2))
        return monitors[0].callbacks

    fit(tmp_path, watch=watch)
    headings = [(heading, [s.step for s in stages]) for heading, stages in monitors[0].log.sections()]
    assert headings == [("validation images", [None]), ("Grad-CAM at relu2", [1, 2]), ("Activations at relu2", [1, 2])]


class RankSink:
    """Writes one marker file per panel, named by the process's rank."""

    def __init__(self, folder):
        self.folder = folder

    def write(self, panel):
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else -1
        (self.folder / f"rank{rank}-{panel.tag.replace('/', '-')}-{panel.step}").touch()


def test_distributed_training_logs_from_rank_zero_only(tmp_path):
    images = torch.rand(1, 3, 16, 16)
    L.seed_everything(0, verbose=False)
    lit = LitTiny()
    callback = cb.lightning_callback([cb.VanillaGradientsCallback(images, sinks=[RankSink(tmp_path)], model=tiny(lit))])
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=2, strategy="ddp_fork", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[callback])
    trainer.fit(lit, loader(1, True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0-saliency-1", "rank0-saliency-2"]


def test_the_lightning_callback_pickles_for_spawned_processes(tmp_path):
    """ddp_spawn pickles the trainer's callbacks into every process."""
    import pickle

    callback = cb.lightning_callback([cb.GradCAMCallback(torch.rand(1, 3, 16, 16), layer="relu2", model=tiny(LitTiny()),
                                                         sinks=[StoreSink(tmp_path), TensorBoardSink()])])
    copy = pickle.loads(pickle.dumps(callback))
    assert isinstance(copy, L.Callback) and type(copy) is type(callback)
    assert [c.layer for c in copy.callbacks] == ["relu2"]
