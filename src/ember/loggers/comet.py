"""``CometLogger``: log to `Comet <https://www.comet.com>`_, online or to an offline archive.

The ``comet_ml`` package is imported when the logger is created (not at ``import ember``).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
from argparse import Namespace
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from torch import Tensor
from torch.nn import Module

from ember.loggers.logger import Logger, rank_zero_experiment
from ember.loggers.utilities import _convert_params
from ember.utilities.imports import RequirementCache, flag_or_importable
from ember.utilities.rank_zero import log, rank_zero_only
from ember.utilities.signature_utils import lightning_style_annotations

FRAMEWORK_NAME = "pytorch-lightning"  # how Comet labels runs from this API
_COMET_AVAILABLE = RequirementCache("comet-ml>=3.44.4", module="comet_ml")  # Lightning's flag, decided on first use
# the packages whose frames Comet steps over to find the program's file (comet_ml's own list)
_COMETS_SKIPPED = ("comet_ml", "mlflow", "transformers", "ludwig", "pytorch_lightning", "metaflow")


@contextlib.contextmanager
def _the_program_as_comets_caller() -> Iterator[None]:
    """Comet uploads, as the experiment's source code, the file of the innermost caller outside the
    libraries it knows, Lightning among them. Under Ember that caller would be this module, so while the
    experiment starts Comet's finder steps over Ember's frames too and finds the program's file."""
    try:
        experiment_module = importlib.import_module("comet_ml.experiment")
    except ImportError:
        experiment_module = None
    find = getattr(experiment_module, "get_caller_file_path", None)
    if find is None:
        yield
        return

    def program_file() -> tuple[str, str] | None:
        for info in inspect.stack(context=0):
            module = inspect.getmodule(info.frame)
            name = getattr(module, "__name__", None)
            if name is None or name.startswith(_COMETS_SKIPPED) or name == "ember" or name.startswith("ember."):
                continue
            return name, str(getattr(module, "__file__", "")).rstrip("cd")
        return None

    experiment_module.get_caller_file_path = program_file  # type: ignore[union-attr]
    try:
        yield
    finally:
        experiment_module.get_caller_file_path = find  # type: ignore[union-attr]


