"""``LightningDataModule``: its hooks in each stage, ``from_datasets``, state and checkpoints."""

from __future__ import annotations

import collections
import dataclasses
import functools
import warnings

import pytest
import torch
from tests.helpers.core_models import CoreModel, dataset, quiet_trainer
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

import ember
from ember.trainer.loop import _transfer_warnings as transfer_warnings


class RecordingDM(ember.LightningDataModule):
    """Serves :func:`dataset` and records its hooks."""

    def __init__(self, batch_size: int = 4, events: list | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["events"])
        self.events = events if events is not None else []
        self.counter = 0

    def prepare_data(self):
        self.events.append("dm.prepare_data")

    def setup(self, stage):
        self.events.append(f"dm.setup:{stage}")

    def teardown(self, stage):
        self.events.append(f"dm.teardown:{stage}")

    def train_dataloader(self):
        self.counter += 1
        return DataLoader(dataset(8), batch_size=self.hparams.batch_size)

    def val_dataloader(self):
        return DataLoader(dataset(4, seed=1), batch_size=self.hparams.batch_size)

    def test_dataloader(self):
        return DataLoader(dataset(4, seed=2), batch_size=self.hparams.batch_size)

    def predict_dataloader(self):
        return DataLoader(dataset(4, seed=3), batch_size=self.hparams.batch_size)

    def state_dict(self):
        return {"counter": self.counter}

    def load_state_dict(self, state_dict):
        self.events.append(f"dm.load_state_dict:{state_dict['counter']}")
        self.counter = state_dict["counter"]


class RecordingModel(CoreModel):
    def __init__(self, events: list):
        super().__init__()
        self.events = events

    def prepare_data(self):
        self.events.append("model.prepare_data")

    def setup(self, stage):
        self.events.append(f"model.setup:{stage}")

    def teardown(self, stage):
        self.events.append(f"model.teardown:{stage}")


class CallbackRecorder(ember.Callback):
    def __init__(self, events: list):
        self.events = events

    def setup(self, trainer, pl_module, stage):
        self.events.append(f"callback.setup:{stage}")

    def teardown(self, trainer, pl_module, stage):
        self.events.append(f"callback.teardown:{stage}")


@pytest.mark.parametrize("stage", ["fit", "validate", "test", "predict"])
def test_hooks_in_each_stage(stage):
    events: list[str] = []
    dm, model = RecordingDM(events=events), RecordingModel(events)
    trainer = quiet_trainer(max_epochs=1, callbacks=[CallbackRecorder(events)])
    getattr(trainer, stage)(model, datamodule=dm)
    # the hooks get the `TrainerFn`, as in Lightning: equal to its value, printed by name
    fn = ember.trainer.states.TrainerFn(stage)
    assert fn == stage and f"{fn}" == f"TrainerFn.{fn.name}"
    assert events == [
        "dm.prepare_data",
        "model.prepare_data",
        f"dm.setup:{fn}",
        f"callback.setup:{fn}",
        f"model.setup:{fn}",
        f"dm.teardown:{fn}",
        f"callback.teardown:{fn}",
        f"model.teardown:{fn}",
    ]
    assert trainer.datamodule is dm and dm.trainer is trainer


def test_prepare_data_per_node_false_still_runs_on_the_only_process():
    events: list[str] = []
    dm = RecordingDM(events=events)
    dm.prepare_data_per_node = False
    quiet_trainer(max_epochs=1).fit(CoreModel(), datamodule=dm)
    assert events[0] == "dm.prepare_data"


@pytest.mark.parametrize("stage", ["fit", "validate", "test", "predict"])
def test_datamodule_passed_positionally(stage):
    dm = RecordingDM()
    trainer = quiet_trainer(max_epochs=1)
    result = getattr(trainer, stage)(CoreModel(), dm)
    assert trainer.datamodule is dm
    if stage == "fit":
        assert trainer.global_step == 2
    elif stage == "predict":
        assert len(result) == 1 and result[0].shape == (4, 1)
    else:
        assert len(result) == 1


