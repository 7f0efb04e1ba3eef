"""The ``Callback`` base class: every hook a callback can receive, each a no-op by default.

The trainer calls only the hooks a callback overrides, so an unused hook costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ember.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    import torch
    from torch.optim import Optimizer

    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer


_Hook = TypeVar("_Hook", bound=Callable[..., Any])


def ignores_outputs(hook: _Hook) -> _Hook:
    """Marks a built-in callback's ``on_train_batch_end`` that never reads ``outputs``.

    When every callback's ``on_train_batch_end`` is so marked and the module does not override it, the
    loop does not build the step's outputs (the detached loss in a dict) on each batch. A subclass that
    overrides the hook again is unmarked, so it gets its outputs.
    """
    hook.ignores_outputs = True  # type: ignore[attr-defined]
    return hook


def logs_nothing(hook: _Hook) -> _Hook:
    """Marks a built-in callback's batch hook that never logs and runs no code of the program's.

    The loop may call such a hook directly, without first setting the module's running hook name (which only
    ``self.log`` reads): one Python call less on every batch. Honoured for Ember's own classes only, since a
    subclass may run code of its own from the hook (an overridden ``get_metrics``); those get the full call.
    """
    hook.logs_nothing = True  # type: ignore[attr-defined]
    return hook


def missing_before_first_step(trainer: Any, key: str, who: str) -> bool:
    """Whether ``key`` is missing because the run resumed inside an epoch from a checkpoint that holds none of
    the values logged before it (Lightning's), and the validation or the epoch end that checkpoint had not
    reached runs before any step: ``who`` makes no decision there (it says so). The uninterrupted run had the
    values (the step's, or the epoch's last validation's); Lightning's resumed run fails on a validation's key
    at that epoch end, and skips the validation and end a step checkpoint left."""
    if not getattr(getattr(trainer, "_run", None), "step_metrics_missing", False):  # (or no run: a stand-in trainer)
        return False
    rank_zero_info(
        f"{who}: `{key}` is not logged yet: the run resumed from a checkpoint that holds none of the values logged"
        " before it (one Lightning wrote), and this validation or epoch end, which that checkpoint had not reached,"
        " runs before any step. No decision on it here; the next one reads what the run logs from now on."
    )
    return True


class Callback:
    """Hooks into the training loop: subclass it and override the events you need.

    Example::

        class PrintEpochs(Callback):
            def on_train_epoch_end(self, trainer, pl_module):
                print("finished epoch", trainer.current_epoch)

        Trainer(callbacks=[PrintEpochs()])
    """

    @property
    def state_key(self) -> str:
        """The key of this callback's state in a checkpoint's ``callbacks`` dict.

        Override it (see :meth:`_generate_state_key`) when several instances of one class
        must keep separate state.
        """
        return self.__class__.__qualname__

    @property
    def _legacy_state_key(self) -> type[Callback]:
        return type(self)

    def _generate_state_key(self, **kwargs: Any) -> str:
        """A state key made of the class name and the given arguments, e.g. ``Cls{'monitor': 'x'}``."""
        return f"{self.__class__.__qualname__}{kwargs!r}"

    # ---- setup and teardown -------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Called when fit, validate, test or predict begins."""

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Called when fit, validate, test or predict ends."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when fit begins."""

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when fit ends."""

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the validation sanity check starts."""

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the validation sanity check ends."""

    # ---- training ---------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the train begins."""

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the train ends."""

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the train epoch begins."""

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the train epoch ends (after the end-of-epoch validation)."""

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """Called when the train batch begins."""

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Called when the train batch ends; ``outputs`` is what ``training_step`` returned."""

    # ---- validation ---------------------------------------------------------------------
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the validation loop begins."""

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the validation loop ends."""

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the val epoch begins."""

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the val epoch ends."""

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Called when the validation batch begins."""

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Called when the validation batch ends."""

    # ---- test ---------------------------------------------------------------------------
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the test begins."""

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the test ends."""

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the test epoch begins."""

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the test epoch ends."""

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Called when the test batch begins."""

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Called when the test batch ends."""

    # ---- predict ------------------------------------------------------------------------
    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the predict begins."""

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when predict ends."""

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the predict epoch begins."""

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the predict epoch ends."""

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Called when the predict batch begins."""

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Called when the predict batch ends."""

    # ---- failures -----------------------------------------------------------------------
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Called when any trainer execution is interrupted by an exception."""

    # ---- state and checkpoints -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The callback's state to put in a checkpoint (empty means nothing is saved)."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state returned by :meth:`state_dict`."""

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Called when saving a checkpoint; the callback may add to ``checkpoint``."""

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Called when loading a checkpoint, with the whole checkpoint dict."""

    # ---- optimization -------------------------------------------------------------------
    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        """Called before ``loss.backward()``."""

    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called after ``loss.backward()`` and before optimizers are stepped."""

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None:
        """Called before ``optimizer.step()``, after gradients are unscaled under AMP."""

    def on_before_zero_grad(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None:
        """Called before ``optimizer.zero_grad()``."""
