"""The Logger base class, rank-zero behaviour, hyperparameter cleaning and path checks."""

from __future__ import annotations

import sys
from argparse import Namespace

import pytest
import torch

import ember.loggers as loggers
from ember.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from ember.loggers.logger import DummyExperiment, DummyLogger, rank_zero_experiment
from ember.loggers.utilities import (
    _add_prefix,
    _convert_params,
    _flatten_dict,
    _sanitize_callable_params,
    _sanitize_params,
)
from ember.utilities import AttributeDict, rank_zero_only


class RecordingLogger(Logger):
    def __init__(self):
        self.calls = []

    @property
    def name(self):
        return "rec"

    @property
    def version(self):
        return 3

    @property
    @rank_zero_experiment
    def experiment(self):
        return "real"

    @rank_zero_only
    def log_metrics(self, metrics, step=None):
        self.calls.append(("metrics", dict(metrics), step))

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs):
        self.calls.append(("hparams", params))


def test_lazy_exports_do_not_import_backends():
    code = (
        "import sys, ember.loggers as l, ember.plot; l.CSVLogger; l.Logger;"
        "print(any(m in sys.modules for m in ('tensorboard', 'mlflow', 'wandb', 'matplotlib')))"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert set(loggers.__all__) >= {"Logger", "CSVLogger", "TensorBoardLogger", "MLFlowLogger", "WandbLogger"}
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = loggers.Nope


def test_base_defaults():
    logger = RecordingLogger()
    assert logger.root_dir is None and logger.log_dir is None and logger.save_dir is None
    assert logger.group_separator == "/"
    assert logger.log_graph(torch.nn.Linear(1, 1)) is None
    logger.save()
    logger.finalize("success")
    logger.after_save_checkpoint(object())


def test_abstract_methods_are_required():
    class Incomplete(Logger):
        pass

    with pytest.raises(TypeError):
        Incomplete()


def test_non_zero_rank_does_nothing(monkeypatch):
    logger = RecordingLogger()
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger.log_metrics({"a": 1.0}, step=0)
    logger.log_hyperparams({"lr": 0.1})
    assert logger.calls == []
    assert isinstance(logger.experiment, DummyExperiment)
    assert type(logger.experiment).__name__ == "_DummyExperiment"  # as Lightning's, for a program that prints it
    # any call chain on the dummy is a no-op
    logger.experiment.add_scalar("x", 1)
    logger.experiment[0].add_image("x", None)
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    logger.log_metrics({"a": 1.0}, step=0)
    assert logger.calls == [("metrics", {"a": 1.0}, 0)]
    assert logger.experiment == "real"


def test_file_loggers_write_nothing_on_other_ranks(tmp_path, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = CSVLogger(tmp_path)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"a": 1.0}, step=0)
    logger.save()
    logger.finalize("success")
    assert list(tmp_path.iterdir()) == []


def test_dummy_logger_accepts_anything():
    logger = DummyLogger()
    logger.log_metrics({"a": 1}, 0)
    logger.log_hyperparams({"a": 1})
    logger.any_method_at_all(1, 2, x=3)
    assert logger[0] is logger
    assert logger.name == "" and logger.version == ""
    assert isinstance(logger.experiment, DummyExperiment)
    import copy
    import pickle

    assert isinstance(copy.deepcopy(logger), DummyLogger)
    assert isinstance(copy.deepcopy(DummyExperiment()), DummyExperiment)
    assert isinstance(pickle.loads(pickle.dumps(logger)), DummyLogger)


def test_convert_params_accepts_dict_namespace_attributedict_none():
    assert _convert_params({"a": 1}) == {"a": 1}
    assert _convert_params(Namespace(a=1, b="x")) == {"a": 1, "b": "x"}
    converted = _convert_params(AttributeDict(lr=0.1))
    assert converted == {"lr": 0.1} and type(converted) is dict
    assert _convert_params(None) == {}
    with pytest.raises(TypeError, match="dict, an argparse.Namespace or an AttributeDict"):
        _convert_params([1, 2])


