"""``LearningRateMonitor``: logs each optimizer's learning rate (and optionally momentum, weight decay).

Keys are ``lr-<OptimizerClass>`` or the scheduler config's ``name``; a second optimizer of the
same class gets ``-1``; several parameter groups get ``/pg1``, ``/pg2`` (or the group's
``"name"``). Values go straight to the loggers with ``logger.log_metrics`` and are also put into
``trainer.callback_metrics``.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch.optim import Optimizer

from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


class LearningRateMonitor(Callback):
    """Log the learning rate of every optimizer during training.

    Args:
        logging_interval: ``"step"`` or ``"epoch"`` logs all optimizers at that interval; ``None``
            follows each scheduler's own ``interval`` (optimizers without a scheduler every step).
        log_momentum: also log ``<key>-momentum`` (``betas[0]`` for Adam-like optimizers, 0 when absent).
        log_weight_decay: also log ``<key>-weight_decay``.

    Raises:
        MisconfigurationException: if ``logging_interval`` is not ``"step"``, ``"epoch"`` or ``None``,
            or (when training starts) if the trainer has no logger.

    Example::

        trainer = Trainer(callbacks=[LearningRateMonitor(logging_interval="step")])
        # logs e.g. {"lr-Adam": 0.001} every `log_every_n_steps` steps
    """

    def __init__(
        self,
        logging_interval: Literal["step", "epoch"] | None = None,
        log_momentum: bool = False,
        log_weight_decay: bool = False,
    ) -> None:
        if logging_interval not in (None, "step", "epoch"):
            raise MisconfigurationException("logging_interval should be `step` or `epoch` or `None`.")
        self.logging_interval = logging_interval
        self.log_momentum = log_momentum
        self.log_weight_decay = log_weight_decay
        self.lrs: dict[str, list[float]] = {}
        self.last_momentum_values: dict[str, float | None] = {}
        self.last_weight_decay_values: dict[str, float | None] = {}

    def on_train_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        """Check that there is a logger and work out a unique key for every parameter group."""
        if not trainer.loggers:
            raise MisconfigurationException(
                "Cannot use `LearningRateMonitor` callback with `Trainer` that has no logger."
                " Pass a logger to the Trainer (e.g. `Trainer(logger=True)`) or remove the callback."
            )
        if self.log_momentum:

            def _missing(key: str) -> bool:
                if trainer.lr_scheduler_configs:
                    return any(key not in c.scheduler.optimizer.defaults for c in trainer.lr_scheduler_configs)
                return any(key not in opt.defaults for opt in trainer.optimizers)

            if _missing("momentum") and _missing("betas"):
                rank_zero_warn(
                    "You have set log_momentum=True, but some optimizers do not"
                    " have momentum. This will log a value 0 for the momentum.",
                    category=RuntimeWarning,
                )

        sched_names, seen, seen_types = self._find_names_from_schedulers(trainer.lr_scheduler_configs)
        opt_names, _ = self._find_names_from_optimizers(trainer.optimizers, seen, seen_types)
        names = list(itertools.chain.from_iterable(sched_names + opt_names))
        self.lrs = {name: [] for name in names}
        self.last_momentum_values = {f"{name}-momentum": None for name in names}
        self.last_weight_decay_values = {f"{name}-weight_decay": None for name in names}

    def on_train_batch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        # the same cadence as the trainer's own step logging; `+ 1` because the step has not run yet
        every_n = trainer.log_every_n_steps
        if every_n == 0 or (
            (trainer._run.progress.batches_that_stepped + 1) % every_n != 0 and not trainer.should_stop
        ):
            return
        if self.logging_interval != "epoch":
            self._log(trainer, "step" if self.logging_interval is None else "any")

    def on_train_epoch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval != "step":
            self._log(trainer, "epoch" if self.logging_interval is None else "any")

    def _log(self, trainer: Trainer, interval: str) -> None:
        stats = self._extract_stats(trainer, interval)
        if stats:
            for logger in trainer.loggers:
                logger.log_metrics(stats, step=trainer._run.progress.batches_that_stepped)

    def _extract_stats(self, trainer: Trainer, interval: str) -> dict[str, float]:
        stats: dict[str, float] = {}
        sched_names, seen, seen_types = self._find_names_from_schedulers(trainer.lr_scheduler_configs)
        self._remap_keys(sched_names)
        for names, config in zip(sched_names, trainer.lr_scheduler_configs):
            if interval in (config.interval, "any"):
                stats.update(self._get_optimizer_stats(config.scheduler.optimizer, names))

        # optimizers without a scheduler are logged at every interval asked for
        opt_names, unscheduled = self._find_names_from_optimizers(trainer.optimizers, seen, seen_types)
        self._remap_keys(opt_names)
        for optimizer, names in zip(unscheduled, opt_names):
            stats.update(self._get_optimizer_stats(optimizer, names))

        device = trainer.strategy.root_device
        trainer.callback_metrics.update({k: torch.tensor(v, device=device) for k, v in stats.items()})
        return stats

    def _get_optimizer_stats(self, optimizer: Optimizer, names: list[str]) -> dict[str, float]:
        stats: dict[str, float] = {}
        use_betas = "betas" in optimizer.defaults
        for group, name in zip(optimizer.param_groups, names):
            lr = group["lr"]
            self.lrs.setdefault(name, []).append(lr)
            stats[name] = lr
            if self.log_momentum:
                momentum = group["betas"][0] if use_betas else group.get("momentum", 0)
                self.last_momentum_values[f"{name}-momentum"] = momentum
                stats[f"{name}-momentum"] = momentum
            if self.log_weight_decay:
                weight_decay = group["weight_decay"]
                self.last_weight_decay_values[f"{name}-weight_decay"] = weight_decay
                stats[f"{name}-weight_decay"] = weight_decay
        return stats

    def _remap_keys(self, names: list[list[str]], token: str = "/pg1") -> None:
        # an optimizer that gained parameter groups: its old key becomes `<key>/pg1`
        for group_names in names:
            for new_name in group_names:
                old_name = new_name.replace(token, "")
                if token in new_name and old_name in self.lrs:
                    self.lrs[new_name] = self.lrs.pop(old_name)
                elif new_name not in self.lrs:
                    self.lrs[new_name] = []

    @staticmethod
    def _add_prefix(name: str, optimizer_cls: type, seen_optimizer_types: defaultdict[type, int]) -> str:
        if optimizer_cls not in seen_optimizer_types:
            return name
        count = seen_optimizer_types[optimizer_cls]
        return name + f"-{count - 1}" if count > 1 else name

    @staticmethod
    def _add_suffix(name: str, param_groups: list[dict], index: int, use_names: bool = True) -> str:
        if len(param_groups) > 1:
            if not use_names:
                return f"{name}/pg{index + 1}"
            return f"{name}/{param_groups[index].get('name', f'pg{index + 1}')}"
        if use_names:
            pg_name = param_groups[index].get("name")
            return f"{name}/{pg_name}" if pg_name else name
        return name

    @staticmethod
    def _duplicate_param_group_names(param_groups: list[dict]) -> set[str]:
        names = [pg.get("name", f"pg{i}") for i, pg in enumerate(param_groups, start=1)]
        return {n for n in names if names.count(n) > 1}

    def _find_names_from_schedulers(
        self, lr_scheduler_configs: list[Any]
    ) -> tuple[list[list[str]], list[Optimizer], defaultdict[type, int]]:
        names: list[list[str]] = []
        seen_optimizers: list[Optimizer] = []
        seen_optimizer_types: defaultdict[type, int] = defaultdict(int)
        for config in lr_scheduler_configs:
            optimizer = config.scheduler.optimizer
            name = config.name if config.name is not None else "lr-" + optimizer.__class__.__name__
            names.append(
                self._check_duplicates_and_update_name(optimizer, name, seen_optimizers, seen_optimizer_types, config)
            )
        return names, seen_optimizers, seen_optimizer_types

    def _find_names_from_optimizers(
        self,
        optimizers: list[Any],
        seen_optimizers: list[Optimizer],
        seen_optimizer_types: defaultdict[type, int],
    ) -> tuple[list[list[str]], list[Optimizer]]:
        names: list[list[str]] = []
        unscheduled: list[Optimizer] = []
        for optimizer in optimizers:
            # wrapped optimizers (LightningOptimizer-like) expose the torch one as `.optimizer`
            optimizer = getattr(optimizer, "optimizer", optimizer)
            if optimizer in seen_optimizers:
                continue
            name = "lr-" + optimizer.__class__.__name__
            names.append(
                self._check_duplicates_and_update_name(optimizer, name, seen_optimizers, seen_optimizer_types, None)
            )
            unscheduled.append(optimizer)
        return names, unscheduled

    def _check_duplicates_and_update_name(
        self,
        optimizer: Optimizer,
        name: str,
        seen_optimizers: list[Optimizer],
        seen_optimizer_types: defaultdict[type, int],
        lr_scheduler_config: Any,
    ) -> list[str]:
        seen_optimizers.append(optimizer)
        optimizer_cls = type(optimizer)
        if lr_scheduler_config is None or lr_scheduler_config.name is None:
            seen_optimizer_types[optimizer_cls] += 1
        param_groups = optimizer.param_groups
        duplicates = self._duplicate_param_group_names(param_groups)
        if duplicates:
            raise MisconfigurationException(
                "A single `Optimizer` cannot have multiple parameter groups with identical "
                f"`name` values. {name} has duplicated parameter group names {duplicates}"
            )
        name = self._add_prefix(name, optimizer_cls, seen_optimizer_types)
        return [self._add_suffix(name, param_groups, i) for i in range(len(param_groups))]


lightning_style_annotations(LearningRateMonitor)  # Lightning's `typing` forms in the signature
