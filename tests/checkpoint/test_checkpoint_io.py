"""``CheckpointIO`` plugins: Lightning's classes and import paths, and the trainer using one for every
save, load and removal (``Trainer(plugins=[...])`` or a strategy's ``checkpoint_io``)."""

from __future__ import annotations

import inspect
import os

import pytest
import torch
from tests.helpers.checkpoint_models import QUIET, SequenceModel

import ember
from ember.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from ember.checkpoint import load_checkpoint
from ember.distributed import DDPStrategy
from ember.distributed.strategy import SingleDeviceStrategy
from ember.plugins.io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO
from ember.utilities.exceptions import MisconfigurationException


class RecordingCheckpointIO(CheckpointIO):
    """A plugin written against Lightning's interface: plain ``torch.save``/``torch.load``, every call recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        self.calls.append(("save", os.path.basename(path), checkpoint["global_step"]))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save({**checkpoint, "written_by": "recording"}, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        self.calls.append(("load", os.path.basename(path), weights_only))
        return torch.load(path, map_location="cpu", weights_only=True)

    def remove_checkpoint(self, path):
        self.calls.append(("remove", os.path.basename(path)))
        os.remove(path)

    def teardown(self):
        self.calls.append(("teardown",))


def _fit(tmp_path, steps=3, **trainer_kwargs):
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{step}", every_n_train_steps=1, save_last=True)
    trainer = ember.Trainer(
        max_epochs=1, limit_val_batches=0, callbacks=[callback], default_root_dir=tmp_path, **QUIET, **trainer_kwargs
    )
    model = SequenceModel(train_batches=steps)
    trainer.fit(model)
    return trainer, model


def test_lightning_import_paths_and_signatures():
    import ember.plugins as plugins

    assert plugins.CheckpointIO is CheckpointIO and plugins.TorchCheckpointIO is TorchCheckpointIO
    assert plugins.AsyncCheckpointIO is AsyncCheckpointIO
    with pytest.raises(TypeError):
        CheckpointIO()  # abstract
    signatures = {
        "save_checkpoint": ["self", "checkpoint", "path", "storage_options"],
        "load_checkpoint": ["self", "path", "map_location", "weights_only"],
        "remove_checkpoint": ["self", "path"],
        "teardown": ["self"],
    }
    for name, parameters in signatures.items():
        assert list(inspect.signature(getattr(CheckpointIO, name)).parameters) == parameters, name
    assert list(inspect.signature(AsyncCheckpointIO).parameters) == ["checkpoint_io"]
    # the strategy's default, and the default a wrapping plugin gets
    assert isinstance(ember.Trainer(logger=False).strategy.checkpoint_io, TorchCheckpointIO)
    trainer = ember.Trainer(logger=False, plugins=AsyncCheckpointIO())
    assert isinstance(trainer.strategy.checkpoint_io, AsyncCheckpointIO)
    assert isinstance(trainer.strategy.checkpoint_io.checkpoint_io, TorchCheckpointIO)


def test_a_plugin_sees_every_save_removal_and_load(tmp_path):
    io = RecordingCheckpointIO()
    trainer, model = _fit(tmp_path, plugins=[io])
    saves = [call for call in io.calls if call[0] == "save"]
    assert saves == [
        ("save", "step=1.ckpt", 1),
        ("save", "last.ckpt", 1),
        ("save", "step=2.ckpt", 2),
        ("save", "last.ckpt", 2),
        ("save", "step=3.ckpt", 3),
        ("save", "last.ckpt", 3),
    ]
    # ModelCheckpoint(save_top_k=1) evicts through the plugin, after the replacement is written
    removes = [call for call in io.calls if call[0] == "remove"]
    assert removes == [("remove", "step=1.ckpt"), ("remove", "step=2.ckpt")]
    assert io.calls.index(("remove", "step=1.ckpt")) > io.calls.index(("save", "last.ckpt", 2))
    assert ("teardown",) in io.calls
    assert sorted(os.listdir(tmp_path / "ckpts")) == ["last.ckpt", "step=3.ckpt"]
    assert load_checkpoint(tmp_path / "ckpts" / "last.ckpt")["written_by"] == "recording"

    io.calls.clear()
    trainer.validate(model, dataloaders=model.val_dataloader(), ckpt_path="last", verbose=False)
    assert io.calls[0] == ("load", "last.ckpt", None)
    trainer.save_checkpoint(tmp_path / "manual.ckpt", weights_only=True)
    assert ("save", "manual.ckpt", 3) in io.calls


def test_a_lightning_style_subclass_of_torch_checkpoint_io_works_unchanged(tmp_path):
    class ExtraKeyIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            checkpoint["extra"] = "added by the plugin"
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)

        def load_checkpoint(self, path, map_location=None, weights_only=None):
            checkpoint = super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
            checkpoint["loaded_by"] = "subclass"
            return checkpoint

    io = ExtraKeyIO()
    trainer, model = _fit(tmp_path, steps=2, plugins=[io])
    assert load_checkpoint(tmp_path / "ckpts" / "last.ckpt")["extra"] == "added by the plugin"
    seen = {}

    class Spy(ember.Callback):
        def on_load_checkpoint(self, trainer, pl_module, checkpoint):
            seen.update(checkpoint)

    trainer = ember.Trainer(
        max_epochs=1, limit_val_batches=0, plugins=[io], callbacks=[Spy()], default_root_dir=tmp_path, **QUIET
    )
    trainer.fit(SequenceModel(train_batches=3), ckpt_path=tmp_path / "ckpts" / "last.ckpt")
    assert seen["loaded_by"] == "subclass" and trainer.global_step == 3


def test_a_strategys_checkpoint_io_is_used(tmp_path):
    io = RecordingCheckpointIO()
    _fit(tmp_path, steps=1, strategy=SingleDeviceStrategy("cpu", checkpoint_io=io))
    assert ("save", "last.ckpt", 1) in io.calls

    # DDPStrategy(checkpoint_io=...): rank 0 saves and removes through it (no process group needed)
    ddp_io = RecordingCheckpointIO()
    strategy = DDPStrategy(checkpoint_io=ddp_io)
    assert strategy.checkpoint_io is ddp_io
    strategy.save_checkpoint({"global_step": 7}, str(tmp_path / "ddp" / "a.ckpt"))
    strategy.remove_checkpoint(str(tmp_path / "ddp" / "a.ckpt"))
    assert ddp_io.calls == [("save", "a.ckpt", 7), ("remove", "a.ckpt")]
    trainer = ember.Trainer(accelerator="cpu", devices=2, strategy=DDPStrategy(checkpoint_io=ddp_io), logger=False)
    assert trainer.strategy.checkpoint_io is ddp_io


class _CrashAtStep1(SequenceModel):
    def training_step(self, batch, batch_idx):
        if self.global_step == 1:
            raise RuntimeError("simulated failure")
        return super().training_step(batch, batch_idx)


@pytest.mark.filterwarnings("ignore:.*there is no last checkpoint available")
def test_on_exception_checkpoint_saves_and_removes_through_the_plugin(tmp_path):
    io = RecordingCheckpointIO()
    crash_dir = tmp_path / "crash"

    def trainer():
        callbacks = [OnExceptionCheckpoint(crash_dir)]
        return ember.Trainer(
            max_epochs=1, limit_val_batches=0, plugins=[io], callbacks=callbacks, default_root_dir=tmp_path, **QUIET
        )

    with pytest.raises(RuntimeError, match="simulated failure"):
        trainer().fit(_CrashAtStep1(train_batches=3))
    assert ("save", "on_exception.ckpt", 1) in io.calls
    trainer().fit(SequenceModel(train_batches=1))  # a fit that ends normally makes the crash file stale
    assert ("remove", "on_exception.ckpt") in io.calls and not (crash_dir / "on_exception.ckpt").exists()


def test_conflicting_checkpoint_io_plugins_are_refused():
    with pytest.raises(MisconfigurationException, match="multiple values for CheckpointIO"):
        ember.Trainer(logger=False, plugins=[TorchCheckpointIO(), TorchCheckpointIO()])
    with pytest.raises(MisconfigurationException, match="checkpoint_io set through both strategy class and plugins"):
        ember.Trainer(
            logger=False,
            strategy=SingleDeviceStrategy("cpu", checkpoint_io=TorchCheckpointIO()),
            plugins=[TorchCheckpointIO()],
        )


class ForeignCheckpointIO:
    """A plugin written against Lightning Fabric's ``CheckpointIO`` (not Ember's base class): the four methods."""

    def __init__(self) -> None:
        self.saved: list[str] = []

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        self.saved.append(os.path.basename(path))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return torch.load(path, map_location="cpu", weights_only=True)

    def remove_checkpoint(self, path):
        os.remove(path)

    def teardown(self):
        pass


def test_a_plugin_written_against_fabrics_base_class_is_used_as_in_lightning(tmp_path):
    # Lightning's trainer takes a subclass of Fabric's CheckpointIO; it used to be dropped without a word
    io = ForeignCheckpointIO()
    assert isinstance(io, CheckpointIO) and issubclass(ForeignCheckpointIO, CheckpointIO)
    assert not issubclass(ForeignCheckpointIO, TorchCheckpointIO)
    trainer, _ = _fit(tmp_path, plugins=[io])
    assert trainer.strategy.checkpoint_io is io
    assert io.saved == ["step=1.ckpt", "last.ckpt", "step=2.ckpt", "last.ckpt", "step=3.ckpt", "last.ckpt"]


def test_fabrics_own_torch_checkpoint_io_becomes_embers_crash_safe_one():
    # a config Lightning printed names Fabric's default plugin; its subclasses stay as written
    fabrics = type("TorchCheckpointIO", (ForeignCheckpointIO,), {"__module__": "lightning_fabric.plugins.io.torch_io"})
    for make in (
        lambda io: ember.Trainer(logger=False, plugins=[io]).strategy,
        lambda io: SingleDeviceStrategy("cpu", checkpoint_io=io),
        lambda io: DDPStrategy(checkpoint_io=io),
    ):
        assert type(make(fabrics()).checkpoint_io) is TorchCheckpointIO
    assert type(AsyncCheckpointIO(fabrics()).checkpoint_io) is TorchCheckpointIO
    subclass = type("Mine", (fabrics,), {"__module__": "my_project.io"})
    assert type(ember.Trainer(logger=False, plugins=[subclass()]).strategy.checkpoint_io) is subclass


@pytest.mark.parametrize(
    ("plugin", "hint"),
    [(object(), ""), ("bf16-mixed", " Pass a precision as `Trainer(precision='bf16-mixed')`."), (None, "")],
)
def test_a_plugin_of_no_known_kind_is_refused_with_lightnings_message(plugin, hint):
    message = (
        f"Found invalid type for plugin {plugin}. Expected one of: Precision, CheckpointIO, ClusterEnvironment,"
        f" or LayerSync.{hint}"
    )
    with pytest.raises(MisconfigurationException) as raised:
        ember.Trainer(logger=False, plugins=[plugin])
    assert str(raised.value) == message
    with pytest.raises(MisconfigurationException, match="Found invalid type for plugin"):
        ember.Trainer(logger=False, plugins=[TorchCheckpointIO(), plugin])
    assert ember.Trainer(logger=False, plugins=None).plugins is None
