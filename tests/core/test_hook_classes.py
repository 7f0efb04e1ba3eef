"""Lightning's three hook classes (``core.hooks``): what a module and a datamodule inherit their default hooks from."""

import torch
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.core.hooks import CheckpointHooks, DataHooks, ModelHooks
from ember.demos import BoringModel


def test_the_module_and_the_datamodule_inherit_lightnings_hook_classes_in_its_order():
    names = [cls.__name__ for cls in ember.LightningModule.__mro__]
    assert names.index("ModelHooks") < names.index("DataHooks") < names.index("CheckpointHooks") < names.index("Module")
    assert isinstance(BoringModel(), (ModelHooks, DataHooks, CheckpointHooks))
    datamodule = ember.LightningDataModule()
    assert isinstance(datamodule, DataHooks) and not isinstance(datamodule, (ModelHooks, CheckpointHooks))
    # the attributes `DataHooks.__init__` gives both, as in Lightning
    for obj in (BoringModel(), datamodule):
        assert obj.prepare_data_per_node is True
        assert obj.allow_zero_length_dataloader_with_multiple_devices is False
    # the defaults are the classes' own functions, so an override is told from them
    assert ember.LightningModule.on_fit_start is ModelHooks.on_fit_start
    assert ember.LightningDataModule.transfer_batch_to_device is DataHooks.transfer_batch_to_device
    assert ember.LightningModule.on_save_checkpoint is CheckpointHooks.on_save_checkpoint
    # Lightning's module has no `on_sanity_check_start` hook (a callback hook only)
    assert not hasattr(ember.LightningModule, "on_sanity_check_start")


def test_a_data_mixin_built_on_datahooks_serves_a_module_and_a_datamodule(tmp_path):
    # one mixin holds the loaders; a module and a datamodule take them from it
    class Loaders(DataHooks):
        def train_dataloader(self):
            return DataLoader(TensorDataset(torch.randn(8, 32)), batch_size=4)

    class Model(Loaders, BoringModel):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch[0], batch_idx)

    class Data(Loaders, ember.LightningDataModule):
        pass

    for model, datamodule in ((Model(), None), (Model(), Data())):
        trainer = ember.Trainer(
            max_epochs=1, default_root_dir=tmp_path, logger=False, enable_checkpointing=False, enable_progress_bar=False
        )
        trainer.fit(model, datamodule=datamodule)
        assert trainer.global_step == 2


def test_the_hook_classes_are_lightnings_under_the_alias():
    import subprocess
    import sys

    code = (
        "import ember; ember.install_as_lightning()\n"
        "from pytorch_lightning.core.hooks import ModelHooks, DataHooks, CheckpointHooks\n"
        "from lightning.pytorch.core.hooks import DataHooks as D\n"
        "import ember.core.hooks as h\n"
        "assert (ModelHooks, DataHooks, CheckpointHooks) == (h.ModelHooks, h.DataHooks, h.CheckpointHooks)\n"
        "assert D is DataHooks\n"
        "print(DataHooks.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pytorch_lightning.core.hooks"


_TAKEN_AWAY = (
    "setup",
    "teardown",
    "on_fit_start",
    "on_fit_end",
    "on_train_start",
    "on_train_epoch_start",
    "on_train_epoch_end",
    "on_validation_model_eval",
    "on_validation_model_zero_grad",
    "on_validation_epoch_end",
    "on_test_model_eval",
    "on_test_start",
    "on_predict_epoch_end",
    "on_save_checkpoint",
    "on_load_checkpoint",
)


def test_a_hook_set_to_none_is_not_called_as_in_lightning(tmp_path):
    """A subclass takes an inherited hook away with `hook = None`: every call skips it (Lightning calls only
    what is callable). Ember called the hooks it calls on every run (its defaults) and failed with "'NoneType'
    object is not callable"."""
    called = []

    class Parent(BoringModel):
        pass

    for name in _TAKEN_AWAY:
        setattr(Parent, name, lambda self, *args, _name=name, **kwargs: called.append(_name))

    class Child(Parent):
        pass

    for name in _TAKEN_AWAY:
        setattr(Child, name, None)

    def trainer(**kwargs):
        return ember.Trainer(
            default_root_dir=tmp_path,
            limit_train_batches=2,
            limit_val_batches=2,
            limit_test_batches=1,
            limit_predict_batches=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            **kwargs,
        )

    model = Child()
    first = trainer(max_epochs=1)
    first.fit(model)
    first.validate(model)
    first.test(model)
    first.predict(model)
    path = tmp_path / "child.ckpt"
    first.save_checkpoint(path)
    resumed = trainer(max_epochs=2)
    resumed.fit(Child(), ckpt_path=path)
    assert resumed.current_epoch == 2
    loaded = Child.load_from_checkpoint(path)
    assert all(torch.equal(value, loaded.state_dict()[key]) for key, value in model.state_dict().items())
    assert called == []


def test_a_datamodule_hook_set_to_none_is_not_called_as_in_lightning(tmp_path):
    from ember.demos import BoringDataModule

    class NoTeardown(BoringDataModule):
        teardown = None
        state_dict = None
        prepare_data = None

    trainer = ember.Trainer(
        default_root_dir=tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False
    )
    trainer.fit(BoringModel(), datamodule=NoTeardown())
    assert trainer.global_step == 2
    checkpoint = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert "NoTeardown" not in checkpoint  # no state from a datamodule whose `state_dict` is taken away
