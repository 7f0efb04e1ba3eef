"""WandbLogger in offline mode: no network, files under tmp_path."""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

pytest.importorskip("wandb")

from ember.loggers import WandbLogger
from ember.utilities import MisconfigurationException


@pytest.fixture(autouse=True)
def offline_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    yield
    import wandb

    if wandb.run is not None:
        wandb.finish()


def test_offline_run_records_config_and_summary(tmp_path):
    logger = WandbLogger(save_dir=tmp_path / "wb", offline=True, project="proj", name="trial")
    assert logger.name == "proj"
    assert logger.version is None  # no run started yet
    logger.log_hyperparams({"lr": 0.1, "act": torch.nn.ReLU})
    logger.log_metrics({"ember_probe": torch.tensor(1.5)}, step=3)
    logger.log_metrics({"ember_probe": 2.5}, step=4)
    run = logger.experiment
    assert logger.version == run.id
    assert run.name == "trial"
    assert dict(run.config) == {"lr": 0.1, "act": "ReLU"}
    assert run.summary["ember_probe"] == 2.5
    assert run.summary["trainer/global_step"] == 4
    run_files = glob.glob(str(tmp_path / "wb" / "wandb" / "offline-run-*" / f"run-{run.id}.wandb"))
    logger.finalize("success")
    run.finish()
    assert len(run_files) == 1
    # wandb's service process may still be writing the run file when finish() returns
    deadline = time.monotonic() + 20
    while b"ember_probe" not in Path(run_files[0]).read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"ember_probe" in Path(run_files[0]).read_bytes()


def test_init_arguments():
    logger = WandbLogger(save_dir=None, dir="d", version="abc", anonymous=True, entity="team", group="g")
    init = logger._wandb_init
    assert init["dir"] == "d" and init["id"] == "abc" and init["resume"] == "allow"
    assert init["anonymous"] == "allow" and init["entity"] == "team" and init["group"] == "g"
    assert init["project"] == "lightning_logs"
    assert logger.version == "abc" and logger.save_dir == "d"
    assert "anonymous" not in WandbLogger()._wandb_init
    assert WandbLogger(offline=True)._wandb_init["mode"] == "offline"


def test_offline_holds_when_the_keyword_arguments_pass_mode_none(monkeypatch, tmp_path):
    # LightningCLI fills in every argument of `wandb.init`, `mode=None` among them
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    logger = WandbLogger(save_dir=tmp_path / "wb", offline=True, mode=None)
    run = logger.experiment  # online, wandb would refuse to start without an API key
    assert run.settings.mode == "offline"
    assert glob.glob(str(tmp_path / "wb" / "wandb" / "offline-run-*"))
    run.finish()


def test_project_from_environment(monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "from_env")
    assert WandbLogger().name == "from_env"


def test_offline_with_log_model_is_rejected():
    with pytest.raises(MisconfigurationException, match="cannot be uploaded in offline mode"):
        WandbLogger(offline=True, log_model=True)


def test_non_zero_rank_starts_no_run(monkeypatch, tmp_path):
    from ember.loggers.logger import DummyExperiment
    from ember.utilities import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = WandbLogger(save_dir=tmp_path / "r1", offline=True)
    logger.log_metrics({"a": 1.0}, 0)
    assert isinstance(logger.experiment, DummyExperiment)
    assert not os.path.exists(tmp_path / "r1")


