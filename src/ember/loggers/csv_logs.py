"""``CSVLogger``: metrics in ``metrics.csv`` and hyperparameters in ``hparams.yaml``; no extra packages.

Layout (as Lightning): ``save_dir/name/version_N/{metrics.csv,hparams.yaml}``. Rows are kept in
memory and written at ``save()`` (the trainer calls it after each write), every
``flush_logs_every_n_steps`` steps, and at ``finalize``.

Ember difference: when the run continues into a version folder that already has a
``metrics.csv`` (resuming with a fixed ``version``), rows are appended to it, and its columns are
kept, instead of the old file being deleted.
"""

from __future__ import annotations

import csv
import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from ember.loggers.logger import FolderLogger, rank_zero_experiment
from ember.loggers.utilities import (
    _add_prefix,
    _check_writable,
    _convert_params,
    _next_version,
    _save_hparams_to_yaml,
    _to_python,
)
from ember.utilities.rank_zero import rank_zero_only, rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations


def _filesystem(path: str) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(path)


def _join(*parts: str) -> str:
    # os.path.join keeps "s3://bucket" prefixes intact and handles name="" the way Lightning does
    return os.path.join(*parts)


class ExperimentWriter:
    """Buffers metric rows and writes ``metrics.csv`` and ``hparams.yaml`` in ``log_dir``.

    Example::

        >>> writer = ExperimentWriter("logs/version_0")  # doctest: +SKIP
        >>> writer.log_metrics({"loss": 0.5}, step=0); writer.save()  # doctest: +SKIP
    """

    NAME_METRICS_FILE = "metrics.csv"
    NAME_HPARAMS_FILE = "hparams.yaml"

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.metrics: list[dict[str, Any]] = []
        self.metrics_keys: list[str] = []
        self.hparams: dict[str, Any] = {}
        self._fs, _ = _filesystem(log_dir)
        self.metrics_file_path = _join(log_dir, self.NAME_METRICS_FILE)
        if not self._fs.isfile(self.metrics_file_path) and self._fs.isdir(log_dir) and self._fs.ls(log_dir):
            # Lightning's first sentence (it goes on to say the files will be deleted; neither deletes them)
            rank_zero_warn(
                f"Experiment logs directory {log_dir} exists and is not empty. Its files stay; `metrics.csv` is"
                " written beside them."
            )
        self._fs.makedirs(log_dir, exist_ok=True)
        if self._fs.isfile(self.metrics_file_path):
            # continuing an earlier run in the same version folder: keep its columns, append rows
            self.metrics_keys = self._header_on_file()
            rank_zero_warn(
                f"Experiment logs directory {log_dir} exists and is not empty: it already has a"
                f" {self.NAME_METRICS_FILE}. New rows will be appended to it (Lightning would delete it); pass another"
                " `version` to start a separate log."
            )

    def log_hparams(self, params: dict[str, Any]) -> None:
        """Record hyperparameters and rewrite ``hparams.yaml``."""
        self.hparams.update(params)
        _save_hparams_to_yaml(_join(self.log_dir, self.NAME_HPARAMS_FILE), self.hparams)

    def log_metrics(self, metrics_dict: Mapping[str, Any], step: int | None = None) -> None:
        """Buffer one row."""
        if step is None:
            step = len(self.metrics)
        row = {key: _to_python(value) for key, value in metrics_dict.items()}
        row["step"] = step
        self.metrics.append(row)

    def save(self) -> None:
        """Write buffered rows; rewrite the whole file when new columns appeared."""
        if not self.metrics:
            return
        file_exists = self._fs.isfile(self.metrics_file_path)
        before = list(self.metrics_keys)
        self._record_new_keys()
        if file_exists:
            on_file = self._header_on_file()
            # columns another copy of this logger wrote (the process `ddp_spawn` started for `fit`, when
            # this one runs `test`): kept, so that no row lands under another column's name
            unseen = [key for key in on_file if key not in self.metrics_keys]
            if unseen:
                self.metrics_keys.extend(unseen)
                self.metrics_keys.sort()
            if self.metrics_keys != on_file:
                try:
                    self._rewrite_with_new_header(self.metrics_keys)
                except BaseException:
                    self.metrics_keys[:] = before  # the file keeps its header: so does this writer
                    raise
        with self._fs.open(self.metrics_file_path, "a" if file_exists else "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            if not file_exists:
                writer.writeheader()
            writer.writerows(self.metrics)
        self.metrics = []

    def _record_new_keys(self) -> set[str]:
        """Adds the keys of the buffered rows not seen before to ``metrics_keys`` and returns them.

        Lightning's hook, with its behaviour: the columns are kept sorted, and old rows get empty cells for
        the new ones. A writer subclass overrides it to order the columns its own way.
        """
        new_keys = {key for row in self.metrics for key in row} - set(self.metrics_keys)
        if new_keys:
            self.metrics_keys.extend(new_keys)
            self.metrics_keys.sort()
        return new_keys

    def _header_on_file(self) -> list[str]:
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            return next(csv.reader(file), None) or []

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            rows = list(csv.DictReader(file))
        tmp_path = self.metrics_file_path + ".tmp"
        try:
            with self._fs.open(tmp_path, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=fieldnames)
                writer.writeheader()
                writer.writerows(rows)
            # replace in one step so a crash mid-rewrite cannot lose the existing rows
            self._fs.mv(tmp_path, self.metrics_file_path)
        finally:
            if self._fs.exists(tmp_path):
                self._fs.rm(tmp_path)


class CSVLogger(FolderLogger):
    r"""Log metrics to ``metrics.csv`` and hyperparameters to ``hparams.yaml`` on any fsspec file system.

    Args:
        save_dir: folder under which ``name/version_N`` is created.
        name: experiment name; ``""`` or ``None`` puts the versions directly in ``save_dir``.
        version: an int gives ``version_<int>``; a str is used as the folder name; ``None`` picks
            the next free ``version_N``.
        prefix: string put in front of every metric key (joined with ``"-"``).
        flush_logs_every_n_steps: write buffered rows every this many steps.

    Example::

        from ember.loggers import CSVLogger

        logger = CSVLogger("logs", name="my_exp")
        trainer = Trainer(logger=logger)   # logs/my_exp/version_0/metrics.csv
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        save_dir: str | os.PathLike,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        super().__init__()
        self._save_dir = os.fspath(save_dir)
        # Lightning's CSVLogger keeps Fabric's copy of `save_dir` here: only `_get_next_version` reads it (setting it
        # moves no file in Lightning either); programs that redirect their loggers set it
        self._root_dir = self._save_dir
        self._name = name or ""
        self._version = version
        self._prefix = prefix
        self._flush_logs_every_n_steps = flush_logs_every_n_steps
        self._experiment: ExperimentWriter | None = None
        _check_writable(self._save_dir, type(self).__name__)

    @property
    def log_dir(self) -> str:
        """``root_dir/version_N`` (or ``root_dir/<version>`` for a string version)."""
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        return _join(self.root_dir, version)

    def _get_next_version(self) -> int:
        """The next free ``version_N`` number under ``_root_dir/name`` (which is ``root_dir`` unless a program set
        ``_root_dir``), as Lightning's reads it."""
        return _next_version(_join(self._root_dir, self.name))

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The ``ExperimentWriter`` that owns the files (a ``DummyExperiment`` on non-zero ranks)."""
        if self._experiment is None:
            self._experiment = ExperimentWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None = None) -> None:
        """Write ``params`` to ``hparams.yaml``."""
        self.experiment.log_hparams(_convert_params(params))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Buffer a row of ``metrics`` at ``step`` (written at the next ``save``)."""
        metrics = _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        if step is None:
            step = len(self.experiment.metrics)
        self.experiment.log_metrics(metrics, step)
        if (step + 1) % self._flush_logs_every_n_steps == 0:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        """Write buffered rows to ``metrics.csv``."""
        super().save()
        self.experiment.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Write what is left; does nothing if nothing was ever logged."""
        if self._experiment is None:
            return
        self.save()


lightning_style_annotations(CSVLogger)  # Lightning's `typing` forms in the signature