def test_from_datasets():
    train, val = dataset(8), dataset(4, seed=1)
    dm = ember.LightningDataModule.from_datasets(
        train, val_dataset=val, test_dataset=[val, val], predict_dataset={"a": val}, batch_size=2
    )
    loader = dm.train_dataloader()
    assert loader.batch_size == 2 and isinstance(loader.sampler, RandomSampler)
    assert isinstance(dm.val_dataloader().sampler, SequentialSampler)
    assert len(dm.test_dataloader()) == 2
    assert set(dm.predict_dataloader()) == {"a"}
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(CoreModel(), datamodule=dm)
    assert trainer.global_step == 4
    assert "val_loss" in trainer.callback_metrics


def test_from_datasets_keeps_the_shape_of_a_collection_of_datasets():
    val = dataset(4)
    dm = ember.LightningDataModule.from_datasets(val_dataset=(val, val), test_dataset=[[val], {"b": val}])
    loaders = dm.val_dataloader()
    assert type(loaders) is tuple and [type(x) for x in loaders] == [DataLoader, DataLoader]
    nested = dm.test_dataloader()
    assert type(nested[0]) is list and isinstance(nested[0][0], DataLoader) and isinstance(nested[1]["b"], DataLoader)


def test_from_datasets_makes_loaders_of_torch_datasets_only_and_keeps_every_container_type():
    class Rows:  # indexable and sized, but not a torch Dataset: served as it is, one sample at a time
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return torch.full((2,), float(index))

    @dataclasses.dataclass
    class Pair:
        first: object
        second: object

    val, rows = dataset(4), Rows()
    dm = ember.LightningDataModule.from_datasets(
        rows, val_dataset=collections.OrderedDict(a=val, b=val), test_dataset=Pair(val, val), batch_size=2
    )
    assert dm.train_dataloader() is rows
    loaders = dm.val_dataloader()
    assert type(loaders) is collections.OrderedDict and all(isinstance(x, DataLoader) for x in loaders.values())
    pair = dm.test_dataloader()
    assert type(pair) is Pair and isinstance(pair.first, DataLoader) and isinstance(pair.second, DataLoader)


def test_a_subclass_may_pass_its_arguments_on_to_the_base_class():
    class Configured(ember.LightningDataModule):
        def __init__(self, batch_size=2, **kwargs):
            super().__init__(**kwargs)  # the base class ignores them, as Lightning's does
            self.batch_size = batch_size

    assert Configured(batch_size=4, num_workers=2).batch_size == 4


def test_from_datasets_without_train_cannot_fit():
    dm = ember.LightningDataModule.from_datasets(val_dataset=dataset(4))
    with pytest.raises(ember.utilities.MisconfigurationException, match="train_dataloader"):
        quiet_trainer(max_epochs=1).fit(CoreModel(), datamodule=dm)


def test_state_dict_is_saved_and_restored_on_resume(tmp_path):
    dm = RecordingDM()
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(CoreModel(), datamodule=dm)
    path = tmp_path / "dm.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["RecordingDM"] == {"counter": 1}
    assert checkpoint["datamodule_hyper_parameters"] == {"batch_size": 4}
    assert checkpoint["datamodule_hparams_name"] == "kwargs"

    events: list[str] = []
    resumed = RecordingDM(events=events)
    quiet_trainer(max_epochs=2).fit(CoreModel(), datamodule=resumed, ckpt_path=path)
    assert "dm.load_state_dict:1" in events
    assert events.index("dm.setup:TrainerFn.FITTING") < events.index("dm.load_state_dict:1")


def test_load_from_checkpoint(tmp_path):
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(CoreModel(), datamodule=RecordingDM(batch_size=2))
    path = tmp_path / "dm.ckpt"
    trainer.save_checkpoint(path)
    loaded = RecordingDM.load_from_checkpoint(path)
    assert loaded.hparams == {"batch_size": 2}
    assert loaded.counter == 1  # its state_dict was restored
    assert RecordingDM.load_from_checkpoint(path, batch_size=8).hparams.batch_size == 8
    with pytest.raises(TypeError, match="'strict'"):  # as on Lightning: a datamodule has no weights
        RecordingDM.load_from_checkpoint(path, strict=False)