def test_flatten_dict_nested_namespace_and_dataclass():
    from dataclasses import dataclass

    @dataclass
    class Opt:
        lr: float = 0.1

    flat = _flatten_dict({"a": {"b": {"c": 1}}, "ns": Namespace(x=2), "opt": Opt(), 5: {"k": 3}, "plain": [1]})
    assert flat == {"a/b/c": 1, "ns/x": 2, "opt/lr": 0.1, "5/k": 3, "plain": [1]}
    assert _flatten_dict({"a": {"b": 1}}, delimiter=".") == {"a.b": 1}


def test_sanitize_callables_and_objects():
    def make_value():
        return 7

    def make_fn():
        return make_value

    out = _sanitize_callable_params({"cls": torch.nn.ReLU, "fn": make_value, "fn2": make_fn, "x": 3})
    assert out == {"cls": "ReLU", "fn": 7, "fn2": "make_fn", "x": 3}
    import numpy as np

    out = _sanitize_params(
        {"f": 0.3, "i": 1, "s": "a", "b": True, "l": [1, 2], "ns": Namespace(foo=3), "np": np.float32(2.5)}
    )
    assert out == {"f": 0.3, "i": 1, "s": "a", "b": True, "l": "[1, 2]", "ns": "Namespace(foo=3)", "np": 2.5}


def test_add_prefix():
    assert _add_prefix({"loss": 1}, "", "-") == {"loss": 1}
    assert _add_prefix({"loss": 1}, "train", "-") == {"train-loss": 1}


@pytest.mark.parametrize(
    ("factory", "package", "extra"),
    [
        (lambda p: TensorBoardLogger(p), "tensorboard", "tensorboard"),
        (lambda p: MLFlowLogger(tracking_uri=f"file:{p}"), "mlflow", "mlflow"),
        (lambda p: WandbLogger(save_dir=str(p), offline=True), "wandb", "wandb"),
    ],
)
def test_missing_package_names_the_extra(tmp_path, monkeypatch, factory, package, extra):
    monkeypatch.setitem(sys.modules, package, None)
    if package == "tensorboard":
        monkeypatch.setitem(sys.modules, "tensorboardX", None)  # the fallback writer, as in Lightning
    with pytest.raises(ModuleNotFoundError, match=rf"needs the `{package}` package.*pip install 'ember\[{extra}\]'"):
        factory(tmp_path)


@pytest.mark.parametrize("cls", [CSVLogger, TensorBoardLogger])
def test_save_dir_under_a_file_fails_at_construction(tmp_path, cls):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match=f"{cls.__name__} cannot write logs to .*a_file"):
        cls(blocker / "logs")


@pytest.mark.skipif(sys.platform == "win32" or not hasattr(__import__("os"), "geteuid"), reason="POSIX permissions")
def test_read_only_save_dir_fails_with_permission_error(tmp_path, monkeypatch):
    import os

    read_only = tmp_path / "ro"
    read_only.mkdir()
    # root ignores permission bits, so simulate what os.access reports for a read-only folder
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(read_only) else real_access(p, mode))
    with pytest.raises(PermissionError, match=r"cannot write logs to .*ro/logs.*not writable.*save_dir"):
        CSVLogger(read_only / "logs")
    logger = CSVLogger(tmp_path / "fine")
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(PermissionError, match="fine"):
        logger._check_save_dir_writable()


def test_next_version_counts_version_folders_only(tmp_path):
    from ember.loggers import CSVLogger

    (tmp_path / "exp" / "version_3").mkdir(parents=True)
    (tmp_path / "exp" / "version_x").mkdir()
    (tmp_path / "exp" / "version_9").write_text("a file, not a version")
    assert CSVLogger(tmp_path, name="exp").version == 4
    assert CSVLogger(tmp_path, name="missing").version == 0


