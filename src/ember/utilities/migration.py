"""Checkpoints written by older Lightning releases, brought to the layout of the one Ember follows.

Lightning's checkpoint layout changed a few times before 2.0: where the callbacks keep their state, the
key a ``ModelCheckpoint`` stores it under, and the loops' progress entries. The trainer
(``fit(ckpt_path=...)`` and the other entry points) and ``load_from_checkpoint`` bring a checkpoint from
an older release up to date as they read it, as Lightning does, so that a resumed run picks up its
callbacks' states (the best model so far, the early-stopping count) and its place; the file itself is
left as it is. ``python -m ember.utilities.upgrade_checkpoint PATH`` rewrites the files.

Example::

    from ember.checkpoint import load_checkpoint
    from ember.utilities.migration import migrate_checkpoint

    checkpoint, applied = migrate_checkpoint(load_checkpoint("lightning-1.8.ckpt"))
    applied  # {"1.9.0": ["_migrate_model_checkpoint_save_on_train_epoch_end_default"], "2.0.0": [...]}
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from ember._version import LIGHTNING_VERSION
from ember.utilities.imports import _version_key
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn
from ember.utilities.warnings import PossibleUserWarning

__all__ = ["migrate_checkpoint", "pl_legacy_patch"]

_VERSION_KEY = "pytorch-lightning_version"
_LEGACY_VERSION_KEY = "legacy_pytorch-lightning_version"


def migrate_checkpoint(
    checkpoint: dict[str, Any], target_version: str | None = None
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Apply the layout changes of every Lightning release after the one that wrote ``checkpoint`` (up to
    ``target_version``, inclusive, when given), in place.

    Returns the checkpoint and the changes applied, by the release that made them. The checkpoint's
    ``"pytorch-lightning_version"`` becomes the version Ember follows; the one it was written with is kept
    under ``"legacy_pytorch-lightning_version"``. A checkpoint from a newer release is left as it is,
    with a warning.
    """
    written_with = checkpoint[_VERSION_KEY]
    if _version_key(written_with) > _version_key(LIGHTNING_VERSION):
        rank_zero_warn(
            f"The loaded checkpoint was produced with Lightning v{written_with}, which is newer than your current"
            f" Lightning version: v{LIGHTNING_VERSION}",
            category=PossibleUserWarning,
        )
        return checkpoint, {}
    applied: dict[str, list[str]] = {}
    for release, steps in _MIGRATIONS.items():
        if _version_key(written_with) >= _version_key(release):
            continue
        if target_version is not None and _version_key(release) > _version_key(target_version):
            continue
        for step in steps:
            checkpoint = step(checkpoint)
        applied[release] = [step.__name__ for step in steps]
    if written_with != LIGHTNING_VERSION:
        checkpoint.setdefault(_LEGACY_VERSION_KEY, written_with)
    checkpoint[_VERSION_KEY] = LIGHTNING_VERSION
    return checkpoint, applied