def test_datamodule_hooks_default_to_no_ops_and_missing_loaders_raise():
    dm = ember.LightningDataModule()
    assert dm.state_dict() == {}
    assert dm.on_before_batch_transfer(1, 0) == 1 and dm.on_after_batch_transfer(1, 0) == 1
    assert dm.prepare_data() is None and dm.setup("fit") is None and dm.teardown("fit") is None
    with pytest.raises(ember.utilities.MisconfigurationException, match="`train_dataloader` must be implemented"):
        dm.train_dataloader()


def test_datamodule_transfer_hooks_are_used():
    calls = []

    class Transfer(RecordingDM):
        def on_before_batch_transfer(self, batch, dataloader_idx):
            calls.append("before")
            return batch

        def on_after_batch_transfer(self, batch, dataloader_idx):
            calls.append("after")
            return batch

    quiet_trainer(max_steps=1, limit_val_batches=0).fit(CoreModel(), datamodule=Transfer())
    assert calls == ["before", "after"]


def test_datamodule_transfer_hook_wins_over_the_module_with_a_warning():
    calls = []

    class ModelHook(CoreModel):
        def on_after_batch_transfer(self, batch, dataloader_idx):
            calls.append("model")
            return batch

    class DMHook(RecordingDM):
        def on_after_batch_transfer(self, batch, dataloader_idx):
            calls.append("dm")
            return batch

    transfer_warnings.clear()  # each is given once a process, as in Lightning: forget earlier tests'
    for _ in range(2):
        with warnings.catch_warnings(record=True) as given:
            warnings.simplefilter("always")
            quiet_trainer(max_steps=1, limit_val_batches=0).fit(ModelHook(), datamodule=DMHook())
        both = [w for w in given if "overridden `on_after_batch_transfer` in both" in str(w.message)]
        assert len(both) == (1 if _ == 0 else 0)  # the second fit does not repeat it
    assert calls == ["dm", "dm"]
    calls.clear()
    with pytest.warns(UserWarning, match="in `LightningModule` but have passed in a `LightningDataModule`"):
        quiet_trainer(max_steps=1, limit_val_batches=0).fit(ModelHook(), datamodule=RecordingDM())
    assert calls == ["model"]


def test_a_datamodule_given_to_a_call_is_the_only_source_of_its_data():
    # as in Lightning: a loader hook the datamodule lacks is not taken from the module
    calls = []

    class OnlyTrain(ember.LightningDataModule):
        def train_dataloader(self):
            return DataLoader(dataset(8), batch_size=4)

    class WithLoaders(CoreModel):
        def val_dataloader(self):
            calls.append("module.val_dataloader")
            return DataLoader(dataset(4), batch_size=4)

        def test_dataloader(self):
            calls.append("module.test_dataloader")
            return DataLoader(dataset(4), batch_size=4)

        def train_dataloader(self):
            calls.append("module.train_dataloader")
            return DataLoader(dataset(4), batch_size=4)

    trainer = quiet_trainer(max_epochs=1)
    with pytest.warns(UserWarning, match="You defined a `validation_step` but have no `val_dataloader`"):
        trainer.fit(WithLoaders(), datamodule=OnlyTrain())
    assert trainer.num_val_batches == [] and "val_loss" not in trainer.callback_metrics
    for call, hook in (("validate", "val_dataloader"), ("test", "test_dataloader")):
        with pytest.raises(ember.utilities.MisconfigurationException, match=f"`{hook}` must be implemented"):
            getattr(trainer, call)(WithLoaders(), datamodule=OnlyTrain())

    class OnlyVal(ember.LightningDataModule):
        def val_dataloader(self):
            return DataLoader(dataset(4), batch_size=4)

    with pytest.raises(ember.utilities.MisconfigurationException, match="`train_dataloader` must be implemented"):
        quiet_trainer(max_epochs=1).fit(WithLoaders(), datamodule=OnlyVal())
    assert calls == []


