"""What ``ckpt_path=`` names: ``None``, a path, ``"last"``, ``"best"`` or ``"hpc"`` (a SLURM requeue).

Example::

    path = resolve_ckpt_path(trainer, "last", "fit", model_given=True)  # the newest last.ckpt, or None
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from ember.checkpoint.files import get_filesystem
from ember.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


def resolve_ckpt_path(t: Trainer, ckpt_path: Any, fn: str, model_given: bool) -> str | None:
    """Turn ``"best"``, ``"last"``, ``"hpc"``, ``None`` or a path into a file path (or None for a fresh start)."""
    implied = ckpt_path is None
    if implied:
        ckpt_path = _implied(t, fn, model_given)
        if ckpt_path is None:
            return None
    if ckpt_path == "best":
        return _best(t, fn, implied)
    if ckpt_path == "hpc":
        return _hpc(t, fn)
    if ckpt_path == "last":
        return _last(t, fn)
    if not ckpt_path:  # "" (an empty command-line value passed on): no file can be meant
        raise ValueError(
            f"`.{fn}()` found no path for the best weights: {ckpt_path!r}. Please"
            f" specify a path for a checkpoint `.{fn}(ckpt_path=PATH)`"
        )
    path = str(ckpt_path)
    if not get_filesystem(path).exists(path):
        raise FileNotFoundError(
            f"Checkpoint file not found: {path}. Pass an existing file, `ckpt_path='last'` or `ckpt_path='best'`."
        )
    return path


def managed_ckpt_path(ckpt_path: Any) -> Any:
    """The checkpoint a program chose with ``trainer.ckpt_path = ...``, loaded as it is set (``"best"`` and
    ``"last"`` name files there, as in Lightning).

    A value that is no path (a list, a number) is Lightning's ``FileNotFoundError``, not an object to read
    the checkpoint from.
    """
    if not isinstance(ckpt_path, (str, os.PathLike)):
        raise FileNotFoundError(
            f"Checkpoint file not found: {ckpt_path}. Set `trainer.ckpt_path` to the path of a checkpoint file."
        )
    return ckpt_path


def _implied(t: Trainer, fn: str, model_given: bool) -> str | None:
    """What ``ckpt_path=None`` means: a fresh start, or a checkpoint the run implies."""
    from ember.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
    from ember.distributed.environments import SLURMEnvironment

    if fn == "fit":
        if SLURMEnvironment.detect() and hpc_resume_path(t.default_root_dir):
            return "hpc"  # a requeued SLURM job continues from the checkpoint it saved before it left
        if any(isinstance(cb, OnExceptionCheckpoint) for cb in t.callbacks):
            return "last"
        return None
    if model_given:
        return None
    on_exception = any(isinstance(cb, OnExceptionCheckpoint) for cb in t.callbacks)
    rank_zero_warn(
        f"`.{fn}(ckpt_path=None)` was called without a model. The best model of the previous `fit` call will be"
        " used."
        + (
            " There is also an on-exception checkpoint available, however it is used by default only when fitting."
            if on_exception
            else ""
        )
        + f" You can pass `.{fn}(ckpt_path='best')` to use the best model or `.{fn}(ckpt_path='last')`"
        " to use the last model. If you pass a value, this warning will be silenced."
    )
    return "best"


def _best(t: Trainer, fn: str, implied: bool = False) -> str:
    # called without a model and without `ckpt_path`: the other way out is to pass the model
    or_model = f" Or pass the model, `.{fn}(model, ...)`, to use the weights it has now." if implied else ""
    checkpoints = t.checkpoint_callbacks
    if len(checkpoints) > 1:
        rank_zero_warn(
            f'`.{fn}(ckpt_path="best")` is called with Trainer configured with multiple `ModelCheckpoint`'
            " callbacks. It will use the best checkpoint path from first checkpoint callback."
        )
    callbacks = [cb for cb in checkpoints if hasattr(cb, "best_model_path")]
    if not callbacks:
        raise ValueError(
            f'`.{fn}(ckpt_path="best")` is set but `ModelCheckpoint` is not configured. Add'
            " `ModelCheckpoint(...)` to the callbacks, or pass a checkpoint file path." + or_model
        )
    best = callbacks[0].best_model_path
    if not best and t.fast_dev_run:  # checked once a ModelCheckpoint is known to be there, as in Lightning
        raise ValueError(
            f'You cannot execute `.{fn}(ckpt_path="best")` with `fast_dev_run=True`. Please pass an exact checkpoint'
            f" path to `.{fn}(ckpt_path=...)`"
        )
    if not best:
        if getattr(callbacks[0], "save_top_k", 1) == 0:
            why = "It keeps no best checkpoint (`save_top_k=0`): set `save_top_k` to 1 or more"
        elif t.global_step == 0:
            why = "It has not saved a best checkpoint yet: run `fit` first"
        else:  # a fit ran, and the callback's triggers saved nothing in it
            why = "It saved no checkpoint in the fit (its `every_n_*` settings or `monitor` decide when it saves)"
        raise ValueError(
            f'`.{fn}(ckpt_path="best")` is set but `ModelCheckpoint` is not configured to save the best model.'
            f" {why}, or pass `.{fn}(ckpt_path=<path>)`." + or_model
        )
    return best


def _hpc(t: Trainer, fn: str) -> str:
    path = hpc_resume_path(t.default_root_dir)
    if path is None:
        raise ValueError(
            f'`.{fn}(ckpt_path="hpc")` is set but no HPC checkpoint was found. Please pass an exact checkpoint path'
            f" to `.{fn}(ckpt_path=...)` (no `hpc_ckpt_<n>.ckpt` in {t.default_root_dir})."
        )
    return path


def _last(t: Trainer, fn: str) -> str | None:
    candidates = _last_candidates(t)
    if not candidates:
        rank_zero_warn(
            f'.{fn}(ckpt_path="last") is set, but there is no last checkpoint available. No checkpoint will be loaded.'
            " HINT: Set `ModelCheckpoint(..., save_last=True)`."
        )
        return None
    return max(candidates, key=_mtime)


def _hpc_numbers(folder: str) -> list[int]:
    fs = get_filesystem(folder)
    if not fs.isdir(folder):
        return []
    names = (os.path.basename(str(entry).rstrip("/")) for entry in fs.ls(folder, detail=False))
    return [int(m.group(1)) for m in (re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", n) for n in names) if m]


def hpc_resume_path(folder: str) -> str | None:
    """The newest ``hpc_ckpt_<n>.ckpt`` in ``folder`` (what a requeued SLURM job resumes from), if any."""
    numbers = _hpc_numbers(folder)
    return os.path.join(folder, f"hpc_ckpt_{max(numbers)}.ckpt") if numbers else None


def hpc_save_path(folder: str) -> str:
    """Where the next SLURM requeue checkpoint goes: ``hpc_ckpt_<n+1>.ckpt`` in ``folder`` (Lightning's names)."""
    return os.path.join(folder, f"hpc_ckpt_{max(_hpc_numbers(folder), default=0) + 1}.ckpt")


def _last_candidates(t: Trainer) -> list[str]:
    from ember.callbacks.checkpoint import Checkpoint
    from ember.callbacks.on_exception_checkpoint import OnExceptionCheckpoint

    found: list[str] = []
    for cb in t.callbacks:
        if isinstance(cb, OnExceptionCheckpoint):
            path = getattr(cb, "ckpt_path", None)
            if path and get_filesystem(path).exists(path):
                found.append(path)
        elif isinstance(cb, Checkpoint):
            dirpath = getattr(cb, "dirpath", None)
            if dirpath is None:
                dirpath = getattr(cb, "_resolve_dirpath", lambda _t: None)(t)
            if not dirpath:
                continue
            fs = get_filesystem(str(dirpath))
            if not fs.isdir(str(dirpath)):
                continue
            is_last = last_name_pattern(getattr(cb, "CHECKPOINT_NAME_LAST", "last"))
            if is_last is None:
                continue
            extension = getattr(cb, "FILE_EXTENSION", ".ckpt")
            for entry in fs.ls(str(dirpath), detail=False):
                stem, suffix = os.path.splitext(os.path.basename(entry))
                if suffix == extension and is_last.match(stem):
                    found.append(
                        entry
                        if "://" in str(dirpath) or os.path.isabs(entry)
                        else os.path.join(str(dirpath), os.path.basename(entry))
                    )
    return found


def last_name_pattern(name: str) -> re.Pattern[str] | None:
    """What a last checkpoint's file name (without extension) starts with, for ``CHECKPOINT_NAME_LAST = name``.

    As Lightning finds them: a name that starts with the last name (``last.ckpt``, ``last-v1.ckpt``,
    ``last_epoch=1.ckpt``). A templated name (``"{epoch}-last"``, ``"last-{epoch}-{step}"``) matches the
    names it formats to, each field standing for any text (Lightning never finds those); one made of
    fields alone (``"{epoch}"``) could be any checkpoint, so none counts as the last (None).
    """
    parts = re.split(r"\{[^{}]*\}", name)
    if not "".join(parts):
        return None
    return re.compile(".*".join(re.escape(part) for part in parts))


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0