def test_the_version_number_is_read_as_lightning_reads_it(tmp_path):
    from ember.loggers import CSVLogger, TensorBoardLogger

    for name in ("version_0", "version_2_old", "version_5_", "version_07"):
        (tmp_path / "exp" / name).mkdir(parents=True)
    # the number after the first "_": a renamed copy keeps its number taken
    assert CSVLogger(tmp_path, name="exp").version == 8
    assert TensorBoardLogger(tmp_path, name="exp").version == 8


def test_a_logger_may_take_its_methods_from_a_class_listed_after_logger():
    # Lightning's `Logger` gets them from Fabric's; dvclive's `DVCLiveLogger(Logger, FabricDVCLiveLogger)`
    # was abstract on Ember, and its `super().log_metrics(metrics, step, sync)` did not reach its implementation
    calls = []

    class Implementation:
        @property
        def name(self):
            return "impl"

        @property
        def version(self):
            return "0"

        def log_metrics(self, metrics, step=None, sync=False):
            calls.append(("log_metrics", metrics, step, sync))

        def log_hyperparams(self, params, *args, **kwargs):
            calls.append(("log_hyperparams", params))

        def finalize(self, status):
            calls.append(("finalize", status))

    class Mixed(Logger, Implementation):
        def log_metrics(self, metrics, step=None, sync=False):
            super().log_metrics(metrics, step, sync=True)

    logger = Mixed()
    assert (logger.name, logger.version) == ("impl", "0")
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, 3)
    logger.finalize("success")
    assert calls == [("log_hyperparams", {"lr": 0.1}), ("log_metrics", {"loss": 1.0}, 3, True), ("finalize", "success")]


def test_the_trainer_writes_to_loggers_from_lightnings_logger_connector_method_names():
    # dvclive syncs its files only when one of these is on the call stack, as in Lightning
    import inspect

    from tests.helpers.logger_models import LoggedRegressor, train_loader, val_loader

    import ember

    callers = set()

    class StackReader(Logger):
        name, version = "stack", 0

        def log_metrics(self, metrics, step=None):
            callers.update(frame.function for frame in inspect.stack())

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    trainer = ember.Trainer(
        max_epochs=1,
        logger=StackReader(),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )

    class WithAnEpochValue(LoggedRegressor):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("train_epoch_loss", loss, on_step=False, on_epoch=True)
            return loss

    trainer.fit(WithAnEpochValue(), train_loader(), val_loader())
    assert {"update_train_step_metrics", "update_train_epoch_metrics", "log_eval_end_metrics"} <= callers


def test_trainer_log_dir_is_the_file_loggers_folder_and_any_other_loggers_save_dir(tmp_path):
    import ember

    class Folders(Logger):
        """A logger of one's own with both folders (hippynn's, MLflow's, wandb's have them too)."""

        name, version, save_dir, log_dir = "own", 0, str(tmp_path / "save"), str(tmp_path / "save" / "own" / "0")

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    def log_dir(logger):
        return ember.Trainer(logger=logger, default_root_dir=tmp_path, enable_progress_bar=False).log_dir

    csv, tensorboard = CSVLogger(tmp_path, name="c"), TensorBoardLogger(tmp_path, name="t")
    assert log_dir(csv) == csv.log_dir and log_dir(tensorboard) == tensorboard.log_dir
    assert log_dir(Folders()) == str(tmp_path / "save")  # as in Lightning: only its two file loggers say log_dir
    assert log_dir(False) == str(tmp_path)


@pytest.mark.parametrize("cls", [CSVLogger, TensorBoardLogger])
def test_a_save_dir_under_home_counts_the_versions_already_there(tmp_path, monkeypatch, cls):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "logs" / "exp" / "version_0").mkdir(parents=True)
    # "~" is the home folder, where the earlier run's files went: the next run takes the next number
    assert cls("~/logs", name="exp").version == 1
