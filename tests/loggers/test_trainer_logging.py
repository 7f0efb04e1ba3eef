"""Loggers driven by a real Trainer: files, columns, rows and cadence as Lightning writes them."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "helpers"))

from logger_models import BATCHES_PER_EPOCH, LoggedRegressor, train_loader, val_loader

import ember as pl
from ember.loggers import CSVLogger, Logger
from ember.trainer import defaults

QUIET = {"enable_progress_bar": False, "enable_model_summary": False}


def read_rows(path):
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return reader.fieldnames, [{k: v for k, v in row.items() if v != ""} for row in reader]


def expected_rows(epochs, every):
    rows = []
    for epoch in range(epochs):
        for step in range(epoch * BATCHES_PER_EPOCH, (epoch + 1) * BATCHES_PER_EPOCH):
            if (step + 1) % every == 0:
                rows.append((str(epoch), str(step), "train_loss"))
        rows.append((str(epoch), str((epoch + 1) * BATCHES_PER_EPOCH - 1), "val_loss"))
    return rows


@pytest.mark.parametrize("every", [1, 2, 3])
def test_csv_logger_columns_rows_and_cadence(tmp_path, every):
    logger = CSVLogger(tmp_path)
    trainer = pl.Trainer(
        max_epochs=2,
        log_every_n_steps=every,
        logger=logger,
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        **QUIET,
    )
    trainer.fit(LoggedRegressor(), train_loader(), val_loader())
    header, rows = read_rows(os.path.join(logger.log_dir, "metrics.csv"))
    assert header == ["epoch", "step", "train_loss", "val_loss"]
    got = [(r["epoch"], r["step"], next(k for k in r if k.endswith("loss"))) for r in rows]
    assert got == expected_rows(2, every)
    assert all(set(r) == {"epoch", "step", "train_loss"} or set(r) == {"epoch", "step", "val_loss"} for r in rows)
    with open(os.path.join(logger.log_dir, "hparams.yaml")) as file:
        assert yaml.safe_load(file) == {"lr": 0.05}


def test_log_every_n_steps_zero_logs_only_epoch_metrics(tmp_path):
    logger = CSVLogger(tmp_path)
    trainer = pl.Trainer(max_epochs=2, log_every_n_steps=0, logger=logger, enable_checkpointing=False, **QUIET)
    trainer.fit(LoggedRegressor(), train_loader(), val_loader())
    _, rows = read_rows(os.path.join(logger.log_dir, "metrics.csv"))
    assert [sorted(r) for r in rows] == [["epoch", "step", "val_loss"]] * 2


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_resumed_fit_appends_to_the_same_csv(tmp_path):
    first = pl.Trainer(
        max_epochs=1, log_every_n_steps=2, logger=CSVLogger(tmp_path, version=0), default_root_dir=tmp_path, **QUIET
    )
    first.fit(LoggedRegressor(), train_loader(), val_loader())
    ckpt = first.checkpoint_callback.best_model_path
    with pytest.warns(UserWarning, match="appended"):
        second = pl.Trainer(
            max_epochs=2, log_every_n_steps=2, logger=CSVLogger(tmp_path, version=0), default_root_dir=tmp_path, **QUIET
        )
        second.fit(LoggedRegressor(), train_loader(), val_loader(), ckpt_path=ckpt)
    _, rows = read_rows(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")
    got = [(r["epoch"], r["step"], next(k for k in r if k.endswith("loss"))) for r in rows]
    assert got == expected_rows(2, 2)


def test_default_logger_writes_tensorboard_events_and_hparams(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = pl.Trainer(max_epochs=2, log_every_n_steps=2, default_root_dir=tmp_path, **QUIET)
    trainer.fit(LoggedRegressor(), train_loader(), val_loader())
    assert type(trainer.logger).__name__ == "TensorBoardLogger"
    log_dir = tmp_path / "lightning_logs" / "version_0"
    assert trainer.logger.log_dir == str(log_dir)
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    steps = {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert steps["train_loss"] == [1, 3, 5, 7]
    assert steps["val_loss"] == [3, 7]
    assert steps["hp_metric"] == [0]
    assert "epoch" in steps
    with open(log_dir / "hparams.yaml") as file:
        assert yaml.safe_load(file) == {"lr": 0.05}
    assert (log_dir / "checkpoints").is_dir()


@pytest.mark.parametrize("logger", [False, True])
def test_a_file_url_default_root_dir_writes_into_the_folder_it_names(tmp_path, monkeypatch, logger):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    # the trainer normalises "file:///abs/out" to "file:/abs/out", which fsspec (Lightning's writer) reads as /abs/out
    trainer = pl.Trainer(max_epochs=1, default_root_dir=f"file://{out}", logger=logger, **QUIET)
    trainer.fit(LoggedRegressor(), train_loader(), val_loader())
    folder = out / "lightning_logs" / "version_0" if logger else out
    assert sorted(os.listdir(folder / "checkpoints")) == ["epoch=0-step=4.ckpt"]
    assert (folder / "hparams.yaml").is_file() == logger
    assert not (tmp_path / "file:" / str(out).lstrip("/") / "checkpoints").exists()


def test_plot_of_a_real_run_marks_the_best_checkpoint(tmp_path):
    pytest.importorskip("matplotlib")
    from ember.callbacks import ModelCheckpoint
    from ember.plot import plot_metrics

    logger = CSVLogger(tmp_path)
    trainer = pl.Trainer(
        max_epochs=2, log_every_n_steps=1, logger=logger, callbacks=[ModelCheckpoint(monitor="val_loss")], **QUIET
    )
    trainer.fit(LoggedRegressor(), train_loader(), val_loader())
    path = plot_metrics(logger.log_dir)
    assert path == os.path.join(logger.log_dir, "metrics.png")
    assert os.path.getsize(path) > 0
    # the mark comes from the ModelCheckpoint state saved in <log_dir>/checkpoints
    from pathlib import Path

    from ember.plot import _best_position

    best = trainer.checkpoint_callback.best_model_path
    epoch = int(Path(best).name.split("epoch=")[1].split("-")[0])
    assert _best_position(None, Path(logger.log_dir)) == {"epoch": epoch, "step": 4.0 * (epoch + 1)}


def test_tensorboard_graph_from_example_input_array(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ember.loggers import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path, log_graph=True)
    trainer = pl.Trainer(max_epochs=1, logger=logger, enable_checkpointing=False, **QUIET)
    trainer.fit(LoggedRegressor(), train_loader(), val_loader())
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    assert acc.Graph() is not None


def test_unwritable_default_root_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(OSError, match="not_a_folder"):
        trainer = pl.Trainer(max_epochs=1, default_root_dir=blocker / "runs", **QUIET)
        trainer.fit(LoggedRegressor(), train_loader(), val_loader())


class ServiceLogger(Logger):
    """Sends its values elsewhere; its `save_dir` names a local database file, or is None."""

    name, version = "svc", "r1"

    def __init__(self, save_dir):
        super().__init__()
        self._save_dir = save_dir
        self.steps = []

    @property
    def save_dir(self):
        return self._save_dir

    @property
    def root_dir(self):
        return os.path.join(self.save_dir, self.name)  # a TypeError for a save_dir of None

    def log_metrics(self, metrics, step=None):
        self.steps.append(step)

    def log_hyperparams(self, params, *args, **kwargs):
        pass


@pytest.mark.parametrize("save_dir", ["runs.db", None])
def test_a_custom_loggers_folders_are_neither_read_nor_checked(tmp_path, monkeypatch, save_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs.db").write_text("a database file")
    logger = ServiceLogger(save_dir)
    trainer = pl.Trainer(max_steps=2, log_every_n_steps=1, logger=logger, enable_checkpointing=False, **QUIET)
    trainer.fit(LoggedRegressor(), train_loader())
    assert logger.steps == [0, 1]


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return f"file:{tmp_path / 'mlruns'}"


def test_mlflow_gets_params_metrics_and_checkpoints(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    from ember.callbacks import ModelCheckpoint
    from ember.loggers import MLFlowLogger

    logger = MLFlowLogger(tracking_uri=mlflow_uri, log_model="all")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", save_top_k=-1)
    trainer = pl.Trainer(max_epochs=2, log_every_n_steps=2, logger=logger, callbacks=[checkpoint], **QUIET)
    trainer.fit(LoggedRegressor(), train_loader(), val_loader())
    client = MlflowClient(mlflow_uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.05"}
    assert [m.step for m in client.get_metric_history(logger.run_id, "train_loss")] == [1, 3, 5, 7]
    assert [m.step for m in client.get_metric_history(logger.run_id, "val_loss")] == [3, 7]
    folders = sorted(a.path for a in client.list_artifacts(logger.run_id))
    assert folders == ["epoch=0-step=4", "epoch=1-step=8"]
    assert "epoch=1-step=8/epoch=1-step=8.ckpt" in [
        a.path for a in client.list_artifacts(logger.run_id, "epoch=1-step=8")
    ]


def test_mlflow_run_marked_failed_when_fit_raises(mlflow_uri):
    from mlflow.tracking import MlflowClient

    from ember.loggers import MLFlowLogger

    class Exploding(LoggedRegressor):
        def training_step(self, batch, batch_idx):
            if self.current_epoch == 1:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    logger = MLFlowLogger(tracking_uri=mlflow_uri)
    trainer = pl.Trainer(max_epochs=2, logger=logger, enable_checkpointing=False, **QUIET)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Exploding(), train_loader(), val_loader())
    assert MlflowClient(mlflow_uri).get_run(logger.run_id).info.status == "FAILED"


@pytest.mark.parametrize("package", ["pytorch_lightning", "lightning.pytorch"])
def test_the_csv_default_warning_names_the_lightning_package_the_program_imported(tmp_path, package):
    code = (
        "import sys, warnings\n"
        "sys.modules['tensorboard'] = sys.modules['tensorboardX'] = None\n"
        "import ember; ember.install_as_lightning()\n"
        f"import {package} as pl\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    pl.Trainer(default_root_dir={str(tmp_path)!r}, enable_progress_bar=False)\n"
        "print([str(w.message) for w in caught if 'CSVLogger' in str(w.message)])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"has been removed as a dependency of the `{package}` package" in done.stdout
    assert "`pip install lightning[extra]`" in done.stdout


def test_default_logger_is_csv_without_tensorboard(tmp_path, monkeypatch):
    for lightning in (
        "pytorch_lightning",
        "lightning.pytorch",
    ):  # a program written for Ember, whichever test ran before
        monkeypatch.delitem(sys.modules, lightning, raising=False)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # a SLURM job's id names TensorBoard's version only, as Lightning
    monkeypatch.setattr("ember.trainer.defaults._csv_default_warning", type(defaults._csv_default_warning)())
    with pytest.warns(
        UserWarning, match=r"`logger=True` uses `CSVLogger` as the default logger: neither .*ember\[tensorboard\]"
    ):
        trainer = pl.Trainer(
            max_epochs=1, log_every_n_steps=2, default_root_dir=tmp_path, enable_checkpointing=False, **QUIET
        )
    assert isinstance(trainer.logger, CSVLogger)
    assert trainer.logger.version == 0
    trainer.fit(LoggedRegressor(), train_loader(), val_loader())
    header, rows = read_rows(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")
    assert header == ["epoch", "step", "train_loss", "val_loss"]
    assert len(rows) == len(expected_rows(1, 2))
