"""The layout changes of Lightning's releases since 0.10, each a function of the checkpoint dict, by the release that
made it (``_MIGRATIONS``); ``utils.migrate_checkpoint`` applies those a checkpoint is older than.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ember.utilities.rank_zero import rank_zero_warn
from ember.utilities.warnings import PossibleUserWarning


# ---- the changes, by the release that made them -------------------------------------------------------
def _migrate_model_checkpoint_early_stopping(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """0.10.0: the best score and path of the checkpoint callback and early stopping's counters moved from the
    checkpoint's top level into the callbacks' states (keyed by the callback's class, the key of that time)."""
    from ember.callbacks.early_stopping import EarlyStopping
    from ember.callbacks.model_checkpoint import ModelCheckpoint

    moved = {
        "checkpoint_callback_best_model_score": (ModelCheckpoint, "best_model_score"),
        "checkpoint_callback_best_model_path": (ModelCheckpoint, "best_model_path"),
        "checkpoint_callback_best": (ModelCheckpoint, "best_model_score"),
        "early_stop_callback_wait": (EarlyStopping, "wait_count"),
        "early_stop_callback_patience": (EarlyStopping, "patience"),
    }
    callbacks = checkpoint["callbacks"] = checkpoint.get("callbacks") or {}
    for old, (callback, key) in moved.items():
        if old in checkpoint:
            callbacks[callback] = callbacks.get(callback) or {}
            callbacks[callback][key] = checkpoint.pop(old)
    return checkpoint


def _migrate_loop_global_step_to_progress_tracking(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """1.6.0: the optimizer steps are counted in the loops' progress; before, only ``global_step`` was saved
    (the loops' own entries, when saved, overwrite this on restore)."""
    fit_loop = _fit_loop_since_1_6(checkpoint)
    steps = checkpoint["global_step"]
    fit_loop["epoch_loop.batch_loop.optimizer_loop.optim_progress"]["optimizer"]["step"]["total"]["completed"] = steps
    fit_loop["epoch_loop.batch_loop.manual_loop.optim_step_progress"]["total"]["completed"] = steps
    return checkpoint


def _migrate_loop_current_epoch_to_progress_tracking(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """1.6.0: the epochs are counted in the loops' progress; before, only ``epoch`` was saved."""
    _fit_loop_since_1_6(checkpoint)["epoch_progress"]["current"]["completed"] = checkpoint["epoch"]
    return checkpoint


def _migrate_loop_batches_that_stepped(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """1.6.5: the loggers' step (batches that closed an optimizer step) is saved; before, it was ``global_step``."""
    epoch_loop = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]
    epoch_loop.setdefault("_batches_that_stepped", checkpoint["global_step"])
    return checkpoint


def _migrate_model_checkpoint_save_on_train_epoch_end_default(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """1.9.0: ``save_on_train_epoch_end`` left ``ModelCheckpoint``'s state key; without this, a resumed run's
    checkpoint callback would not find its state (the best model so far)."""
    callbacks = checkpoint.get("callbacks")
    if callbacks is None:
        return checkpoint

    def new_key(key: str) -> str:
        if not key.startswith("ModelCheckpoint"):
            return key
        return re.sub(", 'save_on_train_epoch_end': (None|True|False)", "", key)

    renamed = {new_key(key): state for key, state in callbacks.items() if isinstance(key, str)}
    if len(renamed) < len(callbacks):  # two callbacks whose keys differed only there, or keys that are classes
        rank_zero_warn(
            "You have multiple `ModelCheckpoint` callback states in this checkpoint, but we found state keys that"
            " would end up colliding with each other after an upgrade, which means we can't differentiate which of"
            " your checkpoint callbacks needs which states. At least one of your `ModelCheckpoint` callbacks will"
            " not be able to reload the state.",
            category=PossibleUserWarning,
        )
        return checkpoint
    checkpoint["callbacks"] = renamed
    return checkpoint


def _drop_apex_amp_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """2.0.0: apex's mixed precision is gone; its state is dropped."""
    if "amp_scaling_state" in checkpoint:
        rank_zero_warn("This checkpoint contains apex AMP data, but apex support has been removed in v2.0.0.")
        del checkpoint["amp_scaling_state"]
    return checkpoint


def _migrate_loop_structure_after_tbptt_removal(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """2.0.0: without truncated backpropagation there is no batch loop; its optimizer and manual loops are the
    epoch loop's. A custom batch loop's state is kept under ``old_batch_loop_state_dict``."""
    fit_loop = checkpoint.get("loops", {}).get("fit_loop")
    if fit_loop is None:
        return checkpoint
    for name in ("manual_loop.optim_step_progress", "manual_loop.state_dict", "optimizer_loop.optim_progress"):
        _rename(fit_loop, f"epoch_loop.batch_loop.{name}", f"epoch_loop.{name}")
    _rename(fit_loop, "epoch_loop.batch_loop.optimizer_loop.state_dict", "epoch_loop.optimizer_loop.state_dict")
    batch_loop = fit_loop.pop("epoch_loop.batch_loop.state_dict", None)
    if batch_loop:
        fit_loop["epoch_loop.state_dict"]["old_batch_loop_state_dict"] = batch_loop
    return checkpoint


def _migrate_loop_structure_after_optimizer_loop_removal(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """2.0.0: automatic optimization steps one optimizer, so there is no optimizer position to resume at, and
    the optimizer and manual loops are named after the optimization they do."""
    fit_loop = checkpoint.get("loops", {}).get("fit_loop")
    if fit_loop is None:
        return checkpoint
    if "epoch_loop.optimizer_loop.optim_progress" in fit_loop:
        fit_loop["epoch_loop.optimizer_loop.optim_progress"].pop("optimizer_position", None)
    if "epoch_loop.optimizer_loop.state_dict" in fit_loop:
        _rename(fit_loop, "epoch_loop.optimizer_loop.state_dict", "epoch_loop.automatic_optimization.state_dict")
        _rename(
            fit_loop, "epoch_loop.optimizer_loop.optim_progress", "epoch_loop.automatic_optimization.optim_progress"
        )
    if "epoch_loop.manual_loop.state_dict" in fit_loop:
        _rename(fit_loop, "epoch_loop.manual_loop.state_dict", "epoch_loop.manual_optimization.state_dict")
        _rename(
            fit_loop, "epoch_loop.manual_loop.optim_step_progress", "epoch_loop.manual_optimization.optim_step_progress"
        )
    return checkpoint


def _migrate_loop_structure_after_dataloader_loop_removal(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """2.0.0: the evaluation and prediction loops have no loop over dataloaders; their epoch loop's entries
    are theirs."""
    loops = checkpoint.get("loops")
    if loops is None:
        return checkpoint
    for name in ("predict_loop", "validate_loop", "test_loop"):
        loop = loops.get(name)
        if loop is None:
            continue
        loop.pop("dataloader_progress", None)
        for key in [key for key in loop if key.startswith("epoch_loop.")]:
            loop[key[len("epoch_loop.") :]] = loop.pop(key)
    return checkpoint


_MIGRATIONS: dict[str, list[Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "0.10.0": [_migrate_model_checkpoint_early_stopping],
    "1.6.0": [_migrate_loop_global_step_to_progress_tracking, _migrate_loop_current_epoch_to_progress_tracking],
    "1.6.5": [_migrate_loop_batches_that_stepped],
    "1.9.0": [_migrate_model_checkpoint_save_on_train_epoch_end_default],
    "2.0.0": [
        _drop_apex_amp_state,
        _migrate_loop_structure_after_tbptt_removal,
        _migrate_loop_structure_after_optimizer_loop_removal,
        _migrate_loop_structure_after_dataloader_loop_removal,
    ],
}


# ---- helpers -------------------------------------------------------------------------------------------
def _rename(entries: dict[str, Any], old: str, new: str) -> None:
    if old in entries:
        entries[new] = entries.pop(old)


def _fit_loop_since_1_6(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's fit loop entry, created with 1.6.0's layout (every count zero) where it is missing."""
    loops = checkpoint.setdefault("loops", {})
    return loops.setdefault("fit_loop", _fit_loop_state_1_6())


def _counts(*names: str) -> dict[str, Any]:
    return {"current": dict.fromkeys(names, 0), "total": dict.fromkeys(names, 0)}


def _fit_loop_state_1_6() -> dict[str, Any]:
    """The fit loop's entry as Lightning 1.6.0 saved it before any training."""
    batches = ("completed", "processed", "ready", "started")
    return {
        "epoch_loop.batch_loop.manual_loop.optim_step_progress": _counts("completed", "ready"),
        "epoch_loop.batch_loop.manual_loop.state_dict": {},
        "epoch_loop.batch_loop.optimizer_loop.optim_progress": {
            "optimizer": {"step": _counts("completed", "ready"), "zero_grad": _counts("completed", "ready", "started")},
            "optimizer_position": 0,
        },
        "epoch_loop.batch_loop.optimizer_loop.state_dict": {},
        "epoch_loop.batch_loop.state_dict": {},
        "epoch_loop.batch_progress": {**_counts(*batches), "is_last_batch": False},
        "epoch_loop.scheduler_progress": _counts("completed", "ready"),
        "epoch_loop.state_dict": {"_batches_that_stepped": 0},
        "epoch_loop.val_loop.dataloader_progress": _counts("completed", "ready"),
        "epoch_loop.val_loop.epoch_loop.batch_progress": {**_counts(*batches), "is_last_batch": False},
        "epoch_loop.val_loop.epoch_loop.state_dict": {},
        "epoch_loop.val_loop.state_dict": {},
        "epoch_progress": _counts(*batches),
        "state_dict": {},
    }
