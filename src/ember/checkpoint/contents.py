"""What a checkpoint holds (Lightning's layout plus Ember's resume state), and restoring a run from it.

``dump_checkpoint`` builds the dict ``Trainer.save_checkpoint`` writes; restoring happens in two
parts, as in Lightning: the module, datamodule and callback states before ``configure_optimizers``,
then the optimizers, schedulers, scaler and loop counters after ``on_fit_start``.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from ember._version import LIGHTNING_VERSION, __version__
from ember.checkpoint.files import EMBER_KEY
from ember.core.saving import hparams_to_save, load_module_state
from ember.trainer.arguments import has_epoch_limit
from ember.trainer.data import data_rng_states
from ember.trainer.dataloaders import train_loader_states
from ember.trainer.dispatch import HookDispatcher
from ember.trainer.run import Resume
from ember.trainer.states import RunningStage, TrainerFn
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn
from ember.utilities.warnings import PossibleUserWarning

_log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ember.trainer.run import Progress, Run
    from ember.trainer.trainer import Trainer

# The Lightning checkpoint format this layout matches; Lightning reads it to pick migrations.
LIGHTNING_FORMAT_VERSION = LIGHTNING_VERSION


def _progress(ready: int, completed: int, started: int | None = None, processed: int | None = None) -> dict[str, int]:
    out = {"ready": ready, "completed": completed}
    if started is not None:
        out["started"] = started
    if processed is not None:
        out["processed"] = processed
    return out


# How far Lightning's counters have gone into the training batch under way, by the hook running when a
# checkpoint is written there: the batch is counted ready before `on_train_batch_start` (1), started before
# its step (2); the window's zero_grad is counted ready before `on_before_zero_grad` (3), started before
# `optimizer_zero_grad` (4) and completed before backward (5). The transfer hooks run before any of it (0).
# Ember counts the batch once it has trained on it.
_BATCH_PHASES = {
    "on_before_batch_transfer": 0,
    "transfer_batch_to_device": 0,
    "on_after_batch_transfer": 0,
    "on_train_batch_start": 1,
    "optimizer_step": 2,
    "training_step": 2,
    "on_before_zero_grad": 3,
    "optimizer_zero_grad": 4,
    "on_before_backward": 5,
    "backward": 5,
    "on_after_backward": 5,
    "on_before_optimizer_step": 5,
    "configure_gradient_clipping": 5,
}
_MANUAL_STEP_HOOKS = ("on_before_optimizer_step", "configure_gradient_clipping")


def _batch_phase(t: Trainer, run: Run) -> int | None:
    """Where the training batch under way stands (``_BATCH_PHASES``), or None outside one."""
    module = t.lightning_module
    if run.fn != TrainerFn.FITTING or t.state.stage != RunningStage.TRAINING or module is None:
        return None
    p = run.progress
    if run.between_epochs or p.epoch_done or run.batch_idx != p.epoch_batches:  # none fetched, or trained on
        return None
    return _BATCH_PHASES.get(module._current_fx_name or "", 2)  # other code inside the batch: its step


def _optimizer_counts(t: Trainer, run: Run, phase: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Lightning's automatic optimization counts: the optimizer steps and the zero_grad calls (one a window)."""
    p = run.progress
    steps, epoch_steps = p.global_step, p.global_step - p.epoch_start_step
    accumulate = t.accumulate_grad_batches
    step_ready = 0
    # a window whose zero_grad ran and whose step has not: its batches so far
    zero_grad = (p.window_open(accumulate),) * 3  # on top of the steps: (ready, started, completed)
    if phase is not None and phase >= 2:
        if (run.batch_idx + 1) % accumulate == 0 or run.is_last_batch:
            step_ready = 1  # the step under way (it runs the closure)
        if run.batch_idx % accumulate == 0:  # this batch starts the window
            zero_grad = (int(phase >= 3), int(phase >= 4), int(phase >= 5))
    optimizer_step = {
        "total": _progress(steps + step_ready, steps),
        "current": _progress(epoch_steps + step_ready, epoch_steps),
    }
    ready, started, completed = zero_grad
    # and the windows that epochs ended inside, which no step closed
    windows, epoch_windows = steps + p.unstepped_windows, epoch_steps + p.epoch_unstepped_windows
    zero_grads = {
        "total": _progress(windows + ready, windows + completed, windows + started),
        "current": _progress(epoch_windows + ready, epoch_windows + completed, epoch_windows + started),
    }
    return optimizer_step, zero_grads


def batch_progress(t: Trainer, run: Run) -> dict[str, Any]:
    """Lightning's ``fit_loop.epoch_loop.batch_progress`` at this point of ``run``, as its state dict: what a
    checkpoint holds and ``trainer.fit_loop.epoch_loop.batch_progress`` reads."""
    p = run.progress
    phase = _batch_phase(t, run)
    # a batch `on_train_batch_start` ended the epoch at: counted ready and processed, not started nor completed
    cut = int(p.epoch_cut)
    if run.between_epochs or (phase is None and not (p.epoch_batches or p.epoch_done)):
        # from an epoch's end to the next one's first batch, in `fit` and in the calls after it, Lightning's
        # counters still hold the finished epoch
        batches = p.last_epoch_batches
        # (an epoch `on_train_batch_start` ended at its first batch fetched that batch, and ended as its last)
        is_last_batch = (batches > 0 or p.epoch_cut) and p.last_epoch_ran_out
    else:
        batches = p.epoch_batches
        is_last_batch = run.is_last_batch
    ready, started, processed, completed = batches + cut, batches, batches + cut, batches
    if phase is not None:  # the batch under way: counted ready, then started
        ready, started = batches + (phase >= 1), batches + (phase >= 2)
    elif run.train_results.batch is not None and batches == run.batch_idx + 1 and not run.between_epochs:
        completed = batches - 1  # its `on_train_batch_end` hooks are running: completed after them
    # what the epochs before counted
    trained = p.total_batches - batches
    fetched = trained + p.cut_batches - cut
    return {
        "total": _progress(fetched + ready, trained + completed, trained + started, fetched + processed),
        "current": _progress(ready, completed, started, processed),
        "is_last_batch": is_last_batch,
    }


