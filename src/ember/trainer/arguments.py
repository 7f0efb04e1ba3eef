"""Checking and normalising the ``Trainer(...)`` arguments, with errors that say what to pass instead.

Each function covers one group of arguments, so ``Trainer.__init__`` reads as the list of what it
sets. Messages keep Lightning's wording where users and tools match on it.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from inspect import signature
from typing import Any

import torch

from ember.utilities.argument_checks import check_type
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.imports import lightning_package
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn
from ember.utilities.warnings import PossibleUserWarning


def defaults_from_env_vars(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Let ``PL_TRAINER_<ARG>`` environment variables set defaults (explicit arguments win)."""
    params = signature(fn).parameters

    @wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError("Trainer() takes keyword arguments only, e.g. Trainer(max_epochs=3).")
        for name in params:
            env = os.environ.get(f"PL_TRAINER_{name.upper()}")
            if env is not None and name not in kwargs:
                try:
                    kwargs[name] = ast.literal_eval(env)
                except (ValueError, SyntaxError):
                    kwargs[name] = env
        return fn(self, **kwargs)

    return wrapper


_BAREBONES_OFF = ("logger", "enable_checkpointing", "enable_progress_bar", "enable_model_summary", "profiler")


_BAREBONES_REASONS = {
    "enable_checkpointing": "Checkpointing can impact raw speed",
    "logger": "Logging can impact raw speed",
    "enable_progress_bar": "The progress bar can impact raw speed",
    "log_every_n_steps": "Logging can impact raw speed",
    "enable_model_summary": "Model summary can impact raw speed",
    "num_sanity_val_steps": "Sanity checking can impact raw speed",
    "fast_dev_run": "Development run is not meant for raw speed evaluation",
    "detect_anomaly": "Anomaly detection can impact raw speed",
    "profiler": "Profiling can impact raw speed",
}


_BAREBONES_DEACTIVATED = (  # what Lightning lists when barebones mode starts
    " - Checkpointing: `Trainer(enable_checkpointing=True)`",
    " - Progress bar: `Trainer(enable_progress_bar=True)`",
    " - Model summary: `Trainer(enable_model_summary=True)`",
    " - Logging: `Trainer(logger=True)`, `Trainer(log_every_n_steps>0)`,"
    " `LightningModule.log(...)`, `LightningModule.log_dict(...)`",
    " - Sanity checking: `Trainer(num_sanity_val_steps>0)`",
    " - Development run: `Trainer(fast_dev_run=True)`",
    " - Anomaly detection: `Trainer(detect_anomaly=True)`",
    " - Profiling: `Trainer(profiler=...)`",
)


def check_barebones(**switches: Any) -> None:
    """``barebones=True`` turns off everything that costs speed: passing any of it too is an error
    (checked in Lightning's order, with its messages); then it says what is off, as Lightning does."""
    for name, reason in _BAREBONES_REASONS.items():
        value = switches[name]
        counted = name in ("log_every_n_steps", "num_sanity_val_steps", "fast_dev_run")
        off = value is None or value is False or (counted and value == 0)
        if not off:
            raise ValueError(
                f"`Trainer(barebones=True, {name}={value!r})` was passed. {reason} so it is disabled in barebones"
                f" mode: remove `{name}` or set `barebones=False`."
            )
    rank_zero_info(
        "You are running in `Trainer(barebones=True)` mode. All features that may impact raw speed have been"
        " disabled to facilitate analyzing the Trainer overhead. Specifically, the following features are"
        f" deactivated:{os.linesep}{os.linesep.join(_BAREBONES_DEACTIVATED)}"
    )


def check_switches(**switches: Any) -> None:
    """An on/off argument given as a string is refused: a string is true in Python whatever it says, so
    ``enable_checkpointing="False"`` (a config or command-line value not converted) turned checkpointing on in
    Lightning. Other values are read for their truth, as Lightning reads them (``enable_progress_bar=verbose``
    with an int ``verbose`` is common)."""
    for name, value in switches.items():
        if isinstance(value, str):
            raise MisconfigurationException(
                f"`Trainer({name}={value!r})` must be True or False: a string is true whatever it says."
                " Convert it first."
            )


