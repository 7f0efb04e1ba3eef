"""``MLFlowLogger``: params, metrics and (optionally) checkpoints in an MLflow tracking store.

Works with ``mlflow`` or ``mlflow-skinny``; the package is imported when the logger is built.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from time import time
from typing import TYPE_CHECKING, Any, Literal

from ember.loggers.logger import Logger, rank_zero_experiment
from ember.loggers.utilities import (
    _add_prefix,
    _convert_params,
    _flatten_dict,
    _require,
    _scan_checkpoints,
    _to_python,
    _warn_once,
)
from ember.utilities.imports import RequirementCache
from ember.utilities.rank_zero import rank_zero_only
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)
LOCAL_FILE_URI_PREFIX = "file:"
# Lightning's flags, decided on first use (programs' tests patch them beside a stand-in `mlflow` module)
_MLFLOW_AVAILABLE = RequirementCache("mlflow>=1.0.0", "mlflow")
_MLFLOW_SYNCHRONOUS_AVAILABLE = RequirementCache("mlflow>=2.8.0", "mlflow")


def _get_resolve_tags() -> Any:
    """mlflow's ``resolve_tags``, which adds the run context's tags (source, user, git commit) to the run's own;
    the tags as they are where this mlflow has none. Lightning's name: programs' tests patch it."""
    from mlflow.tracking import context

    if hasattr(context, "registry"):
        from mlflow.tracking.context.registry import resolve_tags

        return resolve_tags
    return getattr(context, "resolve_tags", lambda tags: tags)


# MLflow accepts letters, digits and these characters in metric names (Lightning strips the rest)
_INVALID_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_/. -]+")


class MLFlowLogger(Logger):
    r"""Log to `MLflow <https://mlflow.org>`_.

    Args:
        experiment_name: the MLflow experiment (created if missing).
        run_name: name of the new run (stored as the ``mlflow.runName`` tag).
        tracking_uri: tracking server or store; default ``$MLFLOW_TRACKING_URI``, else ``file:<save_dir>``.
        tags: tags of the new run.
        save_dir: local folder for the ``file:`` store when no ``tracking_uri`` is given.
        log_model: ``"all"`` uploads every checkpoint as it is saved; ``True`` uploads the final ones
            at the end (every one when ``save_top_k == -1``); ``False`` none.
        checkpoint_path_prefix: artifact folder that uploaded checkpoints go under.
        prefix: string put in front of every metric key (joined with ``"-"``).
        artifact_location: where the new experiment stores artifacts.
        run_id: continue this run instead of starting a new one.
        synchronous: whether each logging call waits for the server (mlflow >= 2.8).

    Example::

        from ember.loggers import MLFlowLogger

        logger = MLFlowLogger(experiment_name="lightning_logs", tracking_uri="file:./ml-runs")
        trainer = Trainer(logger=logger)
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        experiment_name: str = "lightning_logs",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        save_dir: str | None = "./mlruns",
        log_model: Literal[True, False, "all"] = False,
        checkpoint_path_prefix: str = "",
        prefix: str = "",
        artifact_location: str | None = None,
        run_id: str | None = None,
        synchronous: bool | None = None,
    ) -> None:
        _require("mlflow", "MLFlowLogger", "mlflow", _MLFLOW_AVAILABLE)
        if synchronous is not None and not _MLFLOW_SYNCHRONOUS_AVAILABLE:
            raise ModuleNotFoundError(
                "`synchronous` requires mlflow>=2.8.0. Install it with `pip install mlflow>=2.8.0`"
            )
        super().__init__()
        tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not tracking_uri:
            tracking_uri = f"{LOCAL_FILE_URI_PREFIX}{save_dir}"
        self._experiment_name = experiment_name
        self._experiment_id: str | None = None
        self._tracking_uri = tracking_uri
        self._run_name = run_name
        self._run_id = run_id
        self.tags = tags
        self._log_model = log_model
        self._checkpoint_path_prefix = checkpoint_path_prefix
        self._logged_model_time: dict[str, float] = {}
        self._checkpoint_callback: Any = None
        self._prefix = prefix
        self._artifact_location = artifact_location
        self._log_batch_kwargs = {} if synchronous is None else {"synchronous": synchronous}
        self._initialized = False
        self._warned: set[str] = set()

        if tracking_uri.startswith(LOCAL_FILE_URI_PREFIX):
            # mlflow >= 3 refuses the local file store unless opted in; a `file:` URI (the default,
            # as in Lightning) is an explicit request for it. A user setting the variable wins.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        self._mlflow_client = MlflowClient(tracking_uri)

    @property
    @rank_zero_experiment
    def experiment(self) -> MlflowClient:
        """The ``MlflowClient``; the experiment and run are created on first access."""
        if self._initialized:
            return self._mlflow_client
        import mlflow

        mlflow.set_tracking_uri(self._tracking_uri)
        if self._run_id is not None:
            run = self._mlflow_client.get_run(self._run_id)
            self._experiment_id = run.info.experiment_id
            self._initialized = True
            return self._mlflow_client

        if self._experiment_id is None:
            expt = self._mlflow_client.get_experiment_by_name(self._experiment_name)
            if expt is not None and expt.lifecycle_stage != "deleted":
                self._experiment_id = expt.experiment_id
            else:
                log.warning(f"Experiment with name {self._experiment_name} not found. Creating it.")
                self._experiment_id = self._mlflow_client.create_experiment(
                    name=self._experiment_name, artifact_location=self._artifact_location
                )

        if self._run_name is not None:
            from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

            self.tags = dict(self.tags or {})
            if MLFLOW_RUN_NAME in self.tags:
                log.warning(
                    f"The tag {MLFLOW_RUN_NAME} is found in tags. The value will be overridden by {self._run_name}."
                )
            self.tags[MLFLOW_RUN_NAME] = self._run_name
        resolve_tags = _get_resolve_tags()
        run = self._mlflow_client.create_run(experiment_id=self._experiment_id, tags=resolve_tags(self.tags))
        self._run_id = run.info.run_id
        self._initialized = True
        return self._mlflow_client

    @property
    def run_id(self) -> str | None:
        """The run id (creates the run if needed)."""
        _ = self.experiment
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        """The experiment id (creates the experiment if needed)."""
        _ = self.experiment
        return self._experiment_id

    @property
    def name(self) -> str | None:
        """The experiment id, as Lightning reports it."""
        return self.experiment_id

    @property
    def version(self) -> str | None:
        """The run id."""
        return self.run_id

    @property
    def save_dir(self) -> str | None:
        """The local folder of a ``file:`` tracking URI, else ``None``."""
        if self._tracking_uri.startswith(LOCAL_FILE_URI_PREFIX):
            return self._tracking_uri[len(LOCAL_FILE_URI_PREFIX) :]
        return None

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None) -> None:
        """Log flattened params as MLflow params (values cut to 250 characters, sent 100 at a time)."""
        from mlflow.entities import Param

        params = _flatten_dict(_convert_params(params))
        params_list = [Param(key=k, value=str(v)[:250]) for k, v in params.items()]
        for idx in range(0, len(params_list), 100):
            self.experiment.log_batch(run_id=self.run_id, params=params_list[idx : idx + 100], **self._log_batch_kwargs)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log ``metrics`` in one batch; names MLflow rejects are cleaned with a warning."""
        from mlflow.entities import Metric

        metrics = _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        timestamp_ms = int(time() * 1000)
        metrics_list = []
        for key, value in metrics.items():
            if isinstance(value, str):
                log.warning(f"Discarding metric with string value {key}={value}.")
                continue
            new_key = _INVALID_METRIC_CHARS.sub("", key)
            if key != new_key:
                _warn_once(
                    self._warned,
                    "MLFlow only allows '_', '/', '.' and ' ' special characters in metric name."
                    f" Replacing {key} with {new_key}.",
                    category=RuntimeWarning,
                )
                key = new_key
            metrics_list.append(Metric(key=key, value=_to_python(value), timestamp=timestamp_ms, step=step or 0))
        try:
            self.experiment.log_batch(run_id=self.run_id, metrics=metrics_list, **self._log_batch_kwargs)
        except Exception as ex:
            names = ", ".join(repr(m.key) for m in metrics_list)
            raise ValueError(f"MLflow rejected the metrics {names}: {ex}. Rename the metric that it names.") from ex

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Upload pending checkpoints (``log_model=True``) and mark the run finished or failed."""
        if not self._initialized:
            return
        status = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED"}.get(status, status)
        if self._checkpoint_callback:
            self._scan_and_log_checkpoints(self._checkpoint_callback)
        if self.experiment.get_run(self.run_id):
            self.experiment.set_terminated(self.run_id, status)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Upload checkpoints now (``log_model="all"``, or ``True`` with ``save_top_k=-1``) or remember them for the end."""
        if self._log_model == "all" or (
            self._log_model is True and getattr(checkpoint_callback, "save_top_k", None) == -1
        ):
            self._scan_and_log_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callback = checkpoint_callback

    def _scan_and_log_checkpoints(self, checkpoint_callback: Any) -> None:
        import yaml

        for mtime, path, score, _tag in _scan_checkpoints(checkpoint_callback, self._logged_model_time):
            metadata = {
                "score": _to_python(score),
                "original_filename": Path(path).name,
                "Checkpoint": {
                    k: getattr(checkpoint_callback, k)
                    for k in ("monitor", "mode", "save_last", "save_top_k", "save_weights_only", "_every_n_train_steps")
                    if hasattr(checkpoint_callback, k)
                },
            }
            best = path == getattr(checkpoint_callback, "best_model_path", None)
            aliases = ["latest", "best"] if best else ["latest"]
            artifact_path = str(Path(self._checkpoint_path_prefix) / Path(path).stem)
            self.experiment.log_artifact(self._run_id, path, artifact_path)
            with tempfile.TemporaryDirectory() as tmp_dir:
                with open(os.path.join(tmp_dir, "metadata.yaml"), "w") as file:
                    yaml.safe_dump(metadata, file, default_flow_style=False)
                with open(os.path.join(tmp_dir, "aliases.txt"), "w") as file:
                    file.write(str(aliases))
                self.experiment.log_artifacts(self._run_id, tmp_dir, artifact_path)
            # remember the mtime: a file saved again under the same name (last.ckpt) is uploaded again
            self._logged_model_time[path] = mtime


lightning_style_annotations(MLFlowLogger)  # Lightning's `typing` forms in the signature
