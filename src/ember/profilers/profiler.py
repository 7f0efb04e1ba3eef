"""``Profiler``: the interface the trainer records its actions through, and ``PassThroughProfiler``.

The trainer opens a span (``start``/``stop``) around each hook, step, dataloader fetch and
checkpoint save, named as Lightning names them (``[Callback]ModelCheckpoint{...}.on_train_epoch_end``,
``[LightningModule]MyModel.optimizer_step``, ``[Strategy]SingleDeviceStrategy.training_step``,
``[_TrainingEpochLoop].train_dataloader_next``, ``run_training_epoch``, ``save_checkpoint``, ...).
With the default ``PassThroughProfiler`` the loop is built without any span at all.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from ember.utilities.argument_checks import check_type
from ember.utilities.rank_zero import log
from ember.utilities.signature_utils import lightning_style_annotations


class Profiler(ABC):
    """Base class of the profilers: subclass it and define ``start``, ``stop`` and ``summary``.

    Args:
        dirpath: folder for ``filename``; when ``None`` and ``filename`` is given, the trainer's
            ``log_dir`` is used.
        filename: write the report to ``<dirpath>/<stage>-<filename>[-<local_rank>].txt`` instead
            of logging it (the ``ember`` logger, INFO level, rank 0).

    Example::

        class CountingProfiler(Profiler):
            def __init__(self):
                super().__init__()
                self.calls = collections.Counter()

            def start(self, action_name):
                self.calls[action_name] += 1

            def stop(self, action_name):
                pass

            def summary(self):
                return str(self.calls.most_common(10))
    """

    _lightning_module: Any = None  # the module being profiled, set by the trainer when a run starts

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None) -> None:
        if filename:  # (a false one: no file, the report is logged, as in Lightning)
            # it failed when the first report was written, "sequence item 1: expected str instance, int found"
            check_type(type(self).__name__, "filename", filename, (str,), "a file name for the report, or None")
        self.dirpath = dirpath
        self.filename = filename
        self._output_file: TextIO | None = None
        self._write_stream: Callable[[str], Any] | None = None
        self._local_rank: int | None = None
        self._stage: str | None = None

    @abstractmethod
    def start(self, action_name: str) -> None:
        """Start recording ``action_name``."""

    @abstractmethod
    def stop(self, action_name: str) -> None:
        """Stop recording ``action_name``."""

    def summary(self) -> str:
        """The report ``describe`` writes."""
        return ""

    @contextlib.contextmanager
    def profile(self, action_name: str) -> Iterator[str]:
        """Record the code in the ``with`` block as ``action_name``.

        Example::

            with trainer.profiler.profile("load a batch"):
                batch = next(iterator)
        """
        try:
            self.start(action_name)
            yield action_name
        finally:
            self.stop(action_name)

    def setup(self, stage: str, local_rank: int | None = None, log_dir: str | None = None) -> None:
        """Called by the trainer before it runs ``stage`` (``"fit"``, ``"validate"``, ...)."""
        self._stage = stage
        self._local_rank = local_rank
        self.dirpath = self.dirpath or log_dir

    def describe(self) -> None:
        """Write the report (to the file, or the log), then close what ``setup`` opened."""
        self._prepare_streams()
        summary = self.summary()
        if summary and self._write_stream is not None:
            self._write_stream(summary)
        if self._output_file is not None:
            self._output_file.flush()
        self.teardown(stage=self._stage)

    def teardown(self, stage: str | None) -> None:
        """Close the report file."""
        self._write_stream = None
        if self._output_file is not None:
            self._output_file.close()
            self._output_file = None

    @property
    def local_rank(self) -> int:
        return 0 if self._local_rank is None else self._local_rank

    def _prepare_filename(self, action_name: str | None = None, extension: str = ".txt") -> str:
        parts = [p for p in (self._stage, self.filename) if p]
        if self._local_rank is not None:
            parts.append(str(self._local_rank))
        if action_name is not None:
            parts.append(action_name)
        base = re.sub(r"_+", "_", re.sub(r"[\\/:*?\"<>|\n\r\t]", "_", "-".join(parts))).strip()
        return (base or "profile") + extension

    def _prepare_streams(self) -> None:
        if self._write_stream is not None:
            return
        if self.filename and self.dirpath:
            self._output_file = self._open_output(".txt", mode="a")
            self._write_stream = self._output_file.write
        else:
            self._write_stream = self._log_on_rank_zero

    def _open_output(self, extension: str, action_name: str | None = None, mode: str = "wb") -> Any:
        """Open ``<dirpath>/<stage>-<filename>[-<rank>][-<action>]<extension>`` (any fsspec path)."""
        from ember.checkpoint import get_filesystem

        assert self.dirpath is not None, "setup() sets the folder before any output is written"
        dirpath = os.fspath(self.dirpath)
        path = os.path.join(dirpath, self._prepare_filename(action_name=action_name, extension=extension))
        fs = get_filesystem(path)
        fs.makedirs(dirpath, exist_ok=True)
        return fs.open(path, mode)

    def _save_output(self, write: Callable[[str], Any], extension: str, action_name: str | None = None) -> None:
        """Have ``write`` make the file at a local path (pstats and torch.profiler write only
        there), then copy it to ``dirpath``."""
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, "output" + extension)
            write(local)
            with open(local, "rb") as src, self._open_output(extension, action_name) as dst:
                dst.write(src.read())

    def _log_on_rank_zero(self, text: str) -> None:
        if self._local_rank in (None, 0):
            log.info(text)

    def _stats_to_str(self, stats: dict[str, str]) -> str:
        stage = f"{self._stage.upper()} " if self._stage is not None else ""
        lines = [stage + "Profiler Report"]
        for action, value in stats.items():
            header = f"Profile stats for: {action}"
            if self._local_rank is not None:
                header += f" rank: {self._local_rank}"
            lines += [header, value]
        return os.linesep.join(lines)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.teardown(stage=self._stage)


class PassThroughProfiler(Profiler):
    """Records nothing: the trainer's default, and the trainer adds no span for it."""

    def start(self, action_name: str) -> None:
        pass

    def stop(self, action_name: str) -> None:
        pass


