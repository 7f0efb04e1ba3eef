"""``WandbLogger``: Weights & Biases runs; the ``wandb`` package is imported when the run starts."""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from torch import Tensor, nn

from ember.loggers.logger import Logger, rank_zero_experiment
from ember.loggers.utilities import (
    _add_prefix,
    _convert_json_serializable,
    _convert_params,
    _require,
    _sanitize_callable_params,
    _scan_checkpoints,
    _to_python,
)
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.imports import RequirementCache
from ember.utilities.rank_zero import rank_zero_only, rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

_WANDB_AVAILABLE = RequirementCache("wandb>=0.12.10")  # Lightning's flag, decided on first use


class WandbLogger(Logger):
    r"""Log to `Weights & Biases <https://wandb.ai>`_.

    Args:
        name: display name of the run.
        save_dir: folder wandb writes its files to (``save_dir/wandb/...``).
        version: id of a run to resume (same as ``id``).
        offline: run offline; sync later with ``wandb sync``.
        dir: same as ``save_dir`` (used when ``save_dir`` is None).
        id: same as ``version``.
        anonymous: log anonymously.
        project: the project; default ``$WANDB_PROJECT`` or ``"lightning_logs"``.
        log_model: ``"all"`` uploads every checkpoint as it is saved; ``True`` the final ones at the
            end (every one when ``save_top_k == -1``); ``False`` none. Not allowed with ``offline``.
        experiment: an existing ``wandb`` run to log to.
        prefix: string put in front of every metric key (joined with ``"-"``).
        checkpoint_name: name of the model artifact (default ``model-<run id>``).
        add_file_policy: ``"mutable"`` copies each checkpoint before upload (safe if it is
            rewritten meanwhile); ``"immutable"`` uploads the file in place.
        \**kwargs: passed to ``wandb.init`` (``entity``, ``group``, ``tags``, ...).

    Example::

        from ember.loggers import WandbLogger

        trainer = Trainer(logger=WandbLogger(project="mnist", offline=True))
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | os.PathLike = ".",
        version: str | None = None,
        offline: bool = False,
        dir: str | os.PathLike | None = None,
        id: str | None = None,
        anonymous: bool | None = None,
        project: str | None = None,
        log_model: Literal["all"] | bool = False,
        experiment: Any = None,
        prefix: str = "",
        checkpoint_name: str | None = None,
        add_file_policy: Literal["mutable", "immutable"] = "mutable",
        **kwargs: Any,
    ) -> None:
        _require("wandb", "WandbLogger", "wandb", _WANDB_AVAILABLE)
        if offline and log_model:
            raise MisconfigurationException(
                f"Providing log_model={log_model} and offline={offline} is an invalid configuration"
                " since model checkpoints cannot be uploaded in offline mode.\n"
                "Hint: Set `offline=False` to log your model."
            )
        super().__init__()
        self._offline = offline
        self._log_model = log_model
        self._prefix = prefix
        self._experiment = experiment
        self._logged_model_time: dict[str, float] = {}
        self._checkpoint_callbacks: dict[int, Any] = {}  # with `log_model=True`: each callback's, uploaded at the end
        if save_dir is not None:
            save_dir = os.fspath(save_dir)
        elif dir is not None:
            dir = os.fspath(dir)
        project = project or os.environ.get("WANDB_PROJECT", "lightning_logs")
        self._wandb_init: dict[str, Any] = {
            "name": name,
            "project": project,
            "dir": save_dir or dir,
            "id": version or id,
            "resume": "allow",
            "anonymous": ("allow" if anonymous else None),
        }
        if not anonymous:
            # wandb warns that a passed `anonymous` setting is deprecated; pass it only when asked for
            del self._wandb_init["anonymous"]
        self._wandb_init.update(**kwargs)
        if offline and self._wandb_init.get("mode") is None:
            # per-run setting instead of Lightning's process-wide WANDB_MODE change; a `mode=None` among the
            # keyword arguments (LightningCLI passes every argument of `wandb.init`) leaves it offline
            self._wandb_init["mode"] = "offline"
        self._project = self._wandb_init.get("project")
        self._save_dir = self._wandb_init.get("dir")
        self._name = self._wandb_init.get("name")
        self._id = self._wandb_init.get("id")
        self._checkpoint_name = checkpoint_name
        self.add_file_policy = add_file_policy

    def __getstate__(self) -> dict[str, Any]:
        # a live run cannot be pickled: start it here (as Lightning does: the processes `ddp_spawn` starts get a
        # pickled copy) and keep how to reach it, so that every copy, and every later call, logs to that one run
        _ = self.experiment
        state = self.__dict__.copy()
        if self._experiment is not None:
            state["_attach_id"] = getattr(self._experiment, "_attach_id", None)
            state["_id"] = getattr(self._experiment, "id", None)
            state["_wandb_init"] = dict(self._wandb_init, id=state["_id"])
            state["_name"] = getattr(self._experiment, "name", self._name)
        state["_experiment"] = None
        return state

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``wandb`` run (started on first access; a ``DummyExperiment`` on non-zero ranks)."""
        if self._experiment is None:
            import wandb

            if wandb.run is not None:
                rank_zero_warn(
                    "There is a wandb run already in progress and newly created instances of `WandbLogger` will reuse"
                    " this run. If this is not desired, call `wandb.finish()` before instantiating `WandbLogger`."
                )
                self._experiment = wandb.run
            elif (attach_id := getattr(self, "_attach_id", None)) is not None and hasattr(wandb, "_attach"):
                self._experiment = wandb._attach(attach_id)  # the run the pickling process started
            else:
                if self._save_dir:
                    os.makedirs(self._save_dir, exist_ok=True)
                self._experiment = wandb.init(**self._wandb_init)
                if getattr(self._experiment, "define_metric", None):
                    if self._wandb_init.get("sync_tensorboard"):  # the step TensorBoard's events carry
                        self._experiment.define_metric("*", step_metric="global_step")
                    else:  # plot every metric against the trainer step, not wandb's own call counter
                        self._experiment.define_metric("trainer/global_step")
                        self._experiment.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        return self._experiment

    def watch(self, model: nn.Module, log: str = "gradients", log_freq: int = 100, log_graph: bool = True) -> None:
        """Log gradients/parameters of ``model`` every ``log_freq`` steps (wandb's ``watch``)."""
        self.experiment.watch(model, log=log, log_freq=log_freq, log_graph=log_graph)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None) -> None:
        """Update the run config with ``params`` (callables and classes by name, what JSON cannot hold as text)."""
        params = _convert_json_serializable(_sanitize_callable_params(_convert_params(params)))
        self.experiment.config.update(params, allow_val_change=True)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log ``metrics``; with a ``step`` it is logged as ``trainer/global_step`` (unless the run syncs
        TensorBoard's events, whose own ``global_step`` is the axis)."""
        # one-element tensors as numbers; wandb records the others itself (a list, or a histogram)
        metrics = {
            k: v.item() if isinstance(v, Tensor) and v.numel() == 1 else v
            for k, v in _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items()
        }
        if step is not None and not self._wandb_init.get("sync_tensorboard"):
            self.experiment.log(dict(metrics, **{"trainer/global_step": step}))
        else:
            self.experiment.log(metrics)

    @rank_zero_only
    def log_table(
        self,
        key: str,
        columns: list[str] | None = None,
        data: list[list[Any]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
    ) -> None:
        """Log a ``wandb.Table`` from ``columns`` + ``data`` or from a ``dataframe``."""
        import wandb

        table = wandb.Table(columns=columns, data=data, dataframe=dataframe)  # type: ignore[arg-type]
        self.log_metrics({key: table}, step)

    @rank_zero_only
    def log_text(
        self,
        key: str,
        columns: list[str] | None = None,
        data: list[list[str]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
    ) -> None:
        """Log text as a table."""
        self.log_table(key, columns, data, dataframe, step)

    @rank_zero_only
    def log_image(self, key: str, images: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log images (tensors, arrays, PIL images or paths); each kwarg is a list with one entry per image."""
        self._log_media("Image", key, images, step, kwargs)

    @rank_zero_only
    def log_audio(self, key: str, audios: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log audio clips (arrays or paths); each kwarg is a list with one entry per clip."""
        self._log_media("Audio", key, audios, step, kwargs)

    @rank_zero_only
    def log_video(self, key: str, videos: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log videos (arrays or paths); each kwarg is a list with one entry per video."""
        self._log_media("Video", key, videos, step, kwargs)

    def _log_media(self, kind: str, key: str, items: list[Any], step: int | None, kwargs: dict[str, list]) -> None:
        if not isinstance(items, list):
            raise TypeError(f'Expected a list as "{kind.lower()}s", found {type(items)}')
        n = len(items)
        for name, values in kwargs.items():
            if len(values) != n:
                raise ValueError(f"Expected {n} items but only found {len(values)} for {name}")
        import wandb

        media = getattr(wandb, kind)
        self.log_metrics(
            {key: [media(item, **{k: v[i] for k, v in kwargs.items()}) for i, item in enumerate(items)]}, step
        )

    def use_artifact(self, artifact: str, artifact_type: str | None = None) -> Any:
        """Record that this run uses ``artifact`` and return it."""
        return self.experiment.use_artifact(artifact, type=artifact_type)

    @staticmethod
    @rank_zero_only
    def download_artifact(
        artifact: str,
        save_dir: str | os.PathLike | None = None,
        artifact_type: str | None = None,
        use_artifact: bool | None = True,
    ) -> str:
        """Download ``artifact`` (through the current run when there is one) and return its folder."""
        import wandb

        if wandb.run is not None and use_artifact:
            found = wandb.run.use_artifact(artifact)
        else:
            found = wandb.Api().artifact(artifact, type=artifact_type)
        return found.download(root=None if save_dir is None else os.fspath(save_dir))

    @property
    def save_dir(self) -> str | None:
        """The folder wandb writes to."""
        return self._save_dir

    @property
    def name(self) -> str | None:
        """The project name (the run's own name is ``logger.experiment.name``)."""
        return self._project

    @property
    def version(self) -> str | None:
        """The run id (without starting a run if none exists yet)."""
        return self._experiment.id if self._experiment else self._id

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Upload checkpoints now (``log_model="all"``, or ``True`` with ``save_top_k=-1``) or remember them for the end."""
        if self._log_model == "all" or (
            self._log_model is True and getattr(checkpoint_callback, "save_top_k", None) == -1
        ):
            self._scan_and_log_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callbacks[id(checkpoint_callback)] = checkpoint_callback

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """On success, upload the checkpoints remembered for the end (``log_model=True``)."""
        if status != "success":
            return
        if self._experiment is not None:
            for checkpoint_callback in self._checkpoint_callbacks.values():
                self._scan_and_log_checkpoints(checkpoint_callback)

    def _scan_and_log_checkpoints(self, checkpoint_callback: Any) -> None:
        import wandb

        for mtime, path, score, _tag in _scan_checkpoints(checkpoint_callback, self._logged_model_time):
            metadata = {
                "score": _to_python(score),
                "original_filename": Path(path).name,
                checkpoint_callback.__class__.__name__: {  # through the weakref proxy loggers are given
                    k: getattr(checkpoint_callback, k)
                    for k in ("monitor", "mode", "save_last", "save_top_k", "save_weights_only", "_every_n_train_steps")
                    if hasattr(checkpoint_callback, k)
                },
            }
            if not self._checkpoint_name:
                self._checkpoint_name = f"model-{self.experiment.id}"
            artifact = wandb.Artifact(name=self._checkpoint_name, type="model", metadata=metadata)
            artifact.add_file(path, name="model.ckpt", policy=self.add_file_policy)
            best = path == getattr(checkpoint_callback, "best_model_path", None)
            self.experiment.log_artifact(artifact, aliases=["latest", "best"] if best else ["latest"])
            self._logged_model_time[path] = mtime


lightning_style_annotations(WandbLogger)  # Lightning's `typing` forms in the signature
