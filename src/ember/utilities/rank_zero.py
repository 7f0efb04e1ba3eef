"""Run or print only on the process with global rank 0."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

log = logging.getLogger("ember")
# The loggers of modules that load on first use exist from ``import ember``, as all of Lightning's exist
# from its import: a logging config applied in between (Hydra's, with ``disable_existing_loggers``)
# then quiets their messages as it quiets Lightning's. A test keeps this list complete.
_LAZY_MODULE_LOGGERS = (
    "ember.accelerators.cuda",
    "ember.callbacks.early_stopping",
    "ember.callbacks.finetuning",
    "ember.callbacks.model_checkpoint",
    "ember.callbacks.model_summary",
    "ember.callbacks.pruning",
    "ember.checkpoint.contents",
    "ember.demos._download",
    "ember.loggers.mlflow",
    "ember.serve.servable_module_validator",
    "ember.tuner.batch_size_scaling",
    "ember.tuner.lr_finder",
    "ember.utilities.upgrade_checkpoint",
)
for _name in _LAZY_MODULE_LOGGERS:
    logging.getLogger(_name)
T = TypeVar("T")


def _rank_in_env() -> int | None:
    """The rank a launcher gave this process in its environment; ``None`` when there is none.

    Lightning's order: ``LOCAL_RANK`` before ``SLURM_PROCID``, which SLURM sets even where it does not start
    the processes (a one-process run inside a job step of several tasks)."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key)
        if value is not None:
            return int(value)
    return None


def _rank_from_env() -> int:
    rank = _rank_in_env()
    return 0 if rank is None else rank


def rank_zero_only(fn: Callable[..., T], default: Any = None) -> Callable[..., T | None]:
    """Decorate ``fn`` so that it runs only on global rank 0 and returns ``default`` elsewhere.

    Example::

        @rank_zero_only
        def save_report(path): ...
    """

    @wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> T | None:
        if rank_zero_only.rank == 0:  # type: ignore[attr-defined]  # Lightning's public attribute
            return fn(*args, **kwargs)
        return default

    return wrapped


rank_zero_only.rank = _rank_from_env()  # type: ignore[attr-defined]


def _set_rank(rank: int) -> None:
    rank_zero_only.rank = rank  # type: ignore[attr-defined]
    # as Lightning does: the `rank_zero_only` of `lightning_utilities` (torchmetrics warns through it) and of
    # Lightning Fabric, where a library has loaded them, take this process's rank too
    for name in ("lightning_utilities.core.rank_zero", "lightning_fabric.utilities.rank_zero"):
        module = sys.modules.get(name)
        decorator = getattr(module, "rank_zero_only", None)
        if decorator is not None and decorator is not rank_zero_only:
            decorator.rank = rank


# The stack levels are Lightning's, counted through the same frames: a helper (`_info`, `_warn`), the
# function, the `rank_zero_only` wrapper, then the caller. A warning or log record thus names the line that
# called `rank_zero_warn` (or `rank_zero_info`), and a warning given from a shared place (a base class's
# `__init__`) is shown once, not once per caller.
def _info(*args: Any, stacklevel: int = 2, **kwargs: Any) -> None:
    log.info(*args, stacklevel=stacklevel, **kwargs)


def _debug(*args: Any, stacklevel: int = 2, **kwargs: Any) -> None:
    log.debug(*args, stacklevel=stacklevel, **kwargs)


def _warn(message: str | Warning, stacklevel: int = 2, **kwargs: Any) -> None:
    warnings.warn(message, stacklevel=stacklevel, **kwargs)


@rank_zero_only
def rank_zero_info(*args: Any, stacklevel: int = 4, **kwargs: Any) -> None:
    """Log at INFO level on rank 0 only."""
    _info(*args, stacklevel=stacklevel, **kwargs)


@rank_zero_only
def rank_zero_debug(*args: Any, stacklevel: int = 4, **kwargs: Any) -> None:
    """Log at DEBUG level on rank 0 only."""
    _debug(*args, stacklevel=stacklevel, **kwargs)


@rank_zero_only
def rank_zero_warn(
    message: str | Warning, stacklevel: int = 4, category: type[Warning] = UserWarning, **kwargs: Any
) -> None:
    """Issue a warning on rank 0 only."""
    _warn(message, category=category, stacklevel=stacklevel, **kwargs)


class LightningDeprecationWarning(DeprecationWarning):
    """The deprecations Ember announces on Lightning's schedule (Lightning's name, so filters written for it apply).

    Example::

        warnings.filterwarnings("ignore", category=LightningDeprecationWarning)
    """


def rank_zero_deprecation(message: str, stacklevel: int = 5, **kwargs: Any) -> None:
    """Issue a ``LightningDeprecationWarning`` (a ``DeprecationWarning``) on rank 0 only."""
    category = kwargs.pop("category", LightningDeprecationWarning)
    rank_zero_warn(message, stacklevel=stacklevel, category=category, **kwargs)


class WarningCache(set):
    """Warn (or log) each message once: a message already given is not repeated.

    Example::

        warning_cache = WarningCache()
        warning_cache.warn("`batch_size` is ambiguous")   # warns
        warning_cache.warn("`batch_size` is ambiguous")   # silent
    """

    def warn(self, message: str, stacklevel: int = 5, **kwargs: Any) -> None:
        if message not in self:
            self.add(message)
            rank_zero_warn(message, stacklevel=stacklevel, **kwargs)

    def deprecation(self, message: str, stacklevel: int = 6, **kwargs: Any) -> None:
        if message not in self:
            self.add(message)
            rank_zero_deprecation(message, stacklevel=stacklevel, **kwargs)

    def info(self, message: str, stacklevel: int = 5, **kwargs: Any) -> None:
        if message not in self:
            self.add(message)
            rank_zero_info(message, stacklevel=stacklevel, **kwargs)


def rank_prefixed_message(message: str, rank: int | None) -> str:
    """``"[rank: 1] message"``: say which process speaks when every rank prints.

    Example::

        print(rank_prefixed_message("loaded the shard", trainer.global_rank))
    """
    return f"[rank: {rank}] {message}" if rank is not None else message


_own_handler: list[logging.Handler] = []  # the stream handler Ember gave its logger, if it did


def _ensure_log_handler() -> None:
    # As Lightning does at its import: its logger says INFO, and prints through a stream handler of
    # its own unless the program configured logging already (then the root's handlers show it).
    log.setLevel(logging.INFO)
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
        _own_handler.append(handler)


def _settle_log_handler() -> None:
    """Decide again, when a program run under the alias first imports Lightning: Lightning decides at
    that import, and a program may configure logging (``logging.basicConfig``) before it but after
    ``ember run`` imported Ember. Its handlers then get Ember's messages, as they would Lightning's."""
    if _own_handler and logging.getLogger().handlers:
        log.removeHandler(_own_handler.pop())
        log.propagate = True


_ensure_log_handler()