def strategy_action(strategy: Any, name: str) -> str:
    """Lightning's action name for a strategy call: ``[Strategy]<class>.<name>``."""
    return f"[Strategy]{type(strategy).__name__}.{name}"


def profiled(profiler: Profiler | None, action_name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` recorded as ``action_name`` on every call; ``fn`` itself when ``profiler`` is ``None``."""
    if profiler is None:
        return fn
    start, stop = profiler.start, profiler.stop

    def call(*args: Any, **kwargs: Any) -> Any:
        start(action_name)
        try:
            return fn(*args, **kwargs)
        finally:
            stop(action_name)

    return call


def profiled_iterator(profiler: Profiler | None, action_name: str, iterator: Iterator[Any]) -> Iterator[Any]:
    """``iterator`` with each ``next`` recorded as ``action_name`` (the dataloader fetch)."""
    if profiler is None:
        return iterator
    return _ProfiledIterator(profiler, action_name, iterator)


class _ProfiledIterator:
    def __init__(self, profiler: Profiler, action_name: str, iterator: Iterator[Any]) -> None:
        self._profiler, self._action, self._iterator = profiler, action_name, iterator

    def __iter__(self) -> _ProfiledIterator:
        return self

    def __next__(self) -> Any:
        self._profiler.start(self._action)
        try:
            return next(self._iterator)
        finally:
            self._profiler.stop(self._action)


def active(profiler: Profiler | None) -> Profiler | None:
    """The profiler the trainer should add spans for, or ``None`` for none."""
    return None if profiler is None or isinstance(profiler, PassThroughProfiler) else profiler


lightning_style_annotations(Profiler)  # Lightning's `typing` forms in the signature
