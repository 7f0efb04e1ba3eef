"""MLFlowLogger on a local ``file:`` store, read back with MlflowClient."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient

from ember.loggers import MLFlowLogger


@pytest.fixture
def uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # mlflow may write helper files into the working folder
    return f"file:{tmp_path / 'mlruns'}"


def test_params_metrics_and_status(uri):
    logger = MLFlowLogger(experiment_name="exp", run_name="first", tracking_uri=uri, tags={"team": "a"})
    logger.log_hyperparams({"lr": 0.1, "opt": {"name": "adam"}, "long": "x" * 300})
    logger.log_metrics({"loss": torch.tensor(0.5), "acc": 0.75}, step=3)
    logger.log_metrics({"loss": 0.25}, step=4)
    logger.finalize("success")

    client = MlflowClient(uri)
    run = client.get_run(logger.run_id)
    assert run.data.params["lr"] == "0.1"
    assert run.data.params["opt/name"] == "adam"
    assert len(run.data.params["long"]) == 250
    assert run.data.tags["team"] == "a"
    assert run.data.tags["mlflow.runName"] == "first"
    assert [(m.step, m.value) for m in client.get_metric_history(logger.run_id, "loss")] == [(3, 0.5), (4, 0.25)]
    assert run.data.metrics["acc"] == 0.75
    assert run.info.status == "FINISHED"
    assert logger.name == logger.experiment_id == run.info.experiment_id
    assert logger.version == logger.run_id
    assert logger.save_dir == uri[len("file:") :]


def test_failed_status_and_existing_experiment_is_reused(uri):
    first = MLFlowLogger(experiment_name="exp", tracking_uri=uri)
    first.log_metrics({"a": 1.0}, 0)
    first.finalize("failed")
    second = MLFlowLogger(experiment_name="exp", tracking_uri=uri)
    assert second.experiment_id == first.experiment_id
    assert second.run_id != first.run_id
    assert MlflowClient(uri).get_run(first.run_id).info.status == "FAILED"


def test_continue_a_run_by_id(uri):
    first = MLFlowLogger(tracking_uri=uri)
    first.log_metrics({"a": 1.0}, 0)
    again = MLFlowLogger(tracking_uri=uri, run_id=first.run_id)
    again.log_metrics({"a": 2.0}, 1)
    assert again.experiment_id == first.experiment_id
    history = MlflowClient(uri).get_metric_history(first.run_id, "a")
    assert [m.value for m in history] == [1.0, 2.0]


def test_invalid_metric_names_are_cleaned_with_a_warning(uri):
    logger = MLFlowLogger(tracking_uri=uri, prefix="p")
    with pytest.warns(RuntimeWarning, match=r"Replacing p-val\(loss\) with p-valloss"):
        logger.log_metrics({"val(loss)": 1.0, "ok": 2.0, "text": "skipped"}, 1)
    metrics = MlflowClient(uri).get_run(logger.run_id).data.metrics
    assert metrics == {"p-valloss": 1.0, "p-ok": 2.0}


def test_rejected_metric_is_reported_by_name(uri):
    logger = MLFlowLogger(tracking_uri=uri)
    with pytest.raises(ValueError, match="MLflow rejected the metrics '../escape'"):
        logger.log_metrics({"../escape": 1.0}, 0)


def test_default_tracking_uri_comes_from_save_dir_or_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert MLFlowLogger(save_dir=str(tmp_path / "here"))._tracking_uri == f"file:{tmp_path / 'here'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'env'}")
    assert MLFlowLogger()._tracking_uri == f"file:{tmp_path / 'env'}"


def _checkpoint_callback(path, save_top_k=1):
    return SimpleNamespace(
        best_model_path=str(path),
        best_model_score=torch.tensor(0.5),
        last_model_path="",
        current_score=None,
        best_k_models={str(path): torch.tensor(0.5)},
        monitor="val_loss",
        mode="min",
        save_last=None,
        save_top_k=save_top_k,
        save_weights_only=False,
    )


def test_checkpoints_uploaded_with_log_model_all(uri, tmp_path):
    ckpt = tmp_path / "epoch=0-step=4.ckpt"
    torch.save({"w": torch.zeros(2)}, ckpt)
    logger = MLFlowLogger(tracking_uri=uri, log_model="all")
    logger.after_save_checkpoint(_checkpoint_callback(ckpt))
    logger.after_save_checkpoint(_checkpoint_callback(ckpt))  # unchanged file: not uploaded twice
    logger.finalize("success")
    client = MlflowClient(uri)
    files = sorted(a.path for a in client.list_artifacts(logger.run_id, "epoch=0-step=4"))
    assert files == ["epoch=0-step=4/aliases.txt", "epoch=0-step=4/epoch=0-step=4.ckpt", "epoch=0-step=4/metadata.yaml"]
    local = client.download_artifacts(logger.run_id, "epoch=0-step=4/aliases.txt", str(tmp_path / "dl"))
    assert "best" in open(local).read()


def test_log_model_true_uploads_at_the_end(uri, tmp_path):
    ckpt = tmp_path / "last.ckpt"
    torch.save({}, ckpt)
    logger = MLFlowLogger(tracking_uri=uri, log_model=True, checkpoint_path_prefix="models")
    logger.log_metrics({"a": 1.0}, 0)
    logger.after_save_checkpoint(_checkpoint_callback(ckpt))
    client = MlflowClient(uri)
    assert client.list_artifacts(logger.run_id) == []
    logger.finalize("success")
    assert [a.path for a in client.list_artifacts(logger.run_id)] == ["models"]
    assert [a.path for a in client.list_artifacts(logger.run_id, "models")] == ["models/last"]


def test_the_run_context_tags_come_from_lightnings_patch_point(uri, monkeypatch):
    # `loggers.mlflow._get_resolve_tags`, which Lightning's tests (and the suites that copy them) patch: the run is
    # created with the tags it resolves (by default mlflow's own context tags: source, user)
    from ember.loggers import mlflow as home

    assert "mlflow.user" in home._get_resolve_tags()({"team": "a"})
    monkeypatch.setattr(home, "_get_resolve_tags", lambda: lambda tags: {**(tags or {}), "resolved": "yes"})
    logger = MLFlowLogger(experiment_name="exp", tracking_uri=uri, tags={"team": "a"})
    tags = MlflowClient(uri).get_run(logger.run_id).data.tags
    assert tags["team"] == "a" and tags["resolved"] == "yes" and "mlflow.user" not in tags


def test_synchronous_needs_an_mlflow_that_has_it(uri, monkeypatch):
    from ember.loggers import mlflow as home

    monkeypatch.setattr(home, "_MLFLOW_SYNCHRONOUS_AVAILABLE", False)  # as an mlflow older than 2.8 says
    with pytest.raises(ModuleNotFoundError, match=r"`synchronous` requires mlflow>=2\.8\.0"):
        MLFlowLogger(tracking_uri=uri, synchronous=True)
    MLFlowLogger(tracking_uri=uri)  # without it, any mlflow
