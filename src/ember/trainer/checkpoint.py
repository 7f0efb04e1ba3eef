"""The checkpoint dict (Lightning's layout plus Ember's resume state) and restoring from it."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import torch

import ember
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn
from ember.utilities.seed import collect_rng_states

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer

# The Lightning checkpoint format this layout matches; Lightning reads it to pick migrations.
LIGHTNING_FORMAT_VERSION = "2.6.6"
EMBER_KEY = "ember"


def _progress(ready: int, completed: int, started: int | None = None, processed: int | None = None) -> dict[str, int]:
    out = {"ready": ready, "completed": completed}
    if started is not None:
        out["started"] = started
    if processed is not None:
        out["processed"] = processed
    return out


def _loops_state(t: Trainer) -> dict[str, Any]:
    """Lightning's ``loops`` entry, so Lightning can resume an Ember checkpoint too."""
    p = t._progress
    epoch_completed = p.epoch
    epoch_processed = p.epoch + (1 if p.epoch_done else 0)
    epoch_started = p.epoch + (1 if (p.epoch_batches or p.epoch_done) else 0)
    batches = p.epoch_batches
    # saved from on_train_batch_end, Lightning has not yet counted the batch as completed
    batch_completed = batches if p.epoch_done else max(batches - 1, 0)
    steps = p.global_step
    automatic = t._module.automatic_optimization if t._module is not None else True
    step_progress = {"total": _progress(steps, steps), "current": _progress(steps, steps)}
    zero = {"total": _progress(0, 0), "current": _progress(0, 0)}
    eval_progress = {
        "total": _progress(0, 0, 0, 0),
        "current": _progress(0, 0, 0, 0),
        "is_last_batch": False,
    }
    return {
        "fit_loop": {
            "state_dict": {},
            "epoch_loop.state_dict": {"_batches_that_stepped": p.batches_that_stepped},
            "epoch_loop.batch_progress": {
                "total": _progress(
                    p.total_batches, p.total_batches - (batches - batch_completed), p.total_batches, p.total_batches
                ),
                "current": _progress(batches, batch_completed, batches, batches),
                "is_last_batch": p.epoch_done,
            },
            "epoch_loop.scheduler_progress": {"total": _progress(0, 0), "current": _progress(0, 0)},
            "epoch_loop.automatic_optimization.optim_progress": {
                "optimizer": {
                    "step": step_progress if automatic else zero,
                    "zero_grad": {"total": _progress(steps, steps, steps), "current": _progress(steps, steps, steps)},
                },
            },
            "epoch_loop.manual_optimization.optim_step_progress": zero if automatic else step_progress,
            "epoch_loop.val_loop.state_dict": {},
            "epoch_loop.val_loop.batch_progress": eval_progress,
            "epoch_progress": {
                "total": _progress(epoch_started, epoch_completed, epoch_started, epoch_processed),
                "current": _progress(epoch_started, epoch_completed, epoch_started, epoch_processed),
            },
        },
        "validate_loop": {"state_dict": {}, "batch_progress": eval_progress},
        "test_loop": {"state_dict": {}, "batch_progress": eval_progress},
        "predict_loop": {
            "state_dict": {},
            "batch_progress": {"total": _progress(0, 0, 0, 0), "current": _progress(0, 0, 0, 0)},
        },
    }


