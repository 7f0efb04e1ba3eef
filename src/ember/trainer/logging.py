"""What ``self.log`` stores: per-step values and per-epoch accumulators, kept on the device.

One ``LoggedResults`` collection exists per loop (training, validation, test). Values stay tensors;
they become Python numbers only where somebody reads them: a logger write at a log interval, a
progress-bar refresh, or ``trainer.progress_bar_metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ember.core.logging import logged_float_dtype
from ember.utilities.data import extract_batch_size
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import WarningCache
from ember.utilities.warnings import PossibleUserWarning

DATALOADER_SUFFIX = "/dataloader_idx_{}"
_warning_cache = WarningCache()

# the types of Lightning's `trainer.connectors.logger_connector.result`, which libraries annotate with
_OUT_DICT = dict[str, Tensor]
_PBAR_DICT = dict[str, float]


class LoggedMetric:
    """One logged name in one hook: its options, its latest step value and its epoch accumulator."""

    __slots__ = (
        "accumulate_dtype",
        "args",
        "computed",
        "count",
        "dataloader_idx",
        "enable_graph",
        "epoch_name",
        "fx",
        "has_value",
        "is_tensor",
        "logger",
        "metric",
        "metric_attribute",
        "name",
        "on_epoch",
        "on_step",
        "plain_name",
        "prog_bar",
        "rank_zero_only",
        "reduce",
        "resolved",
        "step_name",
        "step_only",
        "step_value",
        "sync_dist",
        "sync_dist_group",
        "total",
    )

    def __init__(
        self, fx: str, name: str, args: tuple | None, resolved: tuple, dataloader_idx: int | None, is_tensor: bool
    ):
        self.resolved = resolved
        (
            self.prog_bar,
            self.logger,
            self.on_step,
            self.on_epoch,
            self.reduce,
            self.enable_graph,
            self.sync_dist,
            self.sync_dist_group,
            add_dataloader_idx,
            self.metric_attribute,
            self.rank_zero_only,
        ) = resolved
        self.fx = fx
        self.name = name
        # the call's own options, which `self.log`'s fast path compares a tensor's call with: a Metric's entry keeps
        # none (an empty tuple), so that a tensor logged under its name takes the checked path and is refused
        self.args = args if is_tensor or args is None else ()
        self.dataloader_idx = dataloader_idx
        suffix = DATALOADER_SUFFIX.format(dataloader_idx) if add_dataloader_idx and dataloader_idx is not None else ""
        forked = self.on_step and self.on_epoch
        self.plain_name = name + suffix
        self.step_name = f"{name}_step{suffix}" if forked else self.plain_name
        self.epoch_name = f"{name}_epoch{suffix}" if forked else self.plain_name
        self.is_tensor = is_tensor
        # a tensor kept for the step alone, unsynced: `update` only stores it (`self.log`'s fast path does that)
        self.step_only = is_tensor and self.on_step and not self.on_epoch and not self.sync_dist
        self.metric = None
        # the epoch total's dtype, set where the name is first logged, as Lightning's `_ResultMetric` creates its
        # state: float64 for a name first logged inside a step under `precision="64-true"`, even for float32 values
        self.accumulate_dtype = logged_float_dtype()
        self.reset()

    def reset(self) -> None:
        self.step_value: Tensor | None = None
        self.total: Tensor | None = None
        self.count = 0
        self.computed: Tensor | None = None
        self.has_value = False

    def update(self, value: Any, batch_size: int, sync: Callable | None) -> None:
        self.has_value = True
        if not self.is_tensor:
            # a torchmetrics Metric: its forward() already computed the batch value
            self.metric = value
            if self.on_step:
                cache = value._forward_cache  # the graph of a loss computed by the metric, unless kept on purpose
                self.step_value = cache.detach() if isinstance(cache, Tensor) and not self.enable_graph else cache
            self.computed = None
            return
        if self.on_step:
            step_value = value
            if sync is not None and self.sync_dist and not self.rank_zero_only:
                step_value = sync(value.clone(), self.reduce, self.sync_dist_group)
            self.step_value = step_value  # the epoch total below adds this rank's own value: synced once, at the end
        if self.on_epoch:
            self.computed = None
            total = self.total
            if total is None:
                # the first value of the epoch starts the accumulator: in float64 where the value or the accumulator
                # is (Lightning adds the value to a zero of the accumulator's dtype), else in float32
                widen = value.dtype != self.accumulate_dtype and self.accumulate_dtype == torch.float64
                if self.reduce == "mean":
                    total = value * batch_size
                    self.total = total.double() if widen else total
                else:
                    self.total = value.double() if widen else value.clone()
            elif self.reduce == "mean":
                # `value * batch_size` rounded first, then added, as Lightning's `value + value * batch_size`:
                # `add_(value, alpha=batch_size)` fuses the two and can differ in the last bit
                total.add_(value * batch_size)
            elif self.reduce == "sum":
                total.add_(value)
            elif self.reduce == "max":
                torch.maximum(total, value, out=total)
            else:
                torch.minimum(total, value, out=total)
            self.count += batch_size if self.reduce == "mean" else 1

    def compute(self, sync: Callable | None) -> Tensor | None:
        if self.computed is not None:
            return self.computed
        if not self.is_tensor:
            if self.metric is None:
                return None
            self.computed = self.metric.compute()
            return self.computed
        if self.total is None:
            return None
        total = self.total
        if self.reduce == "mean":
            count = torch.tensor(float(self.count), device=total.device, dtype=total.dtype)
            if sync is not None and self.sync_dist and not self.rank_zero_only:
                # a sample-weighted mean over all ranks: sum the weighted totals and the counts
                total = sync(total.clone(), "sum", self.sync_dist_group)
                count = sync(count, "sum", self.sync_dist_group)
            self.computed = total / count
        else:
            if sync is not None and self.sync_dist and not self.rank_zero_only:
                total = sync(total.clone(), self.reduce, self.sync_dist_group)
            self.computed = total
        return self.computed

    @property
    def from_checkpoint(self) -> bool:
        """Built from a checkpoint's entry, not yet logged again: the next ``self.log`` of its name gives its
        own options."""
        return self.args is None

    def state_dict(self) -> dict[str, Any]:
        # `sync_dist_group` is a process group, which no file holds: the resumed run's next `self.log` gives it
        options = (*self.resolved[:7], None, *self.resolved[8:])
        state = {
            "total": self.total,
            "count": self.count,
            "has_value": self.has_value,
            "step_value": self.step_value if self.is_tensor else None,
            "metric": {"fx": self.fx, "name": self.name, "dataloader_idx": self.dataloader_idx, "options": options},
        }
        if not self.is_tensor:
            state["metric_state"] = _metric_state(self.metric)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total = state["total"]
        self.count = state["count"]
        self.has_value = state["has_value"]
        self.step_value = state["step_value"]
        self.computed = None

    @property
    def meta(self) -> _Metadata:
        """The options under the names of Lightning's ``_ResultMetric.meta``: ``meta.name``, ``meta.sync.should``."""
        return _Metadata(self)


