"""``TensorBoardLogger``: TensorBoard event files, with ``torch.utils.tensorboard.SummaryWriter``
as ``logger.experiment``.

Layout (as Lightning): ``save_dir/name/version_N[/sub_dir]`` holding the event files and, after
``save()``, ``hparams.yaml``. Scalars logged through the logger go to an event file of their own
(``event_file.py``); the ``SummaryWriter``, and the import of ``torch.utils.tensorboard``, come
when user code or a logger feature needs the writer (hyperparameters, graph, images).
"""

from __future__ import annotations

import math
import os
import time
from argparse import Namespace
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor
from torch.nn import Module

from ember.checkpoint.files import get_filesystem, is_file, is_local, local_path
from ember.loggers.logger import FolderLogger, rank_zero_experiment
from ember.loggers.utilities import (
    _add_prefix,
    _check_writable,
    _convert_params,
    _flatten_dict,
    _sanitize_params,
    _save_hparams_to_yaml,
)
from ember.utilities.imports import RequirementCache, flag_or_importable, package_available
from ember.utilities.rank_zero import rank_zero_only, rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from ember.loggers.event_file import ScalarEventFile


class TensorBoardLogger(FolderLogger):
    r"""Log to TensorBoard event files (the trainer's default logger when ``tensorboard`` is installed).

    Without ``tensorboard``, ``tensorboardX`` writes the event files (its ``SummaryWriter`` is then
    ``logger.experiment`` and receives the scalars too), as in Lightning; ``log_graph`` needs
    ``tensorboard``.

    Args:
        save_dir: folder under which ``name/version_N`` is created.
        name: experiment name; ``""`` or ``None`` puts the versions directly in ``save_dir``.
        version: an int gives ``version_<int>``; a str is the folder name; ``None`` picks the next free one.
        log_graph: add the model graph (needs ``model.example_input_array`` or ``input_array``).
        default_hp_metric: log a placeholder ``hp_metric`` of -1 with the hyperparameters, so they
            show in TensorBoard's HPARAMS tab.
        prefix: string put in front of every metric key (joined with ``"-"``).
        sub_dir: extra folder inside the version folder.
        \**kwargs: passed to ``SummaryWriter`` (e.g. ``max_queue``, ``flush_secs``).

    Example::

        from ember.loggers import TensorBoardLogger

        trainer = Trainer(logger=TensorBoardLogger("tb_logs", name="my_model"))
    """

    # the SummaryWriter (and the tensorboard import) is created at its first use, not at setup
    _lazy_experiment = True

    NAME_HPARAMS_FILE = "hparams.yaml"
    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        save_dir: str | os.PathLike,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        log_graph: bool = False,
        default_hp_metric: bool = True,
        prefix: str = "",
        sub_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        # asked once: the scalar file is chosen at every write, and `find_spec` searches the path each time
        self._tensorboard = _tensorboard_available()
        if not self._tensorboard and not package_available("tensorboardX"):
            raise ModuleNotFoundError(
                "TensorBoardLogger needs the `tensorboard` package (or `tensorboardX`), which is not installed."
                " Install it with: pip install 'ember[tensorboard]' (or pip install tensorboard)."
            )
        super().__init__()
        if log_graph and not self._tensorboard:
            rank_zero_warn("You set `TensorBoardLogger(log_graph=True)` but `tensorboard` is not available.")
            log_graph = False
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version
        self._sub_dir = None if sub_dir is None else os.fspath(sub_dir)
        self._log_graph = log_graph
        self._default_hp_metric = default_hp_metric
        self._prefix = prefix
        self._kwargs = kwargs
        self._experiment: SummaryWriter | None = None
        self._scalar_file: ScalarEventFile | None = None
        self._last_flush = -math.inf
        self._pending: list[tuple[str, float, int | None, float]] = []  # scalars not written yet
        self.hparams: dict[str, Any] = {}
        _check_writable(self._save_dir, type(self).__name__)

    @property
    def _root_dir(self) -> str:
        """Lightning's name for the folder given as ``save_dir``. Setting it moves the logs, as in Lightning,
        when nothing was written yet: programs redirect a logger this way (``logger._root_dir = exp_dir``,
        often with ``_name`` and ``_version``)."""
        return self._save_dir

    @_root_dir.setter
    def _root_dir(self, path: str | os.PathLike) -> None:
        self._save_dir = os.fspath(path)

    # Lightning's private static method, which programs call (``trainer.logger._sanitize_params(params)``): the
    # values as the HPARAMS tab takes them (numbers, text, bools, tensors); ``log_hyperparams`` calls it through
    # ``self``, so that a subclass may override it, as in Lightning
    _sanitize_params = staticmethod(_sanitize_params)

    @property
    def sub_dir(self) -> str | None:
        """The extra folder inside the version folder, if any."""
        return self._sub_dir

    @property
    def log_dir(self) -> str:
        """``root_dir/version_N[/sub_dir]``, with ``~`` and environment variables expanded."""
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        log_dir = os.path.join(self.root_dir, version)
        if isinstance(self.sub_dir, str):
            log_dir = os.path.join(log_dir, self.sub_dir)
        return os.path.expanduser(os.path.expandvars(log_dir))

    @property
    @rank_zero_experiment
    def experiment(self) -> SummaryWriter:
        """The ``SummaryWriter`` (a ``DummyExperiment`` on non-zero ranks)."""
        if self._experiment is None:
            # torch's writer last: jsonargparse reads both branches and documents `**kwargs` from the last
            # (`LightningCLI --print_config` lists torch's SummaryWriter arguments, as Lightning's does)
            if not _tensorboard_available():  # Lightning's fallback when tensorboard is missing
                from tensorboardX import SummaryWriter
            else:
                from torch.utils.tensorboard import SummaryWriter

            self._experiment = SummaryWriter(log_dir=self.log_dir, **self._kwargs)
        if self._pending and not self._writes_scalar_file():
            # scalars share the writer's file: whoever uses it sees every scalar logged before
            self._write_pending()
        return self._experiment

    def _writes_scalar_file(self) -> bool:
        """Whether scalars go to an event file of their own rather than through the ``SummaryWriter``.

        They do for a local folder and the writer options that concern only buffering, until the
        writer exists: from then on they share its file (one file, as in Lightning), unless their
        own file already holds some, where the rest follow so that each tag stays in one file. A
        remote ``save_dir`` (TensorBoard's file layer handles those) or ``purge_step`` keeps them
        in the writer, and so does writing through ``tensorboardX`` when ``tensorboard`` (whose
        protobuf messages the scalar file is made of) is not installed.
        """
        if "://" in self._save_dir or self._kwargs.keys() - _SCALAR_FILE_OPTIONS or not self._tensorboard:
            return False
        return self._experiment is None or self._scalar_file is not None

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, []
        if self._writes_scalar_file():
            if self._scalar_file is None:
                from ember.loggers.event_file import ScalarEventFile

                self._scalar_file = ScalarEventFile(self.log_dir, self._kwargs.get("filename_suffix", ""))
            self._scalar_file.write(pending)
            self._scalar_file.flush()
        else:
            writer = self.experiment
            for key, value, step, walltime in pending:
                writer.add_scalar(key, value, step, walltime=walltime)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Add one scalar per metric (a dict value becomes ``add_scalars``).

        Scalars are kept here and written together at ``save()`` (at most once a second) or
        ``finalize()``, to an event file of their own in ``log_dir``; a dict value goes through
        ``experiment.add_scalars``, which makes one folder per key.
        """
        metrics = _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        walltime = time.time()
        for key, value in metrics.items():
            if isinstance(value, Tensor):
                # host sync: loggers are written only every `log_every_n_steps`
                value = value.item()
            if isinstance(value, dict):
                self.experiment.add_scalars(key, value, step)
                continue
            if type(value).__module__ == "numpy" and getattr(value, "size", None) == 1:
                value = value.item()  # `np.array([0.75])`, which metric functions return: as `add_scalar` reads it
            try:
                number = float(value)
            except (TypeError, ValueError) as ex:
                raise ValueError(
                    f"\n you tried to log {value} which is currently not supported. Try a dict or a scalar/tensor."
                    f" (TensorBoardLogger, metric {key!r}: log a number, a one-element tensor or a dict of numbers.)"
                ) from ex
            self._pending.append((key, number, step, walltime))

    @rank_zero_only
    def log_hyperparams(
        self,
        params: dict[str, Any] | Namespace | None,
        metrics: dict[str, Any] | float | None = None,
        step: int | None = None,
    ) -> None:
        """Record ``params`` (kept for ``hparams.yaml``) and add them to TensorBoard's HPARAMS tab, with ``metrics``
        (default a placeholder ``hp_metric`` of -1) logged at ``step``."""
        params = _convert_params(params)
        self.hparams.update(params)
        flat = self._sanitize_params(_flatten_dict(params))
        if metrics is None:
            metrics = {"hp_metric": -1} if self._default_hp_metric else None
        elif not isinstance(metrics, dict):
            metrics = {"hp_metric": metrics}
        if metrics:
            self.log_metrics(metrics, step)
            if _tensorboard_available():
                from torch.utils.tensorboard.summary import hparams
            else:
                from tensorboardX.summary import hparams  # type: ignore[no-redef]  # the same function

            exp, ssi, sei = hparams(flat, metrics)
            writer = self.experiment._get_file_writer()
            writer.add_summary(exp, step)
            writer.add_summary(ssi, step)
            writer.add_summary(sei, step)

    @rank_zero_only
    def log_graph(self, model: Module, input_array: Tensor | None = None) -> None:
        """Trace ``model`` with ``input_array`` (default ``model.example_input_array``) when ``log_graph=True``."""
        if not self._log_graph:
            return
        input_array = getattr(model, "example_input_array", None) if input_array is None else input_array
        if input_array is None:
            rank_zero_warn(
                "Could not log computational graph to TensorBoard: The `model.example_input_array` attribute"
                " is not set or `input_array` was not given."
            )
            return
        if not isinstance(input_array, (Tensor, tuple)):
            rank_zero_warn(
                "Could not log computational graph to TensorBoard: The `input_array` or `model.example_input_array`"
                f" has type {type(input_array)} which can't be traced by TensorBoard. Make the input array a tuple"
                " representing the positional arguments to the model's `forward()` implementation."
            )
            return
        module: Any = model
        if callable(getattr(module, "_apply_batch_transfer_handler", None)):
            # a LightningModule: through its batch-transfer hooks, as a batch of dataloader 0 (as Lightning does)
            input_array = module._apply_batch_transfer_handler(module._on_before_batch_transfer(input_array))
        else:
            device = _module_device(model)
            if device is not None:
                input_array = _move(input_array, device)
        # tracing reads every attribute of the module: `trainer` must not raise outside a Trainer. (The warning
        # filters stay as they are, as in Lightning: changing them makes Python show again every warning it had
        # shown once, at each graph logged.)
        from ember.core.module import LightningModule

        scripting, LightningModule._jit_is_scripting = LightningModule._jit_is_scripting, True
        try:
            self.experiment.add_graph(model, input_array)
        finally:
            LightningModule._jit_is_scripting = scripting

    @rank_zero_only
    def save(self) -> None:
        """Write the kept scalars and flush the event files (at most once a second), and write
        ``hparams.yaml`` if the log folder lacks it (as in Lightning, the disk is asked each time).

        The folder is made if nothing made it yet: Lightning's ``save`` makes its writer, and with it
        the folder, so a logger used without a Trainer keeps hyperparameters logged with
        ``default_hp_metric=False`` (no value, hence no event file, here). The trainer calls this after
        every logger write; on fast steps the writes are spaced out. ``finalize`` always writes and flushes.
        """
        if self._experiment is not None or self._pending:
            now = time.monotonic()
            if now - self._last_flush >= _FLUSH_INTERVAL:
                self._flush()
                self._last_flush = now
        log_dir = self.log_dir
        hparams_file = os.path.join(log_dir, self.NAME_HPARAMS_FILE)
        if not is_file(hparams_file):
            _make_folder(log_dir)
            _save_hparams_to_yaml(hparams_file, self.hparams)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Write what is kept, flush and close the event files; on success also write ``hparams.yaml``."""
        self._flush()
        if self._scalar_file is not None:
            self._scalar_file.close()
            self._scalar_file = None  # the next stage's scalars choose their file afresh
        if self._experiment is not None:
            self._experiment.close()
        if status == "success":
            self.save()

    def _flush(self) -> None:
        if self._pending:
            self._write_pending()
        if self._experiment is not None:
            self._experiment.flush()

    def __getstate__(self) -> dict[str, Any]:
        # the writers hold open files (and the SummaryWriter a thread): recreate them after unpickling
        state = self.__dict__.copy()
        state["_experiment"] = None
        state["_scalar_file"] = None
        return state


_TENSORBOARD_AVAILABLE = RequirementCache("tensorboard")  # Lightning's (Fabric's) flag, decided on first use
_FLUSH_INTERVAL = 1.0  # seconds between flushes requested by `save()`
# SummaryWriter options that concern only its buffering, so the scalar file can stand in for it
_SCALAR_FILE_OPTIONS = frozenset({"max_queue", "flush_secs", "filename_suffix", "comment"})


def _make_folder(path: str) -> None:
    """Create the folder ``path`` and its parents (the standard library for a local path, fsspec for a remote one)."""
    if is_local(path):
        os.makedirs(local_path(path), exist_ok=True)
    else:
        get_filesystem(path).makedirs(path, exist_ok=True)


def _tensorboard_available() -> bool:
    return flag_or_importable(_TENSORBOARD_AVAILABLE, "tensorboard")


def _module_device(model: Module) -> Any:
    for parameter in model.parameters():
        return parameter.device
    return None


def _move(value: Any, device: Any) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_move(v, device) for v in value)
    return value


lightning_style_annotations(TensorBoardLogger)  # Lightning's `typing` forms in the signature
