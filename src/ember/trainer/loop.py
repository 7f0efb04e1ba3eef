"""The loops: fit -> epoch -> batch, then evaluation and prediction, top to bottom.

The batch body of a training epoch reads as a hand-written loop::

    fetch -> transfer -> batch start -> step -> schedulers -> batch end -> log -> validate -> stop

Everything a loop decides once (which hooks someone overrides, whether batches must move, which
schedulers step when, whether this epoch validates) is decided before its first batch; a hook
nobody overrides costs one ``is not None`` per batch. One training step lives in ``step.py``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ember.core.hooks import program_overrides
from ember.profilers.profiler import profiled, profiled_iterator, strategy_action
from ember.trainer import dataloaders
from ember.trainer.arguments import has_epoch_limit
from ember.trainer.data import (
    CombinedTrainBatches,
    DataLoaderIter,
    ReadAhead,
    ReadAheadRng,
    data_rng_states,
    loads_in_process,
    make_first_train_iterator,
    make_unused_iterator,
    read_held_batch,
    reads_ahead,
    set_data_rng_states,
    set_sampler_epoch,
    skip_one,
    stateful_single_loader,
    takes_dataloader_iter,
    train_iterator,
    warn_if_workers_persist,
)
from ember.trainer.preemption import evaluation_stop_flag, on_stop_request, stop_evaluation
from ember.trainer.states import RunningStage, TrainerFn
from ember.trainer.step import TrainingStep, step_fn
from ember.utilities.apply_func import move_data_to_device
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import WarningCache, rank_zero_debug, rank_zero_info, rank_zero_warn
from ember.utilities.seed import isolate_rng
from ember.utilities.signature_utils import check_dataloader_idx, step_without_batch_idx
from ember.utilities.warnings import PossibleUserWarning

if TYPE_CHECKING:
    from ember.trainer.dispatch import HookDispatcher
    from ember.trainer.logging import LoggedResults
    from ember.trainer.run import Progress, Resume, Run
    from ember.trainer.trainer import Trainer

_END = object()  # what `next(iterator, _END)` returns once the data is exhausted


# =====================================================================================
# fit
# =====================================================================================
def run_fit(trainer: Trainer, run: Run) -> None:
    """Sanity check, then epochs until a limit or ``should_stop`` ends training."""
    hooks = _hooks(run)
    if _should_sanity_check(trainer, run):
        run_sanity_check(trainer, run)
    if trainer.limit_train_batches == 0:
        return  # training disabled: not even the dataloader is requested
    _takes_iterator(trainer, "training_step")  # (its warning, as the fit loop starts)
    if run.train_combined_loader is None or dataloaders.reload_train_dataloader_now(trainer, run):
        # (already loaded in this call when `configure_optimizers` read `trainer.estimated_stepping_batches`:
        # as in Lightning, the hook is not called again, so a random split is drawn once)
        dataloaders.setup_train_dataloader(trainer, run)
        run.train_iterator = None  # (one made with the data loaded before belongs to it)
    # Lightning creates an iterator as soon as it has the training data, before it knows whether any epoch
    # will run: the first epoch of a fresh run trains on it. Each DataLoader iterator draws its base seed
    # from the RNG, so every shuffle after it depends on that draw. A resumed epoch makes its own iterator
    # after restoring the checkpoint's RNG states, unless nothing is left to train.
    sweep_rng, run.sweep_rng = run.sweep_rng, None
    if run.resume is not None:
        run.train_iterator = None  # one made before the restore (`estimated_stepping_batches`): the RNG is restored
        _reload_as_the_uninterrupted_run(run, run.resume)
    finish_epoch = _resumed_epoch_to_finish(trainer, run)
    limits_reached = _limits_reached(trainer, run.progress) and not finish_epoch
    fresh = run.resume is None or run.num_training_batches == 0 or limits_reached
    if fresh and (run.train_iterator is None or sweep_rng is not None):
        make_first_train_iterator(trainer, run, sweep_rng)
    if run.num_training_batches == 0:
        rank_zero_info("`Trainer.fit` stopped: No training batches.")
        return
    if trainer.loggers and run.num_training_batches < trainer.log_every_n_steps and not trainer.fast_dev_run:
        rank_zero_warn(
            f"The number of training batches ({run.num_training_batches}) is smaller than the logging interval"
            f" Trainer(log_every_n_steps={trainer.log_every_n_steps}). Set a lower value for log_every_n_steps if"
            " you want to see logs for the training epoch.",
            category=PossibleUserWarning,
        )
    if not finish_epoch and _fit_done(trainer, run):
        return  # resumed with nothing left to train, or stopped before: no training hooks, as in Lightning
    if trainer.max_steps == -1:
        _count_the_finished_epoch(run.progress)  # a step-limited run does it as its next epoch starts
    if trainer._val_check_seconds is not None:
        run.last_val_time = time.monotonic()  # a time-based validation interval starts with training
    if _should_check_val_epoch(trainer, run) and run.val_dataloaders is None:
        trainer.state.stage = RunningStage.VALIDATING  # the `val_dataloader` hook sees it, as in Lightning
        dataloaders.eval_dataloaders(trainer, run, RunningStage.VALIDATING)
    trainer.state.stage = RunningStage.TRAINING
    run.step = TrainingStep(trainer, run)  # manual optimization may step from on_train_start on
    run.results = run.metrics.epoch_start = run.train_results  # on_train_start may log (epoch values), as in Lightning
    _warn_if_modules_in_eval_mode(trainer)
    hooks.call_both("on_train_start")
    progress = run.progress
    # (in manual optimization the module counts the steps, by stepping the optimizers `self.optimizers()` returns)
    watch_steps = not run.step.automatic and _max_steps_is_the_only_limit(trainer)
    while finish_epoch or not _fit_done(trainer, run):
        finish_epoch = False
        epoch, steps, batches = trainer.current_epoch, progress.global_step, progress.total_batches
        if run.profiler is None:
            run_training_epoch(trainer, run)
        else:
            with run.profiler.profile("run_training_epoch"):
                run_training_epoch(trainer, run)
        if watch_steps and progress.global_step == steps and progress.total_batches > batches:
            _warn_max_steps_may_never_be_reached(trainer, epoch, progress.total_batches - batches)
            watch_steps = False  # once a fit
    run.restarting = False
    hooks.call_both("on_train_end")


def _max_steps_is_the_only_limit(trainer: Trainer) -> bool:
    return trainer.max_steps != -1 and not has_epoch_limit(trainer.max_epochs)


def _warn_max_steps_may_never_be_reached(trainer: Trainer, epoch: int, batches: int) -> None:
    """``epoch`` of a manual-optimization fit limited by ``max_steps`` alone trained ``batches`` batches and counted
    no optimizer step: the fit runs until something stops it (Lightning runs on without a word)."""
    rank_zero_warn(
        f"Epoch {epoch} trained {batches} batch{'es' if batches != 1 else ''} and counted no optimizer step, so"
        f" `global_step` is still {trainer.global_step} and `max_steps={trainer.max_steps}`, the fit's only limit"
        f" (`max_epochs={trainer.max_epochs}`), may never be reached: the fit runs until it is stopped. In manual"
        " optimization a step counts when an optimizer `self.optimizers()` returns steps: call `opt.step()` on it"
        " in `training_step` (an optimizer the module keeps itself, or one taken from `trainer.optimizers`, steps"
        " uncounted). Or set `max_epochs` as well."
    )


def _reload_as_the_uninterrupted_run(run: Run, resume: Resume) -> None:
    """With ``reload_dataloaders_every_n_epochs``, the loaders the resumed run has just loaded count as loaded
    when the uninterrupted run last loaded them, so they reload at its epochs (Lightning counts from the resume,
    and a reload draws from the RNG)."""
    if resume.reload_epochs is None:
        return
    train, val = resume.reload_epochs
    if train is not None:
        run.last_train_reload_epoch = train
    if val is not None and "val" in run.loaded_eval:
        run.val_reload_epoch = val
    elif val is not None:
        run.resumed_val_reload_epoch = val  # for the validation loaders' first load in this run


def _resumed_epoch_to_finish(trainer: Trainer, run: Run) -> bool:
    """A checkpoint written inside an epoch before its end ran: that epoch finishes, though `max_steps` was reached
    at its last batch (the uninterrupted run ran the validation due there and the epoch's end, and so does the
    resumed one; Lightning returns at once). Not with a lower limit than the run that wrote it had."""
    progress, resume = run.progress, run.resume
    return (
        resume is not None
        and resume.end_due
        and not _max_epochs_reached(trainer, progress)
        and (trainer.max_steps == -1 or progress.global_step <= trainer.max_steps or resume.same_step_limit)
    )


def _count_the_finished_epoch(progress: Progress) -> None:
    """After a resume from a checkpoint written at an epoch's end, the next epoch becomes the current one
    (till then, through the sanity check, ``current_epoch`` is the checkpoint's, as in Lightning)."""
    if progress.epoch_done:
        progress.epoch += 1
        progress.epoch_done = False


def _fit_done(trainer: Trainer, run: Run) -> bool:
    """Whether training ends here; says why, as Lightning's loop does."""
    reason = _stop_reason(trainer, run)
    if reason == "max_steps":
        rank_zero_info(f"`Trainer.fit` stopped: `max_steps={trainer.max_steps!r}` reached.")
    elif reason == "max_epochs":
        _count_the_finished_epoch(run.progress)
        rank_zero_info(f"`Trainer.fit` stopped: `max_epochs={trainer.max_epochs!r}` reached.")
    elif reason == "should_stop":
        rank_zero_debug("`Trainer.fit` stopped: `trainer.should_stop` was set.")
    return reason is not None


def fit_done(trainer: Trainer, run: Run) -> bool:
    """Whether ``fit`` has nothing left to train: no training batches, or a reason to stop (``trainer.fit_loop.done``,
    which only answers; the loop asks ``_fit_done``)."""
    return trainer.num_training_batches == 0 or _stop_reason(trainer, run) is not None


def _stop_reason(trainer: Trainer, run: Run) -> str | None:
    """``max_steps`` or ``max_epochs`` reached, or a stop set that the minimum limits allow (in that order); None."""
    progress = run.progress
    if _max_steps_reached(trainer, progress):
        return "max_steps"
    if _max_epochs_reached(trainer, progress):
        return "max_epochs"
    if trainer.should_stop and _can_stop_early(trainer, run):
        return "should_stop"
    return None


def _max_steps_reached(trainer: Trainer, progress: Progress) -> bool:
    return trainer.max_steps != -1 and progress.global_step >= trainer.max_steps


def _max_epochs_reached(trainer: Trainer, progress: Progress) -> bool:
    return has_epoch_limit(trainer.max_epochs) and progress.epochs_processed >= trainer.max_epochs


def _limits_reached(trainer: Trainer, progress: Progress) -> bool:
    return _max_steps_reached(trainer, progress) or _max_epochs_reached(trainer, progress)


def run_training_epoch(trainer: Trainer, run: Run) -> None:
    """One epoch: batches, validation checks, then the epoch-end hooks and logs."""
    iterator = _start_epoch(trainer, run)
    epoch = run.epoch_plan = _EpochPlan(trainer, run)
    if epoch.takes_iterator:  # `training_step(self, dataloader_iter)`: the step draws its own batches
        _run_iterator_steps(trainer, run, epoch, iterator)
        _end_epoch(trainer, run, epoch)
    else:
        _run_batch_steps(trainer, run, epoch, iterator)
        _end_epoch(trainer, run, epoch)
        run.held_loader_state = run.held_rng = None
    del iterator  # after the epoch's end, as in Lightning: its worker processes stop here
    run.epoch_iterator = run.epoch_plan = None


def _run_batch_steps(trainer: Trainer, run: Run, epoch: _EpochPlan, iterator: Iterator[Any]) -> None:
    """The epoch's batches, one training step each: fetch, step, schedulers, batch-end hooks, logs, validation."""
    progress, results = run.progress, run.train_results
    train_on, transfer, batch_start, batch_end = epoch.train_on, epoch.transfer, epoch.batch_start, epoch.batch_end
    step_schedulers, log_step, validate, stop_requested = (
        epoch.step_schedulers,
        epoch.log_step,
        epoch.validate,
        epoch.stop_requested,
    )
    accumulate, total, max_steps = epoch.accumulate, epoch.total, epoch.max_steps
    may_accumulate = epoch.automatic and accumulate != 1  # (without accumulation, no batch is inside a window)
    stop_in_window = epoch.stop_in_window
    ahead = _lookahead(iterator, run, total)
    iterator = ahead or iterator

    batch_idx = progress.epoch_batches
    total = epoch.batches_from(batch_idx)
    while batch_idx < total:
        try:  # as in Lightning, a StopIteration from the transfer, the step or a batch hook ends the epoch
            batch = next(iterator, _END)  # fetch
            if batch is _END:
                progress.epoch_data_ran_out = True
                break
            run.batch_idx = batch_idx
            is_last = batch_idx + 1 >= total or (ahead is not None and run.last_batch_seen)
            if transfer is not None:
                batch = transfer(batch)  # transfer
            results.batch, results.batch_size = batch, None
            accumulating = may_accumulate and (batch_idx + 1) % accumulate != 0 and not is_last
            if batch is None:
                _skip_none_batch(run)  # as Lightning: no step for a None batch, the rest goes on
                outputs = None
            else:
                if batch_start is not None and batch_start(batch, batch_idx) == -1:
                    epoch.cut_short(batch_idx)  # batch start: the module returned -1, which ends the epoch
                    break
                outputs = train_on(batch, batch_idx, accumulating)  # step
            progress.epoch_batches = batch_idx + 1  # trained on: a checkpoint from here on resumes after it
            progress.total_batches += 1
            progress.step_pending = not accumulating
            if step_schedulers is not None and not accumulating:
                step_schedulers(batch_idx, is_last)  # schedulers
            if batch_end is not None:
                batch_end(outputs, batch, batch_idx)  # batch end
            results.batch, results.batch_size = None, None  # a value logged between batches weighs 1, as in Lightning
            if log_step is not None:
                log_step(accumulating)  # log
            if validate is not None:
                validate(batch_idx, is_last, accumulating)  # validate, then ReduceLROnPlateau on a step interval
            if not accumulating:
                progress.batches_that_stepped += 1
                progress.step_pending = False
            if trainer.should_stop:
                _save_loggers(trainer)  # stop: a batch that ends with a stop set saves the loggers, as in Lightning
            if stop_requested() and (stop_in_window or not accumulating):
                # stop: a preemption signal arrived; saves and exits (inside an accumulation window only where the
                # checkpoint keeps the window's gradients; under a sharded strategy, once the window is complete)
                on_stop_request(trainer, run)
            batch_idx += 1
            if progress.global_step >= max_steps or (trainer.should_stop and epoch.may_stop(batch_idx)):
                break
        except StopIteration:
            break


def _lookahead(iterator: Iterator[Any], run: Run, total: float) -> _Lookahead | None:
    """A loader of unknown length is read one batch ahead to know its last batch, as Lightning reads it."""
    return _Lookahead(iterator, run, stateful_single_loader(run)) if total == float("inf") else None


class _Lookahead:
    """An iterator that holds the next batch, and sets ``run.last_batch_seen`` when it hands out the last one.

    With a stateful ``loader`` it notes the loader's state before each read ahead in
    ``run.held_loader_state``: a checkpoint records that position, so the batch held here, not yet
    trained on, is the first one a resumed run gets. (Lightning saves the state after its read ahead,
    and its resumed run never trains on that batch.) Data read in this process has the RNG states
    before each read ahead noted too (``ReadAheadRng``), which the resumed run reads that batch with.
    """

    def __init__(self, iterator: Iterator[Any], run: Run, loader: Any = None) -> None:
        self._iterator, self._run, self._loader = iterator, run, loader
        self._next: Any = _END
        # (the first read, here, holds a batch that the first `next` hands out before any checkpoint can see it)
        self._rng = ReadAheadRng(run) if run.epoch_rng is not None and loads_in_process(run) else None
        run.held_rng = None
        self._read_ahead()

    def __iter__(self) -> _Lookahead:
        return self

    def __next__(self) -> Any:
        batch = self._next
        if batch is _END:
            raise StopIteration
        rng = self._rng
        if rng is None:
            self._read_ahead()
        else:
            rng.note()
            self._read_ahead()
            rng.seen()
        return batch

    def _read_ahead(self) -> None:
        if self._loader is not None:
            self._run.held_loader_state = self._loader.state_dict()
        self._next = next(self._iterator, _END)
        if self._next is _END:
            self._run.last_batch_seen = True
            self._run.held_loader_state = self._run.held_rng = None  # the data ran out: the loader's own state says so


def _run_iterator_steps(trainer: Trainer, run: Run, epoch: _EpochPlan, batches: Iterator[Any]) -> None:
    """An epoch of a ``training_step(self, dataloader_iter)``: each step draws as many batches as it wants.

    The epoch ends when the batches run out or the step or a batch hook raises ``StopIteration``. As in Lightning, the
    batch hooks see the last batch drawn and its index (``None`` and 0 before the first), and batches are
    not moved to the device.
    """
    progress, results = run.progress, run.train_results
    _finish_resumed_batch(trainer, run)
    start = progress.epoch_batches
    data = DataLoaderIter(((batch, start + i, 0) for i, batch in enumerate(batches)), epoch.total - start)
    step_idx = 0
    if trainer.should_stop and epoch.may_stop(start):
        return  # stopped before this epoch's first step (in `on_train_epoch_start`), as in Lightning
    if progress.global_step >= epoch.max_steps:
        return  # resumed after the run's last step: only the epoch's end is left
    while not data.done:
        try:  # a StopIteration from the step or a batch hook ends the epoch, as in Lightning
            run.batch_idx = step_idx
            results.batch, results.batch_size = data.batch, None
            if epoch.batch_start is not None and epoch.batch_start(data.batch, data.batch_idx) == -1:
                epoch.cut_short(data.batch_idx)
                break
            # the window closes every `accumulate` steps of the epoch and at its last, which, as Lightning counts it
            # here, is the step whose number reaches the loader's length (each step may draw any number of batches)
            ready = progress.epoch_batches + 1
            accumulating = epoch.automatic and ready % epoch.accumulate != 0 and ready != epoch.total
            outputs = epoch.train_on(data, data.batch_idx, accumulating)
            progress.epoch_batches += 1  # steps, as Lightning counts them in this flavour
            progress.total_batches += 1
            progress.step_pending = not accumulating
            if epoch.step_schedulers is not None and not accumulating:
                epoch.step_schedulers(data.batch_idx, data.done)
            if epoch.batch_end is not None:
                epoch.batch_end(outputs, data.batch, data.batch_idx)
            results.batch, results.batch_size = None, None
            if epoch.log_step is not None:
                epoch.log_step(accumulating)
            if epoch.validate is not None:
                epoch.validate(data.batch_idx, data.done, accumulating)
            if not accumulating:
                progress.batches_that_stepped += 1
                progress.step_pending = False
            if trainer.should_stop:
                _save_loggers(trainer)
            if epoch.stop_requested() and (epoch.stop_in_window or not accumulating):
                on_stop_request(trainer, run)  # inside a window only where its gradients are kept, as above
            step_idx += 1
            if progress.global_step >= epoch.max_steps or (
                trainer.should_stop and epoch.may_stop(progress.epoch_batches)
            ):
                break
        except StopIteration:
            break


def _finish_resumed_batch(trainer: Trainer, run: Run) -> None:
    """A run resumed after a batch, before what follows the batch's validation: the ``ReduceLROnPlateau`` steps due
    there, and the loggers' step moves on past a batch that stepped."""
    if run.plateau_pending:
        configs = trainer.lr_scheduler_configs
        for index in run.plateau_pending:
            step_plateau(trainer, run, configs[index])
        run.plateau_pending = []
    if run.step_moves_after_validation:
        run.progress.batches_that_stepped += 1
        run.step_moves_after_validation = False
    run.progress.step_pending = False


def _save_loggers(trainer: Trainer) -> None:
    """Every logger saves what it holds (Lightning does so after each batch that ends with ``should_stop`` set,
    as long as training goes on)."""
    for logger in trainer.loggers:
        logger.save()


def _takes_iterator(trainer: Trainer, step_name: str) -> bool:
    """Whether the loop's step draws its own batches (``dataloader_iter``); Lightning warns then, as each loop
    starts."""
    takes = takes_dataloader_iter(trainer.lightning_module, step_name)
    if takes:
        rank_zero_warn(
            f"Found `dataloader_iter` argument in the `{step_name}`. Note that the support for this signature is"
            " experimental and the behavior is subject to change."
        )
    return takes


def _skip_none_batch(run: Run) -> None:
    """A ``None`` batch (e.g. a collate function that drops one) is not trained on; warned about once."""
    if not run.warned_none_batch:
        run.warned_none_batch = True
        rank_zero_warn("train_dataloader yielded None. If this was on purpose, ignore this warning...")


def _warn_if_modules_in_eval_mode(trainer: Trainer) -> None:
    """Modules left in eval mode (dropout off, BatchNorm frozen) when training starts are probably a mistake."""
    in_eval = [name for name, module in trainer.lightning_module.named_modules() if not module.training]
    if in_eval:
        rank_zero_warn(
            f"Found {len(in_eval)} module(s) in eval mode at the start of training. This may lead to unexpected"
            f" behavior during training. If this is intentional, you can ignore this warning. In eval mode: {in_eval}",
            category=PossibleUserWarning,
        )


def _start_epoch(trainer: Trainer, run: Run) -> Iterator[Any]:
    """The epoch's data iterator: continuing a checkpoint's epoch, or a new epoch after its start hooks."""
    progress, resume = run.progress, run.resume
    run.resume = None
    _count_the_finished_epoch(progress)
    if resume is not None and not resume.mid_epoch and resume.rng is not None:
        # a checkpoint from an epoch's end: the next epoch starts from its RNG states, the reload below included
        # (the `train_dataloader` hook and the iterator it makes draw from them, as in the uninterrupted run)
        set_data_rng_states(run, resume.rng)
    if dataloaders.reload_train_dataloader_now(trainer, run):
        dataloaders.setup_train_dataloader(trainer, run)
        run.train_iterator = run.held_loader_state = None  # a first batch read as fit started goes with it
        if resume is None or not resume.mid_epoch:
            # as Lightning, which creates an iterator it never uses when it reloads (in an epoch, its
            # `setup_data` makes one before the epoch loop makes the epoch's own; after a resume from an
            # epoch's end, it drops the one made when `fit` started): the shuffles after it depend on its draws
            make_unused_iterator(trainer, run)
    set_sampler_epoch(run.train_dataloader if run.train_combined is None else run.train_combined, progress.epoch)
    if resume is not None and resume.rng is not None and progress.epoch > 0:
        warn_if_workers_persist(run, progress.epoch)
    if resume is not None and resume.mid_epoch:
        # a mid-epoch checkpoint: no epoch-start hooks; the data continues after the batches trained on
        if resume.gradients is not None:  # and an accumulation window goes on from the gradients it had added up
            trainer.strategy.load_accumulated_gradients(resume.gradients)
        if resume.exact:
            # the same iterator as before the interruption, fast-forwarded, then the RNG as it was
            set_data_rng_states(run, resume.epoch_rng)
            run.epoch_rng = resume.epoch_rng
            run.train_iterator = train_iterator(run)
            if not _data_resumes_itself(run):
                _skip_batches(run.train_iterator, progress.epoch_batches)
            set_data_rng_states(run, resume.rng)
            if reads_ahead(trainer, run):
                # the batch the interrupted run had read ahead, before the steps the checkpoint came after
                run.train_iterator = read_held_batch(run, run.train_iterator, resume.held_rng)
        elif run.last_batch_seen and not run.loader_states_to_load:
            # data whose last batch the checkpoint's epoch had reached (a file without Ember's data position,
            # Lightning's): none of it is left, as Lightning's restart knows (training from a new iterator went
            # through the whole stream of data of unknown length again). Lightning still makes that iterator
            make_unused_iterator(trainer, run)
            run.train_iterator = iter(())
        else:
            run.train_iterator = train_iterator(run)
    else:
        progress.epoch_batches = progress.validated_through = 0
        progress.epoch_done = progress.epoch_data_ran_out = False  # (the results were reset at the last epoch's end)
        run.last_batch_seen = False
        run.restarting = False
        run.epoch_starting = True
        run.metrics.epoch_start = run.train_results
        try:
            _hooks(run).call_both("on_train_epoch_start")
        finally:
            run.epoch_starting = False
        # Lightning's per-epoch counters start again after the start hooks: optimizer and scheduler steps, and
        # its fit validation loop's batches
        progress.epoch_start_step, progress.epoch_start_scheduler_steps = progress.global_step, progress.scheduler_steps
        progress.epoch_unstepped_windows = 0
        run.eval_progress["val"][1] = 0
        if run.train_iterator is not None and progress.epoch > 0 and not run.fit_resuming:
            # a later `fit` on this trainer: Lightning makes this epoch's iterator anew, as for every epoch
            # after the first, and the one made when `fit` started goes unused (its draw stays drawn)
            run.train_iterator = run.held_loader_state = None
        if run.train_iterator is None:
            run.epoch_rng = data_rng_states(run)
            run.train_iterator = train_iterator(run)
    iterator, run.train_iterator = run.train_iterator, None
    run.epoch_iterator = iterator  # for teardown to stop its workers if the epoch fails
    run.batch_idx = -1
    run.between_epochs = False
    run.progress.epoch_cut = False
    trainer.state.stage = RunningStage.TRAINING
    run.results = run.train_results
    run.metrics.live = run.train_results  # step values reach callback_metrics when somebody reads them
    run.metrics.epoch_start = None
    return profiled_iterator(run.profiler, "[_TrainingEpochLoop].train_dataloader_next", iterator)


class _EpochPlan:
    """Every decision a training epoch takes once, before its first batch, and the small per-batch steps.

    A step that has nothing to do this epoch is ``None``, as is a hook nobody overrides.
    """

    def __init__(self, trainer: Trainer, run: Run) -> None:
        hooks = _hooks(run)
        self.trainer, self.run, self.hooks = trainer, run, hooks
        self.results: LoggedResults = run.train_results
        run.step = TrainingStep(trainer, run)
        self.train_on = profiled(run.profiler, "run_training_batch", run.step.train_on)
        self.automatic = run.step.automatic
        self.accumulate = trainer.accumulate_grad_batches
        self.total = run.num_training_batches
        self.max_steps = trainer.max_steps if trainer.max_steps != -1 else math.inf
        self.transfer = _transfer_function(trainer, run, 0)
        self.batch_start = hooks.caller("on_train_batch_start")
        self.batch_end = hooks.caller("on_train_batch_end")
        self.stop_requested = run.stop_flag.checker(trainer.strategy, run.progress)
        self.stop_in_window = trainer.strategy.keeps_window_gradients
        configs = trainer.lr_scheduler_configs if self.automatic else []
        self.step_interval = [c for c in configs if c.interval == "step" and not c.reduce_on_plateau]
        self.epoch_interval = [c for c in configs if c.interval == "epoch" and not c.reduce_on_plateau]
        self.plateau_step = [c for c in configs if c.interval == "step" and c.reduce_on_plateau]
        self.log_every = trainer.log_every_n_steps if trainer.loggers else 0
        self.validating = _should_check_val_epoch(trainer, run)
        # a step with nothing to do this epoch is None
        scheduling = bool(self.step_interval or self.epoch_interval)
        self.step_schedulers: Callable[..., None] | None = self._step_schedulers if scheduling else None
        self.log_step: Callable[..., None] | None = self._log_step if self.log_every else None
        # after a batch: validation where it is due, then ReduceLROnPlateau on a step interval
        self.validate: Callable[..., None] | None = (
            self._validate if self.plateau_step else self.validate_if_due if self.validating else None
        )
        self.takes_iterator = run.step.takes_iterator
        self.read_val_check_batch()

    def read_val_check_batch(self) -> None:
        """Take ``run.val_check_batch`` in: at the epoch's start, and when a callback sets
        ``trainer.val_check_batch`` during the epoch."""
        trainer, run = self.trainer, self.run
        # the common case, an integer batch interval within the epoch, is checked inline per batch; a step that
        # draws its own batches (`dataloader_iter`) may draw several: it also validates when they run out
        simple = trainer._val_check_seconds is None and trainer.check_val_every_n_epoch is not None
        inline = simple and not self.takes_iterator and run.val_check_batch != float("inf")
        self.val_every = int(run.val_check_batch) if inline else 0

    def batches_from(self, batch_idx: int) -> int | float:
        """Before the epoch's batch ``batch_idx`` (0, or where a resumed epoch goes on): the validation a
        checkpoint cut off runs now. Returns the number of batches the epoch runs to."""
        if batch_idx and self.run.progress.validated_through != batch_idx:
            # resumed from a checkpoint written after this batch and before the validation due after it had run
            # all its batches (a step checkpoint, a crash inside it): that validation runs now, as the
            # uninterrupted run ran it (Lightning runs it again after a crash inside it, and skips it after a
            # step checkpoint)
            is_last = batch_idx >= self.total or self.run.last_batch_seen
            accumulating = self.automatic and batch_idx % self.accumulate != 0 and not is_last
            # a checkpoint written in it says, as the uninterrupted run's did, that the step is still to move
            self.run.progress.step_pending = self.run.step_moves_after_validation
            self.validate_if_due(batch_idx - 1, is_last, accumulating)
        _finish_resumed_batch(self.trainer, self.run)  # after that batch's validation, as in the uninterrupted run
        if self.trainer.should_stop and self.may_stop(batch_idx):
            return batch_idx  # stopped before this batch (in `on_train_epoch_start`): none runs, as in Lightning
        if self.run.progress.global_step >= self.max_steps:
            return batch_idx  # resumed after the run's last step: only the epoch's end is left
        if batch_idx < self.total and not self.run.last_batch_seen:
            # a batch trains: its step logs what a resume from Lightning's file lacked (none does where the
            # checkpoint was written on the last batch of data of unknown length)
            self.run.step_metrics_missing = False
        return self.total

    def _step_schedulers(self, batch_idx: int, is_last: bool) -> None:
        """Schedulers on a step interval; on the epoch's last batch, those on an epoch interval."""
        for config in self.step_interval:
            if (batch_idx + 1) % config.frequency == 0:
                step_scheduler(self.trainer, self.run, config, None)
        if is_last:
            for config in self.epoch_interval:
                if (self.run.progress.epoch + 1) % config.frequency == 0:
                    step_scheduler(self.trainer, self.run, config, None)

    def cut_short(self, batch_idx: int) -> None:
        """``on_train_batch_start`` returned -1: this untrained batch is the epoch's last, so the schedulers
        step as after the last batch, on a step interval (for this batch) and on an epoch interval
        (Lightning's behaviour); ``ReduceLROnPlateau`` steps at the epoch's end."""
        self.run.last_batch_seen = True
        progress = self.run.progress
        progress.cut_batches += 1
        progress.epoch_cut = True
        if self.step_schedulers is not None:
            self.step_schedulers(batch_idx, True)

    def _log_step(self, accumulating: bool) -> None:
        """Send the step values to the loggers every ``log_every_n_steps`` (and when training stops)."""
        if not accumulating and (
            (self.run.progress.batches_that_stepped + 1) % self.log_every == 0 or self.trainer.should_stop
        ):
            self.run.metrics.update_train_step_metrics(self.results)

    def _validate(self, batch_idx: int, is_last: bool, accumulating: bool) -> None:
        """Validate when an interval ends (or training stops mid-epoch), then step ReduceLROnPlateau."""
        self.validate_if_due(batch_idx, is_last, accumulating)
        if self.plateau_step and not accumulating:
            for config in self.plateau_step:
                if (batch_idx + 1) % config.frequency == 0:
                    step_plateau(self.trainer, self.run, config)
            self.run.plateau_stepped_at = self.run.progress.total_batches  # (a checkpoint from here on comes after)

    def validate_if_due(self, batch_idx: int, is_last: bool, accumulating: bool) -> None:
        """Validate when an interval ends after batch ``batch_idx`` (or training stops mid-epoch)."""
        if not self.validating:
            return
        trainer, run = self.trainer, self.run
        # the common case, an integer interval within the epoch, is checked here; the others by `_validation_due`
        due = (batch_idx + 1) % self.val_every == 0 if self.val_every else self._validation_due(batch_idx, is_last)
        if due or (trainer.should_stop and _can_stop_early(trainer, run)):  # stopping mid-epoch: validate once more
            run.rng_before_validation = data_rng_states(run)  # (for a checkpoint written inside it)
            trainer.state.stage = RunningStage.VALIDATING  # (as Lightning, before the zero-grad hook)
            if not accumulating:
                self.hooks.call_module("on_validation_model_zero_grad")
            run.metrics.flush_step(self.results)
            run.step_values_merged_at = run.progress.total_batches
            run_evaluation(trainer, run, RunningStage.VALIDATING)
            run.last_val_time = time.monotonic()
            trainer.state.stage = RunningStage.TRAINING
            run.results = self.results
            run.metrics.live = self.results

    def _validation_due(self, batch_idx: int, is_last: bool) -> bool:
        if is_last and self.takes_iterator:
            return True
        return _should_check_val(self.trainer, self.run, batch_idx, is_last)

    def may_stop(self, batch_idx: int) -> bool:
        """``should_stop`` is set: whether the minimum epochs and steps allow stopping now."""
        if _can_stop_early(self.trainer, self.run):
            return True
        if batch_idx < self.total:
            _warn_min_not_reached(self.trainer, self.run)
        return False


def _end_epoch(trainer: Trainer, run: Run, epoch: _EpochPlan) -> None:
    """Epoch-end hooks (EarlyStopping and checkpoints after the module), epoch logs, counters."""
    progress, results, metrics = run.progress, run.train_results, run.metrics
    progress.epoch_done = True
    # `max_steps` or a stop ended it before its data ran out: a checkpoint from here resumes inside it
    progress.epoch_unfinished = (
        progress.epoch_batches < epoch.total and not run.last_batch_seen and not epoch.takes_iterator
    )
    run.restarted_at_batch = -1  # `epoch_loop.restarting` ends with the epoch, as in Lightning
    metrics.live = None
    if run.step_values_merged_at != progress.total_batches:
        # the last steps' values; not again after a validation that followed them, whose step values
        # logged under the same names stay, as in Lightning
        metrics.flush_step(results)
    metrics.epoch_end = results  # epoch values are visible in callback_metrics from here
    try:
        _epoch_end_hooks_and_logs(trainer, run, epoch)
    except BaseException:
        # the epoch's end did not complete: a checkpoint written for the failure (`OnExceptionCheckpoint`) resumes
        # with it still to run, as the uninterrupted run ran it
        progress.epoch_done = False
        raise
    results.reset()
    if epoch.automatic:  # an epoch that ended inside an accumulation window: its zero_grad counts, no step closes it
        progress.close_window(epoch.accumulate)
    progress.last_epoch_batches, progress.last_epoch_ran_out = progress.epoch_batches, not progress.epoch_unfinished
    run.between_epochs = True
    progress.epoch += 1
    progress.epoch_batches = 0
    progress.epoch_done = progress.epoch_unfinished = False
    run.fit_resuming = False  # a training epoch has run since the checkpoint was loaded
    if epoch.stop_requested():
        on_stop_request(trainer, run)


def _epoch_end_hooks_and_logs(trainer: Trainer, run: Run, epoch: _EpochPlan) -> None:
    """The epoch-end hooks (EarlyStopping and checkpoints after the module), the epoch's plateau step and logs."""
    progress, results, metrics, hooks = run.progress, run.train_results, run.metrics, _hooks(run)
    # EarlyStopping and checkpoint callbacks run after the module, so they see what it logged
    hooks.call_callbacks("on_train_epoch_end", where=lambda cb: not _is_monitoring(cb))
    hooks.call_module("on_train_epoch_end")
    hooks.call_callbacks("on_train_epoch_end", where=_is_monitoring)
    metrics.epoch_end = None
    metrics.apply_epoch(results)
    # the epoch's last batch was reached (its data ran out, or the module returned -1 to end it), as Lightning asks
    if epoch.automatic and (progress.epoch_batches >= epoch.total or run.last_batch_seen):
        for config in trainer.lr_scheduler_configs:
            if config.interval == "epoch" and config.reduce_on_plateau and (progress.epoch + 1) % config.frequency == 0:
                step_plateau(trainer, run, config)
    if trainer.loggers:
        progress.batches_that_stepped -= 1  # epoch values are logged at the step of the epoch's last batch
        metrics.update_train_epoch_metrics(results)
        progress.batches_that_stepped += 1


def _is_monitoring(cb: Any) -> bool:
    from ember.callbacks.checkpoint import Checkpoint

    if isinstance(cb, Checkpoint):
        return True
    # no EarlyStopping exists before its module is loaded: a run without one does not load it
    early_stopping = sys.modules.get("ember.callbacks.early_stopping")
    return early_stopping is not None and isinstance(cb, early_stopping.EarlyStopping)


def _data_resumes_itself(run: Run) -> bool:
    """Whether the training data takes up where the checkpoint left by itself, as Lightning takes every
    data source to do: stateful loaders given their saved states (torchdata's ``StatefulDataLoader``;
    plain loaders combined with them start again, as in Lightning), or an iterable-style dataset whose
    datamodule restored a state from the checkpoint (cellarium-ml's yields only the batches not trained
    on yet). Ember skips the batches trained on otherwise."""
    from torch.utils.data import IterableDataset

    if run.loaders_restored:
        return True
    loader = run.train_dataloader
    return (
        run.datamodule_restored
        and run.train_combined is None
        and isinstance(getattr(loader, "dataset", None), IterableDataset)
    )


def _skip_batches(iterator: Any, count: int) -> None:
    """Advance ``iterator`` past ``count`` batches without running the model on them."""
    if isinstance(iterator, CombinedTrainBatches):
        iterator.skip(count)  # several loaders: also restores the RNG before each one that started again
        return
    for skipped in range(count):
        try:
            skip_one(iterator)  # in-process loading: advances the sampler only; the RNG is restored right after
        except StopIteration:
            rank_zero_warn(
                f"The training data ran out after {skipped} of the {count} batches that the checkpoint's epoch had"
                " trained on, so the resumed epoch ends at once. If your data source continues where it stopped by"
                " itself, give its datamodule a `state_dict`/`load_state_dict` that saves its position.",
                category=PossibleUserWarning,
            )
            return


def step_scheduler(trainer: Trainer, run: Run, config: Any, metric: Any) -> None:
    """Step one scheduler (through the module's ``lr_scheduler_step`` when it overrides it), and count it."""
    run.progress.scheduler_steps += 1
    if _hooks(run).module_overrides("lr_scheduler_step"):
        _hooks(run).call_module("lr_scheduler_step", config.scheduler, metric)
    elif metric is None:
        config.scheduler.step()
    else:
        config.scheduler.step(metric)


def step_plateau(trainer: Trainer, run: Run, config: Any) -> None:
    """Step a ``ReduceLROnPlateau`` scheduler with the value of the metric it monitors."""
    value: Any = trainer.callback_metrics.get(config.monitor)
    if value is None and run.restarting:
        # a resumed epoch whose checkpoint holds no metrics (Lightning's): the step is skipped, as Lightning skips
        # plateau schedulers while it restarts
        return
    if value is None:
        if config.strict:
            raise MisconfigurationException(
                f"ReduceLROnPlateau conditioned on metric {config.monitor} which is not available. Available"
                f" metrics are: {list(trainer.callback_metrics)}. Condition can be set using `monitor` key in lr"
                " scheduler dict"
            )
        rank_zero_warn(
            f"ReduceLROnPlateau conditioned on metric {config.monitor} which is not available but strict is set"
            " to `False`. Skipping learning rate update.",
            category=RuntimeWarning,
        )
        return
    step_scheduler(trainer, run, config, value)


# =====================================================================================
# when to validate and when to stop
# =====================================================================================
def validation_enabled(trainer: Trainer, run: Run) -> bool:
    """A validation loop exists: a ``validation_step``, batches allowed, and data to run it on."""
    hooks = run.hooks
    if hooks is None or not hooks.module_overrides("validation_step") or trainer.limit_val_batches == 0:
        return False
    return run.eval_sources.get("val") is not None or dataloaders.hook_defined(run, "val")


def _should_sanity_check(trainer: Trainer, run: Run) -> bool:
    # as Lightning, no sanity check when resuming inside an epoch or a step-limited run (it restarts its loops)
    return trainer.num_sanity_val_steps != 0 and not run.restarting and validation_enabled(trainer, run)


def _should_check_val_epoch(trainer: Trainer, run: Run) -> bool:
    every = trainer.check_val_every_n_epoch
    return validation_enabled(trainer, run) and (every is None or (run.progress.epoch + 1) % every == 0)


def _should_check_val(trainer: Trainer, run: Run, batch_idx: int, is_last: bool) -> bool:
    """Whether this batch ends a validation interval (the loop has checked the epoch already)."""
    if trainer._val_check_seconds is not None:
        # by time alone: the clock starts when training starts and restarts when a validation ends
        return time.monotonic() - run.last_val_time >= trainer._val_check_seconds
    if run.val_check_batch == float("inf"):
        return is_last
    if trainer.check_val_every_n_epoch is None:
        # counted across epochs as Lightning counts them: a batch `on_train_batch_start` cut short counts too
        return (run.progress.total_batches + run.progress.cut_batches) % run.val_check_batch == 0
    return (batch_idx + 1) % run.val_check_batch == 0


def _can_stop_early(trainer: Trainer, run: Run) -> bool:
    progress = run.progress
    met_epochs = progress.epochs_processed >= trainer.min_epochs if trainer.min_epochs else True
    met_steps = progress.global_step >= trainer.min_steps if trainer.min_steps else True
    return met_epochs and met_steps


def _warn_min_not_reached(trainer: Trainer, run: Run) -> None:
    if not run.warned_min_not_reached:
        run.warned_min_not_reached = True
        rank_zero_info(
            f"Trainer was signaled to stop but the required `min_epochs={trainer.min_epochs!r}` or"
            f" `min_steps={trainer.min_steps!r}` has not been met. Training will continue..."
        )


# =====================================================================================
# batches to the device
# =====================================================================================
def _transfer_function(trainer: Trainer, run: Run, dataloader_idx: int) -> Callable[[Any], Any] | None:
    """The batch-transfer function, or None when batches can stay where the loader puts them."""
    strategy = trainer.strategy
    before = _transfer_hook(trainer, run, "on_before_batch_transfer")
    custom = _transfer_hook(trainer, run, "transfer_batch_to_device")
    after = _transfer_hook(trainer, run, "on_after_batch_transfer")
    device = strategy.root_device
    precision = trainer.precision_plugin
    convert = precision.convert_input if precision.converts_input else None
    if program_overrides(strategy, "batch_to_device"):
        # a strategy of the program's own moves every batch, the last two hooks included, as in Lightning
        custom, after = lambda batch, device, idx: strategy.batch_to_device(batch, dataloader_idx=idx), None
    elif not (before or custom or after or convert) and device.type == "cpu":
        return None

    def transfer(batch: Any) -> Any:
        if convert is not None:
            batch = convert(batch)
        if before:
            batch = before(batch, dataloader_idx)
        batch = custom(batch, device, dataloader_idx) if custom else move_data_to_device(batch, device)
        if after:
            batch = after(batch, dataloader_idx)
        return batch

    return profiled(run.profiler, strategy_action(trainer.strategy, "batch_to_device"), transfer)


_transfer_warnings = WarningCache()  # each once a process, as Lightning's


def _transfer_hook(trainer: Trainer, run: Run, name: str) -> Callable[..., Any] | None:
    """The datamodule's batch-transfer hook if it overrides it (it wins, as in Lightning), else the module's."""
    hooks, datamodule = _hooks(run), run.datamodule
    module_has = hooks.module_overrides(name)
    if datamodule is not None and dataloaders.overridden(datamodule, name):
        if module_has:
            _transfer_warnings.warn(
                f"You have overridden `{name}` in both `LightningModule` and `LightningDataModule`."
                " It will use the implementation from `LightningDataModule` instance."
            )
        return getattr(datamodule, name)
    if not module_has:
        return None
    if datamodule is not None:
        _transfer_warnings.warn(
            f"You have overridden `{name}` in `LightningModule` but have passed in a `LightningDataModule`."
            " It will use the implementation from `LightningModule` instance."
        )
    return hooks.module_caller(name)


# =====================================================================================
# sanity check, validation and test
# =====================================================================================
def run_sanity_check(trainer: Trainer, run: Run) -> None:
    """A few validation batches before training, so a broken validation_step fails early."""
    stage = trainer.state.stage
    trainer.state.stage = RunningStage.SANITY_CHECKING
    run.metrics.reset()
    _hooks(run).call_callbacks("on_sanity_check_start")
    with isolate_rng():
        run_evaluation(trainer, run, RunningStage.SANITY_CHECKING)
    run.last_val_time = time.monotonic()
    _hooks(run).call_callbacks("on_sanity_check_end")
    run.eval_progress["val"] = [0, 0]  # as Lightning: the sanity check's batches are not counted afterwards
    run.eval_last_fetched.pop("val", None)
    run.metrics.reset()
    if run.resume is not None:
        # the checkpoint's values, which the uninterrupted run still held here (Lightning restores none)
        run.metrics.merge(run.resume.callback_metrics, {}, {})
    trainer.state.stage = stage


def _read_ahead(
    run: Run, first: Iterator[Any], loaders: list[Any], max_batches: list[int | float], takes_iterator: bool
) -> ReadAhead | None:
    """Evaluation or prediction batches read one ahead where Lightning's loop reads them so: their number unknown
    (a dataloader without a length that no limit bounds), the step not drawing them itself. A dataset that draws
    random numbers as it is read draws them in Lightning's order then, between the steps' own draws."""
    if takes_iterator or math.inf not in max_batches:
        return None
    return ReadAhead(_sequential_batches(run, None, first, loaders, max_batches))


def _loader_batches(reader: ReadAhead | None, first: Iterator[Any], loader: Any, dataloader_idx: int) -> Iterator[Any]:
    """The batches of dataloader ``dataloader_idx``: through ``reader``, or its own iterator (the first made already)."""
    if reader is not None:
        return reader.batches(dataloader_idx)
    return first if dataloader_idx == 0 else iter(loader)


def _all_fetched(dataloader_idx: int, fetched: int, max_batches: list[int | float]) -> bool:
    """Whether the loop has had every batch it counted on before dataloader ``dataloader_idx``: Lightning's loop
    ends there, and makes no iterator for the dataloaders left (one with no batch to give, as a shuffling loader,
    draws from the RNG as its iterator is made)."""
    return dataloader_idx > 0 and fetched >= sum(max_batches)


def run_evaluation(trainer: Trainer, run: Run, stage: RunningStage) -> list[dict[str, Any]]:
    """The validation or test loop over every dataloader; returns one metrics dict per dataloader that gave a
    batch (and one for the first dataloader in any case)."""
    hooks = _hooks(run)
    validating = stage != RunningStage.TESTING
    fn_stage = "val" if validating else "test"  # the key of this loop's counters (the sanity check's too)
    prefix = "validation" if validating else "test"
    trainer.state.stage = stage
    loaders = dataloaders.eval_dataloaders(trainer, run, stage)
    max_batches = _within_sanity_steps(trainer, stage, run.eval_loop_batches.get(stage.dataloader_prefix or "", []))
    if not loaders or _no_batches_allowed(trainer, run, stage):
        return []
    hook_names = (f"{prefix}_step", f"on_{prefix}_batch_start", f"on_{prefix}_batch_end")
    takes_iterator = _takes_iterator(trainer, hook_names[0])
    checked = hook_names[1:] if takes_iterator else hook_names  # a step drawing its own batches has no index
    check_dataloader_idx(trainer.lightning_module, checked, len(loaders) > 1, fn_stage)
    results = run.val_results if validating else run.test_results
    results.reset()
    previous_results, run.results = run.results, results
    previous_live, run.metrics.live = run.metrics.live, results  # step values readable in the batch hooks
    # what the start hooks log is readable at once, as in Lightning, except in a validation inside a training
    # epoch (Lightning's logger connector is then in the training's batches and reads step values)
    run.metrics.epoch_start = results if previous_live is None else None
    if trainer.state.fn == TrainerFn.FITTING:
        for loader in loaders:  # some shuffle validation data by the training epoch, as Lightning allows
            set_sampler_epoch(loader, run.progress.epoch)
    first = iter(loaders[0])  # before the hooks, as in Lightning: a shuffling loader draws its seed here
    reader = _read_ahead(run, first, loaders, max_batches, takes_iterator)
    outputs_per_loader: list[dict[str, Any]] = []
    counts = run.eval_progress[fn_stage]
    counts[0] = 0  # a new evaluation epoch: the batches fetched in it
    run.eval_last_fetched.pop(fn_stage, None)
    with _eval_grad_context(trainer):  # the whole loop, its start and end hooks too, as in Lightning
        modes = _eval_mode(trainer, run, prefix)
        hooks.call_both(f"on_{prefix}_start")
        if run.results is not results:  # the batch size finder ran in that hook and reloaded the data
            loaders = dataloaders.eval_dataloaders(trainer, run, stage)
            max_batches = _within_sanity_steps(
                trainer, stage, run.eval_loop_batches.get(stage.dataloader_prefix or "", [])
            )
            results = run.results = run.metrics.live = run.val_results if validating else run.test_results
            run.metrics.epoch_start = results if previous_live is None else None
            first = iter(loaders[0])
            reader = _read_ahead(run, first, loaders, max_batches, takes_iterator)
        hooks.call_both(f"on_{prefix}_epoch_start")
        run.metrics.epoch_start = None
        ran: set[int] = set()  # the dataloaders that gave a batch
        if takes_iterator:  # `validation_step(self, dataloader_iter)`: one iterator through every dataloader
            ran = _evaluate_with_iterator(trainer, run, stage, prefix, first, loaders, max_batches)
        for dataloader_idx, loader in enumerate(loaders):
            if not takes_iterator and _all_fetched(dataloader_idx, counts[0], max_batches):
                break
            results.dataloader_idx = dataloader_idx if len(loaders) > 1 else None
            if not takes_iterator:
                iterator = _loader_batches(reader, first, loader, dataloader_idx)
                batches_run, stopped = _evaluate_loader(
                    trainer, run, stage, prefix, iterator, dataloader_idx, len(loaders), max_batches, reader
                )
                if batches_run:
                    ran.add(dataloader_idx)
            # as in Lightning, a dataloader that gave no batch has no entry in the results, except the first
            # (Lightning stores the outputs gathered so far when the dataloader index first changes from 0)
            if dataloader_idx in ran or dataloader_idx == 0:
                outputs_per_loader.append(run.metrics.eval_epoch_outputs(results, stage))
            if not takes_iterator and stopped:
                break  # the dataloaders after it get no batch, as in Lightning
        results.dataloader_idx = None
        if stage == RunningStage.VALIDATING and trainer.state.fn == TrainerFn.FITTING:
            run.progress.validated_through = run.progress.epoch_batches  # its end hooks save checkpoints
        run.metrics.epoch_end = results  # what the epoch-end hooks log is in callback_metrics at once, as in Lightning
        hooks.call_both(f"on_{prefix}_epoch_end")
        run.metrics.epoch_end = None
        end_outputs = run.metrics.eval_epoch_outputs(results, stage)
        merged: dict[str, Any] = {}
        for outputs in outputs_per_loader:
            merged.update(outputs)
            outputs.update(end_outputs)
        merged.update(end_outputs)
        if stage != RunningStage.SANITY_CHECKING:
            run.metrics.log_eval_end_metrics(merged)
        hooks.call_both(f"on_{prefix}_end")
        _train_mode(trainer, run, prefix, modes)
    results.reset()  # torchmetrics objects logged here start the next epoch empty, as in Lightning
    run.results, run.metrics.live = previous_results, previous_live
    return outputs_per_loader


def _evaluate_loader(
    trainer: Trainer,
    run: Run,
    stage: RunningStage,
    prefix: str,
    batches: Iterator[Any],
    dataloader_idx: int,
    loader_count: int,
    max_batches: list[int | float],
    reader: ReadAhead | None = None,
) -> tuple[int, bool]:
    """The batches of one evaluation dataloader, then its last step values into the metric dicts.

    Returns the number of batches run, and whether a ``StopIteration`` from the step or a batch hook ended the
    evaluation (as in Lightning, the dataloaders after this one are not run). ``reader``: the one reading
    ``batches`` ahead (``_read_ahead``), which knows the last batch."""
    hooks, results = _hooks(run), run.results
    assert results is not None
    fn_stage = "val" if stage != RunningStage.TESTING else "test"
    step_name = f"{prefix}_step"
    step = profiled(
        run.profiler,
        strategy_action(trainer.strategy, step_name),
        step_fn(trainer.strategy, trainer.lightning_module, step_name),
    )
    evaluation_step = hooks.as_hook(step_name, step_without_batch_idx(trainer.lightning_module, step_name, step))
    iterator = profiled_iterator(run.profiler, f"[_EvaluationLoop].{fn_stage}_next", batches)
    transfer = _transfer_function(trainer, run, dataloader_idx)
    batch_start, batch_end = hooks.caller(f"on_{prefix}_batch_start"), hooks.caller(f"on_{prefix}_batch_end")
    forward_context = trainer.precision_plugin.step_context(fn_stage)
    extra = (dataloader_idx,) if loader_count > 1 else ()
    log_steps = bool(trainer.loggers) and stage != RunningStage.SANITY_CHECKING
    key = (RunningStage.VALIDATING if fn_stage == "val" else RunningStage.TESTING, dataloader_idx)
    counts = run.eval_progress[fn_stage]
    validating = stage == RunningStage.VALIDATING
    stop = evaluation_stop_flag(trainer, run)
    batch_idx, stopped = 0, False
    while batch_idx < max_batches[dataloader_idx]:
        try:
            batch = next(iterator, _END)
            if batch is _END:
                break
            if stop is not None and stop.flag and (batch_idx or dataloader_idx):
                stop_evaluation(trainer)  # SIGTERM: no batch after the one it came in
            if reader is not None:
                run.eval_last_fetched[fn_stage] = reader.done
            elif max_batches[dataloader_idx] != float("inf"):
                last_loader = dataloader_idx + 1 == loader_count
                run.eval_last_fetched[fn_stage] = last_loader and batch_idx + 1 >= max_batches[dataloader_idx]
            else:  # known once the data runs out, after the loop
                run.eval_last_fetched.pop(fn_stage, None)
            if transfer is not None:
                batch = transfer(batch)
            results.batch, results.batch_size = batch, None
            if batch_start is not None:
                batch_start(batch, batch_idx, *extra)
            with forward_context():
                output = evaluation_step(batch, batch_idx, *extra)
            if batch_end is not None:
                batch_end(output, batch, batch_idx, *extra)
            results.batch, results.batch_size = None, None
            if log_steps:
                _log_evaluation_step(run, results, key)
            batch_idx += 1
            counts[0] += 1
            counts[1] += 1
            if validating:
                run.evaluation_batches_run = True
        except StopIteration:  # from the step or a batch hook: it ends the evaluation, as in Lightning
            stopped = True
            break
    run.metrics.flush_step(results)  # this dataloader's last step values (the sanity check's too, as in Lightning)
    return batch_idx, stopped


def _evaluate_with_iterator(
    trainer: Trainer,
    run: Run,
    stage: RunningStage,
    prefix: str,
    first: Iterator[Any],
    loaders: list[Any],
    max_batches: list[int | float],
) -> set[int]:
    """The evaluation steps of a step that draws its own batches, through every dataloader in turn.

    As in Lightning, the batch hooks see the last batch drawn, its index and its dataloader's index.
    Returns the indices of the dataloaders a step ended in.
    """
    hooks, results = _hooks(run), run.results
    assert results is not None
    fn_stage = "val" if stage != RunningStage.TESTING else "test"
    step_name = f"{prefix}_step"
    action = strategy_action(trainer.strategy, step_name)
    step = step_fn(trainer.strategy, trainer.lightning_module, step_name)
    evaluation_step = hooks.as_hook(step_name, profiled(run.profiler, action, step))
    batches = _sequential_batches(run, f"[_EvaluationLoop].{fn_stage}_next", first, loaders, max_batches)
    data = DataLoaderIter(batches, sum(max_batches))
    batch_start, batch_end = hooks.caller(f"on_{prefix}_batch_start"), hooks.caller(f"on_{prefix}_batch_end")
    step_context = trainer.precision_plugin.step_context(fn_stage)  # (decided once, not at every batch)
    several = len(loaders) > 1
    log_steps = bool(trainer.loggers) and stage != RunningStage.SANITY_CHECKING
    stage_key = RunningStage.VALIDATING if fn_stage == "val" else RunningStage.TESTING
    counts = run.eval_progress[fn_stage]
    validating = stage == RunningStage.VALIDATING
    stop = evaluation_stop_flag(trainer, run)
    ended_in: set[int] = set()
    while not data.done:
        extra = (data.dataloader_idx,) if several else ()
        results.batch, results.batch_size = data.batch, None
        results.dataloader_idx = data.dataloader_idx if several else None
        try:  # a StopIteration from the step or a batch hook ends the evaluation, as in Lightning
            if batch_start is not None:
                batch_start(data.batch, data.batch_idx, *extra)
            with step_context():
                output = evaluation_step(data)
            run.eval_last_fetched[fn_stage] = data.done  # the step drew its batches
            if data.fetched:
                ended_in.add(data.dataloader_idx)
            extra = (data.dataloader_idx,) if several else ()
            if batch_end is not None:
                batch_end(output, data.batch, data.batch_idx, *extra)
            results.batch, results.batch_size = None, None
            if log_steps:
                _log_evaluation_step(run, results, (stage_key, data.dataloader_idx))
            counts[0] += 1
            counts[1] += 1
            if validating:
                run.evaluation_batches_run = True
            if stop is not None and stop.flag:  # as Lightning's: after the last batch too, which it does not know
                stop_evaluation(trainer)
        except StopIteration:
            break
    run.metrics.flush_step(results)
    return ended_in


def _log_evaluation_step(run: Run, results: LoggedResults, key: tuple[RunningStage, int]) -> None:
    """The step values of an evaluation batch to the loggers, at the step index the batch's dataloader has reached
    in this stage (counted across the stage's runs, as Lightning counts them)."""
    seen = run.eval_steps_seen[key] = run.eval_steps_seen.get(key, 0) + 1
    run.metrics.log_eval_step(results, seen - 1)


def _no_batches_allowed(trainer: Trainer, run: Run, stage: RunningStage) -> bool:
    """Whether the evaluation loop is skipped: every dataloader is limited to no batches. As in Lightning, each
    loader counts on its own: a ``CombinedLoader`` whose combined batches run out at once still runs the loop."""
    return sum(_within_sanity_steps(trainer, stage, run.eval_batches.get(stage.dataloader_prefix or "", []))) == 0


def _within_sanity_steps(trainer: Trainer, stage: RunningStage, counts: list[int | float]) -> list[int | float]:
    """Batch counts per dataloader, cut to ``num_sanity_val_steps`` in the sanity check."""
    if stage == RunningStage.SANITY_CHECKING:
        return [min(trainer.num_sanity_val_steps, n) for n in counts]
    return counts


def _sequential_batches(
    run: Run, action: str | None, first: Iterator[Any], loaders: list[Any], max_batches: list[int | float]
) -> Iterator[tuple[Any, int, int]]:
    """``(batch, batch_idx, dataloader_idx)`` of every dataloader in turn, each within its limit, read as Lightning's
    sequential mode reads them: a dataloader's iterator is made once the one before it is done, that of a
    dataloader with no batch allowed too (the base seed it draws), so one asked for no batch past the last it
    counted makes none after it. ``action``: the profiler's name for the fetch (None: not profiled here)."""
    for dataloader_idx, loader in enumerate(loaders):
        iterator = first if dataloader_idx == 0 else iter(loader)
        if action is not None:
            iterator = profiled_iterator(run.profiler, action, iterator)
        batch_idx = 0
        while batch_idx < max_batches[dataloader_idx]:
            batch = next(iterator, _END)
            if batch is _END:
                break
            yield batch, batch_idx, dataloader_idx
            batch_idx += 1


def _eval_mode(trainer: Trainer, run: Run, prefix: str) -> dict[Any, bool]:
    modes = {m: m.training for m in trainer.model.modules()}
    _hooks(run).call_module(f"on_{prefix}_model_eval")
    return modes


def _train_mode(trainer: Trainer, run: Run, prefix: str, modes: dict[Any, bool]) -> None:
    name = f"on_{prefix}_model_train"
    if _hooks(run).module_overrides(name):
        _hooks(run).call_module(name)
        return
    for module, training in modes.items():
        module.training = training


def _eval_grad_context(trainer: Trainer) -> Any:
    import torch

    # validation inside fit runs under no_grad, as Lightning's: what it creates (a pruning mask) is used in training
    if (
        trainer.inference_mode
        and trainer.state.fn != "fit"
        and getattr(trainer.strategy, "supports_inference_mode", True)
    ):
        return torch.inference_mode()
    return torch.no_grad()


# =====================================================================================
# predict
# =====================================================================================
def run_predict(trainer: Trainer, run: Run) -> list[Any] | None:
    """Run ``predict_step`` over every predict dataloader; returns the outputs kept for the caller.

    As Lightning's loop, it keeps each output (moved to the CPU) in ``trainer.predict_loop.predictions`` while
    ``return_predictions`` is on or a ``BasePredictionWriter`` writes at the epoch's end, and returns them if
    ``return_predictions`` is still on when the epoch ends.
    """
    hooks = _hooks(run)
    trainer.state.stage = RunningStage.PREDICTING
    trainer.predict_loop._last_return_predictions = run.return_predictions  # what it reads after this call
    loaders = dataloaders.eval_dataloaders(trainer, run, RunningStage.PREDICTING)
    max_batches = run.eval_loop_batches.get("predict", [])
    if not loaders or sum(max_batches) == 0:
        return None
    hook_names = ("predict_step", "on_predict_batch_start", "on_predict_batch_end")
    takes_iterator = _takes_iterator(trainer, "predict_step")
    checked = hook_names[1:] if takes_iterator else hook_names  # a step drawing its own batches has no index
    check_dataloader_idx(trainer.lightning_module, checked, len(loaders) > 1, "predict")
    run.results = None
    run.predictions = [[] for _ in loaders]  # the loop's, readable as they come, as Lightning's
    run.predict_batch_indices = [[] for _ in loaders]
    run.eval_progress["predict"][0] = 0  # a new prediction epoch
    first = iter(loaders[0])  # before the hooks, as in Lightning
    reader = _read_ahead(run, first, loaders, max_batches, takes_iterator)
    with _eval_grad_context(trainer):  # the whole loop, its start and end hooks too, as in Lightning
        modes = _eval_mode(trainer, run, "predict")
        hooks.call_both("on_predict_start")
        if run.predict_batch_indices is None:  # the batch size finder ran in that hook and reloaded the data
            loaders = dataloaders.eval_dataloaders(trainer, run, RunningStage.PREDICTING)
            max_batches = run.eval_loop_batches.get("predict", [])
            run.predictions = [[] for _ in loaders]
            run.predict_batch_indices = [[] for _ in loaders]
            first = iter(loaders[0])
            reader = _read_ahead(run, first, loaders, max_batches, takes_iterator)
        predictions = run.predictions
        hooks.call_both("on_predict_epoch_start")
        if takes_iterator:  # `predict_step(self, dataloader_iter)`: one iterator through every dataloader
            _predict_with_iterator(trainer, run, first, loaders, max_batches, predictions)
        for dataloader_idx, loader in enumerate(loaders if not takes_iterator else ()):
            if _all_fetched(dataloader_idx, run.eval_progress["predict"][0], max_batches):
                break
            iterator = _loader_batches(reader, first, loader, dataloader_idx)
            if _predict_loader(trainer, run, loader, iterator, dataloader_idx, len(loaders), max_batches, predictions):
                break  # the dataloaders after it get no batch, as in Lightning
        hooks.call_both("on_predict_epoch_end")
        # decided after the epoch's end hooks, which may still switch `return_predictions`, as in Lightning
        returned = (predictions if len(loaders) > 1 else predictions[0]) if run.return_predictions else None
        # as Lightning's loop before its end hooks: the batch indices go, and the outputs unless they are returned
        run.predict_batch_indices = []
        if not run.return_predictions:
            run.predictions = []
        hooks.call_both("on_predict_end")
        for module, training in modes.items():  # each module back in the mode it had, as in Lightning
            module.training = training
    return returned


def _predict_loader(
    trainer: Trainer,
    run: Run,
    loader: Any,
    batches: Iterator[Any],
    dataloader_idx: int,
    loader_count: int,
    max_batches: list[int | float],
    predictions: list[list[Any]],
) -> bool:
    """The batches of one prediction dataloader. Returns whether a ``StopIteration`` from the step or a batch
    hook ended the prediction."""
    hooks = _hooks(run)
    step = profiled(
        run.profiler,
        strategy_action(trainer.strategy, "predict_step"),
        step_fn(trainer.strategy, trainer.lightning_module, "predict_step"),
    )
    predict_step = hooks.as_hook("predict_step", step_without_batch_idx(trainer.lightning_module, "predict_step", step))
    iterator = profiled_iterator(run.profiler, "[_PredictionLoop].predict_next", batches)
    transfer = _transfer_function(trainer, run, dataloader_idx)
    batch_start, batch_end = hooks.caller("on_predict_batch_start"), hooks.caller("on_predict_batch_end")
    forward_context = trainer.precision_plugin.step_context("predict")
    extra = (dataloader_idx,) if loader_count > 1 else ()
    recorder = getattr(loader, "batch_sampler", None)
    if not isinstance(recorder, dataloaders.IndexRecorder):
        recorder = None  # the loader has no indices (an iterable dataset, a custom iterable)
    # an epoch writer reads the loop's outputs at the epoch's end; the batch indices are kept only for
    # someone who reads them, as in Lightning
    epoch_writer = any(_writes(cb, "on_epoch") for cb in trainer.callbacks)
    keep_indices = run.return_predictions or epoch_writer
    # a prediction writer is told when the loader has none, as Lightning tells it at the first batch
    unknown_indices = recorder is None and any(
        _writes(cb, "on_batch") or _writes(cb, "on_epoch") for cb in trainer.callbacks
    )
    view = trainer.predict_loop
    # none for a loader without indices (Lightning leaves the last loader's there)
    view.current_batch_indices = []
    limit = max_batches[dataloader_idx]
    counts = run.eval_progress["predict"]
    batch_idx = 0
    while limit == math.inf or batch_idx < limit:
        try:  # a StopIteration from the step or a batch hook ends the prediction, as in Lightning
            batch = next(iterator, _END)
            if batch is _END:
                break
            if recorder is not None:
                seen = recorder.seen  # this iteration's: the recorder starts a new list as the iteration starts
                current: list[int] = seen[batch_idx] if batch_idx < len(seen) else []
                view.current_batch_indices = current
                if keep_indices:
                    run.predict_batch_indices[dataloader_idx].append(current)
            elif unknown_indices:
                unknown_indices = False
                view._warning_cache.warn(  # once per trainer, as its predict loop's
                    f"Couldn't infer the batch indices fetched from your dataloader: `{type(loader).__name__}`"
                )
            if transfer is not None:
                batch = transfer(batch)
            if batch_start is not None:
                batch_start(batch, batch_idx, *extra)
            with forward_context():
                output = predict_step(batch, batch_idx, *extra)
            if output is None:
                _warn_none_prediction(trainer)
            if batch_end is not None:
                batch_end(output, batch, batch_idx, *extra)  # the output as the step gave it, as in Lightning
            batch_idx += 1
            counts[0] += 1
            counts[1] += 1
            if run.return_predictions or epoch_writer:  # read at each batch: a hook may switch it
                predictions[dataloader_idx].append(_kept(output))
        except StopIteration:
            return True
    return False


def _predict_with_iterator(
    trainer: Trainer,
    run: Run,
    first: Iterator[Any],
    loaders: list[Any],
    max_batches: list[int | float],
    predictions: list[list[Any]],
) -> None:
    """The prediction steps of a ``predict_step(self, dataloader_iter)``, through every dataloader in turn;
    each step's output is kept under the dataloader of the last batch it drew."""
    hooks = _hooks(run)
    action = strategy_action(trainer.strategy, "predict_step")
    step = step_fn(trainer.strategy, trainer.lightning_module, "predict_step")
    predict_step = hooks.as_hook("predict_step", profiled(run.profiler, action, step))
    batches = _sequential_batches(run, "[_PredictionLoop].predict_next", first, loaders, max_batches)
    data = DataLoaderIter(batches, sum(max_batches))
    batch_start, batch_end = hooks.caller("on_predict_batch_start"), hooks.caller("on_predict_batch_end")
    step_context = trainer.precision_plugin.step_context("predict")  # (decided once, not at every batch)
    several = len(loaders) > 1
    trainer.predict_loop.current_batch_indices = []
    counts = run.eval_progress["predict"]
    while not data.done:
        try:  # a StopIteration from the step or a batch hook ends the prediction, as in Lightning
            if batch_start is not None:
                batch_start(data.batch, data.batch_idx, *((data.dataloader_idx,) if several else ()))
            with step_context():
                output = predict_step(data)
            if output is None:
                _warn_none_prediction(trainer)
            if batch_end is not None:
                batch_end(output, data.batch, data.batch_idx, *((data.dataloader_idx,) if several else ()))
            counts[0] += 1
            counts[1] += 1
            if run.return_predictions:  # a prediction writer does not take this step flavour
                predictions[data.dataloader_idx].append(_kept(output))
        except StopIteration:
            break


def _kept(output: Any) -> Any:
    """A prediction as the loop keeps it: on the CPU, its tensors and any object with a ``.to``, as Lightning's
    ``move_data_to_device(output, "cpu")``, so a long run does not fill the device (a sync per batch, as there)."""
    return move_data_to_device(output, "cpu")


def _writes(callback: Any, interval: str) -> bool:
    """Whether ``callback`` is a prediction writer writing at that ``interval`` (``"on_batch"``, ``"on_epoch"``)."""
    return bool(getattr(getattr(callback, "interval", None), interval, False))


def _warn_none_prediction(trainer: Trainer) -> None:
    """Lightning's warning for a ``predict_step`` that returned None: once per trainer, as its predict loop's."""
    trainer.predict_loop._warning_cache.warn("predict returned None if it was on purpose, ignore this warning...")


# =====================================================================================
# helpers
# =====================================================================================
def _hooks(run: Run) -> HookDispatcher:
    assert run.hooks is not None, "the run's hooks are set when it starts"
    return run.hooks
