"""``self.log`` and ``self.log_dict``: the LightningModule's logging API.

Values are checked once per key, then accumulated on the device by the trainer's result
collection (``ember.trainer.logging``); nothing here reads a value back to the host.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import torch
from torch import Tensor

from ember.core.hooks import LOG_RULES
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import WarningCache, rank_zero_warn

_FLOATS = (torch.float32, torch.float64)
_warning_cache = WarningCache()


_REDUCTIONS: dict[Any, str] = {
    "mean": "mean",
    "avg": "mean",
    torch.mean: "mean",
    "sum": "sum",
    torch.sum: "sum",
    sum: "sum",
    "max": "max",
    torch.max: "max",
    max: "max",
    "min": "min",
    torch.min: "min",
    min: "min",
}


def normalize_reduce_fx(reduce_fx: Any) -> str:
    """``"mean"``/``"sum"``/``"max"``/``"min"`` for any of the spellings Lightning accepts."""
    try:
        return _REDUCTIONS[reduce_fx.lower() if isinstance(reduce_fx, str) else reduce_fx]
    except (KeyError, TypeError):
        raise MisconfigurationException(
            "Only `self.log(..., reduce_fx={min,max,mean,sum})` are supported (as names or torch.min/max/mean/sum)."
            " If you need a custom reduction, please log a `torchmetrics.Metric` instance instead."
            f" Found: {reduce_fx}"
        ) from None


class LoggingMixin:
    """``log`` and ``log_dict`` for :class:`~ember.LightningModule` (which sets ``_trainer``,
    ``_current_fx_name`` and ``device``).

    Example::

        def training_step(self, batch, batch_idx):
            loss = ...
            self.log("train_loss", loss, prog_bar=True)
            return loss
    """

    _trainer: Any
    _current_fx_name: str | None
    named_modules: Callable[..., Any]  # provided by torch.nn.Module

    def log(
        self,
        name: str,
        value: Any,
        prog_bar: bool = False,
        logger: bool | None = None,
        on_step: bool | None = None,
        on_epoch: bool | None = None,
        reduce_fx: Any = "mean",
        enable_graph: bool = False,
        sync_dist: bool = False,
        sync_dist_group: Any | None = None,
        add_dataloader_idx: bool = True,
        batch_size: int | None = None,
        metric_attribute: str | None = None,
        rank_zero_only: bool = False,
    ) -> None:
        """Record a value for loggers, callbacks and the progress bar.

        ``on_step``/``on_epoch`` default by hook (step in ``training_step``, epoch in
        ``validation_step``); epoch values are batch-size-weighted means unless ``reduce_fx`` says
        otherwise. Values stay on the device until something reads them.

        Example::

            self.log("val_loss", loss, prog_bar=True)
        """
        trainer = self._trainer
        results = trainer._run.results if trainer is not None else None
        if results is not None and type(value) is Tensor:
            metric = results.metrics.get((self._current_fx_name, name, results.dataloader_idx))
            if (
                metric is not None
                and metric.args
                == (
                    prog_bar,
                    logger,
                    on_step,
                    on_epoch,
                    reduce_fx,
                    enable_graph,
                    sync_dist,
                    sync_dist_group,
                    add_dataloader_idx,
                    metric_attribute,
                    rank_zero_only,
                )
                and value.dtype in _FLOATS
                and value.ndim == 0
            ):
                # the hot path: this key was validated when it was first logged. Logged values
                # never keep the graph (Lightning detaches them whatever `enable_graph` says).
                if value.requires_grad:
                    value = value.detach()
                elif metric.on_step:
                    value = value.clone()  # kept for the step: the program may change its tensor in place
                if metric.step_only:  # what `update` does for a value kept for this step alone, without its call
                    metric.step_value, metric.has_value = value, True
                    return
                size = 1
                if metric.on_epoch and metric.reduce == "mean":
                    size = batch_size if batch_size is not None else results.current_batch_size()
                metric.update(value, size, results.sync)
                return
        if getattr(self, "_fabric", None) is not None:  # set up by `lightning.fabric.Fabric`: no trainer
            self._log_dict_through_fabric({name: value}, logger)
            return
        self._log_checked(
            name,
            value,
            prog_bar,
            logger,
            on_step,
            on_epoch,
            reduce_fx,
            enable_graph,
            sync_dist,
            sync_dist_group,
            add_dataloader_idx,
            batch_size,
            metric_attribute,
            rank_zero_only,
        )

    def _log_dict_through_fabric(self, dictionary: Mapping[str, Any], logger: bool | None) -> None:
        """A module that ``lightning.fabric.Fabric`` set up logs through ``fabric.log_dict``, as in Lightning."""
        if logger is False:
            return  # Fabric has no other place to send values to
        if any(isinstance(value, Mapping) for value in dictionary.values()):
            raise ValueError(f"`self.log_dict({dictionary})` was called, but nested dictionaries cannot be logged")
        for name, value in dictionary.items():
            if not isinstance(value, (numbers.Number, Tensor)):
                raise ValueError(
                    f"`self.log({name}, {value})` was called, but `{type(value).__name__}` values cannot be logged"
                    " through Fabric: log a number or a tensor."
                )
        self._fabric.log_dict(metrics=dict(dictionary))  # type: ignore[attr-defined]  # set by Fabric

    def _log_checked(
        self,
        name: str,
        value: Any,
        prog_bar: bool,
        logger: bool | None,
        on_step: bool | None,
        on_epoch: bool | None,
        reduce_fx: Any,
        enable_graph: bool,
        sync_dist: bool,
        sync_dist_group: Any,
        add_dataloader_idx: bool,
        batch_size: int | None,
        metric_attribute: str | None,
        rank_zero_only: bool,
    ) -> None:
        args = (
            prog_bar,
            logger,
            on_step,
            on_epoch,
            reduce_fx,
            enable_graph,
            sync_dist,
            sync_dist_group,
            add_dataloader_idx,
            metric_attribute,
            rank_zero_only,
        )
        # (a name that is no str failed on the dataloader suffix check: "argument of type 'int' is not iterable")
        if not isinstance(name, str):
            raise TypeError(
                f"`self.log({name!r}, ...)` was called, but the name must be a str, not {type(name).__name__}."
            )
        metric_type = _torchmetrics_metric_type()
        is_metric = metric_type is not None and isinstance(value, metric_type)
        if not is_metric:
            value = self._check_log_value(name, value)
        trainer = self._trainer
        if trainer is None:
            rank_zero_warn(
                "You are trying to `self.log()` but the `self.trainer` reference is not registered on the model yet."
                " This is most likely because the model hasn't been passed to the `Trainer`"
            )
            return
        if trainer.barebones:
            rank_zero_warn(
                "You are trying to `self.log()` but `Trainer(barebones=True)` is configured."
                " Logging can impact raw speed so it is disabled under this setting."
            )
            return
        results = trainer._run.results
        fx = self._current_fx_name
        if results is None:
            # in a predict call every hook gets the predict message, as in Lightning; in the others a hook
            # that may not log says so
            predicting = trainer.state.fn == "predict"
            if not predicting and fx is not None and fx in LOG_RULES and LOG_RULES[fx] is None:
                _resolve_log_levels(fx, name, on_step, on_epoch)  # raises: no logging in this hook
            raise MisconfigurationException(
                "You are trying to `self.log()` but the loop's result collection is not registered yet. This is most"
                " likely because you are trying to log in a `predict` hook, but it doesn't support logging"
            )
        if fx is None:
            raise MisconfigurationException(
                "You are trying to `self.log()` but it is not managed by the `Trainer` control flow:"
                " call it from a LightningModule or Callback hook."
            )
        on_step, on_epoch = _resolve_log_levels(fx, name, on_step, on_epoch)
        if add_dataloader_idx and "/dataloader_idx_" in name:
            raise MisconfigurationException(
                f"You called `self.log` with the key `{name}` but it should not contain information about"
                " `dataloader_idx` when `add_dataloader_idx=True`: the suffix is added to the key itself. Log"
                " it under a name without it, or pass `add_dataloader_idx=False` to keep the name as given."
            )
        _check_iterator_step_says_batch_sizes(trainer, batch_size)
        reduce = normalize_reduce_fx(reduce_fx)
        if is_metric and metric_attribute is None:
            metric_attribute = next((n for n, m in self.named_modules() if m is value), None)
            if metric_attribute is None:
                assert metric_type is not None  # `is_metric` needs it
                _raise_metric_not_an_attribute(self, name, metric_type)
        if logger and not trainer.loggers:
            rank_zero_warn(
                f"You called `self.log({name!r}, ..., logger=True)` but have no logger configured. You can enable one"
                " by doing `Trainer(logger=ALogger(...))`"
            )
        resolved = (
            prog_bar,
            True if logger is None else logger,
            on_step,
            on_epoch,
            reduce,
            enable_graph,
            sync_dist,
            sync_dist_group,
            add_dataloader_idx,
            metric_attribute,
            rank_zero_only,
        )
        known = results.get(fx, name, add_dataloader_idx) is not None
        metric = results.register(fx, name, args, resolved, is_tensor=not is_metric)  # raises on different arguments
        if not known:
            results.restore_pending(metric)
        if not is_metric:
            # Lightning names the hook with its dataloader: the integer warning comes once per dataloader
            with_idx = add_dataloader_idx and results.dataloader_idx is not None
            value = _logged_value(value, name, f"{fx}.{results.dataloader_idx}" if with_idx else fx, on_step)
        size = 1
        if not is_metric and on_epoch and reduce == "mean":
            size = _mean_weight(name, batch_size, results)
        metric.update(value, size, results.sync)

    def _check_log_value(self, name: str, value: Any) -> Tensor:
        if isinstance(value, Mapping):
            if any(isinstance(v, Mapping) for v in value.values()):
                raise ValueError(f"`self.log({name}, {value})` was called, but nested dictionaries cannot be logged")
            raise ValueError(
                f"`self.log({name}, {value})` was called, but `{type(value).__name__}` values cannot be logged:"
                " log each value under its own name,"
                " or use `self.log_dict(...)`."
            )
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise ValueError(
                    f"`self.log({name}, {value})` was called, but the tensor must have a single element."
                    f" You can try doing `self.log({name}, {value}.mean())`"
                )
            return value.squeeze()
        if isinstance(value, numbers.Number) and not isinstance(value, complex):
            return torch.tensor(value, device=getattr(self, "device", None), dtype=logged_float_dtype())
        raise ValueError(
            f"`self.log({name}, {value})` was called, but `{type(value).__name__}` values cannot be logged:"
            " log a number, a one-element tensor or a torchmetrics `Metric`."
        )

    def log_dict(
        self,
        dictionary: Mapping[str, Any] | Any,
        prog_bar: bool = False,
        logger: bool | None = None,
        on_step: bool | None = None,
        on_epoch: bool | None = None,
        reduce_fx: Any = "mean",
        enable_graph: bool = False,
        sync_dist: bool = False,
        sync_dist_group: Any | None = None,
        add_dataloader_idx: bool = True,
        batch_size: int | None = None,
        rank_zero_only: bool = False,
    ) -> None:
        """``self.log`` for every item of a dict (or a torchmetrics ``MetricCollection``).

        Example::

            self.log_dict({"acc": acc, "recall": recall})
        """
        if getattr(self, "_fabric", None) is not None:
            self._log_dict_through_fabric(dictionary, logger)
            return
        collection_type = _torchmetrics_collection_type()
        if collection_type is not None and isinstance(dictionary, collection_type):
            # a collection with compute groups keeps one state per group: copying it into every member at
            # each call (torchmetrics' default) is what Lightning asks it not to do
            groups = bool(getattr(dictionary, "_enable_compute_groups", False))
            items = list(dictionary.items(keep_base=False, copy_state=not groups))  # type: ignore[attr-defined]
            attributes = {id(m): n for n, m in self.named_modules()}
            for key, metric in items:
                self.log(
                    key,
                    metric,
                    prog_bar,
                    logger,
                    on_step,
                    on_epoch,
                    reduce_fx,
                    enable_graph,
                    sync_dist,
                    sync_dist_group,
                    add_dataloader_idx,
                    batch_size,
                    attributes.get(id(metric)),
                    rank_zero_only,
                )
            return
        if not isinstance(dictionary, Mapping):
            # (it failed on `.items()`: "'list' object has no attribute 'items'")
            raise TypeError(
                f"`self.log_dict({dictionary!r})` was called, but it takes a dict of names and values (or a"
                f" torchmetrics `MetricCollection`), not {type(dictionary).__name__}."
            )
        for key, value in dictionary.items():
            self.log(
                key,
                value,
                prog_bar,
                logger,
                on_step,
                on_epoch,
                reduce_fx,
                enable_graph,
                sync_dist,
                sync_dist_group,
                add_dataloader_idx,
                batch_size,
                None,
                rank_zero_only,
            )


def _mean_weight(name: str, batch_size: Any, results: Any) -> Any:
    """The weight of a value logged under ``name`` in its epoch's mean: ``batch_size``, or the batch's size."""
    if batch_size is None:
        return results.current_batch_size()
    if not isinstance(batch_size, numbers.Real):
        # (it reached the weighted mean: "only integer tensors of a single element can be converted to an index")
        raise TypeError(
            f"`self.log({name}, ..., batch_size={batch_size!r})` was called, but `batch_size` must be a number:"
            " the weight of this value in the epoch's mean."
        )
    return batch_size


def _resolve_log_levels(fx: str, name: str, on_step: bool | None, on_epoch: bool | None) -> tuple[bool, bool]:
    if fx not in LOG_RULES:
        raise RuntimeError(f"Logging inside `{fx}` is not implemented: log from a training/validation/test hook.")
    rule = LOG_RULES[fx]
    if rule is None:
        raise MisconfigurationException(
            f"You can't `self.log()` inside `{fx}`. HINT: You can still log directly to the logger by using"
            " `self.logger.experiment`."
        )
    on_step = rule.default_on_step if on_step is None else on_step
    on_epoch = rule.default_on_epoch if on_epoch is None else on_epoch
    # Lightning's sentences first (filters and tests match on them), then which call and what to do
    if on_step not in rule.allowed_on_step:
        raise MisconfigurationException(
            f"You can't `self.log(on_step={on_step})` inside `{fx}`, must be one of {rule.allowed_on_step}."
            f" Log {name!r} there with on_step={rule.allowed_on_step[0]}."
        )
    if on_epoch not in rule.allowed_on_epoch:
        raise MisconfigurationException(
            f"You can't `self.log(on_epoch={on_epoch})` inside `{fx}`, must be one of {rule.allowed_on_epoch}."
            f" Log {name!r} there with on_epoch={rule.allowed_on_epoch[0]}."
        )
    if not on_step and not on_epoch:
        raise MisconfigurationException(
            f"`self.log(on_step=False, on_epoch=False)` is not useful. The value of {name!r} would go nowhere:"
            " set on_step=True, on_epoch=True, or both."
        )
    return on_step, on_epoch


def _check_iterator_step_says_batch_sizes(trainer: Any, batch_size: int | None) -> None:
    """A ``training_step(self, dataloader_iter)`` draws its own batches, so which batch a logged value came
    from is unknown: as Lightning, ``self.log`` calls while it trains must say ``batch_size``. (The step
    read the signature once, when fit set it up; Lightning reads it at every call.)"""
    if batch_size is None and trainer.training and getattr(trainer._run.step, "takes_iterator", False):
        raise MisconfigurationException(
            "With `def training_step(self, dataloader_iter)`, `self.log(..., batch_size=...)` should be provided."
        )


def logged_float_dtype() -> torch.dtype:
    """The float dtype logged values are kept and added up in: the default dtype (float64 inside a step under
    ``precision="64-true"``), but no lower than float32, as Lightning's ``_get_default_dtype``."""
    dtype = torch.get_default_dtype()
    return dtype if dtype in _FLOATS else torch.float32


