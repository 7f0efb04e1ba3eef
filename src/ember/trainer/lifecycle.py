"""One call of ``fit``/``validate``/``test``/``predict``, from set-up to teardown, and what a failure does.

``execute`` is the whole call, in Lightning's order::

    configure_callbacks; checks; process group; prepare_data; setup(stage); configure_model
    [ckpt_path] load: on_load_checkpoint, weights, callback states
    the precision converts the module; configure_optimizers; strategy wraps the model; on_fit_start;
    hyperparameters to the loggers
    [ckpt_path, fit] optimizer, scheduler, scaler and loop states
    the stage (loop.py); teardown; on_fit_end; teardown(stage); profiler report

``guarded`` wraps it: it starts the other processes when the strategy launches them, and on
Ctrl+C, a preemption or an error it runs ``on_exception``, finalizes the loggers and tears down.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import sys
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import torch

from ember.checkpoint import contents
from ember.checkpoint.ckpt_path import managed_ckpt_path, resolve_ckpt_path
from ember.profilers.profiler import active
from ember.trainer import arguments, dataloaders, loop
from ember.trainer.data import takes_dataloader_iter
from ember.trainer.defaults import merge_model_callbacks
from ember.trainer.dispatch import HookDispatcher
from ember.trainer.optim import check_non_torch_schedulers, configure_optimizers
from ember.trainer.preemption import install_stop_flag
from ember.trainer.states import RunningStage, TrainerFn, TrainerStatus
from ember.tuner.exceptions import _TunerExitException
from ember.utilities.exceptions import MisconfigurationException, PreemptionExit
from ember.utilities.model_helpers import is_overridden
from ember.utilities.parsing import clean_namespace
from ember.utilities.rank_zero import rank_zero_deprecation, rank_zero_info, rank_zero_warn
from ember.utilities.warnings import PossibleUserWarning

if TYPE_CHECKING:
    from ember.callbacks.callback import Callback
    from ember.core.module import LightningModule
    from ember.trainer.run import Run
    from ember.trainer.trainer import Trainer


# =====================================================================================
# the call, guarded
# =====================================================================================
def guarded(trainer: Trainer, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` (in the processes the strategy launches, if it launches any), handling every way it can end.

    ``args[0]`` is the module the call runs: the callbacks' ``on_exception`` receives it in a process
    that only launched the others.
    """
    launcher = getattr(trainer.strategy, "launcher", None)
    launching = launcher is not None and not launcher.is_launched
    try:
        if launching and launcher is not None:
            return launcher.launch(fn, *args, trainer=trainer, **kwargs)
        return fn(*args, **kwargs)
    except KeyboardInterrupt as exception:
        rank_zero_info("\nDetected KeyboardInterrupt, attempting graceful shutdown ...")
        previous = signal.getsignal(signal.SIGINT)
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not break the shutdown
        try:
            interrupt(trainer, exception)
            teardown(trainer, failure=exception)
        finally:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGINT, previous)
        raise SystemExit(1) from None
    except PreemptionExit as exception:
        # the callbacks, the datamodule and the loggers hear of it as of any failure, as in Lightning; the
        # ranks agreed to stop together, so the strategy keeps its collectives for what they save
        interrupt(trainer, exception, stop_strategy=False)
        teardown(trainer, failure=exception)
        trainer.state.stage = None
        raise
    except _TunerExitException:
        # a tuner finished its search inside this call: end it as a finished run
        call_teardown_hooks(trainer, trainer._run, trainer.state.fn or TrainerFn.FITTING)
        teardown(trainer)
        trainer.state.status = TrainerStatus.FINISHED
        trainer.state.stage = None
    except BaseException as exception:
        interrupt(trainer, exception, args[0] if launching and args else None)
        teardown(trainer, failure=exception)
        trainer.state.stage = None
        raise