class _Sync:
    """``meta.sync`` of a logged value: whether it is reduced across processes, and over which group."""

    __slots__ = ("_metric",)

    def __init__(self, metric: LoggedMetric) -> None:
        self._metric = metric

    @property
    def should(self) -> bool:
        """``sync_dist=True`` in a run whose process group is up (Lightning's rule)."""
        return bool(self._metric.sync_dist) and torch.distributed.is_available() and torch.distributed.is_initialized()

    @property
    def group(self) -> Any:
        return self._metric.sync_dist_group


class _Metadata:
    """``meta`` of a logged value, with the names of Lightning's ``_Metadata`` (finetuning-scheduler reads
    ``meta.name`` and ``meta.sync.should``)."""

    __slots__ = ("_metric",)

    def __init__(self, metric: LoggedMetric) -> None:
        self._metric = metric

    def __getattr__(self, name: str) -> Any:
        if name in _METADATA_FIELDS:
            return getattr(self._metric, _METADATA_FIELDS[name])
        raise AttributeError(f"'_Metadata' object has no attribute {name!r}")

    @property
    def sync(self) -> _Sync:
        return _Sync(self._metric)

    @property
    def forked(self) -> bool:
        return bool(self._metric.on_step and self._metric.on_epoch)


# Lightning's `_Metadata` field -> the `LoggedMetric` attribute holding it
_METADATA_FIELDS = {
    "fx": "fx",
    "name": "name",
    "prog_bar": "prog_bar",
    "logger": "logger",
    "on_step": "on_step",
    "on_epoch": "on_epoch",
    "reduce_fx": "reduce",
    "enable_graph": "enable_graph",
    "dataloader_idx": "dataloader_idx",
    "metric_attribute": "metric_attribute",
}


