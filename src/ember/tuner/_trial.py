"""Short trial runs inside a live ``trainer.fit``/``validate``/``test``/``predict`` call.

The learning rate finder and the batch size finder both run the trainer's own loops for a few
steps with other settings (their own callbacks, a dummy logger, tighter limits), then put
everything back: weights, optimizer and scheduler states, loop counters, the scaler, settings and
the global RNGs. The snapshot lives in host memory (copies of the state dicts), so it takes no
device memory, no checkpoint file is written and no ``on_save_checkpoint`` hook runs for a trial.

Example::

    snapshot = TrainerSnapshot(trainer)
    with trial_settings(trainer, callbacks=[my_callback], max_steps=10):
        run_trial(trainer)
    snapshot.restore(trainer)
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from copy import deepcopy
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


def is_oom_error(exception: BaseException) -> bool:
    """Whether ``exception`` reports that the device (or host) ran out of memory."""
    if isinstance(exception, torch.OutOfMemoryError):
        return True
    if not isinstance(exception, RuntimeError) or not exception.args or not isinstance(exception.args[0], str):
        return False
    message = exception.args[0]
    return (
        "out of memory" in message
        or "CUBLAS_STATUS_ALLOC_FAILED" in message
        or "CUDNN_STATUS_NOT_SUPPORTED" in message
        or "DefaultCPUAllocator: can't allocate memory" in message
    )


def free_memory(device: torch.device, exception: BaseException | None = None) -> None:
    """Drop what a failed trial left behind, so the next one starts with the memory it had before.

    A full ``gc.collect`` costs a noticeable fraction of a second in a process that has imported
    torch's compiler stack, so on a CPU run it is done only after the host allocator itself failed.
    """
    host_failure = exception is not None and "DefaultCPUAllocator" in str(exception)
    if device.type == "cpu" and not host_failure:
        return
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _host_copy(value: Any) -> Any:
    """A copy of ``value`` with every tensor on the host: a snapshot must not take device memory, least of all
    while the batch size finder measures how much is free."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return type(value)((key, _host_copy(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_host_copy(item) for item in value)
    return deepcopy(value)


class TrainerSnapshot:
    """Copies of everything a trial run changes in the model, the optimizers and the loops.

    Example::

        snapshot = TrainerSnapshot(trainer)
        ...  # train a few steps with an experimental setting
        snapshot.restore(trainer)
    """

    def __init__(self, trainer: Trainer) -> None:
        module = trainer.lightning_module
        # host sync: weights and optimizer state are copied to the host once per tuning run
        self.module_state = _host_copy(module.state_dict())
        self.optimizer_states = [_host_copy(opt.state_dict()) for opt in trainer.optimizers]
        self.scheduler_states = [deepcopy(config.scheduler.state_dict()) for config in trainer.lr_scheduler_configs]
        self.optimizers = list(trainer.optimizers)
        self.lr_scheduler_configs = list(trainer.lr_scheduler_configs)
        self.progress = deepcopy(trainer._run.progress.state_dict())
        precision = trainer.precision_plugin
        self.precision_state = _host_copy(precision.state_dict()) if precision is not None else None
        self.stage = trainer.state.stage
        self.training_mode = module.training

    def restore(self, trainer: Trainer) -> None:
        """Put the model, optimizers, schedulers, counters and scaler back as they were."""
        module = trainer.lightning_module
        module.load_state_dict(self.module_state)
        module.zero_grad(set_to_none=True)
        module.train(self.training_mode)
        trainer.optimizers = self.optimizers
        trainer._lr_scheduler_configs = self.lr_scheduler_configs
        for optimizer, state in zip(self.optimizers, self.optimizer_states):
            optimizer.load_state_dict(state)
        for config, state in zip(self.lr_scheduler_configs, self.scheduler_states):
            config.scheduler.load_state_dict(state)
        if self.precision_state is not None:
            trainer.precision_plugin.load_state_dict(self.precision_state)
        self.reset_progress(trainer)
        trainer.should_stop = False
        trainer.state.stage = self.stage
        forget_data(trainer)

    def reset_progress(self, trainer: Trainer) -> None:
        """Counters back to where the snapshot was taken (each trial starts from the same point)."""
        trainer._run.progress.load_state_dict(deepcopy(self.progress))


def forget_data(trainer: Trainer) -> None:
    """Drop loaded dataloaders, so the next loop asks for fresh ones (logged values are kept).

    A trial may have changed ``batch_size``: the dataloader hooks must run again to see it.
    """
    trainer._run.forget_data(trainer)


_SETTINGS = (
    "callbacks",
    "loggers",
    "max_steps",
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "limit_predict_batches",
    "num_sanity_val_steps",
)


def _owner(trainer: Trainer, name: str) -> Any:
    """Where a setting is assigned: ``max_steps`` is read-only on the trainer, as in Lightning, and set on
    ``trainer.fit_loop.epoch_loop``."""
    return trainer.fit_loop.epoch_loop if name == "max_steps" else trainer


