"""``configure_optimizers`` formats, scheduler configs, gradient clipping and the manual-mode optimizer."""

from __future__ import annotations

import operator
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import Optimizer

from ember.core.optimizer import _MockOptimizer
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn

_SCHEDULER_KEYS = {"scheduler", "name", "interval", "frequency", "reduce_on_plateau", "monitor", "strict"}
# what the trainer uses of an optimizer: an object with these counts as one without subclassing `Optimizer`
_OPTIMIZER_MEMBERS = ("step", "param_groups", "defaults", "state", "state_dict", "load_state_dict")


@dataclass
class LRSchedulerConfig:
    """One scheduler and when to step it (``trainer.lr_scheduler_configs`` holds these)."""

    scheduler: Any
    name: str | None = None
    interval: str = "epoch"
    frequency: int = 1
    reduce_on_plateau: bool = False
    monitor: str | None = None
    strict: bool = True


_FORMATS = (
    "`configure_optimizers` must return one of: an optimizer; a list or tuple of optimizers; two lists"
    " `([optimizers], [schedulers])`; a dict with an `'optimizer'` key and optionally `'lr_scheduler'` and"
    " `'monitor'`; a list or tuple of such dicts; or None (no optimizer)."
)


def configure_optimizers(
    result: Any, automatic: bool = True
) -> tuple[list[Optimizer], list[LRSchedulerConfig], str | None]:
    """Normalise what ``configure_optimizers`` returned into optimizers and scheduler configs.

    In manual optimization (``automatic=False``) the user steps the schedulers, so the keys that
    only the trainer's stepping uses (``monitor``, ``strict``, ``reduce_on_plateau``) are dropped
    with a warning instead of being validated.
    """
    monitor = None
    schedulers: list[Any] = []
    if result is None:
        rank_zero_warn("`LightningModule.configure_optimizers` returned `None`, this fit will run with no optimizer")
        return [_MockOptimizer()], [], None
    if _is_optimizer(result):
        optimizers = [result]
    elif isinstance(result, Mapping):
        optimizer, scheduler, monitor = _from_dict(result, automatic)
        optimizers = [optimizer]
        schedulers = [scheduler] if "lr_scheduler" in result else []  # a None one too, which the checks refuse
    elif (
        isinstance(result, (list, tuple))
        and len(result) == 2
        and isinstance(result[0], (list, tuple))
        and all(_is_optimizer(o) for o in result[0])
    ):
        optimizers = list(result[0])
        second = result[1]
        schedulers = list(second) if isinstance(second, (list, tuple)) else [second]
    elif isinstance(result, (list, tuple)) and result and all(isinstance(d, Mapping) for d in result):
        optimizers, schedulers = [], []
        for item in result:
            opt, sched, _ = _from_dict(item, automatic)
            optimizers.append(opt)
            if "lr_scheduler" in item:
                # as a scheduler dict, so that the dict's checks (a plateau's monitor, OneCycleLR's interval) apply
                schedulers.append(sched if isinstance(sched, Mapping) else {"scheduler": sched})
    elif isinstance(result, (list, tuple)) and all(_is_optimizer(o) for o in result):
        optimizers = list(result)
    else:
        raise MisconfigurationException(
            "Unknown configuration for model optimizers. Output from `model.configure_optimizers()` should be one of:"
            "\n * `Optimizer`\n * [`Optimizer`]\n * ([`Optimizer`], [`LRScheduler`])\n"
            ' * {"optimizer": `Optimizer`, (optional) "lr_scheduler": `LRScheduler`}\n'
            f"It returned {result!r}. {_FORMATS}"
        )
    if automatic and not optimizers:  # (it failed where the step took the first one: "list index out of range")
        raise MisconfigurationException(
            f"`configure_optimizers` returned {result!r}, which holds no optimizer. Automatic optimization steps"
            " one after each `training_step`: return it (e.g. `torch.optim.Adam(self.parameters())`), or return"
            " None to run the steps with no optimizer."
        )
    if automatic:
        configs = [_scheduler_config(s, monitor) for s in schedulers]
    else:
        configs = [_manual_scheduler_config(s) for s in schedulers]
    _check_schedulers(optimizers, configs)
    return optimizers, configs, monitor