class LoggedResults:
    """All values logged during one loop (``training`` for the fit loop, else an evaluation loop)."""

    # Lightning's `_ResultCollection.DATALOADER_SUFFIX`: RePlay's metric callbacks name their values with it
    DATALOADER_SUFFIX = DATALOADER_SUFFIX

    def __init__(self, training: bool) -> None:
        self.training = training
        self.metrics: dict[tuple, LoggedMetric] = {}
        self.batch: Any = None
        self.batch_size: int | None = None
        self.dataloader_idx: int | None = None
        self.sync: Callable | None = None  # set by the trainer in a distributed run
        # the values a checkpoint of an older Ember held without their options: taken when the name is next logged
        self._pending_state: dict[str, Any] = {}

    @property
    def result_metrics(self) -> list[LoggedMetric]:
        """Every value logged in this loop (Lightning's ``_ResultCollection.result_metrics``)."""
        return list(self.metrics.values())

    # ---- writing -------------------------------------------------------------------------
    def current_batch_size(self) -> int:
        if self.batch_size is None:
            self.batch_size = extract_batch_size(self.batch) if self.batch is not None else 1
        return self.batch_size

    def _key(self, fx: str, name: str, add_dataloader_idx: bool) -> tuple:
        return (fx, name, self.dataloader_idx if add_dataloader_idx else None)

    def get(self, fx: str, name: str, add_dataloader_idx: bool = True) -> LoggedMetric | None:
        return self.metrics.get(self._key(fx, name, add_dataloader_idx))

    def register(self, fx: str, name: str, args: tuple, resolved: tuple, is_tensor: bool) -> LoggedMetric:
        """The entry of ``name`` in the hook ``fx``, made by its first call. A later call, in that step or another,
        must resolve to the same options, as Lightning compares its ``_Metadata``: these include whether the
        value is a tensor or a torchmetrics ``Metric``, and which attribute of the module that ``Metric`` is."""
        key = self._key(fx, name, resolved[8])
        existing = self.metrics.get(key)
        if existing is not None and existing.from_checkpoint:
            # logged again after a resume: this call's options, with the values the checkpoint held
            metric = LoggedMetric(fx, name, args, resolved, self.dataloader_idx, is_tensor)
            metric.load_state_dict(existing.state_dict())
            self.metrics[key] = metric
            return metric
        if existing is not None and (
            existing.dataloader_idx != self.dataloader_idx
            or existing.is_tensor != is_tensor
            or existing.metric_attribute != resolved[9]
            or (existing.args != args and self._settings(existing) != self._settings(resolved))
        ):
            raise MisconfigurationException(
                f"You called `self.log({name}, ...)` twice in `{fx}` with different arguments. This is not allowed."
                " Log it with the same arguments each time, or under another name."
            )
        if existing is not None:
            return existing
        metric = LoggedMetric(fx, name, args, resolved, self.dataloader_idx, is_tensor)
        self.metrics[key] = metric
        return metric

    def _settings(self, logged: LoggedMetric | tuple) -> tuple:
        """What two ``self.log`` calls of one name in one hook must agree on, as Lightning compares them: the
        options with the hook's defaults filled in and ``reduce_fx`` by name (``torch.mean``, ``"avg"`` and
        ``"mean"`` are one), ``sync_dist`` only where there is something to synchronise."""
        if isinstance(logged, LoggedMetric):
            logged = (
                logged.prog_bar,
                logged.logger,
                logged.on_step,
                logged.on_epoch,
                logged.reduce,
                logged.enable_graph,
                logged.sync_dist,
                logged.sync_dist_group,
                None,  # `add_dataloader_idx` is part of the key
                logged.metric_attribute,
                logged.rank_zero_only,
            )
        return (*logged[:6], logged[6] and self.sync is not None, logged[7], *logged[9:])

    # ---- reading -------------------------------------------------------------------------
    def _valid(self):
        idx = self.dataloader_idx
        for metric in self.metrics.values():
            if metric.has_value and metric.dataloader_idx == idx:
                yield metric

    def step_metrics(self) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """``(callback, log, progress_bar)`` dicts of the latest step values."""
        callback: dict[str, Tensor] = {}
        log: dict[str, Tensor] = {}
        pbar: dict[str, Tensor] = {}
        for metric in self._valid():
            if not metric.on_step or metric.step_value is None:
                continue
            value = metric.step_value
            if metric.logger:
                log[metric.step_name] = value
            if self.training:
                callback[metric.plain_name] = value
                callback[metric.step_name] = value
            if metric.prog_bar:
                pbar[metric.step_name] = value
        return callback, log, pbar

    def epoch_metrics(self) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """``(callback, log, progress_bar)`` dicts of the epoch-level values (computed once)."""
        callback: dict[str, Tensor] = {}
        log: dict[str, Tensor] = {}
        pbar: dict[str, Tensor] = {}
        distributed = self.sync is not None
        for metric in self._valid():
            if not metric.on_epoch:
                continue
            if distributed and not metric.sync_dist and metric.is_tensor and metric.computed is None:
                _warning_cache.warn(  # once, on rank 0, as Lightning
                    f"It is recommended to use `self.log({metric.name!r}, ..., sync_dist=True)` when logging on"
                    " epoch level in distributed setting to accumulate the metric across devices.",
                    category=PossibleUserWarning,
                )
            value = metric.compute(self.sync)
            if value is None:
                continue
            if not isinstance(value, Tensor):
                raise ValueError(
                    f"The `.compute()` return of the metric logged as {metric.name!r} must be a tensor. Found {value}"
                )
            value = value.detach() if not metric.enable_graph else value
            if metric.logger:
                log[metric.epoch_name] = value
            callback[metric.plain_name] = value
            callback[metric.epoch_name] = value
            if metric.prog_bar:
                pbar[metric.epoch_name] = value
        return callback, log, pbar

    def reset(self) -> None:
        self._pending_state.clear()  # values of the epoch a checkpoint was written in: they end with it
        for metric in self.metrics.values():
            if not metric.is_tensor and metric.metric is not None and metric.has_value:
                metric.metric.reset()
            metric.reset()

    # ---- exact resume ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The epoch's values so far: each tensor's accumulator, and each torchmetrics object's states (which its
        own ``state_dict`` leaves out), found again by its attribute on the module."""
        return {
            f"{fx}|{name}|{idx}": m.state_dict()
            for (fx, name, idx), m in self.metrics.items()
            if m.has_value and (m.is_tensor or (m.metric is not None and m.metric_attribute is not None))
        }

    def load_state_dict(self, state: dict[str, Any], module: torch.nn.Module | None = None) -> None:
        """The values a checkpoint holds, logged as they were: the resumed epoch's end logs and resets them even
        when no batch of it is left to log the names again. A torchmetrics object gets back the states it had
        added up (the ``module``'s attribute of that name)."""
        self._pending_state = {}
        modules = dict(module.named_modules()) if module is not None else {}
        for key, saved in state.items():
            if "metric" not in saved:  # written by an Ember that kept no options: applied when next logged
                self._pending_state[key] = saved
                continue
            entry = saved["metric"]
            options = tuple(entry["options"])
            is_tensor = "metric_state" not in saved
            metric = LoggedMetric(entry["fx"], entry["name"], None, options, entry["dataloader_idx"], is_tensor)
            if not is_tensor:
                metric.metric = modules.get(options[9])
                if metric.metric is None:
                    continue  # the module no longer has that attribute: the metric starts the epoch's values again
                _load_metric_state(metric.metric, saved["metric_state"])
            metric.load_state_dict(saved)
            self.metrics[(entry["fx"], entry["name"], entry["dataloader_idx"] if options[8] else None)] = metric

    def restore_pending(self, metric: LoggedMetric) -> None:
        saved = self._pending_state.pop(f"{metric.fx}|{metric.name}|{metric.dataloader_idx}", None)
        if saved is not None:
            metric.load_state_dict(saved)


def _metric_state(metric: Any) -> dict[str, Any]:
    """A torchmetrics ``Metric``'s accumulated states (tensors, or lists of them) and its update count."""
    states = {
        name: value.detach().clone() if isinstance(value, Tensor) else [v.detach().clone() for v in value]
        for name, value in metric.metric_state.items()
    }
    return {"states": states, "update_count": metric._update_count}


def _load_metric_state(metric: Any, saved: dict[str, Any]) -> None:
    """Put back what :func:`_metric_state` kept, on the devices the metric's states are on now."""
    for name, value in saved["states"].items():
        if isinstance(value, Tensor):
            current = getattr(metric, name)
            setattr(metric, name, value.to(current.device if isinstance(current, Tensor) else metric.device))
        else:
            setattr(metric, name, [v.to(metric.device) for v in value])
    metric._update_count = saved["update_count"]
    metric._computed = None


# Lightning's names for these types (`trainer.connectors.logger_connector.result`), which libraries import
_ResultMetric = LoggedMetric
_ResultCollection = LoggedResults