@contextlib.contextmanager
def trial_settings(trainer: Trainer, callbacks: list[Any], **settings: Any) -> Iterator[None]:
    """Run the body with ``callbacks`` as the only callbacks, a dummy logger and ``settings``; then restore.

    The progress bar is disabled for the trial, as in Lightning, and enabled again afterwards.
    """
    from ember.loggers.logger import DummyLogger
    from ember.trainer.dispatch import HookDispatcher

    saved = {name: getattr(trainer, name) for name in _SETTINGS}
    saved_hooks = trainer._run.hooks
    progress_bar = trainer.progress_bar_callback
    if progress_bar is not None:
        progress_bar.disable()
    try:
        trainer.callbacks = list(callbacks)
        trainer.loggers = [DummyLogger()] if trainer.loggers else []
        trainer.num_sanity_val_steps = 0  # the trials run the loops themselves, not a new fit
        for name, value in settings.items():
            setattr(_owner(trainer, name), name, value)
        # which callback overrides which hook is decided once per run: decide it for the trial's callbacks
        trainer._run.hooks = HookDispatcher(trainer, trainer.lightning_module, trainer.callbacks)
        yield
    finally:
        for name, value in saved.items():
            setattr(_owner(trainer, name), name, value)
        trainer._run.hooks = saved_hooks
        if progress_bar is not None:
            progress_bar.enable()


def run_trial(trainer: Trainer, reload_data: bool = True) -> None:
    """Run the loop of the current entry point (fit, validate, test or predict) once, with the current settings.

    With ``reload_data=False`` a training loader already loaded is used as it is (the caller drops it when it
    changes what the hook returns).
    """
    from ember.trainer import loop
    from ember.trainer.states import RunningStage, TrainerFn

    if reload_data or trainer.state.fn != TrainerFn.FITTING:
        forget_data(trainer)
    fn = trainer.state.fn
    if fn == TrainerFn.FITTING:
        trainer.should_stop = False
        loop.run_fit(trainer, trainer._run)
        trainer.should_stop = False
    elif fn == TrainerFn.VALIDATING:
        loop.run_evaluation(trainer, trainer._run, RunningStage.VALIDATING)
    elif fn == TrainerFn.TESTING:
        loop.run_evaluation(trainer, trainer._run, RunningStage.TESTING)
    else:
        run = trainer._run
        keep, run.return_predictions = run.return_predictions, False  # a trial collects nothing
        try:
            loop.run_predict(trainer, run)
        finally:
            run.return_predictions = keep


def load_dataloaders(trainer: Trainer) -> None:
    """Request the current entry point's dataloaders again (``trainer.train_dataloader`` and the rest are set)."""
    from ember.trainer import dataloaders
    from ember.trainer.states import RunningStage, TrainerFn

    fn, run = trainer.state.fn, trainer._run
    assert fn is not None, "the tuner runs inside a call of fit, validate, test or predict"
    if fn == TrainerFn.FITTING:
        dataloaders.setup_train_dataloader(trainer, run)
        # as the fit: no validation (no step, or no validation data: Lightning's search fails there) loads none
        if trainer.enable_validation:
            dataloaders.eval_dataloaders(trainer, run, RunningStage.VALIDATING)
    else:
        stage = {TrainerFn.VALIDATING: RunningStage.VALIDATING, TrainerFn.TESTING: RunningStage.TESTING}.get(
            fn, RunningStage.PREDICTING
        )
        dataloaders.eval_dataloaders(trainer, run, stage)


def load_train_dataloader(trainer: Trainer) -> None:
    """Request the training dataloader again, as Lightning after a learning rate sweep: validation loads its
    own loaders when it next runs, and only if it has any."""
    from ember.trainer import dataloaders

    dataloaders.setup_train_dataloader(trainer, trainer._run)


def current_dataset_length(trainer: Trainer) -> int | None:
    """The length of the dataset behind the current entry point's (first) dataloader, or None if unsized."""
    from ember.trainer import dataloaders
    from ember.trainer.states import RunningStage, TrainerFn

    fn, run = trainer.state.fn, trainer._run
    assert fn is not None, "the tuner runs inside a call of fit, validate, test or predict"
    if fn == TrainerFn.FITTING:
        # as Lightning, which measures the loader the last trial ran on: the hook runs only when none is loaded
        if run.train_dataloader is None:
            dataloaders.setup_train_dataloader(trainer, run)
        loaders = [run.train_dataloader]
    else:
        forget_data(trainer)
        stage = {TrainerFn.VALIDATING: RunningStage.VALIDATING, TrainerFn.TESTING: RunningStage.TESTING}.get(
            fn, RunningStage.PREDICTING
        )
        loaders = dataloaders.setup_eval_dataloaders(trainer, trainer._run, stage)
    total = 0
    for loader in loaders:
        dataset = getattr(loader, "dataset", None)
        try:
            total += len(dataset)  # type: ignore[arg-type]
        except TypeError:
            return None
    if fn != TrainerFn.FITTING:
        forget_data(trainer)
    return total