def dump_checkpoint(t: Trainer, weights_only: bool = False) -> dict[str, Any]:
    """Build the checkpoint dict; calls callbacks' ``state_dict``/``on_save_checkpoint``, then the module's."""
    module = t._module
    checkpoint: dict[str, Any] = {
        "epoch": t.current_epoch,
        "global_step": t.global_step,
        "pytorch-lightning_version": LIGHTNING_FORMAT_VERSION,
        "ember_version": ember.__version__,
        "state_dict": t.strategy.lightning_module_state_dict(),
        "loops": _loops_state(t),
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
        precision_state = t._precision.state_dict()
        if precision_state:
            checkpoint["MixedPrecision"] = precision_state
        checkpoint[EMBER_KEY] = {
            "progress": t._progress.state_dict(),
            "rng": collect_rng_states(),
            "epoch_rng": t._epoch_rng,
            "train_results": t._train_results.state_dict() if not t._progress.epoch_done else {},
            "world_size": t.world_size,
            "global_rank": t.global_rank,
        }
        if t.world_size > 1 and hasattr(t.strategy, "all_gather_object"):
            # all ranks: every rank's RNG states, so that each one resumes with its own
            ember_state = checkpoint[EMBER_KEY]
            ember_state["rank_rng"] = t.strategy.all_gather_object([ember_state["rng"], t._epoch_rng])
    if getattr(module, "_hparams", None):
        checkpoint["hparams_name"] = getattr(module, "_hparams_name", None) or "kwargs"
        checkpoint["hyper_parameters"] = dict(module.hparams)
    datamodule = t.datamodule
    if datamodule is not None:
        if getattr(datamodule, "_hparams", None):
            checkpoint["datamodule_hparams_name"] = getattr(datamodule, "_hparams_name", None) or "kwargs"
            checkpoint["datamodule_hyper_parameters"] = dict(datamodule.hparams)
        dm_state = datamodule.state_dict()
        if dm_state:
            checkpoint[type(datamodule).__qualname__] = dm_state
    if not weights_only:
        for cb in t.callbacks:
            cb.on_save_checkpoint(t, module, checkpoint)
    t._hooks.call_module("on_save_checkpoint", checkpoint)
    return checkpoint


# ---------------------------------------------------------------------------------------
# ckpt_path resolution
# ---------------------------------------------------------------------------------------
def resolve_ckpt_path(t: Trainer, ckpt_path: Any, fn: str, model_given: bool) -> str | None:
    """Turn ``"best"``, ``"last"``, ``None`` or a path into a file path (or None for a fresh start)."""
    from ember.callbacks.checkpoint import Checkpoint
    from ember.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
    from ember.distributed.environments import SLURMEnvironment

    if ckpt_path is None and fn == "fit" and SLURMEnvironment.detect() and hpc_resume_path(t.default_root_dir):
        ckpt_path = "hpc"  # a requeued SLURM job continues from the checkpoint it saved before it left
    if ckpt_path is None:
        if fn == "fit":
            if any(isinstance(cb, OnExceptionCheckpoint) for cb in t.callbacks):
                ckpt_path = "last"
            else:
                return None
        elif model_given:
            return None
        else:
            has_ckpt = any(isinstance(cb, Checkpoint) and getattr(cb, "best_model_path", "") for cb in t.callbacks)
            if not has_ckpt:
                return None
            rank_zero_warn(
                f"`.{fn}(ckpt_path=None)` was called without a model. The best model of the previous `fit` call will be"
                f" used. You can pass `.{fn}(ckpt_path='best')` to use the best model or `.{fn}(ckpt_path='last')`"
                " to use the last model. If you pass a value, this warning will be silenced."
            )
            ckpt_path = "best"
    if ckpt_path == "best":
        if t.fast_dev_run:
            raise ValueError(
                f'You cannot execute `.{fn}(ckpt_path="best")` with `fast_dev_run=True`. Please pass an exact checkpoint'
                f" path to `.{fn}(ckpt_path=...)`"
            )
        callbacks = [cb for cb in t.callbacks if isinstance(cb, Checkpoint) and hasattr(cb, "best_model_path")]
        if not callbacks:
            raise ValueError(
                f'`.{fn}(ckpt_path="best")` is set but `ModelCheckpoint` is not configured: add'
                " `ModelCheckpoint(...)` to the callbacks, or pass a checkpoint file path."
            )
        best = callbacks[0].best_model_path
        if not best:
            raise ValueError(
                f'`.{fn}(ckpt_path="best")` is set but `ModelCheckpoint` has not saved a best checkpoint yet: run'
                f" `fit` first or pass `.{fn}(ckpt_path=<path>)`."
            )
        return best
    if ckpt_path == "hpc":
        path = hpc_resume_path(t.default_root_dir)
        if path is None:
            raise ValueError(
                f'`.{fn}(ckpt_path="hpc")` is set but no HPC checkpoint (`hpc_ckpt_<n>.ckpt`) was found in'
                f" {t.default_root_dir}. Pass an exact checkpoint path to `.{fn}(ckpt_path=...)`."
            )
        return path
    if ckpt_path == "last":
        candidates = _last_candidates(t)
        if not candidates:
            rank_zero_warn(
                f'.{fn}(ckpt_path="last") is set, but there is no last checkpoint available.'
                " No checkpoint will be loaded."
            )
            return None
        return max(candidates, key=_mtime)
    path = str(ckpt_path)
    from ember.checkpoint_io import get_filesystem

    fs = get_filesystem(path)
    if not fs.exists(path):
        raise FileNotFoundError(
            f"Checkpoint file not found: {path}. Pass an existing file, `ckpt_path='last'` or `ckpt_path='best'`."
        )
    return path


def _hpc_numbers(folder: str) -> list[int]:
    from ember.checkpoint_io import get_filesystem

    fs = get_filesystem(folder)
    if not fs.isdir(folder):
        return []
    names = (os.path.basename(str(entry).rstrip("/")) for entry in fs.ls(folder, detail=False))
    return [int(m.group(1)) for m in (re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", n) for n in names) if m]


def hpc_resume_path(folder: str) -> str | None:
    """The newest ``hpc_ckpt_<n>.ckpt`` in ``folder`` (what a requeued SLURM job resumes from), if any."""
    numbers = _hpc_numbers(folder)
    return os.path.join(folder, f"hpc_ckpt_{max(numbers)}.ckpt") if numbers else None


def hpc_save_path(folder: str) -> str:
    """Where the next SLURM requeue checkpoint goes: ``hpc_ckpt_<n+1>.ckpt`` in ``folder`` (Lightning's names)."""
    return os.path.join(folder, f"hpc_ckpt_{max(_hpc_numbers(folder), default=0) + 1}.ckpt")


def _last_candidates(t: Trainer) -> list[str]:
    from ember.callbacks.checkpoint import Checkpoint
    from ember.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
    from ember.checkpoint_io import get_filesystem

    found: list[str] = []
    for cb in t.callbacks:
        if isinstance(cb, OnExceptionCheckpoint):
            path = getattr(cb, "ckpt_path", None)
            if path and get_filesystem(path).exists(path):
                found.append(path)
        elif isinstance(cb, Checkpoint):
            dirpath = getattr(cb, "dirpath", None)
            if dirpath is None:
                dirpath = getattr(cb, "_resolve_dirpath", lambda _t: None)(t)
            if not dirpath:
                continue
            fs = get_filesystem(str(dirpath))
            if not fs.isdir(str(dirpath)):
                continue
            name = getattr(cb, "CHECKPOINT_NAME_LAST", "last")
            pattern = (
                re.compile(r"^" + re.escape(name).replace(r"\{", "{").split("{")[0] + r".*\.ckpt$")
                if "{" in name
                else re.compile(rf"^{re.escape(name)}(-v\d+)?\.ckpt$")
            )
            for entry in fs.ls(str(dirpath), detail=False):
                if pattern.match(os.path.basename(entry)):
                    found.append(
                        entry
                        if "://" in str(dirpath) or os.path.isabs(entry)
                        else os.path.join(str(dirpath), os.path.basename(entry))
                    )
    return found


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


# ---------------------------------------------------------------------------------------
# restoring
# ---------------------------------------------------------------------------------------
def load_for_trainer(t: Trainer, path: str, weights_only: bool | None) -> dict[str, Any]:
    from ember.checkpoint_io import load_checkpoint

    rank_zero_info(f"Restoring states from the checkpoint path at {path}")
    return load_checkpoint(path, map_location="cpu", weights_only=weights_only)


def restore_modules_and_callbacks(t: Trainer, checkpoint: dict[str, Any]) -> None:
    """Module weights, datamodule state and callback states (before ``configure_optimizers``)."""
    module = t._module
    t._hooks.call_module("on_load_checkpoint", checkpoint)
    if "state_dict" not in checkpoint:
        raise KeyError(
            f"The checkpoint has no 'state_dict' entry (keys: {sorted(checkpoint)}): it is not a model checkpoint."
        )
    # through the strategy: after an FSDP fit in this process the parameters are still sharded
    load_module_state(module, checkpoint["state_dict"], module.strict_loading, load=t.strategy.load_model_state_dict)
    datamodule = t.datamodule
    if datamodule is not None:
        key = type(datamodule).__qualname__
        if key in checkpoint:
            datamodule.load_state_dict(checkpoint[key])
    for cb in t.callbacks:
        cb.on_load_checkpoint(t, module, checkpoint)
    states = checkpoint.get("callbacks")
    if not states:
        return
    for cb in t.callbacks:
        state = states.get(cb.state_key, states.get(getattr(cb, "_legacy_state_key", None)))
        if state:
            cb.load_state_dict(dict(state))


def load_module_state(module: torch.nn.Module, state_dict: dict[str, Any], strict: bool, load: Any = None) -> None:
    """``load_state_dict`` whose error lists the missing and unexpected keys and what to do.

    ``load(state_dict, strict=...)`` replaces ``module.load_state_dict`` (a strategy's loader).
    """
    own = set(module.state_dict())
    given = set(state_dict)
    missing = sorted(own - given)
    unexpected = sorted(given - own)
    if strict and (missing or unexpected):
        raise RuntimeError(
            f"The checkpoint's weights do not fit {type(module).__name__}: missing keys {missing[:20]}"
            f"{' ...' if len(missing) > 20 else ''}, unexpected keys {unexpected[:20]}"
            f"{' ...' if len(unexpected) > 20 else ''}. Build the model with the same architecture as when the"
            " checkpoint was saved, or load with `strict=False` to skip the mismatched keys."
        )
    result = (load or module.load_state_dict)(state_dict, strict=strict)
    if not strict and (result.missing_keys or result.unexpected_keys):
        rank_zero_warn(
            f"Found keys that are not in the model state dict but in the checkpoint: {result.unexpected_keys};"
            f" keys in the model but not in the checkpoint: {result.missing_keys}"
        )


def restore_training_state(t: Trainer, checkpoint: dict[str, Any]) -> None:
    """Precision scaler, loop progress, optimizers and schedulers (after ``on_fit_start``)."""
    if "optimizer_states" not in checkpoint:
        raise KeyError(
            "Trying to restore optimizer state but checkpoint contains only the model. This is probably due to"
            " `ModelCheckpoint.save_weights_only` being set to `True`."
        )
    if "MixedPrecision" in checkpoint:
        t._precision.load_state_dict(checkpoint["MixedPrecision"])
    _restore_progress(t, checkpoint)
    states = checkpoint["optimizer_states"]
    if len(states) != len(t.optimizers):
        raise RuntimeError(
            f"The checkpoint holds {len(states)} optimizer states but `configure_optimizers` returned"
            f" {len(t.optimizers)} optimizers: resume with the same optimizer setup."
        )
    for optimizer, state in zip(t.optimizers, states):
        t.strategy.load_optimizer_state_dict(optimizer, state)
    schedulers = checkpoint.get("lr_schedulers", [])
    for config, state in zip(t.lr_scheduler_configs, schedulers):
        config.scheduler.load_state_dict(state)


def _restore_progress(t: Trainer, checkpoint: dict[str, Any]) -> None:
    progress = t._progress
    ember_state = checkpoint.get(EMBER_KEY)
    if ember_state is not None:
        progress.load_state_dict(ember_state["progress"])
        same_world = ember_state.get("world_size", 1) == t.world_size
        rng = ember_state.get("rng") if same_world else None
        if ember_state.get("train_results"):
            t._train_results.load_state_dict(ember_state["train_results"])
    else:
        _progress_from_lightning(t, checkpoint)
        rng = None
    if t.max_epochs is not None and t.max_epochs != -1 and checkpoint.get("epoch", 0) > t.max_epochs:
        raise MisconfigurationException(
            f"You restored a checkpoint with current_epoch={checkpoint['epoch']}, but you have set"
            f" Trainer(max_epochs={t.max_epochs}). Raise `max_epochs` above the checkpoint's epoch to train further."
        )
    if progress.epoch_done:
        # the checkpoint was written at the end of an epoch: continue with the next one
        progress.epoch += 1
        progress.epoch_batches = 0
    progress.epoch_done = False
    epoch_rng = ember_state.get("epoch_rng") if ember_state is not None else None
    rank_rng = ember_state.get("rank_rng") if ember_state is not None and rng is not None else None
    if rank_rng and t.global_rank < len(rank_rng):
        rng, epoch_rng = rank_rng[t.global_rank]  # this rank's own states
    if progress.epoch_batches == 0:
        t._resume = {"mode": "epoch_start", "rng": rng}
    elif rng is not None and epoch_rng is not None:
        t._resume = {"mode": "exact", "rng": rng, "epoch_rng": epoch_rng}
    else:
        rank_zero_warn(
            "You're resuming from a checkpoint that ended before the epoch ended and holds no Ember resume state"
            " (RNG states and data position): the rest of this epoch draws its batches from a fresh iterator."
        )
        t._resume = {"mode": "fresh", "rng": rng}


def _progress_from_lightning(t: Trainer, checkpoint: dict[str, Any]) -> None:
    progress = t._progress
    fit = checkpoint.get("loops", {}).get("fit_loop", {})
    epoch_progress = fit.get("epoch_progress", {}).get("current", {})
    completed = epoch_progress.get("completed", checkpoint.get("epoch", 0))
    processed = epoch_progress.get("processed", completed)
    batch_current = fit.get("epoch_loop.batch_progress", {}).get("current", {})
    progress.epoch = completed
    progress.epoch_done = processed > completed
    progress.epoch_batches = 0 if progress.epoch_done else batch_current.get("processed", 0)
    progress.global_step = checkpoint.get("global_step", 0)
    progress.batches_that_stepped = fit.get("epoch_loop.state_dict", {}).get(
        "_batches_that_stepped", progress.global_step
    )
    progress.total_batches = fit.get("epoch_loop.batch_progress", {}).get("total", {}).get("processed", 0)
