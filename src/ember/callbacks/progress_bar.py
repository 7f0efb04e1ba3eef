"""``ProgressBar``: the base class of every progress bar (TQDM, Rich, or the user's own).

It tracks which evaluation dataloader is running, knows the totals to display, and gathers the
metrics shown next to the bar (:meth:`ProgressBar.get_metrics`). Reading
``trainer.progress_bar_metrics`` copies logged values to the host, so subclasses call
``get_metrics`` only when they actually redraw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

from ember.callbacks.callback import Callback
from ember.loggers.utilities import _version
from ember.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer

_Number = Union[int, float]


class ProgressBar(Callback):
    """Base class for progress bars: subclass it to draw training progress your own way.

    A subclass implements :meth:`disable` and :meth:`enable` and draws in the hooks it needs.

    Example::

        class PercentBar(ProgressBar):
            def __init__(self):
                super().__init__()
                self.enabled = True

            def disable(self):
                self.enabled = False

            def enable(self):
                self.enabled = True

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if self.enabled:
                    print(f"{100 * (batch_idx + 1) / self.total_train_batches:.0f}%", end="\\r")

        Trainer(callbacks=[PercentBar()])
    """

    def __init__(self) -> None:
        self._trainer: Trainer | None = None
        self._current_eval_dataloader_idx: int | None = None

    @property
    def trainer(self) -> Trainer:
        if self._trainer is None:
            raise TypeError(f"The `{self.__class__.__name__}._trainer` reference has not been set yet.")
        return self._trainer

    # ---- descriptions shown at the left of each bar -----------------------------------
    @property
    def sanity_check_description(self) -> str:
        return "Sanity Checking"

    @property
    def train_description(self) -> str:
        return "Training"

    @property
    def validation_description(self) -> str:
        return "Validation"

    @property
    def test_description(self) -> str:
        return "Testing"

    @property
    def predict_description(self) -> str:
        return "Predicting"

    # ---- totals -----------------------------------------------------------------------
    @property
    def total_train_batches(self) -> _Number:
        """The number of training batches this epoch (``inf`` for an endless dataloader)."""
        trainer = self.trainer
        if trainer.max_epochs == -1 and trainer.max_steps is not None and trainer.max_steps > 0:
            return min(trainer.num_training_batches, trainer.max_steps - trainer.global_step)
        return trainer.num_training_batches

    @property
    def total_val_batches_current_dataloader(self) -> _Number:
        """The number of batches of the validation dataloader now running (sanity check included)."""
        trainer = self.trainer
        batches = trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches
        return self._for_current_dataloader(batches)

    @property
    def total_test_batches_current_dataloader(self) -> _Number:
        """The number of batches of the test dataloader now running."""
        return self._for_current_dataloader(self.trainer.num_test_batches)

    @property
    def total_predict_batches_current_dataloader(self) -> _Number:
        """The number of batches of the predict dataloader now running."""
        return self._for_current_dataloader(self.trainer.num_predict_batches)

    @property
    def total_val_batches(self) -> _Number:
        """The number of validation batches over all val dataloaders in this epoch (0 when it skips validation)."""
        trainer = self.trainer
        every_n = getattr(trainer, "check_val_every_n_epoch", 1)
        if every_n is not None and (trainer.current_epoch + 1) % every_n != 0:
            return 0
        batches = trainer.num_val_batches
        return sum(batches) if isinstance(batches, list) else batches

    def _for_current_dataloader(self, batches: Any) -> _Number:
        if isinstance(batches, list):
            assert self._current_eval_dataloader_idx is not None
            return batches[self._current_eval_dataloader_idx]
        return batches

    def has_dataloader_changed(self, dataloader_idx: int) -> bool:
        """Record ``dataloader_idx`` as the current one; True when it differs from the previous batch's."""
        old_dataloader_idx = self._current_eval_dataloader_idx
        self._current_eval_dataloader_idx = dataloader_idx
        return old_dataloader_idx != dataloader_idx

    def reset_dataloader_idx_tracker(self) -> None:
        self._current_eval_dataloader_idx = None

    # ---- what subclasses provide ---------------------------------------------------------
    def disable(self) -> None:
        """Stop drawing (the trainer calls this on every rank but 0)."""
        raise NotImplementedError

    def enable(self) -> None:
        """Resume drawing (tuners disable the bar for their trial runs and enable it again)."""
        raise NotImplementedError

    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print without breaking the bar's display."""
        print(*args, **kwargs)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer
        if not trainer.is_global_zero:
            self.disable()

    def get_metrics(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        """The items shown next to the bar: the logger version as ``v_num`` and every ``prog_bar`` metric.

        Override it to change what is displayed::

            def get_metrics(self, trainer, pl_module):
                items = super().get_metrics(trainer, pl_module)
                items.pop("v_num", None)
                return items
        """
        standard_metrics = get_standard_metrics(trainer)
        # For display, GPU values are copied to the host asynchronously: the bar never makes the
        # step wait for the device, and shows each value at most one refresh late.
        run = getattr(trainer, "_run", None)  # None: a trainer-like object, read as Lightning does
        pbar_metrics = run.metrics.progress_bar_values_nowait() if run is not None else trainer.progress_bar_metrics
        duplicates = list(standard_metrics.keys() & pbar_metrics.keys())
        if duplicates:
            rank_zero_warn(
                f"The progress bar already tracks a metric with the name(s) '{', '.join(duplicates)}' and"
                f" `self.log('{duplicates[0]}', ..., prog_bar=True)` will overwrite this value. "
                " If this is undesired, change the name or override `get_metrics()` in the progress bar callback.",
            )
        return {**standard_metrics, **pbar_metrics}


def get_standard_metrics(trainer: Trainer) -> dict[str, int | str]:
    """The items every bar shows: ``v_num``, the experiment version of the trainer's logger(s).

    Example: ``Epoch 1:  4%|▎  | 40/1095 [00:03<01:37, 10.84it/s, v_num=10]``.
    """
    items: dict[str, int | str] = {}
    if trainer.loggers:
        version = _version(trainer.loggers)
        if version not in ("", None):
            if isinstance(version, str):
                # long version strings: keep the last four characters
                version = version[-4:]
            items["v_num"] = version
    return items