class CometLogger(Logger):
    r"""Track parameters and metrics with Comet (``pip install comet-ml``).

    Online, the experiment is sent to Comet's servers (configure the API key with ``comet login``
    or ``api_key``); with ``online=False`` it is written to an archive in ``offline_directory``
    that ``comet upload`` sends later.

    Args:
        api_key: Comet API key (default: Comet's configuration).
        workspace: Comet workspace (default: yours).
        project: Comet project (default: ``"Uncategorized"``).
        experiment_key: the experiment's id: to continue an experiment, or to choose the id of a
            new one (32 to 50 alphanumeric characters).
        mode: ``"get_or_create"``, ``"get"`` (continue ``experiment_key``) or ``"create"``.
        online: ``False`` logs to an offline archive; default online.
        prefix: prepended to every metric name.
        \**kwargs: ``comet_ml.ExperimentConfig`` options: ``name``, ``offline_directory``,
            ``log_code``, ... The old ``experiment_name``, ``project_name``, ``offline`` and
            ``save_dir`` are still understood.

    Raises:
        ModuleNotFoundError: ``comet_ml`` is not installed.

    Example::

        from ember.loggers import CometLogger

        logger = CometLogger(project="mnist", online=False, offline_directory="comet_runs")
        trainer = Trainer(logger=logger)
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        workspace: str | None = None,
        project: str | None = None,
        experiment_key: str | None = None,
        mode: Literal["get_or_create", "get", "create"] | None = None,
        online: bool | None = None,
        prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not flag_or_importable(_COMET_AVAILABLE, "comet_ml"):
            raise ModuleNotFoundError(
                "CometLogger needs the `comet_ml` package, which is not installed."
                " Install it with: pip install 'ember[comet]' (or pip install comet-ml)."
            )
        super().__init__()
        project, online = _renamed_arguments(kwargs, project, online)
        self._api_key = api_key
        self._experiment: Any = None
        self._workspace = workspace
        self._mode = mode
        self._online = online
        self._project_name = project
        self._experiment_key = experiment_key
        self._prefix = prefix
        self._kwargs = kwargs
        # Comet's automatic logging hooks into libraries imported after it: keep it off, as Lightning does
        os.environ["COMET_DISABLE_AUTO_LOGGING"] = "1"
        import comet_ml

        # Lightning 2.6 also passes `disabled=True` here when offline, which turns the offline
        # experiment off entirely; offline runs are written here
        self._comet_config = comet_ml.ExperimentConfig(**kwargs)
        if rank_zero_only.rank != 0:  # type: ignore[attr-defined]
            return  # only the main process creates an experiment
        self._create_experiment()

    def _create_experiment(self) -> None:
        import comet_ml

        with _the_program_as_comets_caller():
            self._experiment = comet_ml.start(
                api_key=self._api_key,
                workspace=self._workspace,
                project=self._project_name,
                experiment_key=self._experiment_key,
                mode=self._mode,
                online=self._online,
                experiment_config=self._comet_config,
            )
        if self._experiment is None:
            raise comet_ml.exceptions.ExperimentNotFound("Failed to create Comet experiment.")
        self._experiment_key = self._experiment.get_key()
        self._project_name = self._experiment.project_name
        self._experiment.log_other("Created from", FRAMEWORK_NAME)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``comet_ml`` experiment (a ``DummyExperiment`` on other ranks), for Comet's own calls.

        Example::

            self.logger.experiment.log_text("done")
        """
        if not self._experiment:
            # e.g. in a process started after the logger was created
            self._create_experiment()
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Log ``params`` as the experiment's parameters (nested dicts flattened)."""
        self.experiment.__internal_api__log_parameters__(
            parameters=_convert_params(params),
            framework=FRAMEWORK_NAME,
            flatten_nested=True,
            source="manual",
        )

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Tensor | float], step: int | None = None) -> None:
        """Log ``metrics`` at ``step``; an ``"epoch"`` entry becomes the experiment's epoch."""
        values = dict(metrics)
        for key, value in values.items():
            if isinstance(value, Tensor):
                values[key] = value.cpu().detach()  # Comet takes CPU tensors
        epoch = values.pop("epoch", None)
        self.experiment.__internal_api__log_metrics__(
            values, step=step, epoch=epoch, prefix=self._prefix, framework=FRAMEWORK_NAME
        )

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Send (or write) what is buffered; the experiment stays open so it can be used after ``fit``."""
        if self._experiment is None:
            return  # a process that never created one
        self.experiment.flush()

    @property
    def save_dir(self) -> str | None:
        """Where offline experiments are written (``offline_directory``)."""
        return self._comet_config.offline_directory

    @property
    def name(self) -> str | None:
        """The project name."""
        return self._project_name

    @property
    def version(self) -> str | None:
        """The experiment key, once the experiment exists."""
        return self._experiment.get_key() if self._experiment is not None else None

    def log_graph(self, model: Module, input_array: Tensor | None = None) -> None:
        """Send the model's description to Comet."""
        if self._experiment is not None:
            self._experiment.__internal_api__set_model_graph__(graph=model, framework=FRAMEWORK_NAME)

    def __getstate__(self) -> dict[str, Any]:
        # the experiment holds connections: a copy keeps its key and reconnects when used
        state = self.__dict__.copy()
        state["_experiment_key"] = self._experiment.get_key() if self._experiment is not None else None
        state["_experiment"] = None
        return state


def _renamed_arguments(kwargs: dict[str, Any], project: str | None, online: bool | None) -> tuple[Any, Any]:
    """Accept the argument names older Lightning versions used, with their warnings."""
    if "experiment_name" in kwargs:
        log.warning("The parameter `experiment_name` is deprecated, please use `name` instead.")
        experiment_name = kwargs.pop("experiment_name")
        if "name" not in kwargs:
            kwargs["name"] = experiment_name
        else:
            log.warning("You specified both `experiment_name` and `name` parameters, please use `name` only")
    if "project_name" in kwargs:
        log.warning("The parameter `project_name` is deprecated, please use `project` instead.")
        if project is None:
            project = kwargs.pop("project_name")
        else:
            log.warning("You specified both `project_name` and `project` parameters, please use `project` only")
    if "offline" in kwargs:
        log.warning("The parameter `offline is deprecated, please use `online` instead.")
        offline = kwargs.pop("offline")
        if online is None:
            online = not offline  # Lightning 2.6 passes `offline` on as `online` unchanged
        else:
            log.warning("You specified both `offline` and `online` parameters, please use `online` only")
    if "save_dir" in kwargs:
        log.warning("The parameter `save_dir` is deprecated, please use `offline_directory` instead.")
        if "offline_directory" not in kwargs:
            kwargs["offline_directory"] = kwargs.pop("save_dir")
        else:
            log.warning(
                "You specified both `save_dir` and `offline_directory` parameters, please use `offline_directory` only"
            )
    return project, online


lightning_style_annotations(CometLogger)  # Lightning's `typing` forms in the signature
