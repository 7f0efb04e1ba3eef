"""The loggers and callbacks a Trainer adds by itself, and the order callbacks run in."""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterable, Mapping
from typing import Any

from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import WarningCache, rank_zero_info, rank_zero_warn

# What the trainer calls on every logger; a class of your own that has these works without
# subclassing `Logger` (as in Lightning).
LOGGER_METHODS = ("log_metrics", "log_hyperparams", "save", "finalize")


def configure_loggers(logger: Any, default_root_dir: str) -> list[Any]:
    """``Trainer(logger=...)``: True or None is the default logger, False none, else one or a list."""
    if logger is None or logger is True:
        return [default_logger(default_root_dir)]
    if logger is False:
        return []
    if isinstance(logger, Iterable) and not isinstance(logger, (str, bytes, dict)) and not _is_logger(logger):
        loggers = list(logger)
    else:
        loggers = [logger]
    for item in loggers:
        _check_logger(item)
    return loggers


def _is_logger(obj: Any) -> bool:
    from ember.loggers.logger import Logger

    return isinstance(obj, Logger)


def _check_logger(obj: Any) -> None:
    if _is_logger(obj):
        return
    missing = [name for name in LOGGER_METHODS if not callable(getattr(obj, name, None))]
    if not missing:
        return
    what = f"{obj!r} ({type(obj).__name__})"
    detail = "" if len(missing) == len(LOGGER_METHODS) else f" (missing {', '.join(f'`{m}`' for m in missing)})"
    raise TypeError(
        f"`Trainer(logger=...)` got {what}, which is not a logger{detail}. Pass True/False/None (the default"
        " logger, or none), a `Logger` such as `CSVLogger(...)` or `TensorBoardLogger(...)`, or a list of them;"
        f" an object of your own needs the methods {', '.join(f'`{m}`' for m in LOGGER_METHODS)}."
    )


_csv_default_warning = WarningCache()


def default_logger(save_dir: str) -> Any:
    """TensorBoard when tensorboard (or tensorboardX) is installed, else CSV (as Lightning chooses)."""
    if any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX")):
        from ember.loggers.tensorboard import TensorBoardLogger

        slurm_batch_job = "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_JOB_NAME") not in (
            "bash",
            "interactive",
        )
        version = os.environ["SLURM_JOB_ID"] if slurm_batch_job else None

        return TensorBoardLogger(save_dir=save_dir, version=version)
    from ember.loggers.csv_logs import CSVLogger
    from ember.utilities.imports import lightning_package

    package = lightning_package()
    if package is None:  # a program written for Ember
        _csv_default_warning.warn(
            "`logger=True` uses `CSVLogger` as the default logger: neither `tensorboard` nor `tensorboardX` is"
            " installed. `pip install 'ember[tensorboard]'` (or `tensorboardX`) makes TensorBoard the default."
        )
    else:  # Lightning's words, naming the package the program imported
        _csv_default_warning.warn(
            f"Starting from v1.9.0, `tensorboardX` has been removed as a dependency of the `{package}`"
            " package, due to potential conflicts with other packages in the ML ecosystem. For this reason,"
            " `logger=True` will use `CSVLogger` as the default logger, unless the `tensorboard`"
            " or `tensorboardX` packages are found."
            " Please `pip install lightning[extra]` or one of them to enable TensorBoard support by default"
        )
    return CSVLogger(save_dir=save_dir)  # as Lightning: the SLURM job's version is TensorBoard's only


_PASS_A_LIST = "pass `callbacks=[ModelCheckpoint(...), EarlyStopping(...)]`"