def test_the_example_input_of_the_summary_and_of_exports_goes_through_the_datamodules_batch_hooks():
    # as in Lightning: the module's `_on_before_batch_transfer`/`_apply_batch_transfer_handler` pick the
    # datamodule's hook where it overrides one, for the model summary in fit and for an export after it
    seen = []

    class Widen(RecordingDM):
        def on_before_batch_transfer(self, batch, dataloader_idx):
            seen.append(type(batch).__name__)
            # the summary's example input arrives as (N, 2) and leaves as the model's (N, 4)
            return batch.repeat(1, 2) if isinstance(batch, torch.Tensor) else batch

    model = CoreModel()
    model.example_input_array = torch.zeros(3, 2)
    summary = ember.callbacks.ModelSummary()
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, enable_model_summary=True, callbacks=[summary])
    trainer.fit(model, datamodule=Widen())
    assert seen == ["Tensor", "list"]  # the summary's example input, then the one training batch
    from ember.utilities.model_summary import ModelSummary

    assert ModelSummary(model).in_sizes == [[3, 4]]
    assert model.to_torchscript(method="trace")(torch.ones(3, 4)).shape == (3, 1)
    assert seen[2:] == ["Tensor", "Tensor"]


def test_from_datasets_passes_batch_size_to_a_subclass_that_takes_it():
    class Sized(ember.LightningDataModule):
        def __init__(self, batch_size: int = 1, name: str = ""):
            super().__init__()
            self.save_hyperparameters()

    dm = Sized.from_datasets(dataset(8), batch_size=4, name="digits")
    assert dm.hparams == {"batch_size": 4, "name": "digits"}
    assert dm.train_dataloader().batch_size == 4


def test_load_from_checkpoint_with_an_hparams_file_and_map_location(tmp_path):
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(CoreModel(), datamodule=RecordingDM(batch_size=2))
    path = tmp_path / "dm.ckpt"
    trainer.save_checkpoint(path)
    (tmp_path / "dm.yaml").write_text("batch_size: 6\n")
    loaded = RecordingDM.load_from_checkpoint(path, map_location="cpu", hparams_file=tmp_path / "dm.yaml")
    assert loaded.hparams == {"batch_size": 6}


def test_load_from_checkpoint_on_a_datamodule_instance_is_refused(tmp_path):
    dm = RecordingDM()
    with pytest.raises(TypeError, match="cannot be called on an instance"):
        dm.load_from_checkpoint(tmp_path / "x.ckpt")


def test_str_lists_the_dataset_sizes():
    dm = ember.LightningDataModule.from_datasets(dataset(8), val_dataset=[dataset(8), dataset(3)])
    assert str(dm).splitlines() == [
        "{Train dataloader: size=8}",
        "{Validation dataloader: 1. size=8 ; 2. size=3}",
        "{Test dataloader: None}",
        "{Predict dataloader: None}",
    ]


class TransferringDM(RecordingDM):
    def on_after_batch_transfer(self, batch, dataloader_idx):
        self.events.append("dm.on_after_batch_transfer")
        return batch


def _record_calls(dm, names):
    """Wrap hooks on the instance, as programs that trace calls do (functools.partial + update_wrapper)."""

    def call(name, fn, *args, **kwargs):
        dm.events.append(f"called:{name}")
        return fn(*args, **kwargs)

    for name in names:
        method = getattr(dm, name)
        setattr(dm, name, functools.update_wrapper(functools.partial(call, name, method), method))


def test_a_wrapped_inherited_transfer_hook_is_not_an_override():
    # Lightning compares the code under the wrapper: the base class's hook wrapped on the instance is not
    # called, while a hook the class overrides still is
    transfer = ["on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer"]
    plain, overriding = RecordingDM(), TransferringDM()
    for dm in (plain, overriding):
        _record_calls(dm, [*transfer, "train_dataloader"])
        quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(CoreModel(), datamodule=dm)
    assert "called:train_dataloader" in plain.events
    assert not [e for e in plain.events if "transfer" in e]
    assert [e for e in overriding.events if "transfer" in e] == [
        "called:on_after_batch_transfer",
        "dm.on_after_batch_transfer",
    ]