def loops_state(t: Trainer, run: Run) -> dict[str, Any]:
    """Lightning's ``loops`` entry, with the counts Lightning's loops hold at the same point, so Lightning
    can resume an Ember checkpoint too."""
    fit_loop = fit_loop_counts(t, run)
    loader_states = train_loader_states(run) if run.fn == TrainerFn.FITTING else []
    if loader_states:
        fit_loop["state_dict"]["combined_loader"] = loader_states  # where Lightning keeps them
    predict = eval_batch_progress(t, TrainerFn.PREDICTING, "predict")
    del predict["is_last_batch"]  # Lightning's prediction progress has none
    return {
        "fit_loop": fit_loop,
        "validate_loop": {"state_dict": {}, "batch_progress": eval_batch_progress(t, TrainerFn.VALIDATING, "val")},
        "test_loop": {"state_dict": {}, "batch_progress": eval_batch_progress(t, TrainerFn.TESTING, "test")},
        "predict_loop": {"state_dict": {}, "batch_progress": predict},
    }


def eval_batch_progress(t: Trainer, fn: TrainerFn, key: str) -> dict[str, Any]:
    """Lightning's ``batch_progress`` of an evaluation loop: the batches it ran in its last run, and in all, and
    the batch under way (counted ready before its start hook, started before its step, processed after it)."""
    current, total = t._eval_loop_counts(fn.value, key)
    run = t._run
    ready = started = processed = 0
    module = t.lightning_module
    stage = {"val": RunningStage.VALIDATING, "test": RunningStage.TESTING}.get(key)
    running = run.fn == fn  # the loop's own call, under way or the last one
    if running and stage is not None and t.state.stage == stage and module is not None:
        prefix = "validation" if key == "val" else "test"
        results = run.val_results if key == "val" else run.test_results
        if results.batch is not None:  # between its fetch and the end of its end hooks
            hook = module._current_fx_name
            ready = 1
            started = int(hook != f"on_{prefix}_batch_start")
            processed = int(hook == f"on_{prefix}_batch_end")
    # the loop's own record where its loaders' lengths told it; else whether it ran batches (it ran out of them)
    last_fetched = run.eval_last_fetched.get(key) if running else None
    return {
        "total": _progress(total + ready, total, total + started, total + processed),
        "current": _progress(current + ready, current, current + started, current + processed),
        "is_last_batch": current > 0 if last_fetched is None else last_fetched,
    }


def fit_loop_counts(t: Trainer, run: Run) -> dict[str, Any]:
    """Lightning's fit loop counters now, as ``loops["fit_loop"]`` of a checkpoint written at this moment holds
    them (without the training loaders' states), which ``trainer.fit_loop``'s progress objects read."""
    p = run.progress
    module = t.lightning_module
    hook = module._current_fx_name if module is not None else None
    epoch_completed = p.epoch
    epoch_processed = p.epochs_processed
    phase = _batch_phase(t, run)
    epoch_started = p.epoch + (1 if (p.epoch_batches or p.epoch_done or phase is not None) else 0)
    epoch_ready = epoch_started + (1 if run.epoch_starting else 0)
    steps = p.global_step
    zero = {"total": _progress(0, 0), "current": _progress(0, 0)}
    if module is None or module.automatic_optimization:
        optimizer_step, zero_grad = _optimizer_counts(t, run, phase)
        manual_step = zero
    else:
        optimizer_step = zero
        zero_grad = {"total": _progress(0, 0, 0), "current": _progress(0, 0, 0)}
        # inside `opt.step()`, whose hooks these are, Lightning has counted the step ready
        stepping = int(phase is not None and hook in _MANUAL_STEP_HOOKS)
        manual_step = {"total": _progress(steps + stepping, steps), "current": _progress(steps + stepping, steps)}
    schedulers, epoch_schedulers = p.scheduler_steps, p.scheduler_steps - p.epoch_start_scheduler_steps
    # in `lr_scheduler_step` Lightning has counted that step ready, not yet completed
    scheduling = int(hook == "lr_scheduler_step")

    return {
        "state_dict": {},
        "epoch_loop.state_dict": {"_batches_that_stepped": p.batches_that_stepped},
        "epoch_loop.batch_progress": batch_progress(t, run),
        "epoch_loop.scheduler_progress": {
            "total": _progress(schedulers, schedulers - scheduling),
            "current": _progress(epoch_schedulers, epoch_schedulers - scheduling),
        },
        "epoch_loop.automatic_optimization.state_dict": {},
        "epoch_loop.automatic_optimization.optim_progress": {
            "optimizer": {"step": optimizer_step, "zero_grad": zero_grad},
        },
        "epoch_loop.manual_optimization.state_dict": {},
        "epoch_loop.manual_optimization.optim_step_progress": manual_step,
        "epoch_loop.val_loop.state_dict": {},
        "epoch_loop.val_loop.batch_progress": eval_batch_progress(t, TrainerFn.FITTING, "val"),
        "epoch_progress": {
            "total": _progress(epoch_ready, epoch_completed, epoch_started, epoch_processed),
            "current": _progress(epoch_ready, epoch_completed, epoch_started, epoch_processed),
        },
    }


def resolve_weights_only(weights_only: bool | None) -> bool:
    """``False`` where not given, saying so, as Lightning does."""
    if weights_only is None:
        _log.info("`weights_only` was not set, defaulting to `False`.")
        return False
    return weights_only