def interrupt(
    trainer: Trainer, exception: BaseException, launched_module: Any = None, stop_strategy: bool = True
) -> None:
    """The run failed: tell the strategy, the callbacks and the datamodule; finalize the loggers.

    ``launched_module``: the call went through the strategy's launcher (in processes it started, or in
    this one). If the run's hooks were never built here (a spawn that failed, or a call that failed
    before its first hook: a `ckpt_path="best"` with no best checkpoint), the callbacks hear of the
    failure too, as in Lightning, except checkpoint callbacks, which have no run to save.
    ``stop_strategy=False``: a preemption the ranks agreed on, which leaves the strategy's collectives working
    (one process has none to keep: its strategy hears of it too, as in Lightning).
    """
    trainer.state.status = TrainerStatus.INTERRUPTED
    # in a run of several processes the strategy hears first: it stops the other ranks and makes collectives
    # local, so a checkpoint saved by `on_exception` below cannot wait forever for a peer; one process has no
    # peer to wait for, and its strategy hears after the callbacks and the datamodule, as in Lightning
    several = trainer.world_size > 1
    if several and stop_strategy:
        trainer.strategy.on_exception(exception)
    hooks = trainer._run.hooks
    module = launched_module if launched_module is not None else trainer.lightning_module
    if hooks is not None:
        hooks.call_callbacks("on_exception", exception)
    elif module is not None:
        from ember.callbacks.checkpoint import Checkpoint

        for callback in trainer.callbacks:
            if not isinstance(callback, Checkpoint):
                callback.on_exception(trainer, module, exception)
    if (hooks is not None or module is not None) and trainer.datamodule is not None:
        trainer.datamodule.on_exception(exception)
    if not several:
        trainer.strategy.on_exception(exception)
    for logger in trainer.loggers:
        _finalize_failed(logger)
    stop_profiling(trainer)


def _finalize_failed(logger: Any) -> None:
    """``logger.finalize("failed")``. An error there is warned of, and the run's own error goes on: Lightning
    raises the logger's error instead, which hides why the run failed."""
    try:
        logger.finalize("failed")
    except Exception as error:
        rank_zero_warn(
            f"{type(logger).__name__}.finalize('failed') raised {type(error).__name__}: {error}. The error that"
            " stopped the run is raised instead."
        )


def stop_profiling(trainer: Trainer) -> None:
    """A run that ends early writes no report, but stops what the profiler runs (torch.profiler)."""
    profiler = trainer._run.profiler
    if profiler is not None:
        with contextlib.suppress(Exception):
            profiler.teardown(stage=trainer.state.fn)


def teardown(trainer: Trainer, failure: BaseException | None = None) -> None:
    """Finish the checkpoint writes; release the process group and the signal handlers; metrics stay readable.

    A checkpoint write that failed in the background is raised here, unless the call is already
    failing (``failure``): then it is reported with that exception, which goes on unmasked.
    """
    run = trainer._run
    try:
        trainer.strategy.teardown()  # waits for queued checkpoint writes
    except Exception as error:
        if failure is None:
            raise
        _report_write_error(error, failure)
    finally:
        dataloaders.stop_workers(run)
        trainer.accelerator.teardown()
        run.stop_flag.uninstall()
        run.results = None
        # a failed run's step values stay readable (Lightning copies each batch's into the three dicts as the
        # batch ends; epoch values only when each dict is read); then the loop's results go
        if run.metrics.live is not None:
            run.metrics.flush_step(run.metrics.live)
        run.metrics.live = run.metrics.epoch_end = run.metrics.epoch_start = None
        run.metrics.to_cpu()