def _from_dict(config: Mapping, automatic: bool) -> tuple[Optimizer, Any, str | None]:
    if "optimizer" not in config:
        raise MisconfigurationException(
            f"The dict returned by `configure_optimizers` has no 'optimizer' key: {config!r}. {_FORMATS}"
        )
    if not _is_optimizer(config["optimizer"]):
        optimizer = config["optimizer"]
        raise MisconfigurationException(
            f"The 'optimizer' of the dict returned by `configure_optimizers` is {type(optimizer).__name__}"
            f" {reprlib.repr(optimizer)}, not an optimizer: put the optimizer itself under 'optimizer', e.g."
            " `{'optimizer': torch.optim.Adam(self.parameters())}`, or return None to train without one."
        )
    extra = set(config) - {"optimizer", "lr_scheduler", "monitor"}
    if extra:
        rank_zero_warn(
            f"Found unsupported keys in the optimizer configuration: {_as_set(extra)}", category=RuntimeWarning
        )
    scheduler = config.get("lr_scheduler")
    monitor = config.get("monitor")
    plateau = _is_plateau(scheduler) or (isinstance(scheduler, Mapping) and _is_plateau(scheduler.get("scheduler")))
    if not automatic:
        if monitor is not None and plateau:
            # Lightning drops the key silently; a plateau scheduler is the one case where a user expects the
            # trainer to step it with the monitored value (any other scheduler ignores it in automatic mode too)
            rank_zero_warn(
                f"`configure_optimizers` returned 'monitor': {monitor!r} beside a `ReduceLROnPlateau`, but in"
                " manual optimization the trainer steps no scheduler, so the key is ignored and the scheduler"
                " never steps unless you step it. Call `self.lr_schedulers().step(value)` with the value you log"
                f" as {monitor!r} (for example in `on_train_epoch_end`), and remove the key.",
                category=RuntimeWarning,
            )
        return config["optimizer"], scheduler, None
    if monitor is not None and plateau:
        # the dict's monitor goes to its ReduceLROnPlateau (Ember also accepts it beside a config dict)
        scheduler = (
            {"monitor": monitor, **scheduler}
            if isinstance(scheduler, Mapping)
            else {"scheduler": scheduler, "monitor": monitor}
        )
    return config["optimizer"], scheduler, monitor


def _scheduler_config(scheduler: Any, monitor: str | None) -> LRSchedulerConfig:
    if isinstance(scheduler, Mapping):
        unknown = set(scheduler) - _SCHEDULER_KEYS
        if unknown:
            rank_zero_warn(
                f"Found unsupported keys in the lr scheduler dict: {_as_set(unknown)}. HINT: remove them from the"
                " output of `configure_optimizers`.",
                category=RuntimeWarning,
            )
        if "scheduler" not in scheduler:
            raise MisconfigurationException(
                'The lr scheduler dict must have the key "scheduler" with its item being an lr scheduler'
            )
        values = {k: v for k, v in scheduler.items() if k in _SCHEDULER_KEYS}
        interval = values.get("interval", "epoch")
        if interval not in ("step", "epoch"):
            raise MisconfigurationException(
                f'The "interval" key in lr scheduler dict must be "step" or "epoch" but is "{interval}"'
            )
        if "frequency" in values:
            values["frequency"] = _checked_frequency(values["frequency"])
        values.setdefault("reduce_on_plateau", _is_plateau(values["scheduler"]))
        if values["reduce_on_plateau"] and values.get("monitor") is None:
            raise MisconfigurationException(
                "The lr scheduler dict must include a monitor when a `ReduceLROnPlateau` scheduler is used."
                ' For example: {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "your_loss"}}'
            )
        if values["reduce_on_plateau"] and not isinstance(values["monitor"], str):
            monitor = values["monitor"]
            raise MisconfigurationException(
                f'The "monitor" key in lr scheduler dict must be the name of a logged metric (a str) but is'
                f' {type(monitor).__name__} {monitor!r}: pass the name given to `self.log`, e.g. "val_loss".'
            )
        if interval == "epoch" and isinstance(values["scheduler"], torch.optim.lr_scheduler.OneCycleLR):
            rank_zero_warn(
                "A `OneCycleLR` scheduler is using 'interval': 'epoch'. Are you sure you didn't mean 'interval': 'step'?",
                category=RuntimeWarning,
            )
        return LRSchedulerConfig(**values)
    if _is_plateau(scheduler):
        if monitor is None:
            raise MisconfigurationException(
                "`configure_optimizers` must include a monitor when a `ReduceLROnPlateau` scheduler is used."
                ' For example: {"optimizer": optimizer, "lr_scheduler": scheduler, "monitor": "metric_to_track"}'
            )
        return LRSchedulerConfig(scheduler, reduce_on_plateau=True, monitor=monitor)
    return LRSchedulerConfig(scheduler)


