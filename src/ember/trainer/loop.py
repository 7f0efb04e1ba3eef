"""The loops: fit -> epoch -> batch -> step, then evaluation and prediction, top to bottom.

Everything a loop needs to decide once (which hooks are overridden, whether batches must move,
which precision context to enter) is decided before its first batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from ember.profilers.profiler import profiled, profiled_iterator
from ember.trainer.data import set_sampler_epoch
from ember.trainer.states import RunningStage
from ember.utilities.apply_func import move_data_to_device
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn
from ember.utilities.seed import collect_rng_states, isolate_rng, set_rng_states

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


# =====================================================================================
# fit
# =====================================================================================
def run_fit(t: Trainer) -> None:
    """Sanity check, then epochs until a limit or ``should_stop`` ends training."""
    hooks = t._hooks
    if t._should_sanity_check():
        run_sanity_check(t)

    if t.limit_train_batches == 0:
        return  # training disabled: not even the dataloader is requested
    train_loader = t._setup_train_dataloader()
    if t.num_training_batches == 0:
        rank_zero_info("`Trainer.fit` stopped: No training batches.")
        return
    resuming = t._resume is not None
    if not resuming:
        # Lightning creates the first epoch's iterator before `on_train_start` (it draws from the RNG)
        t._epoch_rng = collect_rng_states()
        t._train_iterator = iter(train_loader)
    if t._should_check_val_epoch() and t.val_dataloaders is None:
        t._setup_eval_dataloaders(RunningStage.VALIDATING)
    t.state.stage = RunningStage.TRAINING
    hooks.call_both("on_train_start")

    profiler = t._profiling
    while not _fit_done(t):
        if profiler is None:
            run_training_epoch(t)
        else:
            with profiler.profile("run_training_epoch"):
                run_training_epoch(t)

    hooks.call_both("on_train_end")


def _fit_done(t: Trainer) -> bool:
    progress = t._progress
    if t.max_steps != -1 and progress.global_step >= t.max_steps:
        rank_zero_info(f"`Trainer.fit` stopped: `max_steps={t.max_steps!r}` reached.")
        return True
    if t.max_epochs is not None and t.max_epochs != -1 and progress.epoch >= t.max_epochs:
        rank_zero_info(f"`Trainer.fit` stopped: `max_epochs={t.max_epochs!r}` reached.")
        return True
    return bool(t.should_stop and t._can_stop_early())


def run_training_epoch(t: Trainer) -> None:
    """One epoch: batches, validation checks, then the epoch-end hooks and logs."""
    hooks, progress, module = t._hooks, t._progress, t._module
    resume = t._resume
    t._resume = None
    loader = t.train_dataloader
    if t._reload_train_dataloader_now():
        loader = t._setup_train_dataloader()
        t._train_iterator = None
    set_sampler_epoch(loader, progress.epoch)

    mode = resume["mode"] if resume is not None else None
    if mode in ("exact", "fresh"):
        # a mid-epoch checkpoint: no epoch-start hooks; the data continues after the batches trained on
        if mode == "exact":
            # the same iterator as before the interruption, fast-forwarded, then the RNG as it was
            set_rng_states(resume["epoch_rng"])
            t._epoch_rng = resume["epoch_rng"]
            t._train_iterator = iter(loader)
            _skip_batches(t._train_iterator, progress.epoch_batches)
            set_rng_states(resume["rng"])
        else:
            t._train_iterator = iter(loader)
    else:
        if resume is not None and resume["rng"] is not None:
            set_rng_states(resume["rng"])
        progress.epoch_batches = 0
        progress.epoch_done = False
        t._train_results.reset()
        hooks.call_both("on_train_epoch_start")
        if t._train_iterator is None:
            t._epoch_rng = collect_rng_states()
            t._train_iterator = iter(loader)
    iterator, t._train_iterator = t._train_iterator, None
    profiler = t._profiling
    iterator = profiled_iterator(profiler, "[_TrainingEpochLoop].train_dataloader_next", iterator)

    t.state.stage = RunningStage.TRAINING
    t.training = True
    results = t._train_results
    t._results = results
    t._metrics.live = results  # step values reach callback_metrics when somebody reads them
    total = t.num_training_batches
    step_fn = profiled(profiler, "run_training_batch", _make_training_step(t))
    transfer = _make_transfer(t, 0)
    batch_start_cbs = hooks.callback_fns("on_train_batch_start")
    batch_end_cbs = hooks.callback_fns("on_train_batch_end")
    module_batch_start = hooks.module_overrides("on_train_batch_start")
    module_batch_end = hooks.module_overrides("on_train_batch_end")
    step_schedulers = [c for c in t.lr_scheduler_configs if c.interval == "step" and not c.reduce_on_plateau]
    epoch_schedulers = [c for c in t.lr_scheduler_configs if c.interval == "epoch" and not c.reduce_on_plateau]
    plateau_step = [c for c in t.lr_scheduler_configs if c.interval == "step" and c.reduce_on_plateau]
    automatic = module.automatic_optimization
    log_every = t.log_every_n_steps
    loggers = t.loggers
    stop_requested = t._stop_flag.checker(t)
    set_fx = object.__setattr__  # the running hook's name, without nn.Module.__setattr__
    max_steps = t.max_steps
    validation_this_epoch = t._should_check_val_epoch()
    # the common case, an integer batch interval within the epoch, is checked inline per step
    simple_interval = t._val_check_seconds is None and t.check_val_every_n_epoch is not None
    val_every = int(t.val_check_batch) if simple_interval and t.val_check_batch != float("inf") else 0

    batch_idx = progress.epoch_batches
    while batch_idx < total:
        try:
            batch = next(iterator)
        except StopIteration:
            break
        is_last = batch_idx + 1 >= total
        if transfer is not None:
            batch = transfer(batch)
        results.batch = batch
        results.batch_size = None

        for fn in batch_start_cbs:
            set_fx(module, "_current_fx_name", "on_train_batch_start")
            fn(t, module, batch, batch_idx)
        if module_batch_start and hooks.call_module("on_train_batch_start", batch, batch_idx) == -1:
            break

        accumulating = automatic and (batch_idx + 1) % t.accumulate_grad_batches != 0 and not is_last
        outputs = step_fn(batch, batch_idx, accumulating)
        # the batch is trained on: a checkpoint from here on resumes after it
        progress.epoch_batches = batch_idx + 1
        progress.total_batches += 1

        if automatic and not accumulating:
            for config in step_schedulers:
                if (batch_idx + 1) % config.frequency == 0:
                    _step_scheduler(t, config, None)
            if is_last:
                for config in epoch_schedulers:
                    if (progress.epoch + 1) % config.frequency == 0:
                        _step_scheduler(t, config, None)

        for fn in batch_end_cbs:
            set_fx(module, "_current_fx_name", "on_train_batch_end")
            fn(t, module, outputs, batch, batch_idx)
        if module_batch_end:
            hooks.call_module("on_train_batch_end", outputs, batch, batch_idx)
        set_fx(module, "_current_fx_name", None)
        results.batch = None

        if (
            loggers
            and not (accumulating and automatic)
            and log_every
            and ((progress.batches_that_stepped + 1) % log_every == 0 or t.should_stop)
        ):
            t._metrics.log_step(results)

        if validation_this_epoch and (
            ((batch_idx + 1) % val_every == 0 if val_every else t._should_check_val(batch_idx, is_last))
            or (t.should_stop and t._can_stop_early())  # stopping mid-epoch: validate once more
        ):
            if not accumulating:
                hooks.call_module("on_validation_model_zero_grad")
            t._metrics.flush_step(results)
            run_evaluation(t, RunningStage.VALIDATING)
            t.state.stage = RunningStage.TRAINING
            t.training = True
            t._results = results
            t._metrics.live = results
        if plateau_step and not accumulating and automatic:
            for config in plateau_step:
                if (batch_idx + 1) % config.frequency == 0:
                    _step_plateau(t, config)
        if not accumulating:
            progress.batches_that_stepped += 1
        if stop_requested():
            t._on_stop_request()
        batch_idx += 1
        if max_steps != -1 and progress.global_step >= max_steps:
            break
        if t.should_stop and t._can_stop_early():
            break
        if t.should_stop and batch_idx < total:
            t._warn_min_not_reached()
    del iterator

    # ---- epoch end --------------------------------------------------------------------
    progress.epoch_done = True
    t._metrics.live = None
    t._metrics.flush_step(results)
    t._metrics.epoch_end = results  # epoch values are visible in callback_metrics from here
    # EarlyStopping and checkpoint callbacks run after the module, so they see what it logged
    hooks.call_callbacks("on_train_epoch_end", where=lambda cb: not _is_monitoring(cb))
    hooks.call_module("on_train_epoch_end")
    hooks.call_callbacks("on_train_epoch_end", where=_is_monitoring)
    t._metrics.epoch_end = None
    t._metrics.apply_epoch(results)
    if automatic and progress.epoch_batches >= total:
        for config in t.lr_scheduler_configs:
            if config.interval == "epoch" and config.reduce_on_plateau and (progress.epoch + 1) % config.frequency == 0:
                _step_plateau(t, config)
    if loggers:
        progress.batches_that_stepped -= 1  # epoch values are logged at the step of the epoch's last batch
        t._metrics.log_epoch(results)
        progress.batches_that_stepped += 1
    results.reset()
    progress.epoch += 1
    progress.epoch_batches = 0
    progress.epoch_done = False
    if stop_requested():
        t._on_stop_request()


def _is_monitoring(cb: Any) -> bool:
    from ember.callbacks.checkpoint import Checkpoint
    from ember.callbacks.early_stopping import EarlyStopping

    return isinstance(cb, (Checkpoint, EarlyStopping))


def _skip_batches(iterator: Any, count: int) -> None:
    """Advance ``iterator`` past ``count`` batches without running the model on them."""
    from torch.utils.data.dataloader import _SingleProcessDataLoaderIter

    if isinstance(iterator, _SingleProcessDataLoaderIter):
        # in-process loading: advance the sampler only; the RNG is restored right after anyway
        for _ in range(count):
            next(iterator._sampler_iter)
            iterator._num_yielded += 1
        return
    for _ in range(count):
        next(iterator)


def _make_transfer(t: Trainer, dataloader_idx: int) -> Callable[[Any], Any] | None:
    """The batch-transfer function, or None when batches can stay where the loader puts them."""
    before = _transfer_hook(t, "on_before_batch_transfer")
    custom = _transfer_hook(t, "transfer_batch_to_device")
    after = _transfer_hook(t, "on_after_batch_transfer")
    device = t.strategy.root_device
    convert = t._precision.convert_input
    needs_convert = t._precision._module_dtype is not None
    if not (before or custom or after) and device.type == "cpu" and not needs_convert:
        return None

    def transfer(batch: Any) -> Any:
        if needs_convert:
            batch = convert(batch)
        if before:
            batch = before(batch, dataloader_idx)
        if custom:
            batch = custom(batch, device, dataloader_idx)
        else:
            batch = move_data_to_device(batch, device)
        if after:
            batch = after(batch, dataloader_idx)
        return batch

    return profiled(t._profiling, f"[Strategy]{type(t.strategy).__name__}.batch_to_device", transfer)


def _transfer_hook(t: Trainer, name: str) -> Callable[..., Any] | None:
    """The datamodule's batch-transfer hook if it overrides it (it wins, as in Lightning), else the module's."""
    from ember.core.datamodule import LightningDataModule
    from ember.core.hooks import overrides

    hooks, datamodule = t._hooks, t.datamodule
    module_has = hooks.module_overrides(name)
    if datamodule is not None and overrides(datamodule, LightningDataModule, name):
        if module_has:
            rank_zero_warn(
                f"You have overridden `{name}` in both `LightningModule` and `LightningDataModule`."
                " It will use the implementation from `LightningDataModule` instance."
            )
        return getattr(datamodule, name)
    if not module_has:
        return None
    if datamodule is not None:
        rank_zero_warn(
            f"You have overridden `{name}` in `LightningModule` but have passed in a `LightningDataModule`."
            " It will use the implementation from `LightningModule` instance."
        )
    return lambda *args: hooks.call_module(name, *args)


# =====================================================================================
# one training step
# =====================================================================================
def _make_training_step(t: Trainer) -> Callable[[Any, int, bool], Any]:
    """Build the function that trains on one batch, with every per-run decision taken now."""
    hooks, module, precision, strategy = t._hooks, t._module, t._precision, t.strategy
    profiler = t._profiling
    strategy_action = f"[Strategy]{type(strategy).__name__}."
    module_action = f"[LightningModule]{type(module).__name__}."
    training_step = profiled(profiler, strategy_action + "training_step", strategy.training_step_fn(module))
    forward_context = precision.forward_context
    identity_precision = precision.is_identity
    need_outputs = bool(hooks.callback_fns("on_train_batch_end")) or hooks.module_overrides("on_train_batch_end")

    if not module.automatic_optimization:

        def manual_step(batch: Any, batch_idx: int, accumulating: bool) -> Any:
            module._current_fx_name = "training_step"
            if identity_precision:
                output = training_step(batch, batch_idx)
            else:
                with forward_context():
                    output = training_step(batch, batch_idx)
            module._current_fx_name = None
            return _manual_outputs(output)

        return manual_step

    optimizer = t.optimizers[0]
    accumulate = t.accumulate_grad_batches
    before_zero_cbs = hooks.callback_fns("on_before_zero_grad")
    before_backward_cbs = hooks.callback_fns("on_before_backward")
    after_backward_cbs = hooks.callback_fns("on_after_backward")
    before_step_cbs = hooks.callback_fns("on_before_optimizer_step")
    mod_before_zero = hooks.module_overrides("on_before_zero_grad")
    mod_zero_grad = hooks.module_overrides("optimizer_zero_grad")
    mod_before_backward = hooks.module_overrides("on_before_backward")
    mod_backward = hooks.module_overrides("backward")
    mod_after_backward = hooks.module_overrides("on_after_backward")
    mod_before_step = hooks.module_overrides("on_before_optimizer_step")
    mod_clipping = hooks.module_overrides("configure_gradient_clipping") or hooks.module_overrides("clip_gradients")
    mod_optimizer_step = hooks.module_overrides("optimizer_step")
    clip_val, clip_algorithm = t.gradient_clip_val, t.gradient_clip_algorithm
    clipping = mod_clipping or bool(clip_val)
    has_before_step = bool(before_step_cbs) or mod_before_step or clipping
    scaler = precision.scaler
    # optimizers that call their closure exactly once: call it, then step() (same arithmetic, no wrapper);
    # a profiler records the closure inside the optimizer step, as Lightning's report shows it
    direct_step = identity_precision and precision.steps_directly(optimizer) and profiler is None
    zero_grad = profiled(profiler, module_action + "optimizer_zero_grad", optimizer.zero_grad)
    optimizer_step = profiled(profiler, module_action + "optimizer_step", precision.optimizer_step)
    backward: Callable[[Tensor], Any] | None = None  # None: `loss.backward()` itself
    if mod_backward:

        def backward(loss: Tensor) -> None:
            hooks.call_module("backward", loss)

    if profiler is not None:
        backward = profiled(profiler, strategy_action + "backward", backward or Tensor.backward)
    progress = t._progress
    set_fx = object.__setattr__  # the running hook's name, without nn.Module.__setattr__
    current: list[Any] = [None, 0]  # the batch and batch index the closure trains on
    state: list[Any] = [None, None]  # the closure's loss and the extra outputs of training_step

    def closure() -> Tensor | None:
        batch, batch_idx = current
        set_fx(module, "_current_fx_name", "training_step")
        if identity_precision:
            output = training_step(batch, batch_idx)
        else:
            with forward_context():
                output = training_step(batch, batch_idx)
        if type(output) is Tensor and output.ndim == 0:
            loss, extra = output, None
        else:
            loss, extra = _split_training_output(output)
        if batch_idx % accumulate == 0:
            for fn in before_zero_cbs:
                set_fx(module, "_current_fx_name", "on_before_zero_grad")
                fn(t, module, optimizer)
            if mod_before_zero:
                hooks.call_module("on_before_zero_grad", optimizer)
            if mod_zero_grad:
                hooks.call_module("optimizer_zero_grad", progress.epoch, batch_idx, optimizer)
            else:
                zero_grad()
        state[1] = extra
        if loss is None:
            rank_zero_warn("`training_step` returned `None`. If this was on purpose, ignore this warning...")
            set_fx(module, "_current_fx_name", None)
            state[0] = None
            return None
        if accumulate != 1:
            loss = loss / accumulate
        for fn in before_backward_cbs:
            set_fx(module, "_current_fx_name", "on_before_backward")
            fn(t, module, loss)
        if mod_before_backward:
            hooks.call_module("on_before_backward", loss)
        scaled = loss if scaler is None else scaler.scale(loss)
        if backward is None:
            scaled.backward()
        else:
            backward(scaled)
        for fn in after_backward_cbs:
            set_fx(module, "_current_fx_name", "on_after_backward")
            fn(t, module)
        if mod_after_backward:
            hooks.call_module("on_after_backward")
        set_fx(module, "_current_fx_name", None)
        state[0] = loss
        return loss

    def before_optimizer_step() -> None:
        for fn in before_step_cbs:
            set_fx(module, "_current_fx_name", "on_before_optimizer_step")
            fn(t, module, optimizer)
        if mod_before_step:
            hooks.call_module("on_before_optimizer_step", optimizer)
        if clipping:
            if mod_clipping:
                hooks.call_module(
                    "configure_gradient_clipping",
                    optimizer,
                    gradient_clip_val=clip_val,
                    gradient_clip_algorithm=clip_algorithm,
                )
            else:
                module.clip_gradients(optimizer, clip_val, clip_algorithm)
        set_fx(module, "_current_fx_name", None)

    def step(batch: Any, batch_idx: int, accumulating: bool) -> Any:
        current[0] = batch
        current[1] = batch_idx
        if accumulating:
            with strategy.block_backward_sync():
                closure()
        elif direct_step and not mod_optimizer_step:
            closure()
            if has_before_step:
                before_optimizer_step()
            optimizer.step()
            progress.global_step += 1
        elif mod_optimizer_step:
            wrapped = t._lightning_optimizers[0]
            wrapped._closure_hook = before_optimizer_step
            state[0] = state[1] = _NOT_RUN
            hooks.call_module("optimizer_step", progress.epoch, batch_idx, wrapped, closure)
            if state[1] is _NOT_RUN:
                raise MisconfigurationException(
                    "The closure hasn't been executed. HINT: did you call `optimizer_closure()` in your"
                    " `optimizer_step` hook? It could also happen because the `optimizer.step(optimizer_closure)`"
                    " call did not execute it internally."
                )
            progress.global_step += 1
        else:
            optimizer_step(optimizer, closure, before_optimizer_step)
            progress.global_step += 1
        current[0] = None
        if not need_outputs:
            return None
        loss, extra = state
        if loss is None and not extra:
            return None
        outputs = {"loss": loss.detach() if loss is not None else None}
        if extra:
            outputs.update(extra)
        return outputs

    return step


_NOT_RUN = object()


def _split_training_output(output: Any) -> tuple[Tensor | None, dict[str, Any]]:
    if isinstance(output, Tensor):
        if output.ndim != 0 and output.numel() != 1:
            raise MisconfigurationException(
                f"`training_step` returned a tensor of shape {tuple(output.shape)}: the loss must be a scalar."
                " Reduce it first, e.g. `return loss.mean()`."
            )
        return output, {}
    if isinstance(output, Mapping):
        if "loss" not in output:
            raise MisconfigurationException(
                "In automatic_optimization, when `training_step` returns a dict, the 'loss' key needs to be present"
            )
        loss = output["loss"]
        extra = {k: v for k, v in output.items() if k != "loss"}
        if isinstance(loss, Tensor) and loss.ndim != 0 and loss.numel() != 1:
            raise MisconfigurationException(
                f"`training_step` returned a 'loss' of shape {tuple(loss.shape)}: the loss must be a scalar."
            )
        return loss, extra
    if output is None:
        return None, {}
    raise MisconfigurationException(
        "In automatic optimization, `training_step` must return a Tensor, a dict, or None (where the step will be"
        f" skipped). It returned a {type(output).__name__}."
    )


def _manual_outputs(output: Any) -> Any:
    if isinstance(output, Mapping):
        extra = dict(output)
    elif isinstance(output, Tensor):
        extra = {"loss": output}
    elif output is None:
        return {}
    else:
        raise MisconfigurationException(
            "In manual optimization, `training_step` must either return a Tensor, a dict or have no return."
        )
    if isinstance(extra.get("loss"), Tensor):
        extra["loss"] = extra["loss"].detach()
    return extra


def _step_scheduler(t: Trainer, config: Any, metric: Any) -> None:
    if t._custom_scheduler_step:
        t._hooks.call_module("lr_scheduler_step", config.scheduler, metric)
    elif metric is None:
        config.scheduler.step()
    else:
        config.scheduler.step(metric)


def _step_plateau(t: Trainer, config: Any) -> None:
    value = t.callback_metrics.get(config.monitor)
    if value is None:
        if config.strict:
            raise MisconfigurationException(
                f"ReduceLROnPlateau conditioned on metric {config.monitor} which is not available. Available"
                f" metrics are: {list(t.callback_metrics)}. Condition can be set using `monitor` key in lr"
                " scheduler dict"
            )
        rank_zero_warn(
            f"ReduceLROnPlateau conditioned on metric {config.monitor} which is not available but strict is set"
            " to `False`. Skipping learning rate update.",
            category=RuntimeWarning,
        )
        return
    _step_scheduler(t, config, value)


# =====================================================================================
# sanity check, validation and test
# =====================================================================================
def run_sanity_check(t: Trainer) -> None:
    """A few validation batches before training, so a broken validation_step fails early."""
    stage = t.state.stage
    t.sanity_checking = True
    t._reset_metrics()
    t._hooks.call_callbacks("on_sanity_check_start")
    with isolate_rng():
        run_evaluation(t, RunningStage.SANITY_CHECKING)
    t._hooks.call_callbacks("on_sanity_check_end")
    t._reset_metrics()
    t.sanity_checking = False
    t.state.stage = stage


def run_evaluation(t: Trainer, stage: RunningStage) -> list[dict[str, Any]]:
    """The validation or test loop over every dataloader; returns one metrics dict per dataloader."""
    hooks, module = t._hooks, t._module
    fn_stage = RunningStage.VALIDATING if stage == RunningStage.SANITY_CHECKING else stage
    prefix = "validation" if fn_stage == RunningStage.VALIDATING else "test"
    t.state.stage = stage
    if stage == RunningStage.SANITY_CHECKING:
        t.sanity_checking = True
    elif stage == RunningStage.VALIDATING:
        t.validating = True
    else:
        t.testing = True
    loaders = t._eval_dataloaders(fn_stage)
    max_batches = t.num_sanity_val_batches if stage == RunningStage.SANITY_CHECKING else t._eval_num_batches(fn_stage)
    if not loaders or sum(max_batches) == 0:
        return []
    results = t._val_results if fn_stage == RunningStage.VALIDATING else t._test_results
    results.reset()
    previous_results = t._results
    t._results = results
    multiple = len(loaders) > 1
    step_name = f"{prefix}_step"
    profiler = t._profiling
    step_fn = profiled(
        profiler, f"[Strategy]{type(t.strategy).__name__}.{step_name}", t.strategy.eval_step_fn(module, step_name)
    )
    fetch_action = f"[_EvaluationLoop].{'val' if fn_stage == RunningStage.VALIDATING else 'test'}_next"
    batch_start_cbs = hooks.callback_fns(f"on_{prefix}_batch_start")
    batch_end_cbs = hooks.callback_fns(f"on_{prefix}_batch_end")
    module_batch_start = hooks.module_overrides(f"on_{prefix}_batch_start")
    module_batch_end = hooks.module_overrides(f"on_{prefix}_batch_end")
    logging_steps = bool(t.loggers) and stage != RunningStage.SANITY_CHECKING
    seen = t._eval_steps_seen
    outputs_per_loader: list[dict[str, Any]] = []

    iterator = profiled_iterator(profiler, fetch_action, iter(loaders[0]))
    modes = _eval_mode(t, prefix)
    hooks.call_both(f"on_{prefix}_start")
    hooks.call_both(f"on_{prefix}_epoch_start")
    with t._eval_grad_context():
        for dataloader_idx, loader in enumerate(loaders):
            if dataloader_idx > 0:
                iterator = profiled_iterator(profiler, fetch_action, iter(loader))
            results.dataloader_idx = dataloader_idx if multiple else None
            transfer = _make_transfer(t, dataloader_idx)
            extra = (dataloader_idx,) if multiple else ()
            limit = max_batches[dataloader_idx]
            batch_idx = 0
            while batch_idx < limit:
                try:
                    batch = next(iterator)
                except StopIteration:
                    break
                if transfer is not None:
                    batch = transfer(batch)
                results.batch = batch
                results.batch_size = None
                for fn in batch_start_cbs:
                    module._current_fx_name = f"on_{prefix}_batch_start"
                    fn(t, module, batch, batch_idx, *extra)
                if module_batch_start:
                    hooks.call_module(f"on_{prefix}_batch_start", batch, batch_idx, *extra)
                module._current_fx_name = step_name
                with t._precision.forward_context():
                    output = step_fn(batch, batch_idx, *extra)
                for fn in batch_end_cbs:
                    module._current_fx_name = f"on_{prefix}_batch_end"
                    fn(t, module, output, batch, batch_idx, *extra)
                if module_batch_end:
                    hooks.call_module(f"on_{prefix}_batch_end", output, batch, batch_idx, *extra)
                module._current_fx_name = None
                results.batch = None
                if logging_steps:
                    key = (fn_stage, dataloader_idx)
                    seen[key] = seen.get(key, 0) + 1
                    t._metrics.log_eval_step(results, seen[key] - 1)
                batch_idx += 1
                if stage != RunningStage.SANITY_CHECKING and fn_stage == RunningStage.VALIDATING:
                    t._evaluation_batches_run = True
            # this dataloader's last step values and its epoch values
            if stage != RunningStage.SANITY_CHECKING:
                t._metrics.flush_step(results)
            outputs_per_loader.append(t._metrics.eval_epoch_outputs(results, stage))
        del iterator
        results.dataloader_idx = None
        hooks.call_both(f"on_{prefix}_epoch_end")
        end_outputs = t._metrics.eval_epoch_outputs(results, stage)
    merged: dict[str, Any] = {}
    for outputs in outputs_per_loader:
        merged.update(outputs)
    merged.update(end_outputs)
    for outputs in outputs_per_loader:
        outputs.update(end_outputs)
    if stage != RunningStage.SANITY_CHECKING:
        t._metrics.write(merged, None)
    hooks.call_both(f"on_{prefix}_end")
    _train_mode(t, prefix, modes)
    t._results = previous_results
    if stage == RunningStage.VALIDATING and t.state.fn == "fit":
        t._evaluation_has_run = True
        t._progress.val_checks += 1
    return outputs_per_loader


def _eval_mode(t: Trainer, prefix: str) -> dict[Any, bool]:
    modes = {m: m.training for m in t.model.modules()}
    t._hooks.call_module(f"on_{prefix}_model_eval")
    return modes


def _train_mode(t: Trainer, prefix: str, modes: dict[Any, bool]) -> None:
    name = f"on_{prefix}_model_train"
    if t._hooks.module_overrides(name):
        t._hooks.call_module(name)
        return
    for module, training in modes.items():
        module.training = training


# =====================================================================================
# predict
# =====================================================================================
def run_predict(t: Trainer, return_predictions: bool) -> list[Any] | None:
    """Run ``predict_step`` over every predict dataloader and collect the outputs."""
    hooks, module = t._hooks, t._module
    t.state.stage = RunningStage.PREDICTING
    t.predicting = True
    loaders = t._eval_dataloaders(RunningStage.PREDICTING)
    max_batches = t._eval_num_batches(RunningStage.PREDICTING)
    if not loaders or sum(max_batches) == 0:
        return None
    multiple = len(loaders) > 1
    predictions: list[list[Any]] = [[] for _ in loaders]
    t._results = None
    profiler = t._profiling
    step_fn = profiled(
        profiler, f"[Strategy]{type(t.strategy).__name__}.predict_step", t.strategy.eval_step_fn(module, "predict_step")
    )
    batch_indices: list[list[list[int]]] = [[] for _ in loaders]
    t.predict_batch_indices = batch_indices
    iterator = profiled_iterator(profiler, "[_PredictionLoop].predict_next", iter(loaders[0]))
    hooks.call_module("on_predict_model_eval")
    hooks.call_both("on_predict_start")
    hooks.call_both("on_predict_epoch_start")
    with t._eval_grad_context():
        for dataloader_idx, loader in enumerate(loaders):
            if dataloader_idx > 0:
                iterator = profiled_iterator(profiler, "[_PredictionLoop].predict_next", iter(loader))
            transfer = _make_transfer(t, dataloader_idx)
            extra = (dataloader_idx,) if multiple else ()
            indices = _batch_indices_iter(loader)
            for batch_idx in (
                range(max_batches[dataloader_idx]) if max_batches[dataloader_idx] != math.inf else _count()
            ):
                try:
                    batch = next(iterator)
                except StopIteration:
                    break
                if indices is not None:
                    batch_indices[dataloader_idx].append(next(indices, []))
                if transfer is not None:
                    batch = transfer(batch)
                hooks.call_callbacks("on_predict_batch_start", batch, batch_idx, *extra)
                if hooks.module_overrides("on_predict_batch_start"):
                    hooks.call_module("on_predict_batch_start", batch, batch_idx, *extra)
                module._current_fx_name = "predict_step"
                with t._precision.forward_context():
                    output = step_fn(batch, batch_idx, *extra)
                module._current_fx_name = None
                if return_predictions:
                    predictions[dataloader_idx].append(output)
                hooks.call_callbacks("on_predict_batch_end", output, batch, batch_idx, *extra)
                if hooks.module_overrides("on_predict_batch_end"):
                    hooks.call_module("on_predict_batch_end", output, batch, batch_idx, *extra)
        del iterator
    t.predictions = predictions
    hooks.call_both("on_predict_epoch_end")
    hooks.call_both("on_predict_end")
    if not return_predictions:
        return None
    return predictions if multiple else predictions[0]


def _batch_indices_iter(loader: Any) -> Any:
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is None:
        return None
    return iter(list(batch_sampler))


def _count():
    n = 0
    while True:
        yield n
        n += 1