def _callback_list(callbacks: Any, given: str = "`Trainer(callbacks=...)` got", fix: str = _PASS_A_LIST) -> list[Any]:
    """One callback, an iterable of them, or none (a false value), as a new list of callbacks; anything else is a
    ``TypeError`` that starts with ``given`` (who gave it) and ends with ``fix`` (how to give a list)."""
    if isinstance(callbacks, Callback):
        return [callbacks]
    if isinstance(callbacks, Iterable) and not isinstance(callbacks, (str, bytes, Mapping)):
        listed = list(callbacks)
    elif not callbacks:  # None, or a false value (`0`, `False`, `""`): none, as Lightning takes it
        return []
    else:
        if isinstance(callbacks, type) and issubclass(callbacks, Callback):
            raise TypeError(f"{given} the class {callbacks.__name__}: pass an instance, `{callbacks.__name__}()`.")
        raise TypeError(
            f"{given} {callbacks!r} ({type(callbacks).__name__}), which is neither a `Callback` nor a list of them:"
            f" {fix}."
        )
    for callback in listed:
        if isinstance(callback, type) and issubclass(callback, Callback):
            raise TypeError(
                f"{given} a list holding the class {callback.__name__}: pass an instance, `{callback.__name__}()`."
            )
        if not isinstance(callback, Callback):
            raise TypeError(
                f"{given} a list holding {callback!r}, which is not a `Callback`: subclass `ember.callbacks.Callback`"
                " and override the hooks you need."
            )
    return listed


def configure_callbacks(
    callbacks: Any,
    enable_checkpointing: bool | None,
    enable_progress_bar: bool | None,
    enable_model_summary: bool | None,
    max_time: Any,
) -> list[Callback]:
    """The user's callbacks plus the defaults (checkpoint, timer, progress bar, summary), in run order."""
    from ember.callbacks.checkpoint import Checkpoint

    cbs = _callback_list(callbacks)
    has_checkpoint = any(isinstance(cb, Checkpoint) for cb in cbs)
    if enable_checkpointing is False and has_checkpoint:
        raise MisconfigurationException(
            "Trainer was configured with `enable_checkpointing=False` but found `ModelCheckpoint` in callbacks list."
        )
    if enable_checkpointing is not False and not has_checkpoint:
        from ember.callbacks.model_checkpoint import ModelCheckpoint

        cbs.append(ModelCheckpoint())
    if max_time is not None:
        from ember.callbacks.timer import Timer, timedelta_from_dict

        if any(isinstance(cb, Timer) for cb in cbs):
            rank_zero_info("Ignoring `Trainer(max_time=...)`, callbacks list already contains a Timer.")
        else:
            if isinstance(max_time, dict):  # (an error in it names `max_time`)
                max_time = timedelta_from_dict(max_time, "Trainer(max_time")
            cbs.append(Timer(duration=max_time, interval="step"))
    from ember.callbacks.progress_bar import ProgressBar

    bars = [cb for cb in cbs if isinstance(cb, ProgressBar)]
    if len(bars) > 1:
        raise MisconfigurationException(
            "You added multiple progress bar callbacks to the Trainer, but currently only one progress bar is supported."
        )
    if bars and enable_progress_bar is False:
        raise MisconfigurationException(
            f"Trainer was configured with `enable_progress_bar=False` but found `{type(bars[0]).__name__}` in"
            " callbacks list."
        )
    if not bars and enable_progress_bar is not False:
        from ember.callbacks.tqdm_progress import TQDMProgressBar

        bars = [TQDMProgressBar()]
        cbs.append(bars[0])
    if enable_model_summary is not False:
        from ember.callbacks.model_summary import ModelSummary

        summaries = [type(cb) for cb in cbs if isinstance(cb, ModelSummary)]
        if summaries:
            rank_zero_info(
                f"Trainer already configured with model summary callbacks: {summaries}."
                " Skipping setting a default `ModelSummary` callback."
            )
        else:
            if bars and type(bars[0]).__name__ == "RichProgressBar":
                from ember.callbacks.rich_model_summary import RichModelSummary

                cbs.append(RichModelSummary())
            else:
                cbs.append(ModelSummary())
    cbs.extend(external_callbacks())
    check_unique_state_keys(cbs)
    return reorder_callbacks(cbs)


def external_callbacks() -> list[Callback]:
    """New callbacks from the installed packages' ``callbacks_factory`` entry points, which Lightning adds to
    every Trainer: each entry point is a function that returns a callback or a list of them.

    Lightning's two packages each read their own group (``lightning.pytorch.callbacks_factory``,
    ``pytorch_lightning.callbacks_factory``); Ember, both packages at once, reads both.
    """
    callbacks: list[Callback] = []
    for factory in _callback_factories():
        made = factory.load()()
        made = made if isinstance(made, list) else [made]
        if made:
            rank_zero_info(
                f"Adding {len(made)} callbacks from entry point '{factory.name}':"
                f" {', '.join(type(cb).__name__ for cb in made)}"
            )
        callbacks.extend(made)
    return callbacks