def _checked_frequency(frequency: Any) -> int:
    """``"frequency"`` as the loop steps by it: a whole number of 1 or more (``True``, a numpy or 0-d tensor
    integer too, which step as Lightning steps them), refused before the first batch otherwise.

    Lightning takes any value and fails when it first steps the scheduler (``0`` and ``False``: a
    ``ZeroDivisionError``, ``"2"`` and ``None``: a ``TypeError``, after batches were trained), steps at every
    interval (``-1``) or at every third (``1.5``).
    """
    try:
        count = operator.index(frequency)  # what `int` of a whole number gives, and an error for 1.5 or "2"
    except TypeError:
        count = 0
    if count < 1:
        raise MisconfigurationException(
            f'The "frequency" key in lr scheduler dict must be an int of 1 or more but is'
            f" {type(frequency).__name__} {frequency!r}: pass how many intervals to wait between scheduler steps,"
            ' e.g. "frequency": 1 to step at every interval.'
        )
    return frequency if isinstance(frequency, int) else count  # an int kept as given (True too), as in Lightning


def _manual_scheduler_config(scheduler: Any) -> LRSchedulerConfig:
    if not isinstance(scheduler, Mapping):
        return LRSchedulerConfig(scheduler)
    if "scheduler" not in scheduler:
        raise MisconfigurationException(
            'The lr scheduler dict must have the key "scheduler" with its item being an lr scheduler'
        )
    # `interval` stays: LearningRateMonitor reads it to know when to log
    ignored = [k for k in scheduler if k in ("reduce_on_plateau", "monitor", "strict")]
    if ignored:
        rank_zero_warn(
            f"The lr scheduler dict contains the key(s) {ignored}, but the keys will be ignored."
            " You need to call `lr_scheduler.step()` manually in manual optimization.",
            category=RuntimeWarning,
        )
    unknown = set(scheduler) - _SCHEDULER_KEYS
    if unknown:
        rank_zero_warn(f"Found unsupported keys in the lr scheduler dict: {_as_set(unknown)}.", category=RuntimeWarning)
    return LRSchedulerConfig(**{k: v for k, v in scheduler.items() if k in _SCHEDULER_KEYS and k not in ignored})


def _is_optimizer(candidate: Any) -> bool:
    """An ``Optimizer``, or an object with the members the trainer uses of one (Lightning's ``Optimizable``)."""
    return isinstance(candidate, Optimizer) or all(hasattr(candidate, name) for name in _OPTIMIZER_MEMBERS)


def _is_plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _as_set(names: set[str]) -> str:
    """``{'a', 'b'}``: written as Lightning prints the set, in a stable order."""
    return "{" + ", ".join(repr(name) for name in sorted(names)) + "}"


def _check_schedulers(optimizers: list[Optimizer], configs: list[LRSchedulerConfig]) -> None:
    """Every scheduler's optimizer first, then every scheduler's state methods: Lightning's order of the checks."""
    for config in configs:
        # a scheduler of the program's own may keep its optimizer under another name (Lightning requires `.optimizer`)
        optimizer = getattr(config.scheduler, "optimizer", None)
        if optimizer is not None and not any(optimizer is o for o in optimizers):
            raise MisconfigurationException(
                "Some schedulers are attached with an optimizer that wasn't returned from `configure_optimizers`."
            )
    for config in configs:
        scheduler = config.scheduler
        if not hasattr(scheduler, "state_dict") or not hasattr(scheduler, "load_state_dict"):
            raise TypeError(
                f"The provided lr scheduler `{type(scheduler).__name__}` is invalid. It should have `state_dict` and"
                " `load_state_dict` methods defined (a checkpoint saves and restores it through them)."
            )


def check_non_torch_schedulers(module: Any, configs: list[LRSchedulerConfig], module_overrides: bool) -> None:
    for config in configs:
        if (
            not isinstance(
                config.scheduler, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            )
            and not module_overrides
            and module.automatic_optimization  # in manual optimization the user steps the scheduler
        ):
            raise MisconfigurationException(
                f"The provided lr scheduler `{type(config.scheduler).__name__}` doesn't follow PyTorch's LRScheduler"
                " API. You should override the `LightningModule.lr_scheduler_step` hook with your own logic if"
                " you are using a custom LR scheduler."
            )