class _Hparams(ember.LightningDataModule):
    """A datamodule whose only job is to record ``hparams`` (and serve ``dataset``)."""

    def __init__(self, **hparams):
        super().__init__()
        self.save_hyperparameters(hparams)

    def train_dataloader(self):
        return DataLoader(dataset(4), batch_size=2)


class _HparamsModel(CoreModel):
    def __init__(self, **hparams):
        super().__init__()
        self.save_hyperparameters(hparams)


class _Logged(ember.loggers.Logger):
    """Keeps what the Trainer logs as hyperparameters."""

    def __init__(self):
        super().__init__()
        self.hparams: list[dict] = []

    @property
    def name(self):
        return "logged"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        self.hparams.append(dict(params))

    def log_metrics(self, metrics, step=None):
        pass


def _log_merged(model_hparams: dict, data_hparams: dict) -> dict:
    logger = _Logged()
    quiet_trainer(max_steps=1, logger=logger).fit(_HparamsModel(**model_hparams), datamodule=_Hparams(**data_hparams))
    return logger.hparams[0]


def test_hyperparameters_of_the_module_and_the_datamodule_merge_when_they_agree():
    shared = torch.ones(2)
    merged = _log_merged({"a": 1, "t": shared, "u": torch.ones(2)}, {"a": 1, "b": 2, "t": shared, "u": torch.ones(2)})
    assert set(merged) == {"a", "b", "t", "u"}  # equal tensors agree (Lightning: only the same object, never)
    disagreeing = [
        (1, 1.0),  # another type, as Lightning
        ("x", "y"),
        (torch.ones(2), torch.zeros(2)),
        (torch.ones(2), torch.ones(2, dtype=torch.float64)),
        (torch.ones(2), torch.ones(1, 2)),
    ]
    for model_value, data_value in disagreeing:
        with pytest.raises(RuntimeError, match=r"Error while merging hparams: the keys \['a'\]"):
            _log_merged({"a": model_value}, {"a": data_value})


def test_lightning_clis_class_paths_are_not_compared_nor_logged():
    # `LightningCLI` records the class it chose for each as `_class_path`: not a hyperparameter
    merged = _log_merged({"_class_path": "m.Model", "a": 1}, {"_class_path": "d.Data", "b": 2})
    assert merged == {"a": 1, "b": 2}


def test_a_datamodule_gives_data_to_the_call_it_is_passed_to_only():
    """As Lightning's hook selector: after `fit(model, datamodule=dm)`, a call without a datamodule takes its data
    from the module's hooks (the datamodule stays `trainer.datamodule`, and its `setup` still runs)."""
    calls = []

    class DM(ember.LightningDataModule):
        def setup(self, stage):
            calls.append(f"dm.setup({getattr(stage, 'value', stage)})")

        def train_dataloader(self):
            return DataLoader(dataset(8), batch_size=4)

        def test_dataloader(self):
            calls.append("dm.test_dataloader")
            return DataLoader(dataset(4), batch_size=4)

    class OwnTestData(CoreModel):
        def test_dataloader(self):
            calls.append("model.test_dataloader")
            return DataLoader(dataset(6, seed=3), batch_size=3)

    trainer = quiet_trainer(max_epochs=1)
    dm = DM()
    trainer.fit(CoreModel(), datamodule=dm)
    calls.clear()
    trainer.test(OwnTestData(), verbose=False)
    assert calls == ["dm.setup(test)", "model.test_dataloader"] and trainer.datamodule is dm
    with pytest.raises(ember.utilities.MisconfigurationException, match="`test_dataloader` must be implemented"):
        trainer.test(CoreModel(), verbose=False)
    trainer.test(CoreModel(), datamodule=dm, verbose=False)  # passed again: its data
    assert calls[-1] == "dm.test_dataloader"