@functools.cache
def _callback_factories() -> tuple[Any, ...]:
    # the installed packages' metadata is read once a process, not at every Trainer; only the few packages
    # whose entry points mention a callbacks factory have theirs parsed (half of the 5 ms that parsing all
    # of a hundred-odd packages' took)
    from importlib.metadata import distributions

    declared: list[Any] = []
    for dist in distributions():
        text = dist.read_text("entry_points.txt")
        if text and "callbacks_factory" in text:
            declared.extend(dist.entry_points)
    factories: dict[str, Any] = {}
    for group in ("lightning.pytorch.callbacks_factory", "pytorch_lightning.callbacks_factory"):
        for factory in declared:
            if factory.group == group:
                # a function named in both groups (or by two copies of a package) adds its callbacks once
                factories.setdefault(factory.value, factory)
    return tuple(factories.values())


def check_unique_state_keys(callbacks: list[Callback], refuse: bool = True) -> None:
    """Two callbacks with state under the same ``state_key`` would overwrite each other in a checkpoint: an
    error for the Trainer's callbacks, as in Lightning; a warning (``refuse=False``) for those
    ``configure_callbacks`` adds, which Lightning takes without a word."""
    from ember.core.hooks import overrides

    seen: set[str] = set()
    for callback in callbacks:
        if not overrides(callback, Callback, "state_dict"):
            continue
        if callback.state_key in seen:
            name = type(callback).__name__
            message = (
                f"Found more than one stateful callback of type `{name}`. In the current configuration, this callback"
                " does not support being saved alongside other instances of the same type. Please consult the"
                f" documentation of `{name}` regarding valid settings for the callback state to be checkpointable."
                " HINT: The `callback.state_key` must be unique among all callbacks in the Trainer."
            )
            if refuse:
                raise RuntimeError(message)
            rank_zero_warn(message + " Only the last one's state is saved in the checkpoints.")
        seen.add(callback.state_key)


def merge_model_callbacks(trainer_callbacks: list[Callback], model_callbacks: Any) -> list[Callback]:
    """Add ``configure_callbacks()``'s callbacks; each replaces the trainer callbacks of its own type or, where
    there are none, of its nearest base class among the trainer callbacks' types (in its MRO).

    Lightning takes the first trainer type the returned type subclasses in a set's order, which depends on
    memory layout where the returned type subclasses two of them (docs/compat.md); the nearest is the same in
    every run.
    """
    # (text, a number or a class failed in Python's words: "'int' object is not iterable", "'str' object has no
    # attribute 'log'"; a generator was read twice, and its callbacks lost)
    model_callbacks = _callback_list(
        model_callbacks,
        "`LightningModule.configure_callbacks()` returned",
        "return one, or a list, `[ModelCheckpoint(...), EarlyStopping(...)]`",
    )
    if not model_callbacks:
        return trainer_callbacks
    trainer_types = {type(cb) for cb in trainer_callbacks} - {Callback}
    override = set()
    for model_type in {type(cb) for cb in model_callbacks}:
        nearest = next((base for base in model_type.__mro__ if base in trainer_types), None)
        if nearest is not None:
            override.add(nearest)
    if override:
        rank_zero_info(
            "The following callbacks returned in `LightningModule.configure_callbacks` will override existing"
            " callbacks passed to Trainer: " + ", ".join(sorted(t.__name__ for t in override))
        )
    callbacks = [cb for cb in trainer_callbacks if type(cb) not in override]
    callbacks.extend(model_callbacks)
    check_unique_state_keys(callbacks, refuse=False)
    return reorder_callbacks(callbacks)


def reorder_callbacks(callbacks: list[Callback]) -> list[Callback]:
    """Tuner callbacks first, checkpoint callbacks last, the rest in the given order."""
    from ember.callbacks.checkpoint import Checkpoint

    tuner_names = {"BatchSizeFinder", "LearningRateFinder"}
    tuner = [cb for cb in callbacks if any(base.__name__ in tuner_names for base in type(cb).__mro__)]
    checkpoints = [cb for cb in callbacks if isinstance(cb, Checkpoint)]
    others = [cb for cb in callbacks if cb not in tuner and cb not in checkpoints]
    return tuner + others + checkpoints
