"""Find the largest batch size that fits: grow it until a trial runs out of memory, then step back.

``_scale_batch_size`` runs inside the hook of the ``BatchSizeFinder`` callback. Each trial runs
``steps_per_trial`` steps of the current loop with the candidate size; the attribute named
``batch_arg_name`` (on the model, ``model.hparams``, or the datamodule) is changed, and the
dataloader hooks are called again to build loaders of the new size. Afterwards weights,
optimizer, counters and settings are restored; only the batch size stays.

Example::

    new_size = Tuner(trainer).scale_batch_size(model, mode="binsearch", init_val=8)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ember.tuner._trial import (
    TrainerSnapshot,
    current_dataset_length,
    forget_data,
    free_memory,
    is_oom_error,
    load_dataloaders,
    run_trial,
    trial_settings,
)
from ember.utilities.parsing import lightning_getattr, lightning_setattr
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer

log = logging.getLogger(__name__)


def _scale_batch_size(
    trainer: Trainer,
    mode: str = "power",
    steps_per_trial: int = 3,
    init_val: int = 2,
    max_trials: int = 25,
    batch_arg_name: str = "batch_size",
    margin: float = 0.05,
    max_val: int = 8192,
) -> int | None:
    """Search the largest batch size that runs ``steps_per_trial`` steps without running out of memory."""
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"`margin` should be between 0 and 1. Found margin={margin}")
    if trainer.fast_dev_run:
        rank_zero_warn("Skipping batch size scaler since `fast_dev_run` is enabled.")
        return None

    from ember.trainer.states import TrainerFn

    snapshot = TrainerSnapshot(trainer)
    fn = trainer.state.fn
    assert fn is not None, "the tuner runs inside a call of fit, validate, test or predict"
    if fn == TrainerFn.FITTING:
        settings = {
            "limit_train_batches": 1.0,
            "limit_val_batches": steps_per_trial,
            "max_steps": trainer.global_step + steps_per_trial,
        }
    else:
        prefix = {TrainerFn.VALIDATING: "val", TrainerFn.TESTING: "test"}.get(fn, "predict")
        settings = {f"limit_{prefix}_batches": steps_per_trial}
    try:
        with trial_settings(trainer, [], **settings):
            new_size, _ = _adjust_batch_size(trainer, batch_arg_name, value=init_val)
            if mode == "power":
                new_size = _run_power_scaling(trainer, snapshot, new_size, batch_arg_name, max_trials, max_val)
            else:
                new_size = _run_binsearch_scaling(
                    trainer, snapshot, new_size, batch_arg_name, max_trials, margin, max_val
                )
            free_memory(trainer.strategy.root_device)
            log.info(f"Finished batch size finder, will continue with full run using batch size {new_size}")
    finally:
        snapshot.restore(trainer)
    load_dataloaders(trainer)  # as Lightning: the loaders of the new size are in place when the search ends
    if fn == TrainerFn.FITTING and _training_iterator_is_dropped(trainer):
        _draw_a_training_iterator(trainer)
    return new_size


def _training_iterator_is_dropped(trainer: Trainer) -> bool:
    """Whether the search ends the call (a ``Tuner`` call): the training iterator Lightning makes as the
    search ends then goes unused. The finder a ``Tuner`` call adds says so (read by name: the finder's module
    imports this one)."""
    return any(getattr(cb, "_early_exit", False) is True for cb in trainer.callbacks)


def _draw_a_training_iterator(trainer: Trainer) -> None:
    """Make and drop one training iterator, as Lightning does once it has set up the training data again.

    Each DataLoader iterator draws its seeds from the global RNG, so every shuffle after the search depends
    on this draw; without it the fit that follows would train on batches in another order than Lightning's.
    """
    from ember.trainer.data import train_iterator

    train_iterator(trainer._run)


def _run_power_scaling(
    trainer: Trainer, snapshot: TrainerSnapshot, new_size: int, batch_arg_name: str, max_trials: int, max_val: int
) -> int:
    """Double the batch size after every success; after the first failure, halve it and stop."""
    any_success = False
    last_successful_size = new_size
    untrained_data = True  # the loaders the first trial is to run on
    for i in range(max_trials):
        free_memory(trainer.strategy.root_device)
        snapshot.reset_progress(trainer)
        if new_size >= max_val:
            rank_zero_info(f"Reached the maximum batch size limit of {max_val}. Stopping search.")
            break
        try:
            untrained_data = False
            run_trial(trainer, reload_data=False)
            last_successful_size = new_size
            if i + 1 >= max_trials:
                new_size = last_successful_size
                break
            new_size, changed = _adjust_batch_size(trainer, batch_arg_name, factor=2.0, desc="succeeded")
            if not changed:
                break
            untrained_data = _set_up_training_data(trainer)
            any_success = True
        except RuntimeError as exception:
            if not is_oom_error(exception):
                raise
            _after_oom(trainer, exception)
            new_size, _ = _adjust_batch_size(trainer, batch_arg_name, factor=0.5, desc="failed")
            untrained_data = _set_up_training_data(trainer)
            if any_success:
                break
    _drop_untrained_iterator(trainer, untrained_data)
    return new_size


def _run_binsearch_scaling(
    trainer: Trainer,
    snapshot: TrainerSnapshot,
    new_size: int,
    batch_arg_name: str,
    max_trials: int,
    margin: float,
    max_val: int,
) -> int:
    """Double until the first failure, then bisect between the last success and the failure."""
    low = 1
    high = None
    count = 0
    last_successful_size = new_size
    untrained_data = True  # the loaders the first trial is to run on
    while True:
        free_memory(trainer.strategy.root_device)
        snapshot.reset_progress(trainer)
        if new_size >= max_val:
            rank_zero_info(f"Reached the maximum batch size limit of {max_val}. Stopping search.")
            break
        try:
            untrained_data = False
            run_trial(trainer, reload_data=False)
            last_successful_size = new_size
            count += 1
            if count >= max_trials:
                new_size = last_successful_size
                break
            low = new_size
            if high:
                if high - low <= 1:
                    break
                midval = (high + low) // 2
                new_size, changed = _adjust_batch_size(
                    trainer, batch_arg_name, value=midval, desc="succeeded", max_val=max_val
                )
            else:
                new_size, changed = _adjust_batch_size(
                    trainer, batch_arg_name, factor=2.0, desc="succeeded", max_val=max_val
                )
            if not changed:
                break
            untrained_data = _set_up_training_data(trainer)
        except RuntimeError as exception:
            if not is_oom_error(exception):
                raise
            _after_oom(trainer, exception)
            high = new_size
            midval = (high + low) // 2
            new_size, _ = _adjust_batch_size(trainer, batch_arg_name, value=midval, desc="failed")
            untrained_data = _set_up_training_data(trainer)
            if high - low <= 1:
                break
    _drop_untrained_iterator(trainer, untrained_data)

    if margin > 0:
        reduced = max(1, int(new_size * (1 - margin)))
        if reduced != new_size:
            rank_zero_info(f"Applying margin of {margin:.1%}, reducing batch size from {new_size} to {reduced}")
            new_size = reduced
            lightning_setattr(trainer.lightning_module, batch_arg_name, new_size)
    return new_size


def _after_oom(trainer: Trainer, exception: BaseException) -> None:
    """A trial died mid-step: drop its gradients and half-built state before the next one."""
    module = trainer.lightning_module
    module.zero_grad(set_to_none=True)
    module._current_fx_name = None
    trainer.should_stop = False
    free_memory(trainer.strategy.root_device, exception)


def _adjust_batch_size(
    trainer: Trainer,
    batch_arg_name: str = "batch_size",
    factor: float = 1.0,
    value: int | None = None,
    desc: str | None = None,
    max_val: int = 8192,
) -> tuple[int, bool]:
    """Set the next batch size to try; returns it and whether it differs from the current one.

    A batch size already at least as large as the dataset is not grown any further.
    """
    model = trainer.lightning_module
    batch_size = lightning_getattr(model, batch_arg_name)
    _reload_training_data_when_due(trainer)
    dataset_length = current_dataset_length(trainer)
    if dataset_length is not None and batch_size >= dataset_length:
        rank_zero_info(
            f"The batch size {batch_size} is greater or equal than the length of your dataset: {dataset_length}."
        )
        return batch_size, False
    new_size = value if value is not None else int(batch_size * factor)
    if new_size > max_val:
        if desc:
            rank_zero_info(f"Batch size {new_size} exceeds max_val limit {max_val}, capping at {max_val}")
        new_size = max_val
    if desc:
        rank_zero_info(f"Batch size {batch_size} {desc}, trying batch size {new_size}")
    changed = new_size != batch_size
    lightning_setattr(model, batch_arg_name, new_size)
    if changed:
        forget_data(trainer)  # the next trial asks the hooks for loaders of the new size
    return new_size, changed


def _reload_training_data_when_due(trainer: Trainer) -> None:
    """Set the training data up again when ``reload_dataloaders_every_n_epochs`` says the epochs of the last
    trial made it due, as Lightning does before it measures the dataset: the hook runs, and an iterator is made
    (drawing its seeds from the RNG) that no trial uses."""
    from ember.trainer import dataloaders
    from ember.trainer.states import TrainerFn

    run = trainer._run
    if trainer.state.fn != TrainerFn.FITTING or run.train_dataloader is None:
        return
    if dataloaders.reload_train_dataloader_now(trainer, run):
        dataloaders.setup_train_dataloader(trainer, run)
        _draw_a_training_iterator(trainer)


def _set_up_training_data(trainer: Trainer) -> bool:
    """In fit, ask for the training loaders of the current size at once, between trials, as Lightning does: the
    epoch they count as loaded at (for ``reload_dataloaders_every_n_epochs``) is the one the last trial reached.

    Returns whether Lightning would have made a training iterator with them (in fit).
    """
    from ember.trainer import dataloaders
    from ember.trainer.states import TrainerFn

    if trainer.state.fn != TrainerFn.FITTING:
        return False
    forget_data(trainer)
    dataloaders.setup_train_dataloader(trainer, trainer._run)
    return True


def _drop_untrained_iterator(trainer: Trainer, data_set_up_since_the_last_trial: bool) -> None:
    """Lightning makes an iterator each time it sets the training data up and trains the next trial on it; when
    the search ends before another trial, that iterator goes unused, though its draws from the RNG count."""
    from ember.trainer.states import TrainerFn

    if data_set_up_since_the_last_trial and trainer.state.fn == TrainerFn.FITTING:
        if trainer._run.train_dataloader is None:  # `init_val` changed the size before any trial ran
            _set_up_training_data(trainer)
        _draw_a_training_iterator(trainer)