def _report_write_error(error: BaseException, failure: BaseException) -> None:
    message = f"A checkpoint could not be written while the run was stopping: {type(error).__name__}: {error}"
    add_note = getattr(failure, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(message)
    rank_zero_warn(message)


@contextlib.contextmanager
def call_inside_running_call(trainer: Trainer) -> Iterator[None]:
    """Around a ``validate``/``test``/``predict`` that a hook of a running call (``fit``) makes: once it returns or
    fails, the outer call's run and ``trainer.state`` come back, so that call goes on and ends as itself
    (``on_train_end``, ``on_fit_end`` and ``teardown("fit")`` see ``fn="fit"``). The inner call's logged values
    stay readable in ``trainer.callback_metrics``, and its counts in its loop (``trainer.validate_loop``, ...).

    Lightning's fit fails after such a call in a module hook, and skips ``on_fit_end`` after one in a callback
    hook (docs/compat.md).
    """
    state = trainer.state
    if state.status != TrainerStatus.RUNNING:
        yield  # a call of its own
        return
    outer_run, outer_state = trainer._run, (state.fn, state.stage, state.status)
    in_call = trainer.strategy._in_call
    try:
        yield
    finally:
        inner_run = trainer._run
        if inner_run is not outer_run:
            # what the inner call leaves on its loop, as the next call's start would record it
            trainer._loops_left[_fn(inner_run).value] = trainer._loops_left_by_last_call()
            trainer._run = outer_run
            outer_run.metrics.carry_over(inner_run.metrics)
        state.fn, state.stage, state.status = outer_state
        trainer.strategy._in_call = in_call  # the outer call's teardown still waits for queued checkpoint writes


def execute(trainer: Trainer, model: Any, ckpt_path: Any, weights_only: bool | None, model_given: bool) -> Any:
    """The whole call: set-up, the stage, teardown. Returns what ``validate``/``test``/``predict`` return."""
    run = trainer._run
    start(trainer, run, model, ckpt_path, weights_only, model_given)
    results = run_stage(trainer, run, model)
    teardown(trainer)
    if run.fn == TrainerFn.FITTING:
        _hooks(run).call_both("on_fit_end")
    call_teardown_hooks(trainer, run, _fn(run))
    if run.profiler is not None:
        run.profiler.describe()  # after the loggers are finalized, as in Lightning
    trainer.state.status = TrainerStatus.FINISHED
    trainer.state.stage = None
    return results


# =====================================================================================
# set-up
# =====================================================================================
def start(trainer: Trainer, run: Run, model: Any, ckpt_path: Any, weights_only: bool | None, model_given: bool) -> None:
    """Everything before the first loop: hooks, checks, processes, data, weights, optimizers, restored state."""
    fitting = run.fn == TrainerFn.FITTING
    if fitting:
        arguments.resolve_epoch_limits(trainer)
    # "best", "last", "hpc" and the implied path are chosen first, as Lightning chooses them: before any
    # hook runs (a missing best checkpoint fails before `setup`), among the Trainer's own callbacks
    fn = _fn(run).value
    if trainer._ckpt_path_user_managed and not ckpt_path:
        # set by the program (`trainer.ckpt_path = ...`): every call loads it
        path = managed_ckpt_path(trainer.ckpt_path)
    else:
        if trainer._ckpt_path_user_managed:
            rank_zero_warn(
                f"`trainer.ckpt_path = {trainer.ckpt_path!r}` was called but then you"
                f" passed `trainer.fit(ckpt_path={ckpt_path!r})`. The latter will be loaded."
            )
            trainer.ckpt_path = None
        path = resolve_ckpt_path(trainer, ckpt_path, fn, model_given)
    trainer._ckpt_path = path
    if trainer.barebones:
        # in every call, where Lightning's `_run` says it: with no progress bar a run could look hung
        rank_zero_info(
            "`Trainer(barebones=True)` started running. The progress bar is disabled so you might want to"
            " manually print the progress in your model."
        )
    if isinstance(getattr(model, "hparams", None), MutableMapping):
        clean_namespace(model.hparams)  # as Lightning: what cannot be pickled cannot go into a checkpoint
    strategy = trainer.strategy
    strategy.connect(model)
    strategy._in_call = True  # until teardown, which waits for queued checkpoint writes
    model.trainer = trainer
    run.profiler = active(trainer.profiler)  # None: the loop is built without spans
    run.hooks = HookDispatcher(trainer, model, trainer.callbacks, run.profiler)
    trainer.callbacks = merge_model_callbacks(trainer.callbacks, run.hooks.call_module("configure_callbacks"))
    _dispatch_to(trainer.callbacks, trainer, run, model)
    check_configuration(trainer, run, model)
    precision = trainer.precision_plugin
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            check = getattr(type(logger), "_check_save_dir_writable", None)  # a logger's own method, not a Mock's
            if check is not None:
                check(logger)  # fail before any work is done, naming the folder
    strategy.setup_environment()  # the process group first: prepare_data's barrier needs it
    trainer.accelerator.setup_device(strategy.root_device)
    if run.profiler is not None:
        run.profiler._lightning_module = model
        local_rank = trainer.local_rank if trainer.world_size > 1 else None
        run.profiler.setup(stage=_fn(run), local_rank=local_rank, log_dir=trainer.log_dir)
    prepare_data(trainer, run)
    call_setup_hooks(trainer, run, _fn(run))
    _configure_model(trainer, run)
    precision.automatic_optimization = bool(getattr(model, "automatic_optimization", True))

    checkpoint = None
    after_setup = strategy.restore_checkpoint_after_setup  # DeepSpeed: its engine reads the checkpoint
    if path is not None and not after_setup:
        checkpoint = _load_checkpoint(trainer, run, path, weights_only)
    run.metrics.reset()  # the last call's values, readable until here as in Lightning (`Trainer._start`)
    run.set_sync(strategy.sync_fn)
    # after the restore, where Lightning's `strategy.setup` converts: the `on_load_checkpoint` hooks see the
    # module as it was built, and the layers they build take the precision's dtype with the others; before
    # `strategy.setup`, so the optimizers it creates hold the converted parameters
    precision.convert_module(model)
    strategy.setup(trainer)  # devices, the wrapper, the optimizers when fitting, the precision plugin
    if path is not None and after_setup:
        checkpoint = _load_checkpoint(trainer, run, path, weights_only)
    if fitting:
        run.hooks.call_both("on_fit_start")
    log_hyperparams(trainer, model)
    if checkpoint is not None:
        _finish_restoring(trainer, run, checkpoint, path, fitting)
    del checkpoint
    install_stop_flag(trainer, run)  # in every call, as Lightning catches SIGTERM in every call


def _configure_model(trainer: Trainer, run: Run) -> None:
    """The module's ``configure_model`` (or its deprecated name ``configure_sharded_model``), as Lightning calls
    them: the layers ``configure_model`` creates are on the device, in the precision's dtype, sharded where the
    strategy shards them as they are built."""
    strategy, hooks, model = trainer.strategy, _hooks(run), trainer.lightning_module
    if is_overridden("configure_sharded_model", model):
        with strategy.model_sharded_context():
            hooks.call_module("configure_sharded_model")
    if is_overridden("configure_model", model):
        with (
            strategy.tensor_init_context(),
            strategy.model_sharded_context(),
            trainer.precision_plugin.module_init_context(),
        ):
            hooks.call_module("configure_model")


def _load_checkpoint(trainer: Trainer, run: Run, path: Any, weights_only: bool | None) -> dict[str, Any]:
    """Read ``ckpt_path`` (through the strategy's CheckpointIO plugin) and restore the module and callbacks."""
    checkpoint = contents.read_checkpoint(trainer, path, weights_only)
    contents.restore_modules_and_callbacks(trainer, run, checkpoint)
    return checkpoint


def _finish_restoring(trainer: Trainer, run: Run, checkpoint: dict[str, Any], path: Any, fitting: bool) -> None:
    """The training state too when fitting (optimizers, schedulers, loop position), the precision plugin's in
    every call (as Lightning), then Lightning's message."""
    if fitting:
        contents.restore_training_state(trainer, run, checkpoint)
    else:
        contents.restore_precision_state(trainer, checkpoint)
    contents.say_restored(trainer, path)


def check_configuration(trainer: Trainer, run: Run, model: Any) -> None:
    """What this entry point needs from the module, checked before any work is done."""
    hooks = _hooks(run)
    if run.fn == TrainerFn.FITTING:
        _check_fit_configuration(trainer, run, model)
    elif run.fn in (TrainerFn.VALIDATING, TrainerFn.TESTING):
        step = "validation_step" if run.fn == TrainerFn.VALIDATING else "test_step"
        if not hooks.module_overrides(step):
            raise MisconfigurationException(f"No `{step}()` method defined to run `Trainer.{run.fn.value}`.")
    elif run.fn == TrainerFn.PREDICTING:
        if getattr(model, "predict_step", None) is None:
            raise MisconfigurationException("`predict_step` cannot be None to run `Trainer.predict`")
        if not hooks.module_overrides("predict_step") and not hooks.module_overrides("forward"):
            raise MisconfigurationException("`Trainer.predict` requires `forward` method to run.")
    _check_configure_model(model)
    if any(
        takes_dataloader_iter(model, step) for step in ("training_step", "validation_step", "test_step", "predict_step")
    ):
        rank_zero_warn(
            "You are using the `dataloader_iter` step flavor. If you consume the iterator more than once per step, the"
            " `batch_idx` argument in any hook that takes it will not match with the batch index of the last batch"
            " consumed. This might have unforeseen effects on callbacks or code that expects to get the correct"
            " index. This will also not work well with gradient accumulation.",
            category=PossibleUserWarning,
        )
    for name, instead in _REMOVED_EPOCH_END.get(run.fn, ()) if run.fn is not None else ():
        if callable(getattr(model, name, None)):
            # Lightning 2.0 stopped calling it: running without it would silently skip the user's code
            raise NotImplementedError(
                f"Support for `{name}` has been removed in v2.0.0. `{type(model).__name__}` implements this method."
                f" You can use the `{instead}` hook instead. To access outputs, save them in-memory as instance"
                " attributes. You can find migration examples in"
                " https://github.com/Lightning-AI/pytorch-lightning/pull/16520."
            )


def _check_configure_model(model: Any) -> None:
    """``configure_sharded_model``, the old name of ``configure_model``, runs with Lightning's deprecation
    warning; both overridden is Lightning's error."""
    if not is_overridden("configure_sharded_model", model):
        return
    name = type(model).__name__
    if is_overridden("configure_model", model):
        raise RuntimeError(
            f"Both `{name}.configure_model`, and `{name}.configure_sharded_model` are overridden. The latter is"
            " deprecated and it should be replaced with the former."
        )
    rank_zero_deprecation(
        f"You have overridden `{name}.configure_sharded_model` which is deprecated. Please override the"
        " `configure_model` hook instead. Instantiation with the newer hook will be created on the device right"
        " away and have the right data type depending on the precision setting in the Trainer."
    )


_REMOVED_EPOCH_END = {
    TrainerFn.FITTING: (
        ("training_epoch_end", "on_train_epoch_end"),
        ("validation_epoch_end", "on_validation_epoch_end"),
    ),
    TrainerFn.VALIDATING: (("validation_epoch_end", "on_validation_epoch_end"),),
    TrainerFn.TESTING: (("test_epoch_end", "on_test_epoch_end"),),
}


def _check_fit_configuration(trainer: Trainer, run: Run, model: Any) -> None:
    hooks = _hooks(run)
    for required in ("training_step", "configure_optimizers"):
        if not hooks.module_overrides(required):
            raise MisconfigurationException(
                f"No `{required}()` method defined. Lightning `Trainer` expects as minimum a `training_step()`,"
                " `train_dataloader()` and `configure_optimizers()` to be defined."
            )
    if run.train_source is None and not dataloaders.hook_defined(run, "train"):
        # raises: nothing passed, and no hook of the datamodule (else the module) defines the data
        dataloaders.undefined(run.datamodule or model, "train")
    has_val_data = run.eval_sources.get("val") is not None or dataloaders.hook_defined(run, "val")
    if has_val_data and not hooks.module_overrides("validation_step"):
        rank_zero_warn("You passed in a `val_dataloader` but have no `validation_step`. Skipping val loop.")
    if not has_val_data and hooks.module_overrides("validation_step"):
        rank_zero_warn(
            "You defined a `validation_step` but have no `val_dataloader`. Skipping val loop.",
            category=PossibleUserWarning,
        )
    if not model.automatic_optimization:
        if trainer.gradient_clip_val is not None and trainer.gradient_clip_val != 0:
            raise MisconfigurationException(
                "Automatic gradient clipping is not supported for manual optimization. Remove"
                f" `Trainer(gradient_clip_val={trainer.gradient_clip_val})` or switch to automatic optimization."
            )
        if trainer.accumulate_grad_batches != 1:
            raise MisconfigurationException(
                "Automatic gradient accumulation is not supported for manual optimization. Remove"
                f" `Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches})` or switch to automatic"
                " optimization."
            )
    if "optimizer_idx" in inspect.signature(model.training_step).parameters:
        raise RuntimeError(_optimizer_idx_message(model))


def _optimizer_idx_message(model: Any) -> str:
    """The error for a ``training_step`` that still takes ``optimizer_idx`` (Lightning 1.x's multiple-optimizer
    loop). Under automatic optimization it is Lightning's; a module already in manual optimization is not told
    to switch to it."""
    if model.automatic_optimization:
        return (
            "Training with multiple optimizers is only supported with manual optimization. Remove the"
            " `optimizer_idx` argument from `training_step`, set `self.automatic_optimization = False` and"
            " access your optimizers in `training_step` with `opt1, opt2, ... = self.optimizers()`."
        )
    return (
        f"`{type(model).__name__}.training_step` takes an `optimizer_idx` argument, but the trainer calls"
        " `training_step(batch, batch_idx)` once per batch, with no optimizer index (Lightning 2.0 removed it)."
        " In manual optimization, which this module uses, that one call steps every optimizer itself: remove"
        " the `optimizer_idx` argument and get the optimizers with `opt1, opt2, ... = self.optimizers()`."
    )


def prepare_data(trainer: Trainer, run: Run) -> None:
    """``prepare_data`` once per node (or once in all), then every rank waits for it. As in Lightning, only
    an overridden one is called (and profiled)."""
    module, datamodule, strategy = trainer.lightning_module, trainer.datamodule, trainer.strategy
    local_rank_zero, global_rank_zero = strategy.local_rank == 0, strategy.global_rank == 0
    hooks = _hooks(run)
    if datamodule is not None and dataloaders.overridden(datamodule, "prepare_data"):
        per_node = getattr(datamodule, "prepare_data_per_node", True)
        if (per_node and local_rank_zero) or (not per_node and global_rank_zero):
            hooks.call_datamodule(datamodule, "prepare_data")
    per_node = getattr(module, "prepare_data_per_node", True)
    if hooks.module_overrides("prepare_data") and (
        (per_node and local_rank_zero) or (not per_node and global_rank_zero)
    ):
        hooks.call_module("prepare_data")
    strategy.barrier("prepare_data")  # all ranks: the others wait for the data


def _wandb_first(loggers: list[Any]) -> list[Any]:
    """``loggers`` with the ``WandbLogger``s first, as Lightning starts their experiments: wandb syncs TensorBoard's
    files only when its run started before any writer (wandb issue 1782)."""
    wandb = sys.modules.get("ember.loggers.wandb")  # not imported: no logger is a WandbLogger
    if wandb is None:
        return loggers
    return sorted(loggers, key=lambda logger: not isinstance(logger, wandb.WandbLogger))


def call_setup_hooks(trainer: Trainer, run: Run, stage: TrainerFn) -> None:
    """``setup(stage)`` on the datamodule, the callbacks and the module, on every rank."""
    for child in trainer.lightning_module.modules():
        if hasattr(child, "_device"):
            child._device = trainer.strategy.root_device
    for logger in _wandb_first(trainer.loggers):
        if getattr(logger, "_lazy_experiment", False) is True:  # not a Mock's attribute
            # its writer (and the backend import) waits for the first value; the folder exists now
            if trainer.is_global_zero and logger.log_dir and "://" not in str(logger.log_dir):
                os.makedirs(logger.log_dir, exist_ok=True)
        elif hasattr(logger, "experiment"):
            _ = logger.experiment
    trainer.strategy.barrier("pre_setup")
    if trainer.datamodule is not None:
        _hooks(run).call_datamodule(trainer.datamodule, "setup", stage=stage)
    known = list(trainer.callbacks)
    _hooks(run).call_callbacks("setup", stage=stage)  # by keyword, as Lightning calls them
    while added := [cb for cb in trainer.callbacks if not any(cb is old for old in known)]:
        # a callback's `setup` added callbacks (stable-pretraining's queues do): as in Lightning, whose loop
        # over `trainer.callbacks` reaches them, they get `setup` and every hook from here on
        _dispatch_to(trainer.callbacks, trainer, run, trainer.lightning_module)
        known = list(trainer.callbacks)
        _hooks(run).call_callbacks("setup", stage=stage, where=lambda cb: any(cb is new for new in added))
    _hooks(run).call_module("setup", stage=stage)
    if [id(cb) for cb in trainer.callbacks] != [id(cb) for cb in known]:  # the module's `setup` changed them
        _dispatch_to(trainer.callbacks, trainer, run, trainer.lightning_module)
    trainer.strategy.barrier("post_setup")


def _dispatch_to(callbacks: list[Callback], trainer: Trainer, run: Run, model: LightningModule) -> None:
    """The run's hooks go to ``callbacks`` (and ``model``) from here on."""
    for callback in callbacks:  # as Lightning: a callback can call `self.log` like the module it runs with
        callback.log, callback.log_dict = model.log, model.log_dict  # type: ignore[attr-defined]  # set at run time
    run.hooks = HookDispatcher(trainer, model, callbacks, run.profiler)


def call_teardown_hooks(trainer: Trainer, run: Run, stage: TrainerFn) -> None:
    """``teardown(stage)`` on the datamodule, the callbacks and the module; the loggers finish."""
    if trainer.datamodule is not None:
        _hooks(run).call_datamodule(trainer.datamodule, "teardown", stage=stage)
    _hooks(run).call_callbacks("teardown", stage=stage)
    _hooks(run).call_module("teardown", stage=stage)
    trainer.lightning_module._current_fx_name = None
    for logger in trainer.loggers:
        logger.finalize("success")


def setup_optimizers(trainer: Trainer, run: Run, model: Any) -> None:
    """``configure_optimizers``, normalised into optimizers and scheduler configs, and checked: the trainer's."""
    trainer.optimizers, trainer._lr_scheduler_configs = configured_optimizers(run, model)


def configured_optimizers(run: Run | None, model: Any) -> tuple[list[Any], list[Any]]:
    """The optimizers and scheduler configs of ``model``'s ``configure_optimizers``, normalised and checked."""
    from ember.core.hooks import overrides
    from ember.core.module import LightningModule

    # (a strategy set up by hand outside a Trainer call, as Lightning allows, has no run's hooks: called directly)
    hooks = run.hooks if run is not None else None
    returned = hooks.call_module("configure_optimizers") if hooks is not None else model.configure_optimizers()
    optimizers, configs, _ = configure_optimizers(returned, automatic=model.automatic_optimization)
    if model.automatic_optimization and len(optimizers) > 1:
        raise RuntimeError(
            "Training with multiple optimizers is only supported with manual optimization. Set"
            " `self.automatic_optimization = False`, then access your optimizers in `training_step` with"
            " `opt1, opt2, ... = self.optimizers()`."
        )
    check_non_torch_schedulers(model, configs, overrides(model, LightningModule, "lr_scheduler_step"))
    return optimizers, configs


def log_hyperparams(trainer: Trainer, model: Any) -> None:
    """The module's and datamodule's hyperparameters (and the graph) to every logger."""
    if not trainer.loggers or not trainer.enable_autolog_hparams:
        return
    datamodule = trainer.datamodule
    # `_class_path`, the class `LightningCLI` chose for each, is its own record, not a hyperparameter: as in
    # Lightning, it is neither compared nor logged
    hparams: dict[str, Any] = {}
    # as in Lightning, a module or datamodule that called `save_hyperparameters` (with `logger=True`) has its
    # hyperparameters logged even when none were left (`ignore=` took them all): `hparams.yaml` holds `{}`
    logs = getattr(model, "_log_hyperparams", False)
    if logs:
        hparams.update((k, v) for k, v in model.hparams_initial.items() if k != "_class_path")
    if datamodule is not None and getattr(datamodule, "_log_hyperparams", False):
        logs = True
        dm_hparams = {k: v for k, v in datamodule.hparams_initial.items() if k != "_class_path"}
        overlap = [k for k in dm_hparams if k in hparams and _differ(hparams[k], dm_hparams[k])]
        if overlap:
            raise RuntimeError(
                f"Error while merging hparams: the keys {overlap} are present in both the LightningModule's and"
                " LightningDataModule's hparams but have different values."
            )
        hparams.update(dm_hparams)
    for logger in trainer.loggers:
        if logs:
            logger.log_hyperparams(hparams)
        if hasattr(logger, "log_graph"):
            logger.log_graph(model)
        logger.save()  # as Lightning: a run that fails before its first log still leaves its version folder


def _differ(module_value: Any, datamodule_value: Any) -> bool:
    """Whether the module's and the datamodule's values of one hyperparameter disagree: as in Lightning, a value
    of another type differs; two tensors differ in dtype, shape or a value (Lightning compares their
    identity, and since the saved hyperparameters are copies, even one tensor given to both differed)."""
    if type(module_value) is not type(datamodule_value):
        return True
    if isinstance(module_value, torch.Tensor):
        same_kind = module_value.dtype == datamodule_value.dtype and module_value.shape == datamodule_value.shape
        return not (same_kind and torch.equal(module_value.cpu(), datamodule_value.cpu()))
    return bool(module_value != datamodule_value)


# =====================================================================================
# the stage
# =====================================================================================
def run_stage(trainer: Trainer, run: Run, model: Any) -> Any:
    """The loop of this entry point; ``validate``/``test`` also print their results table."""
    trainer.strategy.barrier("run-stage")
    model.zero_grad()
    if run.fn == TrainerFn.FITTING:
        anomaly = torch.autograd.set_detect_anomaly(True) if trainer.detect_anomaly else contextlib.nullcontext()
        with anomaly:
            loop.run_fit(trainer, run)
        return None
    if run.fn == TrainerFn.PREDICTING:
        return loop.run_predict(trainer, run)
    stage = RunningStage.VALIDATING if run.fn == TrainerFn.VALIDATING else RunningStage.TESTING
    outputs = loop.run_evaluation(trainer, run, stage)
    # the loop object holds `verbose` and prints, with the tensors, as in Lightning: a library's own loop
    # (`trainer.test_loop = ...`) prints its own table
    view = trainer.validate_loop if stage == RunningStage.VALIDATING else trainer.test_loop
    if view.verbose and trainer.is_global_zero and outputs:
        view._print_results(outputs, _fn(run).value)
    return [{k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in d.items()} for d in outputs]


def _fn(run: Run) -> TrainerFn:
    """The entry point running: what ``setup``/``teardown`` hooks and the profiler get as ``stage``, as in
    Lightning (a ``TrainerFn``, equal to ``"fit"``, ``"validate"``, ...)."""
    assert run.fn is not None
    return run.fn


def _hooks(run: Run) -> HookDispatcher:
    assert run.hooks is not None, "the run's hooks are set when it starts"
    return run.hooks
