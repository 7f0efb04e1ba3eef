"""``Logger``: the base class of experiment loggers, and the do-nothing ``DummyLogger``.

The trainer calls, on every rank: ``log_hyperparams`` and ``log_graph`` once at the start of
fitting, ``log_metrics(metrics, step)`` followed by ``save()`` every ``log_every_n_steps`` and at
epoch ends, ``after_save_checkpoint`` after a checkpoint is written, and ``finalize(status)`` at
the end ("success", "failed" or "aborted"). Subclasses decorate these with ``rank_zero_only`` so
only global rank 0 writes, and wrap ``experiment`` with ``rank_zero_experiment`` so other ranks
get a ``DummyExperiment`` that accepts any call.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from argparse import Namespace
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

from torch import Tensor
from torch.nn import Module

from ember.checkpoint.files import get_filesystem
from ember.loggers.utilities import _check_writable, _next_version
from ember.utilities.rank_zero import rank_zero_only


class _DummyExperiment:
    """Stands in for the real experiment object on non-zero ranks: every attribute is a no-op.

    Lightning's private name (a program that prints the experiment's type sees the same); the public
    ``DummyExperiment`` below is the same class.

    Example::

        >>> DummyExperiment().add_scalar("loss", 1.0)  # does nothing
    """

    def nop(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Callable:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # copy/pickle protocols behave as for a plain object
        return self.nop

    def __getitem__(self, idx: int) -> _DummyExperiment:
        # lets ``logger.experiment[0].add_image(...)`` run on every rank
        return self

    def __setitem__(self, *args: Any, **kwargs: Any) -> None:
        pass


DummyExperiment = _DummyExperiment  # Lightning's public alias


def rank_zero_experiment(fn: Callable) -> Callable:
    """Decorate an ``experiment`` property getter: rank 0 gets the real object, others a ``DummyExperiment``."""

    @wraps(fn)
    def experiment(self: Logger) -> Any:
        if rank_zero_only.rank > 0:  # type: ignore[attr-defined]
            return DummyExperiment()
        return fn(self)

    return experiment


# what Lightning's `Logger` inherits from Fabric's: a class that mixes Ember's `Logger` with an
# implementation of these (dvclive's `DVCLiveLogger`) gets that implementation, as in Lightning
_FABRIC_LEVEL = (
    "name",
    "version",
    "root_dir",
    "log_dir",
    "group_separator",
    "log_metrics",
    "log_hyperparams",
    "log_graph",
    "save",
    "finalize",
)


def _implementations_after(cls: type) -> dict[str, Any]:
    """Each of ``_FABRIC_LEVEL`` as the first class after Ember's ``Logger`` in ``cls``'s MRO defines it."""
    found: dict[str, Any] = {}
    mro = cls.__mro__
    for klass in reversed(mro[mro.index(Logger) + 1 :]):  # the nearest class last, so that it wins
        if klass not in (ABC, object):
            found.update((name, vars(klass)[name]) for name in _FABRIC_LEVEL if name in vars(klass))
    return found


class Logger(ABC):
    """Base class for experiment loggers.

    Subclasses implement ``name``, ``version``, ``log_metrics`` and ``log_hyperparams``; the rest
    has working defaults. A subclass may also take them from a class it lists after ``Logger``
    (Lightning's ``Logger`` gets them from Fabric's this way: ``class MyLogger(Logger, FabricImpl)``).

    Example::

        class PrintLogger(Logger):
            name = "print"
            version = 0

            @rank_zero_only
            def log_metrics(self, metrics, step=None):
                print(step, metrics)

            @rank_zero_only
            def log_hyperparams(self, params, *args, **kwargs):
                print(params)

        trainer = Trainer(logger=PrintLogger())
    """

    # what a class listed after `Logger` implements, by name (computed once per class)
    _later: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._later = _implementations_after(cls)
        before = cls.__mro__[: cls.__mro__.index(Logger)]
        for name, implementation in cls._later.items():
            if not any(name in vars(k) for k in before):
                setattr(cls, name, implementation)  # the abstract ones no longer are, as in Lightning

    @property
    @abstractmethod
    def name(self) -> str | None:
        """The experiment name."""

    @property
    @abstractmethod
    def version(self) -> int | str | None:
        """The experiment version."""

    @property
    def root_dir(self) -> str | None:
        """The folder that holds every version of this experiment, or ``None`` if nothing is saved locally."""
        return None

    @property
    def log_dir(self) -> str | None:
        """The folder of this version of the experiment, or ``None`` if nothing is saved locally."""
        return None

    @property
    def save_dir(self) -> str | None:
        """The folder the logger was asked to save into, or ``None`` if nothing is saved locally."""
        return None

    @property
    def group_separator(self) -> str:
        """The separator loggers use to group metrics into sections, e.g. ``train/loss``."""
        return "/"

    # The bodies below pass a `super()` call on to a class listed after `Logger`, where there is one.
    @abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, *args: Any, **kwargs: Any) -> None:
        """Record ``metrics`` (name -> number) at ``step``. (The extra arguments are those a class listed
        after ``Logger`` takes: dvclive's ``sync``.)"""
        later = self._later.get("log_metrics")
        if later is not None:
            later(self, metrics, step, *args, **kwargs)

    @abstractmethod
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Record hyperparameters (a dict, ``Namespace`` or ``AttributeDict``)."""
        later = self._later.get("log_hyperparams")
        if later is not None:
            later(self, params, *args, **kwargs)

    def log_graph(self, model: Module, input_array: Tensor | None = None) -> None:
        """Record the model's computational graph (a no-op unless the logger supports it)."""
        later = self._later.get("log_graph")
        if later is not None:
            later(self, model, input_array)

    def save(self) -> None:
        """Write buffered data to disk."""
        later = self._later.get("save")
        if later is not None:
            later(self)

    def finalize(self, status: str) -> None:
        """Finish the experiment; ``status`` is "success", "failed" or "aborted"."""
        later = self._later.get("finalize")
        if later is not None:
            later(self, status)
        else:
            self.save()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Called after ``checkpoint_callback`` (a ``ModelCheckpoint``) wrote a checkpoint."""


class FolderLogger(Logger):
    """A logger that writes into ``save_dir/name/version_N`` (CSV and TensorBoard)."""

    _save_dir: str
    _name: str
    _version: int | str | None

    def _check_save_dir_writable(self) -> None:
        """Raise ``PermissionError``/``NotADirectoryError`` naming the path if ``save_dir/name`` cannot be written.

        The trainer calls this before training starts so that a bad folder fails in the first second
        rather than at the first log write. It reads the folder given, not the ``save_dir``/``root_dir``
        properties, which a subclass may compute. (Lightning checks no folder; other loggers are not checked.)
        """
        _check_writable(os.path.join(self._save_dir, self._name), type(self).__name__)

    @property
    def name(self) -> str:
        """The experiment name."""
        return self._name

    @property
    def version(self) -> int | str:
        """The version given, or the next free ``version_N`` number (decided on first use)."""
        if self._version is None:
            self._version = self._get_next_version()
        return self._version

    def _get_next_version(self) -> int:
        """The next free ``version_N`` number under ``root_dir``, asked afresh each call.

        Lightning's private method, which programs call to give a second logger the first one's version
        (``CSVLogger(save_dir, version=tb_logger._get_next_version())``); ``version`` asks it too, so a
        subclass that overrides it numbers its versions its own way, as in Lightning.
        """
        return _next_version(self.root_dir)

    @property
    def _fs(self) -> Any:
        """The fsspec filesystem that holds ``save_dir`` (Lightning's attribute; fsspec is imported when it is read)."""
        return get_filesystem(self.save_dir)

    @property
    def save_dir(self) -> str:
        """The folder given as ``save_dir``."""
        return self._save_dir

    @property
    def root_dir(self) -> str:
        """``save_dir/name``: the parent of all versions."""
        return os.path.join(self.save_dir, self.name)


class DummyLogger(Logger):
    """A logger that does nothing; the trainer uses it for ``fast_dev_run``.

    Example::

        >>> DummyLogger().log_metrics({"loss": 1.0})  # does nothing
    """

    def __init__(self) -> None:
        super().__init__()
        self._experiment = DummyExperiment()

    @property
    def experiment(self) -> DummyExperiment:
        return self._experiment

    def log_metrics(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        pass

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    def __getitem__(self, idx: int) -> DummyLogger:
        return self

    def __getattr__(self, name: str) -> Callable:
        if name.startswith("__") and name.endswith("__"):
            # keep copy/pickle protocols (``__deepcopy__``, ``__getstate__``...) working normally
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> None:
            return None

        return method