def dump_checkpoint(t: Trainer, run: Run, weights_only: bool = False, all_ranks: bool = True) -> dict[str, Any]:
    """Build the checkpoint dict; calls callbacks' ``state_dict``/``on_save_checkpoint``, then the module's.

    ``all_ranks``: every rank calls it, so each rank's RNG states are gathered into it; ``False`` for a
    caller on one rank only, whose checkpoint then holds this rank's states for all."""
    module = t.lightning_module
    checkpoint: dict[str, Any] = {
        "epoch": t.current_epoch,
        "global_step": t.global_step,
        "pytorch-lightning_version": LIGHTNING_FORMAT_VERSION,
        "ember_version": __version__,
        "state_dict": t.strategy.lightning_module_state_dict(),
        "loops": loops_state(t, run),
    }
    if not weights_only:
        callback_states = {}
        for cb in t.callbacks:
            state = cb.state_dict()
            if state:
                callback_states[cb.state_key] = state
        checkpoint["callbacks"] = callback_states
        checkpoint["optimizer_states"] = [t.strategy.optimizer_state(opt) for opt in t.optimizers]
        checkpoint["lr_schedulers"] = [config.scheduler.state_dict() for config in t.lr_scheduler_configs]
        precision = t.precision_plugin
        precision_state = precision.state_dict()
        if precision_state:
            checkpoint[type(precision).__qualname__] = precision_state  # "MixedPrecision", as Lightning
        precision.on_save_checkpoint(checkpoint)
        checkpoint[EMBER_KEY] = _ember_state(t, run, all_ranks)
    # the name `save_hyperparameters` recorded (None where it found none), and only if it ran, as in Lightning
    if getattr(module, "_hparams", None):
        if hasattr(module, "_hparams_name"):
            checkpoint["hparams_name"] = module._hparams_name
        _store_hparams(checkpoint, module.hparams, "hyper_parameters", "hparams_type")
    # outside any trainer call (a module given to `strategy.connect` only, as some libraries save it), the
    # hooks go to the Trainer's callbacks and that module, as in a call
    hooks = run.hooks if run.hooks is not None else HookDispatcher(t, module, t.callbacks)
    datamodule = t.datamodule
    if datamodule is not None:
        if getattr(datamodule, "_hparams", None):
            if hasattr(datamodule, "_hparams_name"):
                checkpoint["datamodule_hparams_name"] = datamodule._hparams_name
            _store_hparams(checkpoint, datamodule.hparams, "datamodule_hyper_parameters", "datamodule_hparams_type")
        dm_state = hooks.call_datamodule(datamodule, "state_dict")
        if dm_state:
            checkpoint[type(datamodule).__qualname__] = dm_state
    if not weights_only:
        hooks.call_callbacks("on_save_checkpoint", checkpoint)  # as a hook: `self.log` in it is refused
    hooks.call_module("on_save_checkpoint", checkpoint)
    return checkpoint


class _PackedTensor(NamedTuple):
    """A CPU tensor as raw bytes. Pickling a tensor goes through ``torch.save`` (once per storage, on every rank);
    the RNG states every rank sends for a checkpoint travel as bytes, so that only the checkpoint file is saved."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes


def _pack_tensors(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        flat = obj.detach().cpu().contiguous().reshape(-1)
        data = bytes(flat.view(torch.uint8).tolist()) if flat.numel() else b""
        return _PackedTensor(str(obj.dtype).removeprefix("torch."), tuple(obj.shape), data)
    if type(obj) is dict:
        return {key: _pack_tensors(value) for key, value in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(_pack_tensors(value) for value in obj)
    return obj


def _unpack_tensors(obj: Any) -> Any:
    if isinstance(obj, _PackedTensor):
        dtype = getattr(torch, obj.dtype)
        if not obj.data:
            return torch.empty(obj.shape, dtype=dtype)
        return torch.frombuffer(bytearray(obj.data), dtype=torch.uint8).view(dtype).reshape(obj.shape).clone()
    if type(obj) is dict:
        return {key: _unpack_tensors(value) for key, value in obj.items()}
    if type(obj) in (list, tuple):
        return type(obj)(_unpack_tensors(value) for value in obj)
    return obj


def _store_hparams(checkpoint: dict[str, Any], hparams: Any, key: str, type_key: str) -> None:
    values, kind = hparams_to_save(hparams)
    checkpoint[key] = values
    if kind is not None:
        checkpoint[type_key] = kind


# ---------------------------------------------------------------------------------------
# restoring
# ---------------------------------------------------------------------------------------
def read_checkpoint(t: Trainer, path: Any, weights_only: bool | None) -> dict[str, Any]:
    """Lightning's "Restoring states" line, then the file through the strategy's CheckpointIO plugin (all ranks)."""
    from ember.utilities.migration import migrate_loaded, pl_legacy_patch

    rank_zero_info(f"Restoring states from the checkpoint path at {path}")
    with pl_legacy_patch():
        checkpoint = t.strategy.load_checkpoint(path, weights_only=weights_only)
    return migrate_loaded(checkpoint, path)


def say_restored(t: Trainer, path: Any) -> None:
    """Lightning's closing line of a restore: everything in ``fit``, the weights otherwise."""
    restored = "Restored all states" if t.state.fn == TrainerFn.FITTING else "Loaded model weights"
    rank_zero_info(f"{restored} from the checkpoint at {path}")


def restore_modules_and_callbacks(t: Trainer, run: Run, checkpoint: dict[str, Any]) -> None:
    """Module weights, datamodule state and callback states (before ``configure_optimizers``)."""
    restore_model(t, run, checkpoint)
    restore_datamodule(t, run, checkpoint)
    restore_callbacks(t, run, checkpoint)


def restore_model(t: Trainer, run: Run, checkpoint: dict[str, Any]) -> None:
    """The module's ``on_load_checkpoint``, then its weights."""
    module = t.lightning_module
    assert run.hooks is not None
    run.hooks.call_module("on_load_checkpoint", checkpoint)
    if "state_dict" not in checkpoint:
        raise KeyError(
            f"The checkpoint has no 'state_dict' entry (keys: {sorted(checkpoint)}): it is not a model checkpoint."
        )

    # through the strategy: after an FSDP fit in this process the parameters are still sharded
    # through the strategy's `load_model_state_dict(checkpoint, strict)`, which a custom strategy may override
    def load(state_dict: dict[str, Any], strict: bool) -> Any:
        return t.strategy.load_model_state_dict({**checkpoint, "state_dict": state_dict}, strict=strict)

    load_module_state(module, checkpoint["state_dict"], module.strict_loading, load=load)


def restore_datamodule(t: Trainer, run: Run, checkpoint: dict[str, Any]) -> None:
    """The datamodule's ``load_state_dict`` with the state stored under its class name, if any."""
    datamodule = t.datamodule
    if datamodule is not None:
        key = type(datamodule).__qualname__
        if key in checkpoint:
            assert run.hooks is not None
            run.hooks.call_datamodule(datamodule, "load_state_dict", checkpoint[key])
            run.datamodule_restored = bool(checkpoint[key])