def check_loop_limits(max_epochs: int | None, min_epochs: int | None, max_steps: int, min_steps: int | None) -> None:
    for name, value in (("max_epochs", max_epochs), ("min_epochs", min_epochs), ("min_steps", min_steps)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise MisconfigurationException(
                f"`{name}` must be an int, got {value!r} ({type(value).__name__}): pass a whole number, e.g."
                f" `Trainer({name}=10)`, or None for the default. (A config value given as text needs converting.)"
            )
    if max_epochs is not None and max_epochs < -1:
        raise MisconfigurationException(
            f"`max_epochs` must be a non-negative integer or -1 (no limit). You passed in {max_epochs}."
        )
    if not isinstance(max_steps, int) or max_steps < -1:
        raise MisconfigurationException(
            f"`max_steps` must be a non-negative integer or -1 (no limit). You passed in {max_steps}."
        )
    if min_epochs is not None and min_epochs < 0:
        raise MisconfigurationException(f"`min_epochs` must be >= 0. You passed in {min_epochs}.")
    if min_steps is not None and min_steps < 0:
        raise MisconfigurationException(f"`min_steps` must be >= 0. You passed in {min_steps}.")


def check_optimization(accumulate_grad_batches: Any, gradient_clip_val: Any, gradient_clip_algorithm: Any) -> None:
    accumulate = accumulate_grad_batches
    if not isinstance(accumulate, int) or isinstance(accumulate, bool) or accumulate < 1:
        raise MisconfigurationException(
            f"`Trainer(accumulate_grad_batches={accumulate!r})` must be an int >= 1: the number of"
            " batches whose gradients are summed before each optimizer step."
        )
    if gradient_clip_val is not None and (
        isinstance(gradient_clip_val, bool) or not isinstance(gradient_clip_val, (int, float))
    ):
        raise TypeError(f"`gradient_clip_val` should be an int or a float. Got {gradient_clip_val}.")
    if gradient_clip_val is not None:
        from ember.precision.precision import check_gradient_clip_val  # loaded at fit, not at `import ember`

        check_gradient_clip_val(gradient_clip_val)
    if gradient_clip_algorithm is not None and str(gradient_clip_algorithm).lower() not in ("norm", "value"):
        raise MisconfigurationException(
            f"`gradient_clip_algorithm` {gradient_clip_algorithm} is invalid. Allowed algorithms: ['value', 'norm']."
        )


def fast_dev_run_batches(fast_dev_run: Any) -> int | None:
    """The number of batches ``fast_dev_run`` runs per loop, or ``None`` when it is off.

    Read as Lightning reads it: off when the value is falsy, else ``int(fast_dev_run)`` batches (``True``: 1,
    ``"2"`` or ``2.0``: 2, ``1.5``: 1), with ``int()``'s ``ValueError``/``TypeError`` for a value that is no
    number. A count below 0 is refused here: Lightning refuses a negative int only, and takes ``-1.5`` or
    ``"-1"`` to fail in ``fit`` when it sizes the first loader.
    """
    invalid = f"fast_dev_run={fast_dev_run!r} is not a valid configuration. It should be >= 0 (or True/False)."
    if isinstance(fast_dev_run, int) and fast_dev_run < 0:
        raise MisconfigurationException(invalid)
    if not fast_dev_run:  # None, False, 0, "" and 0.0 turn it off, as in Lightning
        return None
    try:
        batches = int(fast_dev_run)
    except (TypeError, ValueError, OverflowError) as error:  # Lightning's type and text: it reads it with `int()`
        raise type(error)(f"{error}. {invalid}") from None
    if batches < 0:
        raise MisconfigurationException(invalid)
    rank_zero_info(
        f"Running in `fast_dev_run` mode: will run the requested loop using {batches} batch(es)."
        " Logging and checkpointing is suppressed."
    )
    return batches


def validation_interval(
    val_check_interval: Any, check_val_every_n_epoch: Any, note: bool = True
) -> tuple[Any, float | None]:
    """``(val_check_interval, seconds)``: a batch count or epoch fraction, or a wall-clock interval in seconds
    (``note``: as for :func:`batch_limit`)."""
    every = check_val_every_n_epoch
    if every is not None and (not isinstance(every, int) or every <= 0):
        raise MisconfigurationException(
            f"`check_val_every_n_epoch` should be an integer greater than 0 or None. Found {every!r}."
        )
    interval = val_check_interval
    if interval is None:
        return 1.0, None
    if isinstance(interval, (str, timedelta, dict)):
        return interval, parse_time(interval)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        raise MisconfigurationException(
            f"`val_check_interval={interval!r}` must be an int, a float in [0, 1] or a duration."
        )
    if isinstance(interval, float) and not 0.0 <= interval <= 1.0:
        raise MisconfigurationException(
            f"You have passed invalid value {interval} for val_check_interval, it has to be in [0.0, 1.0] or an int:"
            " a fraction of the epoch, or a number of batches."
        )
    if isinstance(interval, int) and interval < 0:
        raise MisconfigurationException(
            f"You have passed invalid value {interval} for val_check_interval, it has to be in [0.0, 1.0] or an int:"
            " a positive int (a number of batches)."
        )
    if isinstance(interval, int) and interval == 0:
        raise MisconfigurationException(f"`val_check_interval` should be a positive int. Found {interval}.")
    if every is None and isinstance(interval, float):
        raise MisconfigurationException(
            "`val_check_interval` should be an integer or a time-based duration (str 'DD:HH:MM:SS',"
            " datetime.timedelta, or dict kwargs for timedelta) when `check_val_every_n_epoch=None`."
            f" Found {interval!r}."
        )
    if note:
        _say_all_or_one(interval, "val_check_interval")
    return interval, None


def count(value: Any, name: str, default: int, minimum: int, meaning: str) -> int:
    """An int setting (``None`` for the default) that must be at least ``minimum``."""
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise MisconfigurationException(f"`{name}` must be an int >= {minimum}{meaning}, got {value!r}.")
    return value


def batch_limit(value: int | float | None, name: str, note: bool = True) -> int | float:
    """A ``limit_*_batches`` value: an int count of batches, or a fraction in [0.0, 1.0] (None: all).

    ``note=False`` leaves out Lightning's note on a limit of 1 or 1.0, for a limit that ``fast_dev_run`` or
    ``overfit_batches`` replaces (Lightning does not read it then)."""
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MisconfigurationException(
            f"`{name}={value!r}` must be an int (a count of batches) or a float in [0.0, 1.0]."
        )
    if isinstance(value, float) and value > 1.0 and value.is_integer():
        return int(value)  # 2.0 batches is 2 batches, as in Lightning
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise MisconfigurationException(
            f"You have passed invalid value {value} for {name}, it has to be in [0.0, 1.0] or an int."
        )
    if isinstance(value, int) and value < 0:
        raise MisconfigurationException(f"`{name}={value}` must not be negative.")
    if note:
        _say_all_or_one(value, name)
    return value


def _say_all_or_one(value: int | float, name: str) -> None:
    """Lightning's note for a limit given as exactly 1 (one batch) or 1.0 (all batches), easy to confuse."""
    if isinstance(value, int) and value == 1:
        what = {
            "limit_train_batches": "1 batch per epoch will be used.",
            "val_check_interval": "validation will run after every batch.",
        }.get(name, "1 batch will be used.")
        rank_zero_info(f"`Trainer({name}=1)` was configured so {what}")
    elif isinstance(value, float) and value == 1.0:
        what = {
            "limit_train_batches": "100% of the batches per epoch will be used.",
            "val_check_interval": "validation will run at the end of the training epoch.",
        }.get(name, "100% of the batches will be used.")
        rank_zero_info(f"`Trainer({name}=1.0)` was configured so {what}")


def folder(value: Any, name: str) -> str | None:
    """A folder argument (``default_root_dir``) as a string path, or None."""
    if value is None:
        return None
    check_type("Trainer", name, value, (str, bytes, os.PathLike), "a folder path (a str or a `pathlib.Path`) or None")
    return os.fsdecode(value)


def parse_time(value: Any) -> float | None:
    """Seconds for a ``"DD:HH:MM:SS"`` string, a ``timedelta`` or a dict of ``timedelta`` arguments."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        from ember.callbacks.timer import timedelta_from_dict

        return timedelta_from_dict(value, "Trainer(val_check_interval").total_seconds()
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) != 4:
            raise MisconfigurationException(f"`{value!r}` is not a duration: use 'DD:HH:MM:SS', a timedelta or a dict.")
        days, hours, minutes, seconds = (int(p) for p in parts)
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()
    return None


def has_epoch_limit(max_epochs: int | None) -> bool:
    """Whether ``max_epochs`` limits the fit (``None`` and -1 do not)."""
    return max_epochs is not None and max_epochs != -1


def resolve_epoch_limits(trainer: Any) -> None:
    """When fit starts, as in Lightning: ``max_epochs=None`` becomes 1000 (with a warning), or -1 when
    ``max_steps`` or a ``Timer`` limits training; ``min_epochs=None`` becomes 1 with ``min_steps``, else 0."""
    if trainer.max_epochs is None:
        timer = any(type(cb).__name__ == "Timer" for cb in trainer.callbacks)
        if trainer.max_steps == -1 and not timer:
            rank_zero_warn(
                "`max_epochs` was not set. Setting it to 1000 epochs. To train without an epoch limit,"
                " set `max_epochs=-1`.",
                category=PossibleUserWarning,
            )
            trainer._max_epochs = 1000
        else:
            trainer._max_epochs = -1
    if trainer.min_epochs is None:
        trainer._min_epochs = 1 if trainer.min_steps is not None else 0


def return_predictions(trainer: Any, value: bool | None) -> bool:
    """``predict(return_predictions=...)``: True by default, except with processes spawned or forked,
    whose predictions stay in the workers (a ``BasePredictionWriter`` writes them), as in Lightning."""
    from ember.distributed.launch import MultiProcessingLauncher

    spawned = isinstance(getattr(trainer.strategy, "launcher", None), MultiProcessingLauncher)
    if value and spawned:
        raise MisconfigurationException(
            "`return_predictions` should be set to `False` when using the strategies that spawn or fork."
            f" Found {value} with strategy {type(trainer.strategy)}."
        )
    return not spawned if value is None else value


def apply_fast_dev_run(trainer: Any, batches: int) -> None:
    """``fast_dev_run=n``: n batches of every loop, one epoch, no sanity check, validation once."""
    if not trainer.overfit_batches:
        trainer.limit_train_batches = trainer.limit_val_batches = batches
    trainer.limit_test_batches = trainer.limit_predict_batches = batches
    trainer._max_steps = batches
    trainer._max_epochs = 1
    trainer.num_sanity_val_steps = 0
    trainer.val_check_interval, trainer._val_check_seconds = 1.0, None
    trainer.check_val_every_n_epoch = 1


def check_model(trainer: Any, model: Any, fn: str) -> Any:
    """The model a call runs: the one given, or the last call's; anything else is a clear error."""
    from ember.core.module import LightningModule
    from ember.utilities.compile import unwrap_compiled

    if model is None and fn != "fit":  # `fit` needs the model passed, as in Lightning (the type error below)
        model = trainer.lightning_module
        if model is None:
            raise TypeError(
                f"`Trainer.{fn}()` requires a `LightningModule` when it hasn't been passed in a previous run:"
                f" pass one, as in `trainer.{fn}(model)`."
            )
        return model
    model = unwrap_compiled(model)  # torch.compile(module): the module, its steps compiled
    if not isinstance(model, LightningModule):
        package = lightning_package() or "ember"  # the name the program imported the class by
        raise TypeError(
            f"`model` must be a `LightningModule` or `torch._dynamo.OptimizedModule`, got"
            f" `{type(model).__qualname__}`. Subclass `{package}.LightningModule`."
        )
    return model


def check_reload(every_n_epochs: Any) -> None:
    if not isinstance(every_n_epochs, int) or every_n_epochs < 0:
        raise MisconfigurationException(
            f"`reload_dataloaders_every_n_epochs` should be an int >= 0, got {every_n_epochs}."
        )


def apply_determinism(deterministic: bool | str | None, benchmark: bool | None) -> bool | None:
    """Set torch's deterministic mode and cuDNN's benchmark flag; returns the benchmark value in use.

    As in Lightning, ``deterministic=False`` turns the mode off and ``None`` leaves it as the program set it."""
    if deterministic and benchmark:
        rank_zero_warn(
            "You passed `deterministic=True` and `benchmark=True`. Note that PyTorch ignores"
            " torch.backends.cudnn.deterministic=True when torch.backends.cudnn.benchmark=True."
        )
    if benchmark is None and deterministic:
        benchmark = False
    if benchmark is not None:
        # whether or not cuDNN is present, as Lightning: torch refuses a value that is not a bool with
        # Lightning's `RuntimeError: set_benchmark_cudnn expects a bool, but got str`, before anything is set
        torch.backends.cudnn.benchmark = benchmark
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=deterministic == "warn")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif deterministic is False:
        torch.use_deterministic_algorithms(False)
    return benchmark