def test_fit_logs_config_and_metrics_against_trainer_step(tmp_path):
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "helpers"))
    from logger_models import LoggedRegressor, train_loader, val_loader

    import ember as pl

    logger = WandbLogger(save_dir=tmp_path / "fit", offline=True)
    trainer = pl.Trainer(
        max_epochs=2,
        log_every_n_steps=2,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(LoggedRegressor(), train_loader(), val_loader())
    run = logger.experiment
    assert dict(run.config) == {"lr": 0.05}
    assert run.summary["trainer/global_step"] == 7
    assert run.summary["epoch"] == 1
    assert set(run.summary.keys()) >= {"train_loss", "val_loss"}
    run.finish()


def test_media_and_tables(tmp_path):
    import numpy as np

    logger = WandbLogger(save_dir=tmp_path / "media", offline=True)
    logger.log_image("samples", [np.zeros((4, 4, 3), dtype=np.uint8)] * 2, step=1, caption=["a", "b"])
    logger.log_table("table", columns=["x", "y"], data=[[1, 2], [3, 4]], step=2)
    logger.log_text("notes", columns=["text"], data=[["hello"]], step=3)
    summary = logger.experiment.summary
    assert summary["samples"]["_type"] == "images/separated" and summary["samples"]["count"] == 2
    assert summary["table"]["_type"] == "table-file" and summary["table"]["nrows"] == 2
    assert summary["trainer/global_step"] == 3
    with pytest.raises(TypeError, match='Expected a list as "images"'):
        logger.log_image("bad", np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="Expected 2 items but only found 1 for caption"):
        logger.log_image("bad", [np.zeros((4, 4, 3))] * 2, caption=["only one"])
    logger.experiment.finish()


def test_checkpoints_logged_as_model_artifacts(tmp_path):
    from types import SimpleNamespace

    ckpt = tmp_path / "epoch=0-step=4.ckpt"
    torch.save({"w": torch.zeros(2)}, ckpt)
    callback = SimpleNamespace(
        best_model_path=str(ckpt),
        best_model_score=torch.tensor(0.5),
        last_model_path="",
        current_score=None,
        best_k_models={str(ckpt): torch.tensor(0.5)},
        monitor="val_loss",
        mode="min",
        save_last=None,
        save_top_k=1,
        save_weights_only=False,
    )
    # wandb queues artifacts of an offline run for a later `wandb sync`
    logger = WandbLogger(save_dir=tmp_path / "art", log_model="all", mode="offline", checkpoint_name="my-model")
    logger.after_save_checkpoint(callback)
    logger.after_save_checkpoint(callback)  # unchanged file: logged once
    assert list(logger._logged_model_time) == [str(ckpt)]
    run_file = glob.glob(str(tmp_path / "art" / "wandb" / "offline-run-*" / "run-*.wandb"))[0]
    logger.experiment.finish()
    deadline = time.monotonic() + 20
    while b"my-model" not in Path(run_file).read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"my-model" in Path(run_file).read_bytes()


@pytest.mark.parametrize("sync_tensorboard", [False, True])
def test_the_step_axis_is_tensorboards_when_the_run_syncs_its_events(monkeypatch, sync_tensorboard):
    import wandb

    calls = []

    class Run:
        def define_metric(self, *args, **kwargs):
            calls.append(("define_metric", args, kwargs))

        def log(self, metrics):
            calls.append(("log", metrics))

    monkeypatch.setattr(wandb, "run", None)
    monkeypatch.setattr(wandb, "init", lambda **kwargs: calls.append(("init", kwargs)) or Run())
    logger = WandbLogger(offline=True, sync_tensorboard=sync_tensorboard)
    logger.log_metrics({"loss": 0.5}, step=3)
    init, *defines, log = calls
    assert init[1]["sync_tensorboard"] is sync_tensorboard
    if sync_tensorboard:  # as Lightning: TensorBoard's step is the axis, and the trainer step is not logged
        assert defines == [("define_metric", ("*",), {"step_metric": "global_step"})]
        assert log == ("log", {"loss": 0.5})
    else:
        assert defines == [
            ("define_metric", ("trainer/global_step",), {}),
            ("define_metric", ("*",), {"step_metric": "trainer/global_step", "step_sync": True}),
        ]
        assert log == ("log", {"loss": 0.5, "trainer/global_step": 3})


@dataclass
class Cfg:
    depth: int = 2


def test_config_values_json_cannot_hold_are_text_and_vector_metrics_are_logged(tmp_path):
    logger = WandbLogger(save_dir=tmp_path / "wb", offline=True, add_file_policy="immutable")
    assert logger.add_file_policy == "immutable"  # Lightning's public attribute
    logger.log_hyperparams({"cfg": Cfg(), "scale": torch.tensor(3.0), "tags": {1, 2}, "lr": 0.1, "layers": [4, 2]})
    assert dict(logger.experiment.config) == {
        "cfg": "Cfg(depth=2)",
        "scale": "tensor(3.)",
        "tags": "{1, 2}",
        "lr": 0.1,
        "layers": [4, 2],
    }  # as Lightning: str() of what json.dumps refuses
    logger.log_metrics({"vec": torch.arange(3.0), "one": torch.tensor([2.0])}, step=1)
    assert list(logger.experiment.summary["vec"]) == [0.0, 1.0, 2.0] and logger.experiment.summary["one"] == 2.0


def test_with_log_model_true_every_checkpoint_callbacks_files_are_uploaded_at_the_end(tmp_path):
    from tests.helpers.checkpoint_models import SequenceModel

    import ember
    from ember.callbacks import ModelCheckpoint

    logger = WandbLogger(save_dir=tmp_path / "wb", mode="offline", log_model=True)
    uploaded = []
    run = logger.experiment
    real_log_artifact = run.log_artifact

    def log_artifact(artifact, aliases=None):
        uploaded.append((artifact.metadata["original_filename"], sorted(artifact.metadata), aliases))
        return real_log_artifact(artifact, aliases=aliases)

    run.log_artifact = log_artifact
    by_loss = ModelCheckpoint(dirpath=tmp_path / "a", monitor="val_loss", filename="loss-{epoch}")
    by_step = ModelCheckpoint(dirpath=tmp_path / "b", filename="step-{step}")
    trainer = ember.Trainer(
        max_epochs=2,
        logger=logger,
        callbacks=[by_loss, by_step],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(SequenceModel(val_losses=[0.3, 0.5], train_batches=2))
    assert uploaded == [
        ("loss-epoch=0.ckpt", ["ModelCheckpoint", "original_filename", "score"], ["latest", "best"]),
        ("step-step=4.ckpt", ["ModelCheckpoint", "original_filename", "score"], ["latest", "best"]),
    ]


def test_processes_ddp_spawn_starts_log_to_the_run_the_calling_process_started(tmp_path):
    # as Lightning: pickling the logger for the spawned processes starts the run, which they attach to, so a
    # fit and a test log to one run and the calling process knows its id
    import ember
    from ember.demos.boring_classes import BoringModel

    logger = WandbLogger(save_dir=tmp_path / "wb", offline=True, project="p")
    trainer = ember.Trainer(
        strategy="ddp_spawn",
        accelerator="cpu",
        devices=2,
        max_steps=2,
        limit_val_batches=0,
        limit_test_batches=2,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(BoringModel())
    assert logger.version is not None
    trainer.test(BoringModel(), verbose=False)
    runs = glob.glob(str(tmp_path / "wb" / "wandb" / "offline-run-*"))
    assert [os.path.basename(run).rsplit("-", 1)[1] for run in runs] == [logger.version]


def test_the_wandb_run_starts_before_the_other_loggers_experiments(tmp_path):
    # wandb syncs TensorBoard's files only when its run started before any writer (wandb issue 1782)
    from ember import Trainer
    from ember.demos import BoringModel
    from ember.loggers import Logger

    started = []

    class WriterLogger(Logger):
        name, version = "writer", 0

        @property
        def experiment(self):
            started.append("writer")
            return self

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    class RecordedWandbLogger(WandbLogger):
        @property
        def experiment(self):
            started.append("wandb")
            return super().experiment

    loggers = [WriterLogger(), RecordedWandbLogger(save_dir=tmp_path / "wb", offline=True, project="p")]
    trainer = Trainer(
        logger=loggers,
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(BoringModel())
    assert list(dict.fromkeys(started)) == ["wandb", "writer"]
    assert trainer.loggers == loggers  # the list keeps its order