def restore_callbacks(t: Trainer, run: Run, checkpoint: dict[str, Any]) -> None:
    """A warning naming the stored states no callback takes, the callbacks' ``on_load_checkpoint``, then each
    one's ``load_state_dict`` with its stored state.

    A checkpoint without a ``callbacks`` entry (``save_weights_only``) calls neither, as in Lightning.
    """
    assert run.hooks is not None
    states = checkpoint.get("callbacks")
    if states is None:
        return
    keys = {cb.state_key for cb in t.callbacks} | {getattr(cb, "_legacy_state_key", None) for cb in t.callbacks}
    missing = [key for key in states if key not in keys]
    if missing:
        # before the hooks, as in Lightning: a hook that fails leaves the warning given
        rank_zero_warn(
            "Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be provided during"
            f" `Trainer` instantiation. Please add the following callbacks: {missing}."
        )
    run.hooks.call_callbacks("on_load_checkpoint", checkpoint)
    states = checkpoint.get("callbacks")  # as the hooks left it (one may move a state to a renamed key)
    if states is None:
        return
    for cb in t.callbacks:
        state = states.get(cb.state_key, states.get(getattr(cb, "_legacy_state_key", None)))
        if state:
            cb.load_state_dict(copy.deepcopy(state))  # its own copy, not the checkpoint's objects


