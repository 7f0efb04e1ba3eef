"""``EarlyStopping``: stop training when a monitored metric stops improving."""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

import torch

from ember.callbacks.callback import Callback, missing_before_first_step
from ember.utilities.argument_checks import check_number, check_type
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer

log = logging.getLogger(__name__)


class EarlyStoppingReason(Enum):
    """Why :class:`EarlyStopping` stopped training (``NOT_STOPPED`` while it has not)."""

    NOT_STOPPED = 0
    STOPPING_THRESHOLD = 1
    DIVERGENCE_THRESHOLD = 2
    PATIENCE_EXHAUSTED = 3
    NON_FINITE_METRIC = 4


class EarlyStopping(Callback):
    r"""Monitor a metric and stop training when it stops improving.

    Args:
        monitor: the logged metric to watch.
        min_delta: the smallest change that counts as an improvement; a change of ``|min_delta|``
            or less is no improvement.
        patience: how many checks (validation runs, not epochs) without improvement to allow.
        verbose: log a message at every check.
        mode: ``"min"`` (stop when the metric stops decreasing) or ``"max"``.
        strict: raise if ``monitor`` is not among the logged metrics (else skip the check).
        check_finite: stop as soon as the metric is NaN or infinite.
        stopping_threshold: stop as soon as the metric is better than this value.
        divergence_threshold: stop as soon as the metric is worse than this value.
        check_on_train_epoch_end: check at the end of the training epoch instead of after
            validation; ``None`` decides in ``setup`` from the trainer's validation schedule.
        log_rank_zero_only: print the verbose messages on global rank 0 only.

    After a stop, :attr:`stopped_epoch`, :attr:`stopping_reason` (an :class:`EarlyStoppingReason`)
    and :attr:`stopping_reason_message` say when and why.

    Example::

        early_stopping = EarlyStopping("val_loss", patience=5, mode="min")
        trainer = Trainer(callbacks=[early_stopping])
        trainer.fit(model)
        print(early_stopping.stopping_reason, early_stopping.stopped_epoch)
    """

    mode_dict: dict[str, Callable[..., Any]] = {"min": torch.lt, "max": torch.gt}
    order_dict = {"min": "<", "max": ">"}

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
    ) -> None:
        super().__init__()
        _check_argument_types(monitor, min_delta, stopping_threshold, divergence_threshold)
        if not isinstance(mode, str) or mode not in self.mode_dict:
            raise MisconfigurationException(f"`mode` can be {', '.join(self.mode_dict.keys())}, got {mode}")
        if isinstance(patience, (int, float)) and not patience >= 0:
            raise MisconfigurationException(
                f"`EarlyStopping(patience={patience!r})` must be >= 0: the number of checks without"
                " improvement to allow before stopping (0 stops at the first check that does not improve)."
            )
        self.monitor = monitor
        self.patience = patience
        self.verbose = verbose
        self.mode = mode
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.log_rank_zero_only = log_rank_zero_only
        self._check_on_train_epoch_end = check_on_train_epoch_end
        # Stored with the sign that makes "current - min_delta beats best" the improvement test.
        self.min_delta = abs(min_delta) if mode == "max" else -abs(min_delta)
        self.wait_count = 0
        self.stopped_epoch = 0
        self.best_score = torch.tensor(torch.inf if mode == "min" else -torch.inf)
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    @property
    def monitor_op(self) -> Callable[..., Any]:
        return self.mode_dict[self.mode]

    # ---- hooks ----------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._check_on_train_epoch_end is None:
            # Several validations per epoch, or epochs without validation: check after validation.
            self._check_on_train_epoch_end = trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._check_on_train_epoch_end or self._should_skip_check(trainer):
            return
        self._run_early_stopping_check(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._check_on_train_epoch_end or self._should_skip_check(trainer):
            return
        self._run_early_stopping_check(trainer)

    # ---- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # The reason is stored as its number, not as the enum, so the checkpoint stays plain data
        # that ``torch.load(weights_only=True)`` accepts in any program.
        return {
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "best_score": self.best_score,
            "patience": self.patience,
            "stopping_reason": self.stopping_reason.value,
            "stopping_reason_message": self.stopping_reason_message,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wait_count = state_dict["wait_count"]
        self.stopped_epoch = state_dict["stopped_epoch"]
        self.best_score = state_dict["best_score"]
        self.patience = state_dict["patience"]
        self.stopping_reason = _as_reason(state_dict.get("stopping_reason", EarlyStoppingReason.NOT_STOPPED))
        self.stopping_reason_message = state_dict.get("stopping_reason_message")

    # ---- the check ------------------------------------------------------------------------
    def _should_skip_check(self, trainer: Trainer) -> bool:
        return trainer.state.fn != "fit" or trainer.sanity_checking

    def _validate_condition_metric(self, logs: dict[str, torch.Tensor]) -> bool:
        if logs.get(self.monitor) is not None:
            return True
        available = "`, `".join(logs.keys())
        message = (
            f"Early stopping conditioned on metric `{self.monitor}` which is not available."
            f" Pass in or modify your `EarlyStopping` callback to use any of the following: `{available}`"
        )
        if self.strict:
            raise RuntimeError(message)
        if self.verbose:
            rank_zero_warn(message, category=RuntimeWarning)
        return False

    def _run_early_stopping_check(self, trainer: Trainer) -> None:
        """Evaluate the stopping rules on the current metric and tell the trainer to stop if one fires."""
        logs = trainer.callback_metrics
        if self.monitor not in logs and missing_before_first_step(trainer, self.monitor, "EarlyStopping"):
            return
        if trainer.fast_dev_run or not self._validate_condition_metric(logs):
            return
        current = logs[self.monitor].squeeze()
        # Lightning's contract, which subclasses override (scvi-tools' warm-up): `(should_stop, message)`,
        # and the rule that fires sets `stopping_reason`
        decided_here, message = self._evaluate_stopping_criteria(current)
        # all ranks: any rank that wants to stop stops everyone, so no rank waits alone.
        should_stop = trainer.strategy.reduce_boolean_decision(decided_here, all=False)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop:
            self.stopped_epoch = trainer.current_epoch
            # as Lightning: this rank's own message, also where another rank decided (it may say "improved")
            self.stopping_reason_message = message
        if message and self.verbose:
            self._log_info(trainer, message, self.log_rank_zero_only)

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        """Whether ``current`` stops training, and the message that says why (or that it improved);
        a rule that stops sets :attr:`stopping_reason`."""
        # host sync: each comparison below reads the metric, once per validation run.
        if self.check_finite and not torch.isfinite(current):
            self.stopping_reason = EarlyStoppingReason.NON_FINITE_METRIC
            return True, (
                f"Monitored metric {self.monitor} = {current} is not finite."
                f" Previous best value was {self.best_score:.3f}. Signaling Trainer to stop."
            )
        if self.stopping_threshold is not None and self.monitor_op(current, self.stopping_threshold):
            self.stopping_reason = EarlyStoppingReason.STOPPING_THRESHOLD
            return True, (
                "Stopping threshold reached:"
                f" {self.monitor} = {current} {self.order_dict[self.mode]} {self.stopping_threshold}."
                " Signaling Trainer to stop."
            )
        if self.divergence_threshold is not None and self.monitor_op(-current, -self.divergence_threshold):
            self.stopping_reason = EarlyStoppingReason.DIVERGENCE_THRESHOLD
            return True, (
                "Divergence threshold reached:"
                # Lightning prints the stopping-threshold sign here ("11.0 < 10.0"); say it right.
                f" {self.monitor} = {current} {self.order_dict['max' if self.mode == 'min' else 'min']}"
                f" {self.divergence_threshold}."
                " Signaling Trainer to stop."
            )
        if self.monitor_op(current - self.min_delta, self.best_score.to(current.device)):
            message = self._improvement_message(current)
            self.best_score = current
            self.wait_count = 0
            return False, message
        self.wait_count += 1
        if self.wait_count >= self.patience:
            self.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
            return True, (
                f"Monitored metric {self.monitor} did not improve in the last {self.wait_count} records."
                f" Best score: {self.best_score:.3f}. Signaling Trainer to stop."
            )
        return False, None

    def _improvement_message(self, current: torch.Tensor) -> str:
        if torch.isfinite(self.best_score):
            return (
                f"Metric {self.monitor} improved by {abs(self.best_score - current):.3f} >="
                f" min_delta = {abs(self.min_delta)}. New best score: {current:.3f}"
            )
        return f"Metric {self.monitor} improved. New best score: {current:.3f}"

    @staticmethod
    def _log_info(trainer: Trainer | None, message: str, log_rank_zero_only: bool) -> None:
        rank = None
        if trainer is not None and trainer.world_size > 1:
            rank = trainer.global_rank
            message = f"[rank: {rank}] {message}"
        if rank is None or not log_rank_zero_only or rank == 0:
            log.info(message)


def _as_reason(value: Any) -> EarlyStoppingReason:
    """Accept the reason as Ember stores it (a number), as an enum, or by name."""
    if isinstance(value, EarlyStoppingReason):
        return value
    if isinstance(value, Enum):
        value = value.name
    if isinstance(value, str):
        return (
            EarlyStoppingReason[value.upper()]
            if value.upper() in EarlyStoppingReason.__members__
            else (EarlyStoppingReason.NOT_STOPPED)
        )
    try:
        return EarlyStoppingReason(value)
    except ValueError:
        return EarlyStoppingReason.NOT_STOPPED


lightning_style_annotations(EarlyStopping)  # Lightning's `typing` forms in the signature


def _check_argument_types(monitor: Any, min_delta: Any, stopping_threshold: Any, divergence_threshold: Any) -> None:
    """Arguments of a type that would fail later (at the first check, with Python's words), refused here."""
    call = "EarlyStopping"
    check_type(call, "monitor", monitor, (str, type(None)), "the name of a logged value")
    check_number(call, "min_delta", min_delta, "a number: the smallest change that counts as an improvement")
    check_number(call, "stopping_threshold", stopping_threshold, "a number, or None", optional=True)
    check_number(call, "divergence_threshold", divergence_threshold, "a number, or None", optional=True)