def _torchmetrics_metric_type() -> type | None:
    # torchmetrics is optional and slow to import: only look it up if the user imported it.
    import sys

    module = sys.modules.get("torchmetrics")
    return getattr(module, "Metric", None) if module is not None else None


def _torchmetrics_collection_type() -> type | None:
    import sys

    module = sys.modules.get("torchmetrics")
    return getattr(module, "MetricCollection", None) if module is not None else None


def _logged_value(value: Tensor, name: str, hook: str, kept: bool) -> Tensor:
    """``value`` detached, in a float dtype the results accumulate; an integer or bool value gets Lightning's
    warning. A value ``kept`` for its step is a copy, which the program's later in-place changes do not reach;
    one for the epoch alone is added to the epoch's total at once, so it is not copied (a copy is an allocation,
    and on a GPU a kernel launch, for every value a validation step logs)."""
    if value.requires_grad:
        value = value.detach()
    elif kept:
        value = value.clone()
    if not value.is_floating_point():
        _warning_cache.warn(  # Lightning's text, once per name and hook (the value is not in it)
            f"You called `self.log({name!r}, ...)` in your `{hook}` but the value needs to"
            f" be floating to be reduced. Converting it to {logged_float_dtype()}."
            " You can silence this warning by converting the value to floating point yourself."
            " If you don't intend to reduce the value (for instance when logging the global step or epoch) then"
            f" you can use `self.logger.log_metrics({{{name!r}: ...}})` instead."
        )
    return value if value.dtype in _FLOATS else value.to(logged_float_dtype())


def _raise_metric_not_an_attribute(module: Any, name: str, metric_type: type) -> NoReturn:
    """A logged ``Metric`` must be an attribute of the module (its state is saved and reset with it)."""
    attributes = [n for n, m in module.named_modules() if isinstance(m, metric_type)]
    if not attributes:
        raise MisconfigurationException(
            "Could not find the `LightningModule` attribute for the `torchmetrics.Metric` logged."
            " You can fix this by setting an attribute for the metric in your `LightningModule`."
        )
    raise MisconfigurationException(
        "Could not find the `LightningModule` attribute for the `torchmetrics.Metric` logged."
        f" You can fix this by calling `self.log({name}, ..., metric_attribute=name)` where `name` is one"
        f" of {attributes}"
    )