def _plain_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` as a checkpoint keeps them: tensors on the CPU, numbers as they are."""
    plain: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            plain[key] = value.detach().cpu()
        elif isinstance(value, (int, float)):
            plain[key] = value
    return plain


def plateau_due(t: Trainer, run: Run) -> list[int]:
    """The ``ReduceLROnPlateau`` schedulers (by index in ``lr_scheduler_configs``) due to step after the point
    the checkpoint is written, for the resumed run to step them.

    They step after what writes checkpoints there: at an epoch's end after the checkpoint callbacks (an epoch
    interval); at a batch that closed an accumulation window, after the batch-end hooks and the validation due
    there (a step interval). The values they monitor are the checkpoint's ``callback_metrics``.
    """
    progress, configs = run.progress, t.lr_scheduler_configs
    if run.fn != TrainerFn.FITTING or not t.lightning_module.automatic_optimization:
        return []
    full_epoch = _epoch_data_ran_out(run)
    # a batch of this epoch ended, and the plateau steps that follow it have not run (the loop marks them)
    batch_pending = (
        progress.epoch_batches > 0 and not progress.epoch_done and run.plateau_stepped_at != progress.total_batches
    )
    closed_a_window = (run.batch_idx + 1) % t.accumulate_grad_batches == 0 or full_epoch
    due = set(run.plateau_pending)  # the resumed checkpoint's, not stepped yet
    for index, config in enumerate(configs):
        if not config.reduce_on_plateau:
            continue
        if config.interval == "epoch":
            if progress.epoch_done and full_epoch and (progress.epoch + 1) % config.frequency == 0:
                due.add(index)
        elif batch_pending and closed_a_window and (run.batch_idx + 1) % config.frequency == 0:
            due.add(index)
    return sorted(due)


def restore_training_state(t: Trainer, run: Run, checkpoint: dict[str, Any]) -> None:
    """Precision scaler, loop progress, optimizers and schedulers (after ``on_fit_start``)."""
    if t.strategy.lightning_restore_optimizer and "optimizer_states" not in checkpoint:
        _no_optimizer_states()  # before anything changes
    restore_precision_state(t, checkpoint)
    fit_state = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
    run.loader_states_to_load = list(fit_state.get("combined_loader", []))
    run.resume = _restore_progress(t, run, checkpoint)
    run.restarting = run.resume.mid_epoch or t.max_steps != -1
    run.fit_resuming = True
    run.restarted_at_batch = run.progress.total_batches
    restore_optimizers_and_schedulers(t, checkpoint)
    _restore_plateau_due(t, run, checkpoint.get(EMBER_KEY) or {})


def _restore_plateau_due(t: Trainer, run: Run, ember_state: dict[str, Any]) -> None:
    """The ``ReduceLROnPlateau`` steps the checkpoint was written before: at an epoch's end, they step now; after a
    batch, once the resumed run has run the validation still due there (``run.plateau_pending``)."""
    configs = t.lr_scheduler_configs
    if "plateau_values" in ember_state:
        # an earlier Ember's: the monitored values themselves, written where they were due (and, in an epoch
        # under way, for the epoch-interval ones due at its end); they go where the step reads them
        values = {int(index): value for index, value in ember_state["plateau_values"].items()}
        run.metrics.merge({configs[i].monitor: torch.tensor(v) for i, v in values.items()}, {}, {})
        due = [i for i in values if configs[i].interval != "epoch" or run.progress.epoch_done]
    else:
        due = [int(index) for index in ember_state.get("plateau_due", [])]
    run.plateau_stepped_at = run.progress.total_batches
    run.plateau_pending = [i for i in due if configs[i].interval != "epoch"]
    at_epoch_end = [i for i in due if configs[i].interval == "epoch"]
    if at_epoch_end:
        from ember.trainer.loop import step_plateau

        for index in at_epoch_end:
            step_plateau(t, run, configs[index])


def restore_precision_state(t: Trainer, checkpoint: dict[str, Any]) -> None:
    """The precision plugin's ``on_load_checkpoint`` and its state (a gradient scaler's)."""
    precision = t.precision_plugin
    precision.on_load_checkpoint(checkpoint)
    precision_key = type(precision).__qualname__  # e.g. "MixedPrecision", as `dump_checkpoint` stored it
    if precision_key in checkpoint:
        precision.load_state_dict(checkpoint[precision_key])


def restore_optimizers_and_schedulers(t: Trainer, checkpoint: dict[str, Any]) -> None:
    """Every optimizer's and scheduler's state, into those ``configure_optimizers`` built."""
    if t.strategy.lightning_restore_optimizer:  # False: the strategy restored them (DeepSpeed)
        if "optimizer_states" not in checkpoint:
            _no_optimizer_states()
        states = checkpoint["optimizer_states"]
        if not states and t.optimizers:
            # saved before any optimizer existed (`save_checkpoint` from a Trainer that never ran, as some
            # libraries save a model): the optimizers start afresh, as Lightning's zip of the two leaves them
            rank_zero_info("The checkpoint holds no optimizer states: the optimizers start from their initial state.")
        elif len(states) != len(t.optimizers):
            raise RuntimeError(
                f"The checkpoint holds {len(states)} optimizer states but `configure_optimizers` returned"
                f" {len(t.optimizers)} optimizers: resume with the same optimizer setup."
            )
        # (the settings its type takes, `defaults`: not the keys a scheduler or SWA adds, `initial_lr`, `swa_lr`)
        before = [
            {key for group in optimizer.param_groups for key in group} & set(getattr(optimizer, "defaults", ()))
            for optimizer in t.optimizers
        ]
        try:
            t.strategy.load_optimizer_state_dict(checkpoint)
        except (KeyError, ValueError) as error:
            # torch's words alone name neither the optimizer nor the cause ("'betas'", "loaded state dict contains
            # a parameter group that doesn't match the size of optimizer's group")
            raise RuntimeError(
                f"The checkpoint's optimizer states do not fit this run's optimizers (torch: {error!r})."
                f"{_optimizer_mismatch(states, t.optimizers)} Resume with the model and optimizers the checkpoint was"
                " saved with; to train new optimizers from its weights, load the weights alone"
                " (`MyModel.load_from_checkpoint(path)`) and fit without `ckpt_path`."
            ) from error
        _check_settings_kept(t.optimizers, before)
    schedulers = checkpoint.get("lr_schedulers", [])
    for config, state in zip(t.lr_scheduler_configs, schedulers):
        config.scheduler.load_state_dict(state)


def _optimizer_mismatch(states: list[Any], optimizers: list[Any]) -> str:
    """The first saved optimizer state whose parameter groups differ in number or size from its optimizer's,
    said in a sentence; "" when none does."""
    for index, (state, optimizer) in enumerate(zip(states, optimizers)):
        saved = state.get("param_groups") if isinstance(state, dict) else None
        if not isinstance(saved, list) or not all(isinstance(group, dict) for group in saved):
            continue
        sizes = [len(group.get("params", ())) for group in saved]
        now = [len(group["params"]) for group in optimizer.param_groups]
        if sizes != now:
            return (
                f" Optimizer {index} ({type(optimizer).__name__}) was saved with parameter groups of {sizes}"
                f" parameters; this run's has {now} (a model or `configure_optimizers` changed since?)."
            )
    return ""


def _check_settings_kept(optimizers: list[Any], before: list[set[str]]) -> None:
    """After loading: an optimizer whose groups lost settings they had (``betas`` for Adam) took the state of
    another optimizer type, and would fail at its first step with torch's bare ``KeyError: 'betas'``."""
    for index, (optimizer, keys) in enumerate(zip(optimizers, before)):
        lost = sorted(keys - {key for group in optimizer.param_groups for key in group})
        if lost:
            raise RuntimeError(
                f"The checkpoint's optimizer state {index} does not fit this run's {type(optimizer).__name__}: it"
                f" lacks the settings {lost}, so another optimizer type saved it. Resume with the optimizers the"
                " checkpoint was saved with; to train new optimizers from its weights, load the weights alone"
                " (`MyModel.load_from_checkpoint(path)`) and fit without `ckpt_path`."
            )


def _no_optimizer_states() -> None:
    raise KeyError(
        "Trying to restore optimizer state but checkpoint contains only the model. This is probably due to"
        " `ModelCheckpoint.save_weights_only` being set to `True`."
    )


def _restore_progress(t: Trainer, run: Run, checkpoint: dict[str, Any]) -> Resume:
    """The counters from the checkpoint, and how the first epoch continues."""
    progress = run.progress
    ember_state = checkpoint.get(EMBER_KEY)
    automatic = t.lightning_module is None or t.lightning_module.automatic_optimization
    # written by as many processes as run now: each rank's own states and values are this rank's
    same_world = ember_state is not None and ember_state.get("world_size", 1) == t.world_size
    if ember_state is not None:
        rng, train_results = _progress_from_ember(t, run, checkpoint, ember_state, same_world)
    else:
        _progress_from_lightning(progress, checkpoint)
        rng = train_results = None
    if has_epoch_limit(t.max_epochs) and checkpoint.get("epoch", 0) > t.max_epochs:
        raise MisconfigurationException(
            f"You restored a checkpoint with current_epoch={checkpoint['epoch']}, but you have set"
            f" Trainer(max_epochs={t.max_epochs}). Raise `max_epochs` above the checkpoint's epoch to train further."
        )
    ended = progress.epoch_done or _written_after_a_cut_epoch(progress)  # the epoch's end had run
    if _written_after_a_cut_epoch(progress) and t.max_steps != -1 and progress.global_step < t.max_steps:
        # the same state seen after that epoch's end (by `trainer.save_checkpoint` once `fit` returned, or at
        # `on_train_end`): the counters had moved on to the next epoch, which never started (a run with nothing
        # left to train keeps them, as Lightning does)
        progress.epoch -= 1
        progress.epoch_batches = progress.last_epoch_batches
        progress.epoch_done = progress.epoch_unfinished = True
        progress.reopen_window()
    if (
        progress.epoch_done
        and progress.epoch_unfinished
        and not progress.epoch_data_ran_out
        and progress.epoch_batches
        and t.max_steps != -1
    ):
        # written at the end of an epoch that `max_steps` or a stop cut short, resumed by a step-limited run:
        # it goes on where it stopped, without its start hooks, as Lightning's loop restarts it (a run limited
        # by epochs only starts the next epoch, as Lightning's does)
        progress.epoch_done = progress.epoch_unfinished = False
        progress.reopen_window()
    if progress.epoch_done:
        # written at the end of an epoch: the next one starts once `fit` starts training (`run_fit`); till
        # then, through the sanity check, `current_epoch` is the checkpoint's, as in Lightning. Its means
        # start empty, as after every epoch's end (an epoch written as unfinished holds the means it logged,
        # for a resume that goes on inside it)
        if ember_state is not None and automatic:  # written before that end closed the epoch's last window
            progress.close_window(t.accumulate_grad_batches)
        progress.epoch_batches = 0
    elif train_results:
        run.train_results.load_state_dict(train_results, t.lightning_module)
    rng, epoch_rng, held_rng = _this_ranks_rng(t, ember_state, rng)
    gradients = ember_state.get("accumulated_gradients") if ember_state is not None else None
    mid_epoch = progress.epoch_batches != 0
    resume = Resume(
        mid_epoch,
        rng=rng,
        epoch_rng=epoch_rng,
        gradients=gradients,
        end_due=mid_epoch and not ended,
        held_rng=held_rng if mid_epoch else None,
        same_step_limit=ember_state is not None and ember_state.get("max_steps") == t.max_steps,
        reload_epochs=tuple(ember_state["reload_epochs"]) if ember_state and "reload_epochs" in ember_state else None,
    )
    if ember_state is not None:
        resume.callback_metrics = dict(_this_ranks(t, ember_state, "callback_metrics", same_world) or {})
    run.step_metrics_missing = resume.mid_epoch and ember_state is None
    # till the next epoch's data is drawn, Lightning's batch counters hold the finished epoch's, as between two
    # epochs of one run; inside an epoch, the checkpoint's
    run.between_epochs = not resume.mid_epoch
    if resume.mid_epoch and run.num_training_batches == float("inf"):
        # data of unknown length: whether the checkpoint's batch was its epoch's last is known only from the
        # checkpoint (the uninterrupted run had read ahead), and the validation due at that epoch's end follows it
        batch_progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
        run.last_batch_seen = bool(batch_progress.get("is_last_batch", False))
    run.eval_progress["val"] = _validation_counts(checkpoint)
    if resume.mid_epoch and ember_state is not None and gradients is None and t.lightning_module.automatic_optimization:
        _warn_if_written_inside_a_window(progress, checkpoint, ember_state)
    moves = resume.mid_epoch and _moves_the_loggers_step(t, progress, checkpoint, ember_state)
    # a validation still due after that batch runs first, at the step before it moves on (the loop moves it then)
    run.step_moves_after_validation = moves and progress.validated_through != progress.epoch_batches
    if moves and not run.step_moves_after_validation:
        progress.batches_that_stepped += 1
    progress.step_pending = False
    if (
        resume.mid_epoch
        and not resume.exact
        and not run.loader_states_to_load
        and not _batch_progress(checkpoint).get("is_last_batch", False)
    ):
        # Lightning's text; here it means the checkpoint holds no RNG states and data position (Lightning's); not
        # after the epoch's last batch, where no data of the epoch is left to read again
        rank_zero_warn(
            "You're resuming from a checkpoint that ended before the epoch ended and your dataloader is not resumable."
            " This can cause unreliable results if further training is done. Consider using an end-of-epoch"
            " checkpoint or make your dataloader resumable by implementing the `state_dict` / `load_state_dict`"
            " interface.",
            category=PossibleUserWarning,
        )
    return resume


def _batch_progress(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The training batches' progress in a checkpoint's ``loops`` entry (Lightning's), ``{}`` if absent."""
    return checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})


def _this_ranks_rng(t: Trainer, ember_state: dict[str, Any] | None, rng: Any) -> tuple[Any, Any, Any]:
    """This rank's RNG states from Ember's entry: when the checkpoint was written, when its epoch drew its data
    order, and when the batch held by a read ahead was read (each rank's own where all ranks' were gathered)."""
    if ember_state is None:
        return rng, None, None
    epoch_rng, held_rng = ember_state.get("epoch_rng"), ember_state.get("held_rng")
    rank = t.global_rank
    rank_rng = ember_state.get("rank_rng") if rng is not None else None
    if rank_rng and rank < len(rank_rng):
        rng, epoch_rng = rank_rng[rank]
        rank_held_rng = ember_state.get("rank_held_rng")
        held_rng = rank_held_rng[rank] if rank_held_rng and rank < len(rank_held_rng) else None
    return rng, epoch_rng, held_rng


def _this_ranks(t: Trainer, ember_state: dict[str, Any], key: str, same_world: bool) -> Any:
    """This rank's own entry ``key`` of Ember's state (``train_results``, ``callback_metrics``: what its own data
    gave), or rank 0's where the ranks' were not gathered or the world size changed."""
    per_rank = ember_state.get(f"rank_{key}")
    if same_world and per_rank and t.global_rank < len(per_rank):
        return per_rank[t.global_rank]
    return ember_state.get(key)


def _written_after_a_cut_epoch(progress: Progress) -> bool:
    """Whether the checkpoint was written between an epoch that `max_steps` or a stop ended before its data ran
    out and the next one, which has not started: the training the epoch left undone is still to come."""
    return (
        not progress.epoch_done
        and progress.epoch_batches == 0
        and progress.epoch > 0
        and progress.last_epoch_batches > 0
        and not progress.last_epoch_ran_out
        and not progress.epoch_data_ran_out
    )


def _ember_state(t: Trainer, run: Run, all_ranks: bool) -> dict[str, Any]:
    """Ember's own entry of a training checkpoint: what an exact resume needs beyond Lightning's keys."""
    progress = run.progress
    # inside a validation of `fit` that the resumed run runs again (it has not reached its end hooks): the states
    # it began with
    rerun = t.state.stage == RunningStage.VALIDATING and progress.validated_through != progress.epoch_batches
    ember_state = {
        "progress": progress.state_dict(),
        "rng": run.rng_before_validation if rerun and run.rng_before_validation is not None else data_rng_states(run),
        "epoch_rng": run.epoch_rng,
        # the values of an epoch under way, or of one that a resumed run goes on with
        "train_results": run.train_results.state_dict() if not progress.epoch_done or progress.epoch_unfinished else {},
        "plateau_due": plateau_due(t, run),
        # what the callbacks read (EarlyStopping at the epoch's end, a monitored ModelCheckpoint at a step
        # trigger): the uninterrupted run still had the last validation's values there
        "callback_metrics": _plain_metrics(t.callback_metrics) if run.fn == TrainerFn.FITTING else {},
        # what decided whether the last batch trained stepped (`progress.step_pending`)
        "accumulate_grad_batches": t.accumulate_grad_batches,
        # the step limit the checkpoint was written under: a batch of manual optimization may step past it
        "max_steps": t.max_steps,
        "world_size": t.world_size,
        "global_rank": t.global_rank,
    }
    if t.reload_dataloaders_every_n_epochs:  # when the loaders were last loaded: the next reloads count from there
        ember_state["reload_epochs"] = [run.last_train_reload_epoch, run.val_reload_epoch]
    if run.sampler_seed is not None:  # the seed of the training loaders' DistributedSampler
        ember_state["sampler_seed"] = run.sampler_seed
    if run.held_rng is not None:  # data read one batch ahead in the process: the states it read the held batch with
        ember_state["held_rng"] = run.held_rng
    if run.preempting and t.should_stop:
        # a preemption came after a stop was decided (EarlyStopping, `trainer.should_stop = True`): the resumed
        # run stops where this one would have. Other checkpoints leave it out, as Lightning's do, so a run
        # resumed from an early-stopped run's files trains on
        ember_state["should_stop"] = True
    if _inside_a_window_now(t, run):
        gradients = t.strategy.accumulated_gradients(all_ranks)
        if gradients is not None:
            ember_state["accumulated_gradients"] = gradients
    if all_ranks and t.world_size > 1 and hasattr(t.strategy, "all_gather_object"):
        # all ranks: every rank's RNG states, the values it has logged for the epoch and its `callback_metrics` (a
        # rank's own data gave them, unless synced), so that each one resumes with its own
        own = [
            ember_state["rng"],
            run.epoch_rng,
            run.held_rng,
            ember_state["train_results"],
            ember_state["callback_metrics"],
        ]
        gathered = _unpack_tensors(t.strategy.all_gather_object(_pack_tensors(own)))
        ember_state["rank_rng"] = [[rng, epoch_rng] for rng, epoch_rng, *_ in gathered]
        if any(held is not None for _, _, held, *_ in gathered):
            ember_state["rank_held_rng"] = [held for _, _, held, *_ in gathered]
        if any(results for *_, results, _ in gathered):
            ember_state["rank_train_results"] = [results for *_, results, _ in gathered]
        if any(metrics for *_, metrics in gathered):
            ember_state["rank_callback_metrics"] = [metrics for *_, metrics in gathered]
    return ember_state


def _inside_a_window_now(t: Trainer, run: Run) -> bool:
    """Whether training is inside a gradient accumulation window: the window's batches trained so far have added
    gradients that no optimizer step has used yet."""
    progress = run.progress
    return (
        run.fn == TrainerFn.FITTING
        and t.lightning_module.automatic_optimization
        and not progress.epoch_done
        and _ends_no_window(progress.epoch_batches, t.accumulate_grad_batches, _epoch_data_ran_out(run))
    )


def _epoch_data_ran_out(run: Run) -> bool:
    """Whether the epoch has trained on its last batch: all its batches, or, for data of unknown length, the one
    after which the data ran out (as the loop reads it)."""
    return run.progress.epoch_batches >= run.num_training_batches or run.last_batch_seen


def _inside_a_window(progress: Progress, checkpoint: dict[str, Any], written_with: int) -> bool:
    """Whether the checkpoint's last batch ended no accumulation window of ``written_with`` batches where it was
    written."""
    last = _batch_progress(checkpoint).get("is_last_batch", False)
    return _ends_no_window(progress.epoch_batches, written_with, last)


def _ends_no_window(epoch_batches: int, accumulate: int, last: bool) -> bool:
    """Whether an epoch's batch ``epoch_batches`` (counted from 1) ends no accumulation window of ``accumulate``
    batches (an epoch's last batch ends one)."""
    return epoch_batches % accumulate != 0 and not last


def _warn_if_written_inside_a_window(
    progress: Progress, checkpoint: dict[str, Any], ember_state: dict[str, Any]
) -> None:
    """A checkpoint written inside an accumulation window without the window's gradients (by an earlier Ember, or
    under a strategy that does not keep them) resumes without those of the window's batches before it, and the
    resumed weights will differ from the uninterrupted run's."""
    written_with = ember_state.get("accumulate_grad_batches", 1)
    if _inside_a_window(progress, checkpoint, written_with):
        rank_zero_warn(
            f"This checkpoint was written inside a gradient accumulation window (after batch"
            f" {progress.epoch_batches} of its epoch, with `accumulate_grad_batches={written_with}`) and holds"
            " none of the window's gradients (written by an earlier Ember, or by a strategy that does not keep"
            " them), so the resumed run's next optimizer step uses only the batches after it and its weights will"
            " differ from an uninterrupted run's. To resume exactly, let checkpoints fall on accumulation windows'"
            " ends (a `val_check_interval` that is a multiple of `accumulate_grad_batches`)."
        )


def _moves_the_loggers_step(
    t: Trainer, progress: Progress, checkpoint: dict[str, Any], ember_state: dict[str, Any] | None
) -> bool:
    """Whether a mid-epoch resume moves the loggers' step on: written after a batch trained and before the step
    moved on past it (in its end hooks or its validation), as it would have after them, when that batch closes
    an accumulation window by the resumed run's ``accumulate_grad_batches`` (or is its epoch's last), as
    Lightning's loop decides when it restarts, whoever wrote the file."""
    if _inside_a_window(progress, checkpoint, t.accumulate_grad_batches):
        return False
    if ember_state is None:
        return progress.step_pending
    # a batch that did not step where it was written never moved the step on: it is still to move
    written_with = ember_state.get("accumulate_grad_batches", t.accumulate_grad_batches)
    return progress.step_pending or _inside_a_window(progress, checkpoint, written_with)


def _progress_from_ember(
    t: Trainer, run: Run, checkpoint: dict[str, Any], ember_state: dict[str, Any], same_world: bool
) -> tuple[Any, Any]:
    """The counters of a checkpoint Ember wrote, and the run's state around them; returns the RNG states and the
    training epoch's logged values (None where the checkpoint's processes were not as many as this run's)."""
    progress = run.progress
    progress.load_state_dict(ember_state["progress"])
    if "validated_through" not in ember_state["progress"]:  # written by an Ember before it kept this count
        progress.validated_through = _validated_through(
            checkpoint.get("loops", {}).get("fit_loop", {}), progress.epoch_batches
        )
    run.sampler_seed = ember_state.get("sampler_seed")
    if ember_state.get("should_stop"):  # a preemption's checkpoint (see `_ember_state`)
        t.should_stop = True
        rank_zero_info(
            "The checkpoint was saved by a preemption that came after the run had decided to stop"
            " (`trainer.should_stop`, e.g. by EarlyStopping): the resumed run stops there too, as the"
            " uninterrupted one did. To train further, resume from a checkpoint saved before that decision."
        )
    run.metrics.merge(_this_ranks(t, ember_state, "callback_metrics", same_world) or {}, {}, {})
    if progress.epoch_done:  # written at an epoch's end: Lightning's batch counters hold that epoch's
        progress.last_epoch_batches, progress.last_epoch_ran_out = progress.epoch_batches, not progress.epoch_unfinished
    rng = ember_state.get("rng") if same_world else None
    return rng, _this_ranks(t, ember_state, "train_results", same_world)


def _progress_from_lightning(progress: Progress, checkpoint: dict[str, Any]) -> None:
    fit = checkpoint.get("loops", {}).get("fit_loop", {})
    epoch_progress = fit.get("epoch_progress", {}).get("current", {})
    completed = epoch_progress.get("completed", checkpoint.get("epoch", 0))
    processed = epoch_progress.get("processed", completed)
    started = epoch_progress.get("started", processed)
    batch_progress = fit.get("epoch_loop.batch_progress", {})
    batch_current = batch_progress.get("current", {})
    progress.epoch = completed
    progress.epoch_done = processed > completed
    # at the end of an epoch whose data had not run out (`max_steps` or a stop cut it short)
    progress.epoch_unfinished = progress.epoch_done and not batch_progress.get("is_last_batch", True)
    # an epoch is under way only once started and not yet completed; saved after `fit` returned, every
    # counter is equal and the batch count is the last epoch's, so the next epoch runs in full
    under_way = started > completed and not progress.epoch_done
    progress.epoch_batches = batch_current.get("processed", 0) if under_way or progress.epoch_unfinished else 0
    if not under_way:  # saved at an epoch's end or between two epochs: the counters of the one that ended
        progress.last_epoch_batches = batch_current.get("processed", 0)
        progress.last_epoch_ran_out = batch_progress.get("is_last_batch", False)
    progress.global_step = checkpoint.get("global_step", 0)
    progress.batches_that_stepped = fit.get("epoch_loop.state_dict", {}).get(
        "_batches_that_stepped", progress.global_step
    )
    # Lightning counts a batch `on_train_batch_start` ended an epoch at processed, never started (one a batch
    # is in the middle of counts started, not yet processed)
    total = batch_progress.get("total", {})
    in_step = max(0, batch_current.get("started", 0) - batch_current.get("processed", 0))
    progress.cut_batches = max(0, total.get("processed", 0) - total.get("started", 0) + in_step)
    progress.epoch_cut = batch_current.get("processed", 0) > batch_current.get("started", 0)
    progress.total_batches = total.get("processed", 0) - progress.cut_batches
    # the optimizer and scheduler steps in all and in the checkpoint's epoch, which the `loops` entry of a
    # checkpoint the resumed run writes counts on from
    steps = fit.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {}).get("step", {})
    progress.epoch_start_step = progress.global_step - steps.get("current", {}).get("completed", 0)
    schedulers = fit.get("epoch_loop.scheduler_progress", {})
    progress.scheduler_steps = schedulers.get("total", {}).get("completed", 0)
    progress.epoch_start_scheduler_steps = progress.scheduler_steps - schedulers.get("current", {}).get("completed", 0)
    _unstepped_windows_from_lightning(progress, fit, under_way)
    # Lightning writes its step count before the batch's end moves it on, and moves it on when it restarts
    progress.step_pending = under_way
    progress.validated_through = _validated_through(fit, progress.epoch_batches)


def _unstepped_windows_from_lightning(progress: Progress, fit: dict[str, Any], under_way: bool) -> None:
    """The accumulation windows whose zero_grad Lightning counted and no step closed (epochs ended inside them):
    those of the earlier epochs, and, once it is over, the checkpoint's epoch's last (of an epoch under way, the
    resumed run counts that window as it goes on)."""
    optimizer = fit.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {})
    zero_grad, step = optimizer.get("zero_grad", {}), optimizer.get("step", {})

    def unstepped(counts: str) -> int:
        return zero_grad.get(counts, {}).get("completed", 0) - step.get(counts, {}).get("completed", 0)

    this_epoch = 0 if under_way else max(0, unstepped("current"))
    progress.unstepped_windows = max(0, unstepped("total") - unstepped("current")) + this_epoch
    progress.epoch_unstepped_windows = this_epoch


def _validation_counts(checkpoint: dict[str, Any]) -> list[int]:
    """``[in its last run, in this training epoch]``: the batches of fit's validation loop, as the checkpoint's
    ``loops`` count them. A validation under way when it was written counts for nothing: the resumed run runs it
    again."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.val_loop.batch_progress", {})
    current, total = progress.get("current", {}), progress.get("total", {})
    if _under_way(current):
        return [0, total.get("completed", 0) - current.get("completed", 0)]
    return [current.get("completed", 0), total.get("completed", 0)]


def _under_way(counts: dict[str, int]) -> bool:
    """Whether a loop's ``current`` batch counts show a batch under way: fetched (counted ready, before its start
    hook) and not yet completed."""
    return counts.get("ready", 0) > counts.get("completed", 0)


def _validated_through(fit: dict[str, Any], epoch_batches: int) -> int:
    """From a checkpoint's ``loops["fit_loop"]`` entry: ``epoch_batches`` when it was written after the validation that
    follows that batch had run all its batches (Lightning then counts the batch completed, and its validation
    loop has no batch under way), else 0 (a validation may still be due)."""
    batch = fit.get("epoch_loop.batch_progress", {}).get("current", {})
    validation = fit.get("epoch_loop.val_loop.batch_progress", {}).get("current", {})
    validation_under_way = _under_way(validation)
    batch_completed = epoch_batches and batch.get("completed") == batch.get("processed") == epoch_batches
    return epoch_batches if batch_completed and not validation_under_way else 0
