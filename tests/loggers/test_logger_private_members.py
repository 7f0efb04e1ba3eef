"""Lightning's private logger members that public programs use: ``_get_next_version()``, ``_root_dir``, ``_fs``
and ``TensorBoardLogger._sanitize_params``."""

from __future__ import annotations

import pytest
import torch
import yaml

pytest.importorskip("tensorboard")

from ember.loggers import CSVLogger, TensorBoardLogger


def test_a_csv_logger_takes_the_version_a_tensorboard_logger_will_use(tmp_path):
    (tmp_path / "exp" / "version_0").mkdir(parents=True)
    tensorboard = TensorBoardLogger(tmp_path, name="exp")
    csv = CSVLogger(tmp_path, name="exp", version=tensorboard._get_next_version())
    assert tensorboard._get_next_version() == csv._get_next_version() == 1
    tensorboard.log_metrics({"loss": 0.5}, step=0)
    tensorboard.finalize("success")
    csv.log_metrics({"loss": 0.5}, step=0)
    csv.finalize("success")
    assert tensorboard.version == csv.version == 1
    assert (tmp_path / "exp" / "version_1" / "metrics.csv").is_file()
    # asked afresh each call: the version folders made since count
    assert tensorboard._get_next_version() == csv._get_next_version() == 2


def test_setting_root_dir_moves_a_tensorboard_loggers_logs(tmp_path):
    # what experiment managers do to redirect a logger the user built, before it writes anything
    logger = TensorBoardLogger(tmp_path / "orig")
    assert logger._root_dir == str(tmp_path / "orig")
    logger._root_dir = tmp_path / "runs"
    logger._name = "exp"
    logger._version = "trial_3"
    assert logger.save_dir == str(tmp_path / "runs")
    assert logger.log_dir == str(tmp_path / "runs" / "exp" / "trial_3")
    logger.log_hyperparams({"lr": 0.1})
    logger.finalize("success")
    with open(tmp_path / "runs" / "exp" / "trial_3" / "hparams.yaml") as file:
        assert yaml.safe_load(file) == {"lr": 0.1}
    assert not (tmp_path / "orig").exists()


def test_a_csv_loggers_root_dir_is_read_for_the_next_version_only(tmp_path):
    # as in Lightning, where the CSV logger keeps `save_dir` apart: its files stay in `save_dir`
    (tmp_path / "runs" / "lightning_logs" / "version_4").mkdir(parents=True)
    logger = CSVLogger(tmp_path / "orig")
    assert logger._root_dir == str(tmp_path / "orig")
    logger._root_dir = str(tmp_path / "runs")
    assert logger._get_next_version() == 5
    assert logger.log_dir == str(tmp_path / "orig" / "lightning_logs" / "version_5")


@pytest.mark.parametrize("logger_class", [CSVLogger, TensorBoardLogger])
def test_fs_is_the_filesystem_of_save_dir(tmp_path, logger_class):
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)
    logger = logger_class(tmp_path)
    assert type(logger._fs).__name__ == "LocalFileSystem"
    assert logger._fs.isdir(logger.root_dir)
    assert type(logger_class("memory://logs")._fs).__name__ == "MemoryFileSystem"


def test_sanitize_params_gives_the_values_tensorboards_hparams_tab_takes():
    params = {
        "lr": 0.1,
        "layers": [64, 64],
        "grid": torch.ones(2, 2),
        "none": None,
        "name": "adam",
        "sizes": torch.ones(3),
    }
    sanitized = TensorBoardLogger._sanitize_params(params)
    assert sanitized["lr"] == 0.1 and sanitized["name"] == "adam" and sanitized["sizes"] is params["sizes"]
    assert sanitized["layers"] == "[64, 64]" and sanitized["none"] == "None"
    assert sanitized["grid"] == str(params["grid"])


def test_a_subclass_overriding_sanitize_params_decides_what_the_hparams_tab_gets(tmp_path):
    seen = []

    class Recording(TensorBoardLogger):
        @staticmethod
        def _sanitize_params(params):
            seen.append(dict(params))
            return {key: str(value) for key, value in params.items()}

    logger = Recording(tmp_path)
    logger.log_hyperparams({"lr": 0.1, "opt": {"name": "adam"}})
    logger.finalize("success")
    assert seen == [{"lr": 0.1, "opt/name": "adam"}]


@pytest.mark.parametrize(
    ("module", "flag", "make"),
    [
        ("mlflow", "_MLFLOW_AVAILABLE", lambda path: __import__("ember").loggers.MLFlowLogger(save_dir=str(path))),
        (
            "wandb",
            "_WANDB_AVAILABLE",
            lambda path: __import__("ember").loggers.WandbLogger(save_dir=path, offline=True),
        ),
    ],
)
def test_lightnings_availability_flags_are_read_where_a_program_sets_them(tmp_path, monkeypatch, module, flag, make):
    # `pytorch_lightning.loggers.mlflow._MLFLOW_AVAILABLE` and its kind: Lightning's tests (and the suites that copy
    # their fixtures) set them, to True beside a stand-in module, or to False to act as if the package were missing
    import importlib

    pytest.importorskip(module)
    home = importlib.import_module(f"ember.loggers.{module}")
    assert bool(getattr(home, flag))  # Lightning's answer where the package is installed
    monkeypatch.setattr(home, flag, False)
    with pytest.raises(ModuleNotFoundError, match=module):
        make(tmp_path)


def test_tensorboards_availability_flag_set_false_sends_everything_through_tensorboardx(tmp_path, monkeypatch):
    pytest.importorskip("tensorboardX")
    from ember.loggers import tensorboard

    assert bool(tensorboard._TENSORBOARD_AVAILABLE)
    monkeypatch.setattr(tensorboard, "_TENSORBOARD_AVAILABLE", False)
    logger = TensorBoardLogger(tmp_path)
    assert type(logger.experiment).__module__.startswith("tensorboardX")
    logger.finalize("success")


def test_the_version_of_several_loggers_is_lightnings(tmp_path):
    # `loggers.utilities._version`, which gives the progress bar's `v_num`: one logger's version, or the distinct
    # versions of several, in order
    from ember.loggers import utilities

    first, second = CSVLogger(tmp_path, version=3), CSVLogger(tmp_path, name="b", version="x")
    assert utilities._version([first]) == 3
    assert utilities._version([first, second, CSVLogger(tmp_path, name="c", version=3)]) == "3_x"
    assert utilities._version([first, second], separator="-") == "3-x"