class pl_legacy_patch:
    """For the length of a ``with`` block, the names that checkpoints of old Lightning releases pickled and that
    Lightning has since removed, so that a full load (``weights_only=False``) of such a file finds them, as in
    Lightning: ``pytorch_lightning.utilities.argparse_utils._gpus_arg_default`` and
    ``pytorch_lightning.utilities.argparse._gpus_arg_default`` (releases before 1.2.8, whose hyperparameters held
    the Trainer's command-line arguments), and ``pytorch_lightning.utilities.enums._FaultTolerantMode``
    (before 2.0). The trainer and ``load_from_checkpoint`` read checkpoints inside it.

    Under ``install_as_lightning()`` (or with Lightning's own package imported) the names are added to those
    packages' modules, and a module they do not have is served for the block; where no package of that name
    is installed, the block serves them all. An installed Lightning that is not imported stays so: a load
    never imports it.

    Example::

        with pl_legacy_patch():
            checkpoint = torch.load("lightning-1.2.ckpt", weights_only=False)
    """

    _lock = threading.Lock()

    def __enter__(self) -> pl_legacy_patch:
        self._lock.acquire()
        self._added_modules: list[str] = []
        self._added_names: list[tuple[types.ModuleType, str]] = []
        try:
            fault_tolerant_mode = _fault_tolerant_mode()
            for root in ("pytorch_lightning", "lightning.pytorch"):
                if not _patchable(root):
                    continue
                self._provide(f"{root}.utilities.argparse_utils", "_gpus_arg_default", _gpus_arg_default)
                self._provide(f"{root}.utilities.argparse", "_gpus_arg_default", _gpus_arg_default)
                self._provide(f"{root}.utilities.enums", "_FaultTolerantMode", fault_tolerant_mode)
        except BaseException:
            self.__exit__()  # what was added goes, and the next load is not locked out
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            for module, name in self._added_names:
                if hasattr(module, name):
                    delattr(module, name)
            for module_name in reversed(self._added_modules):
                sys.modules.pop(module_name, None)
        finally:
            self._lock.release()

    def _provide(self, module_name: str, name: str, value: Any) -> None:
        module = self._module(module_name)
        if not hasattr(module, name):
            setattr(module, name, value)
            self._added_names.append((module, name))

    def _module(self, module_name: str) -> types.ModuleType:
        """The module of that name: imported where there is one, else served for the block (with its packages,
        which unpickling imports too)."""
        module = sys.modules.get(module_name)
        if module is not None:
            return module
        try:
            return importlib.import_module(module_name)
        except ImportError:
            package = module_name.rpartition(".")[0]
            if package:
                self._module(package)
            module = sys.modules[module_name] = types.ModuleType(module_name)
            self._added_modules.append(module_name)
            return module


def _patchable(root: str) -> bool:
    """Whether the legacy names go under ``root``: its package is imported (Ember's, under the alias, or
    Lightning's), the alias gives ``pytorch_lightning`` on import (Ember's own package, at no cost), or nothing
    of that name is installed. (``lightning.pytorch`` is not imported for it: an installed ``lightning``
    package loads all of its parts.)"""
    if root in sys.modules:
        return True
    top = root.partition(".")[0]
    if top == "pytorch_lightning" and os.environ.get("EMBER_AS_LIGHTNING") == "1":
        return True
    return top not in sys.modules and importlib.util.find_spec(top) is None


def _gpus_arg_default(value: Any) -> Any:
    """Lightning's old parser of ``--gpus``, as the legacy patch gives it: the value as it is."""
    return value


def _fault_tolerant_mode() -> type:
    from ember.utilities.enums import LightningEnum

    class _FaultTolerantMode(LightningEnum):
        DISABLED = "disabled"
        AUTOMATIC = "automatic"
        MANUAL = "manual"

    return _FaultTolerantMode


def migrate_loaded(checkpoint: Any, path: Any) -> Any:
    """What the trainer and ``load_from_checkpoint`` do with a checkpoint they read from ``path``: bring one
    written by Lightning up to date, and say how to upgrade the file when that changed anything. A dict
    without Lightning's version string (a hand-made one) is returned as it is."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(_VERSION_KEY), str):
        return checkpoint
    written_with = checkpoint[_VERSION_KEY]
    checkpoint, applied = migrate_checkpoint(checkpoint)
    if applied and path is not None:
        local = isinstance(path, (str, os.PathLike)) and "://" not in os.fspath(path)
        shown = os.path.relpath(path, os.getcwd()) if local else path  # a URL as it was given
        rank_zero_info(
            f"Ember upgraded the loaded checkpoint from Lightning v{written_with}'s layout to v{LIGHTNING_VERSION}'s"
            " (in memory). To apply the upgrade to your files permanently, run"
            f" `python -m ember.utilities.upgrade_checkpoint {shown}`"
        )
    return checkpoint


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
