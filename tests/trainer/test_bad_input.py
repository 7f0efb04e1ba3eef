"""Input that used to crash later, or pass silently: empty dataloaders, a validation loader nobody
uses, and Trainer arguments that are not what they claim to be."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from tests.helpers.core_models import CoreModel, dataset, loader, quiet_trainer
from torch.utils.data import DataLoader

import ember
import ember.loggers
import ember.utilities

ZERO = r"Total length of `DataLoader` across ranks is zero. Please make sure this was your intention."


def empty_loader() -> DataLoader:
    # a small split with drop_last=True: 3 samples never fill a batch of 4
    return DataLoader(dataset(3), batch_size=4, drop_last=True)


def test_an_empty_validation_loader_is_named_and_skipped():
    model = CoreModel()
    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=2)
    with pytest.warns(UserWarning, match=ZERO + r" The `val_dataloader` has no batches.*validation loop is skipped"):
        trainer.fit(model, loader(8), empty_loader())
    assert trainer.global_step == 4 and trainer.current_epoch == 2  # training ran in full
    assert trainer.num_val_batches == [0]
    assert "val_loss" not in trainer.callback_metrics
    with pytest.warns(UserWarning, match=ZERO):
        assert trainer.validate(model, empty_loader()) == []
    with pytest.warns(UserWarning, match=r"The `test_dataloader` has no batches.*the test loop is skipped"):
        assert trainer.test(model, empty_loader()) == []
    # predict keeps the last, smaller batch, as Lightning does: there only a loader without samples is empty
    assert [len(p) for p in trainer.predict(model, empty_loader())] == [3]
    with pytest.warns(UserWarning, match=r"The `predict_dataloader` has no batches.*prediction is skipped"):
        assert trainer.predict(model, DataLoader(dataset(0), batch_size=4)) is None


def test_an_empty_training_loader_is_named_and_fit_stops(caplog):
    trainer = quiet_trainer(max_epochs=2)
    with pytest.warns(UserWarning, match=ZERO + r" The `train_dataloader` has no batches.*training is skipped"):
        trainer.fit(CoreModel(), empty_loader(), loader(8))
    assert trainer.global_step == 0 and trainer.current_epoch == 0
    assert trainer.num_training_batches == 0


def test_one_empty_loader_among_several_is_named_by_its_index():
    class TwoLoaders(CoreModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            super().validation_step(batch, batch_idx)

    trainer = quiet_trainer()
    with pytest.warns(UserWarning, match=r"The `val_dataloader` #1 has no batches.*it is skipped"):
        results = trainer.validate(TwoLoaders(), [loader(8), empty_loader()], verbose=False)
    # as in Lightning, a loader that ran no batch after the first one has no result dict
    assert len(results) == 1 and "val_loss/dataloader_idx_0" in results[0]


def test_val_dataloaders_without_validation_step_warn_as_lightning_does():
    class NoValidation(CoreModel):
        validation_step = ember.LightningModule.validation_step

    trainer = quiet_trainer(max_epochs=1)
    with pytest.warns(
        UserWarning, match=r"^You passed in a `val_dataloader` but have no `validation_step`. Skipping val"
    ):
        trainer.fit(NoValidation(), loader(8), loader(8))
    assert trainer.global_step == 2

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with a validation_step, or without validation data: nothing to say
        warnings.filterwarnings("ignore", message=".*does not have many workers")  # on a machine with CPUs to spare
        quiet_trainer(max_epochs=1).fit(CoreModel(), loader(8), loader(8))
        quiet_trainer(max_epochs=1).fit(NoValidation(), loader(8))


# ---- Trainer(logger=...) ------------------------------------------------------------------------
class DuckLogger:
    """Not a `Logger` subclass, but it has the methods a logger needs."""

    def __init__(self) -> None:
        self.metrics: list[tuple[dict, int | None]] = []
        self.finalized: list[str] = []

    def log_metrics(self, metrics, step=None):
        self.metrics.append((dict(metrics), step))

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def save(self):
        pass

    def finalize(self, status):
        self.finalized.append(status)


@pytest.mark.parametrize("logger", ["yes", "tensorboard", 3, object(), ["yes"], [DuckLogger(), 1.5], {"a": 1}])
def test_a_logger_argument_that_is_not_a_logger_fails_at_construction(logger):
    with pytest.raises(TypeError, match=r"`Trainer\(logger=...\)` got .* which is not a logger.*True/False/None"):
        ember.Trainer(logger=logger)


@pytest.mark.parametrize("callbacks", [None, 0, False, "", [], ()])
def test_a_false_callbacks_argument_means_none_as_in_lightning(callbacks):
    trainer = ember.Trainer(callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=False, logger=False)
    assert [type(cb).__name__ for cb in trainer.callbacks] == ["ModelSummary"]


@pytest.mark.parametrize("callbacks", [1, "early_stopping", {"a": 1}, 2.5])
def test_a_callbacks_argument_that_is_no_callback_nor_a_list_of_them_names_itself(callbacks):
    # (an int was "'int' object is not iterable"; text was refused a letter at a time)
    with pytest.raises(TypeError) as raised:
        ember.Trainer(callbacks=callbacks)
    assert str(raised.value).startswith(f"`Trainer(callbacks=...)` got {callbacks!r} ({type(callbacks).__name__}),")
    assert "pass `callbacks=[ModelCheckpoint(...), EarlyStopping(...)]`" in str(raised.value)


@pytest.mark.parametrize("plugins", ["", [], ()])
def test_a_false_plugins_argument_means_none_as_in_lightning(plugins):
    trainer = ember.Trainer(plugins=plugins, logger=False)
    assert type(trainer.precision_plugin).__name__ == "Precision"


@pytest.mark.parametrize("plugins", [0, False])
def test_a_false_plugin_that_is_no_list_is_refused_as_in_lightning(plugins):
    with pytest.raises(ember.utilities.MisconfigurationException, match=f"^Found invalid type for plugin {plugins}."):
        ember.Trainer(plugins=plugins, logger=False)


def test_an_object_missing_logger_methods_names_them():
    class HalfALogger:
        def log_metrics(self, metrics, step=None):
            pass

    with pytest.raises(TypeError, match=r"HalfALogger.*missing `log_hyperparams`, `save`, `finalize`"):
        ember.Trainer(logger=HalfALogger())


def test_duck_typed_loggers_keep_working(tmp_path):
    duck = DuckLogger()
    trainer = ember.Trainer(
        logger=[duck],
        max_epochs=1,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(CoreModel(), loader(8))
    assert trainer.loggers == [duck]
    assert duck.finalized == ["success"]
    for logger in (True, False, None, (), [ember.loggers.CSVLogger(tmp_path)]):
        ember.Trainer(logger=logger, default_root_dir=tmp_path)


def test_a_mock_logger_records_the_calls(tmp_path):
    from unittest.mock import Mock

    class Logs(CoreModel):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("loss", loss)
            return loss

    logger = Mock()
    logger.save_dir = tmp_path
    trainer = ember.Trainer(
        logger=logger,
        max_steps=2,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Logs(), loader(8))
    assert logger.log_metrics.call_count == 2
    assert "_check_save_dir_writable" not in [
        name for name, *_ in logger.method_calls
    ]  # Ember's own, not called and logger.finalize.call_args.args == ("success",)


def test_a_negative_gradient_clip_val_fails_at_construction():
    # clip_grad_norm_ with a negative norm would flip every gradient's sign
    with pytest.raises(ember.utilities.MisconfigurationException, match=r"gradient_clip_val=-1.0\)` must be >= 0"):
        ember.Trainer(gradient_clip_val=-1.0)
    with pytest.raises(ember.utilities.MisconfigurationException, match=r"gradient_clip_val=nan"):
        ember.Trainer(gradient_clip_val=float("nan"))
    assert ember.Trainer(gradient_clip_val=0).gradient_clip_val == 0  # 0 turns clipping off, as in Lightning


def test_more_cuda_devices_than_present_fail_at_construction(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    error = ember.utilities.MisconfigurationException
    message = r"You requested gpu: \[0, 5\]\n But your machine only has: \[0, 1\] \(device 5 does not exist"
    with pytest.raises(error, match=message):
        ember.Trainer(accelerator="cuda", devices=[0, 5])
    with pytest.raises(error, match=message):
        ember.Trainer(accelerator="gpu", devices="0,5")
    with pytest.raises(error, match=r"You requested 3 CUDA devices but only 2"):
        ember.Trainer(accelerator="cuda", devices=3)
    with pytest.raises(error, match=r"Device ID's \(GPU\) must be unique. \(`devices=\[1, 1\]` names a device more"):
        ember.Trainer(accelerator="cuda", devices=[1, 1])

    for bad in (["0"], [0, "1"], [False], [["0", "1"], [0, 1]], [0.0]):
        # Lightning's TypeError; `[False]` used to select device 0
        with pytest.raises(TypeError, match=r"Device IDs \(GPU/TPU\) must be an int, a string, a sequence of ints"):
            ember.Trainer(accelerator="cuda", devices=bad)

    from ember.distributed.factory import parse_devices

    assert parse_devices([1, 0], "cuda") == [1, 0]
    assert parse_devices(64, "cpu") == list(range(64))  # CPU processes may outnumber the cores


@pytest.mark.parametrize(("name", "value"), [("max_epochs", "2"), ("min_epochs", 1.5), ("min_steps", True)])
def test_a_loop_limit_that_is_not_an_int_fails_at_construction(name, value):
    # Lightning accepts it and fails inside `fit` with a bare AssertionError (or compares a string with numbers)
    with pytest.raises(
        ember.utilities.MisconfigurationException, match=rf"`{name}` must be an int, got {value!r} \(\w+\): pass"
    ):
        ember.Trainer(logger=False, **{name: value})


@pytest.mark.parametrize(
    ("name", "value"), [("enable_checkpointing", "False"), ("enable_progress_bar", "no"), ("detect_anomaly", "yes")]
)
def test_an_on_off_argument_given_as_a_string_fails_at_construction(name, value):
    # Lightning takes a string for true (checkpoints written, a bar drawn), or fails in torch (`detect_anomaly`)
    with pytest.raises(
        ember.utilities.MisconfigurationException,
        match=rf"^`Trainer\({name}={value!r}\)` must be True or False: a string is true whatever it says",
    ):
        ember.Trainer(logger=False, **{name: value})


def test_on_off_arguments_are_read_for_their_truth_as_in_lightning():
    import numpy as np

    # `enable_progress_bar=verbose` with an int `verbose` is a common spelling
    trainer = ember.Trainer(
        logger=False,
        enable_checkpointing=0,
        enable_progress_bar=np.False_,
        enable_model_summary=None,
        inference_mode=1,
        use_distributed_sampler=None,
    )
    assert trainer.checkpoint_callback is None and trainer.progress_bar_callback is None
    assert ember.Trainer(logger=False, enable_progress_bar=2).progress_bar_callback is not None


def test_two_data_sources_given_to_fit_are_refused_before_any_hook():
    # Lightning trains on a datamodule passed in `train_dataloaders` and drops the one passed as `datamodule=`;
    # both it and Ember refuse loaders given beside a datamodule, Lightning after its `on_exception` hooks and
    # the loggers' `finalize("failed")`. Ember refuses both mixes as the call starts: nothing has run
    events = []

    class Records(ember.Callback):
        def setup(self, trainer, pl_module, stage):
            events.append("setup")

        def on_exception(self, trainer, pl_module, exception):
            events.append("on_exception")

    class Data(ember.LightningDataModule):
        def train_dataloader(self):
            return loader()

    trainer = quiet_trainer(max_epochs=1, callbacks=[Records()])
    with pytest.raises(ember.utilities.MisconfigurationException, match="also `datamodule=`: pass one"):
        trainer.fit(CoreModel(), Data(), datamodule=Data())
    with pytest.raises(ember.utilities.MisconfigurationException, match=r"trainer.fit\(datamodule=...\)"):
        trainer.fit(CoreModel(), loader(), datamodule=Data())
    assert events == []
    trainer.fit(CoreModel(), datamodule=Data())  # the trainer is still good
    assert events == ["setup"] and trainer.global_step > 0


@pytest.mark.parametrize("devices", ["x", 1.5, -2, "1,2", [0]])
def test_cpu_devices_that_are_not_a_process_count_are_lightnings_type_error(devices):
    with pytest.raises(TypeError, match=r"^`devices` selected with `CPUAccelerator` should be an int > 0. Pass the"):
        ember.Trainer(accelerator="cpu", devices=devices, logger=False)


@pytest.mark.parametrize("devices", ["1,a", "auto,", "[0,1]", " 1, 2", b"2"])
def test_cpu_devices_written_as_text_that_names_no_count_are_lightnings_type_error_quoting_the_text(devices):
    # (not the bare ValueError of `int()` on a piece of the text, nor the list it was read as)
    with pytest.raises(TypeError) as raised:
        ember.Trainer(accelerator="cpu", devices=devices, logger=False)
    assert str(raised.value) == (
        "`devices` selected with `CPUAccelerator` should be an int > 0. Pass the number of processes, e.g."
        f" `devices=2`, instead of {devices!r}."
    )


def test_gpu_devices_text_that_is_no_index_list_is_the_value_error_of_int_with_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"^invalid literal for int\(\) with base 10: 'a'. `devices='0,a'` is not a"):
        ember.Trainer(accelerator="cuda", devices="0,a")


def test_gpu_devices_of_the_wrong_type_are_lightnings_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for devices in (1.5, True):
        with pytest.raises(TypeError, match=rf"^Device IDs \(GPU/TPU\) must be an int, .* you passed {devices}\."):
            ember.Trainer(accelerator="cuda", devices=devices)
    with pytest.raises(ValueError, match=r"^invalid literal for int\(\) with base 10: 'x'. `devices='x'`"):
        ember.Trainer(accelerator="cuda", devices="x")


def test_devices_true_on_cpu_is_one_process_as_in_lightning():
    trainer = quiet_trainer(accelerator="cpu", devices=True, max_steps=1)
    assert trainer.num_devices == 1
    trainer.fit(CoreModel(), loader())
    assert trainer.global_step == 1


@pytest.mark.parametrize(
    ("imported", "named"), [("lightning.pytorch", "lightning.pytorch"), ("pytorch_lightning", "pytorch_lightning")]
)
def test_an_unknown_strategy_names_the_strategy_class_of_the_package_the_program_imported(monkeypatch, imported, named):
    import sys
    import types

    for package in ("pytorch_lightning", "lightning.pytorch"):
        monkeypatch.delitem(sys.modules, package, raising=False)
    monkeypatch.setitem(sys.modules, imported, types.ModuleType(imported))
    with pytest.raises(
        ValueError, match=rf"^You selected an invalid strategy name: `strategy='foo'`. .* `{named}.strategies.Strategy`"
    ):
        ember.Trainer(strategy="foo", logger=False)


def test_an_empty_training_loader_warns_for_the_dataloader_then_the_combined_loader_as_lightning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_trainer(max_epochs=1).fit(CoreModel(), empty_loader())
    zero = [str(w.message) for w in caught if "across ranks is zero" in str(w.message)]
    assert len(zero) == 2
    assert zero[0].startswith(
        "Total length of `DataLoader` across ranks is zero. Please make sure this was your intention. The"
    )
    assert zero[1] == "Total length of `CombinedLoader` across ranks is zero. Please make sure this was your intention."


def test_empty_training_loaders_in_a_combined_loader_warn_for_each_then_the_combined_loader_as_lightning():
    # Lightning 2.6.6 warns three times here; Ember left out the combined loader's warning
    from ember.utilities import CombinedLoader

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_trainer(max_epochs=1).fit(CoreModel(), CombinedLoader([empty_loader(), empty_loader()], "min_size"))
    zero = [str(w.message) for w in caught if "across ranks is zero" in str(w.message)]
    assert [message.split(" across")[0] for message in zero] == ["Total length of `DataLoader`"] * 2 + [
        "Total length of `CombinedLoader`"
    ]
    assert zero[2] == "Total length of `CombinedLoader` across ranks is zero. Please make sure this was your intention."


@pytest.mark.parametrize(
    ("kwargs", "start"),
    [
        ({"max_time": {"hour": 1}}, "`Trainer(max_time={'hour': 1})` is not a duration: 'hour' is an invalid keyword"),
        ({"max_time": {"hours": "1"}}, "`Trainer(max_time={'hours': '1'})` is not a duration: unsupported type"),
        ({"val_check_interval": {"minute": 1}}, "`Trainer(val_check_interval={'minute': 1})` is not a duration:"),
    ],
)
def test_a_dict_duration_with_a_key_or_value_timedelta_refuses_names_the_argument(kwargs, start):
    # (timedelta's own error, "'hour' is an invalid keyword argument for __new__()", named neither)
    with pytest.raises(TypeError) as raised:
        ember.Trainer(logger=False, **kwargs)
    assert str(raised.value).startswith(start)
    assert str(raised.value).endswith("takes the arguments of `datetime.timedelta`, e.g. `dict(hours=1, minutes=30)`.")


def test_a_timer_with_a_dict_duration_timedelta_refuses_names_itself():
    from ember.callbacks import Timer

    with pytest.raises(TypeError, match=r"^`Timer\(duration=\{'hour': 1\}\)` is not a duration: 'hour'"):
        Timer(duration={"hour": 1})


@pytest.mark.parametrize("folder", [3, 1.5, ["logs"]])
def test_a_default_root_dir_that_is_no_path_names_itself(folder):
    with pytest.raises(TypeError) as raised:
        ember.Trainer(default_root_dir=folder, logger=False)
    assert str(raised.value) == (
        f"`Trainer(default_root_dir={folder!r})` must be a folder path (a str or a `pathlib.Path`) or None,"
        f" not {type(folder).__name__}."
    )


def test_a_default_root_dir_given_as_bytes_is_the_folder_it_names(tmp_path):
    trainer = ember.Trainer(default_root_dir=os.fsencode(tmp_path), logger=False)
    assert trainer.default_root_dir == str(tmp_path)


def test_an_infinite_fast_dev_run_is_ints_overflow_error_with_the_fix():
    with pytest.raises(OverflowError, match=r"^cannot convert float infinity to integer. fast_dev_run=inf is not a"):
        ember.Trainer(fast_dev_run=float("inf"), logger=False)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"train_dataloaders": 5}, "train_dataloaders"), ({"val_dataloaders": 5}, "val_dataloaders")],
)
def test_an_invalid_dataloader_passed_to_fit_is_named_by_the_argument_it_was_passed_as(kwargs, argument):
    # (Lightning names `train_dataloaders` for validation data too)
    kwargs = {"train_dataloaders": loader(), **kwargs}
    with pytest.raises(
        TypeError, match=rf"^An invalid dataloader was passed to `Trainer.fit\({argument}=...\)`. Found 5.$"
    ):
        quiet_trainer(max_epochs=1).fit(CoreModel(), **kwargs)
