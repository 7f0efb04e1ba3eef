"""The learning rate range test: train a few steps while the learning rate grows, record the loss.

``_lr_find`` runs inside ``on_fit_start`` (the ``LearningRateFinder`` callback calls it): the
optimizer is already built, so the sweep drives it through a scheduler of its own, then weights,
optimizer, schedulers and counters return to where they were.

Example::

    lr_finder = Tuner(trainer).lr_find(model, min_lr=1e-5, max_lr=1.0)
    lr_finder.suggestion()           # the learning rate at the steepest loss descent
    fig = lr_finder.plot(suggest=True)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.parsing import lightning_hasattr, lightning_setattr
from ember.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer

log = logging.getLogger(__name__)


def _determine_lr_attr_name(model: Any, attr_name: str = "") -> str:
    if attr_name:
        if not lightning_hasattr(model, attr_name):
            raise AttributeError(
                f"The attribute name for the learning rate was set to {attr_name}, but"
                " could not find this as a field in `model` or `model.hparams`."
            )
        return attr_name
    attr_options = ("lr", "learning_rate")
    for attr in attr_options:
        if lightning_hasattr(model, attr):
            return attr
    raise AttributeError(
        "When using the learning rate finder, either `model` or `model.hparams` should"
        f" have one of these fields: {attr_options}. If your model has a different name for the learning rate, set"
        " it with `.lr_find(attr_name=...)`."
    )


class _LRFinder:
    """The results of a learning rate range test: ``results["lr"]`` and the smoothed ``results["loss"]``.

    Example::

        lr_finder = tuner.lr_find(model)
        new_lr = lr_finder.suggestion()
        lr_finder.plot(suggest=True, show=True)
    """

    def __init__(self, mode: str, lr_min: float, lr_max: float, num_training: int) -> None:
        if mode not in ("linear", "exponential"):
            raise ValueError(f"`mode` should be either 'linear' or 'exponential', got {mode!r}.")
        self.mode = mode
        self.lr_min = lr_min
        self.lr_max = lr_max
        self.num_training = num_training
        self.results: dict[str, Any] = {}
        self._total_batch_idx = 0
        self._optimal_idx: int | None = None

    def _exchange_scheduler(self, trainer: Trainer) -> None:
        """Start the optimizer at ``lr_min`` and let the sweep's scheduler be the only one."""
        from ember.trainer.optim import LRSchedulerConfig

        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise MisconfigurationException(
                f"`model.configure_optimizers()` returned {len(optimizers)}, but"
                " learning rate finder only works with single optimizer"
            )
        optimizer = optimizers[0]
        for param_group in optimizer.param_groups:
            param_group["lr"] = self.lr_min
            param_group["initial_lr"] = self.lr_min
        args = (optimizer, self.lr_max, self.num_training)
        scheduler = _LinearLR(*args) if self.mode == "linear" else _ExponentialLR(*args)
        trainer.optimizers = [optimizer]
        trainer._lr_scheduler_configs = [LRSchedulerConfig(scheduler, interval="step")]

    def plot(self, suggest: bool = False, show: bool = False, ax: Any = None) -> Any:
        """Plot loss against learning rate; ``suggest=True`` marks the suggestion with a red point.

        Returns the matplotlib figure. Needs matplotlib (``pip install matplotlib``).
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise MisconfigurationException(
                "To use the `plot` method, you must have Matplotlib installed."
                " Install it by running `pip install -U matplotlib`."
            ) from err
        lrs = self.results["lr"]
        losses = self.results["loss"]
        if ax is None:
            fig, ax = plt.subplots()
        else:
            fig = ax.figure
        ax.plot(lrs, losses)
        if self.mode == "exponential":
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss")
        if suggest:
            self.suggestion()
            if self._optimal_idx:
                ax.plot(lrs[self._optimal_idx], losses[self._optimal_idx], markersize=10, marker="o", color="red")
        if show:
            plt.show()
        return fig

    def suggestion(self, skip_begin: int = 10, skip_end: int = 1) -> float | None:
        """The learning rate where the loss falls fastest (steepest negative gradient), or None if too few points.

        ``skip_begin`` and ``skip_end`` drop the first and last points, which are noisy or diverging.
        """
        losses = torch.tensor(self.results["loss"][skip_begin:-skip_end])
        lrs = torch.tensor(self.results["lr"][skip_begin:-skip_end])
        is_finite = torch.isfinite(losses)
        losses = losses[is_finite]
        lrs = lrs[is_finite]
        if len(losses) < 2:
            log.error(
                "Failed to compute suggestion for learning rate because there are not enough points. Increase the loop"
                " iteration limits or the size of your dataset/dataloader."
            )
            self._optimal_idx = None
            return None
        gradients = torch.gradient(losses, spacing=[lrs])[0]
        min_grad = int(torch.argmin(gradients).item())
        all_losses_idx = torch.arange(len(self.results["loss"]))
        idx_finite = all_losses_idx[skip_begin:-skip_end][is_finite]
        self._optimal_idx = int(idx_finite[min_grad].item())
        return self.results["lr"][self._optimal_idx]


def _lr_find(
    trainer: Trainer,
    model: Any,
    min_lr: float = 1e-8,
    max_lr: float = 1,
    num_training: int = 100,
    mode: str = "exponential",
    early_stop_threshold: float | None = 4.0,
    update_attr: bool = False,
    attr_name: str = "",
) -> _LRFinder | None:
    """Sweep the learning rate from ``min_lr`` to ``max_lr`` over ``num_training`` steps, then restore the state."""
    from ember.tuner._trial import TrainerSnapshot, load_train_dataloader, run_trial, trial_settings

    if trainer.fast_dev_run:
        rank_zero_warn("Skipping learning rate finder since `fast_dev_run` is enabled.")
        return None
    if update_attr:
        attr_name = _determine_lr_attr_name(model, attr_name)

    snapshot = TrainerSnapshot(trainer)
    start_steps = trainer.global_step
    # run from inside training (a callback's `on_train_epoch_start`), the epoch goes on with the data
    training_data_loaded = trainer._run.train_dataloader is not None
    lr_finder = _LRFinder(mode, min_lr, max_lr, num_training)
    callback = _LRCallback(
        num_training, early_stop_threshold, progress_bar_refresh_rate=1 if trainer.progress_bar_callback else 0
    )
    finished = False
    try:
        with trial_settings(trainer, [callback], max_steps=num_training + start_steps, limit_val_batches=num_training):
            lr_finder._exchange_scheduler(trainer)
            run_trial(trainer)
            if trainer.global_step != num_training + start_steps:
                log.info(f"LR finder stopped early after {trainer.global_step} steps due to diverging loss.")
            lr_finder.results.update({"lr": callback.lrs, "loss": callback.losses})
            lr_finder._total_batch_idx = trainer.fit_loop.total_batch_idx  # the last batch's index, as Lightning's
        lr_finder.results = trainer.strategy.broadcast(lr_finder.results)
        finished = True
    finally:
        callback.close()
        snapshot.restore(trainer)
    if training_data_loaded:
        load_train_dataloader(trainer)  # as Lightning, which sets its training data up again after the search

    if update_attr and finished:
        lr = lr_finder.suggestion()
        if lr is not None:
            lightning_setattr(model, attr_name, lr)
            # the optimizer already exists: start it at the suggestion too
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = lr
            log.info(f"Learning rate set to {lr}")
    return lr_finder


class _LRCallback(Callback):
    """Records the learning rate before each optimizer step and the smoothed loss after it.

    Stops the sweep once the smoothed loss exceeds ``early_stop_threshold`` times the best so far.
    """

    def __init__(
        self,
        num_training: int,
        early_stop_threshold: float | None = 4.0,
        progress_bar_refresh_rate: int = 0,
        beta: float = 0.98,
    ) -> None:
        self.num_training = num_training
        self.early_stop_threshold = early_stop_threshold
        self.beta = beta
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.avg_loss = 0.0
        self.best_loss = 0.0
        self.progress_bar_refresh_rate = progress_bar_refresh_rate
        self.progress_bar: Any = None

    def on_train_batch_start(self, trainer: Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches != 0:
            return
        if self.progress_bar_refresh_rate and self.progress_bar is None:
            from tqdm import tqdm

            self.progress_bar = tqdm(desc="Finding best initial lr", total=self.num_training)
        self.lrs.append(trainer.lr_scheduler_configs[0].scheduler.lr[0])

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches != 0:
            return
        if not outputs:
            self.losses.append(float("nan"))
            return
        if self.progress_bar is not None:
            self.progress_bar.update()
        loss = outputs if isinstance(outputs, torch.Tensor) else outputs["loss"]
        current_loss = loss.item()  # host sync: the sweep decides on every step whether the loss diverged
        current_step = trainer.global_step
        self.avg_loss = self.beta * self.avg_loss + (1 - self.beta) * current_loss
        smoothed_loss = self.avg_loss / (1 - self.beta ** (current_step + 1))
        if (
            self.early_stop_threshold is not None
            and current_step > 1
            and smoothed_loss > self.early_stop_threshold * self.best_loss
        ):
            trainer.should_stop = True
            self.close()
        if trainer.world_size > 1:
            # all ranks: agree on stopping
            trainer.should_stop = trainer.strategy.broadcast(trainer.should_stop)
        if smoothed_loss < self.best_loss or current_step == 1:
            self.best_loss = smoothed_loss
        self.losses.append(smoothed_loss)

    def close(self) -> None:
        if self.progress_bar is not None:
            self.progress_bar.close()
            self.progress_bar = None


class _LinearLR(LRScheduler):
    """Grows the learning rate linearly from the optimizer's to ``end_lr`` over ``num_iter`` steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, end_lr: float, num_iter: int, last_epoch: int = -1) -> None:
        self.end_lr = end_lr
        self.num_iter = num_iter
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | torch.Tensor]:
        r = (self.last_epoch + 1) / self.num_iter
        if self.last_epoch > 0:
            val = [base_lr + r * (self.end_lr - base_lr) for base_lr in self.base_lrs]
        else:
            val = list(self.base_lrs)
        self._lr = val
        return val

    @property
    def lr(self) -> list[float | torch.Tensor]:
        return self._lr


class _ExponentialLR(LRScheduler):
    """Grows the learning rate geometrically from the optimizer's to ``end_lr`` over ``num_iter`` steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, end_lr: float, num_iter: int, last_epoch: int = -1) -> None:
        self.end_lr = end_lr
        self.num_iter = num_iter
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | torch.Tensor]:
        r = (self.last_epoch + 1) / self.num_iter
        if self.last_epoch > 0:
            val = [base_lr * (self.end_lr / base_lr) ** r for base_lr in self.base_lrs]
        else:
            val = list(self.base_lrs)
        self._lr = val
        return val

    @property
    def lr(self) -> list[float | torch.Tensor]:
        return self._lr
