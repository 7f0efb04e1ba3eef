"""``ModelCheckpoint``: save the model periodically, keep the best ``k`` files and ``last.ckpt``.

Differences from Lightning 2.6 (see docs/compat.md): ``last.ckpt`` is rewritten at every
checkpoint trigger, so it is always the latest state; every file is written atomically; an evicted
top-k file is deleted only after the new file and ``last.ckpt`` are in place.

With ``FSDPStrategy(state_dict_type="sharded")`` each checkpoint is a folder of the same name
(``epoch=0-step=8.ckpt/``); it is written, replaced, linked and evicted as a whole by the same
calls into ``ember.checkpoint``.
"""

from __future__ import annotations

import logging
import os
import re
import string
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from copy import deepcopy
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from weakref import proxy

import torch
from torch import Tensor

from ember.callbacks.callback import ignores_outputs, missing_before_first_step
from ember.callbacks.checkpoint import Checkpoint
from ember.checkpoint.async_io import after_pending_writes, write_pending
from ember.checkpoint.files import (
    EMBER_KEY,
    atomic_link,
    folder_entries,
    folder_problem,
    get_filesystem,
    is_local,
    open_file,
    path_exists,
    sweep_stale_temporaries,
)
from ember.utilities.argument_checks import check_number, check_type
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations
from ember.utilities.warnings import PossibleUserWarning

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer

log = logging.getLogger(__name__)

# a metric in the filename template: `{name}` or `{name:format}` (the group is "{name")
_FILENAME_GROUPS = re.compile(r"(\{.*?)[:\}]")

# For a manual-optimization module that keeps no pre-step weights. The first two sentences are
# Lightning's (tools match on them) where the trigger is `every_n_train_steps` (Lightning's manual branch has no
# other); the rest says why and gives a recipe that works for any module.
_NO_PRE_STEP_STATE = (
    "Using ModelCheckpoint with manual optimization and {trigger}, but no pre-optimization state was"
    " saved. The checkpoint will contain the model state AFTER optimization. This callback saves after"
    " `{module}.training_step` has returned, so the saved weights include every `optimizer.step()` it took"
    " and may not be the ones the step's logged metrics{monitor} were computed with. To save those, keep them"
    " in `training_step` before `optimizer.step()`; the checkpoint then holds the newest entry of"
    " `self.saved_models`:\n"
    "def training_step(self, batch, batch_idx):\n"
    "    optimizer = self.optimizers()\n"
    "    # ... forward pass, loss calculation ...\n"
    "    self.saved_models = {{batch_idx: {{k: v.detach().clone() for k, v in self.state_dict().items()}}}}\n"
    "    optimizer.zero_grad()\n"
    "    self.manual_backward(loss)\n"
    "    optimizer.step()\n"
    "If the weights after the step are what you want, ignore this warning."
)


class ModelCheckpoint(Checkpoint):
    r"""Save the model periodically, ranking files by a monitored metric.

    Args:
        dirpath: folder for the files. ``None``: ``<logger save_dir>/<name>/<version>/checkpoints``
            with a logger, else ``<default_root_dir>/checkpoints``.
        filename: a template such as ``"{epoch}-{val_loss:.2f}"``; ``None`` means ``"{epoch}-{step}"``.
        monitor: the logged metric that ranks checkpoints; ``None`` keeps the latest one(s).
        verbose: log each decision.
        save_last: ``True`` keeps a copy ``last.ckpt`` of the latest state, ``"link"`` a symlink.
        save_top_k: keep the best ``k`` files; ``0`` none, ``-1`` all.
        save_on_exception: save a checkpoint when training is interrupted by an exception.
        save_weights_only: save only the model weights (no optimizer, scheduler, callback state).
        mode: ``"min"`` or ``"max"``: which direction of ``monitor`` is better.
        auto_insert_metric_name: write ``{epoch}`` as ``epoch=3``; turn off for names with ``/``.
        every_n_train_steps: save every N optimizer steps.
        train_time_interval: save at most once per interval of wall time.
        every_n_epochs: save every N epochs (default 1 when no other trigger is set).
        save_on_train_epoch_end: save in ``on_train_epoch_end`` rather than after validation.
        enable_version_counter: add ``-v1``, ``-v2``... instead of overwriting an existing file.

    Example::

        checkpoint = ModelCheckpoint(monitor="val_loss", filename="{epoch}-{val_loss:.2f}", save_last=True)
        trainer = Trainer(callbacks=[checkpoint])
        trainer.fit(model)
        checkpoint.best_model_path  # e.g. ".../epoch=7-val_loss=0.12.ckpt"
    """

    CHECKPOINT_JOIN_CHAR = "-"
    CHECKPOINT_EQUALS_CHAR = "="
    CHECKPOINT_NAME_LAST = "last"
    FILE_EXTENSION = ".ckpt"
    STARTING_VERSION = 1

    def __init__(
        self,
        dirpath: str | Path | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        verbose: bool = False,
        save_last: bool | Literal["link"] | None = None,
        save_top_k: int = 1,
        save_on_exception: bool = False,
        save_weights_only: bool = False,
        mode: str = "min",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
        enable_version_counter: bool = True,
    ) -> None:
        super().__init__()
        _check_argument_types(
            monitor, save_top_k, every_n_train_steps, every_n_epochs, filename, dirpath, train_time_interval
        )
        self.monitor = monitor
        self.verbose = verbose
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.save_on_exception = save_on_exception
        self.save_weights_only = save_weights_only
        self.auto_insert_metric_name = auto_insert_metric_name
        self._save_on_train_epoch_end = save_on_train_epoch_end
        self._enable_version_counter = enable_version_counter
        self._last_global_step_saved = 0  # nothing to save before the first step
        self._last_time_checked: float | None = None
        self._defer_save_until_validation = False
        # the epoch in which a step/time trigger first found the monitored key missing (None: it was there)
        self._monitor_missing_since: int | None = None
        self._last_topk_saved: tuple[str, int] | None = None  # (path, global_step) of the newest top-k file
        self._pending_removals: list[str] = []
        self._loggers_saw_pending = False  # a logger was told of a file still being written
        self._warned: set[str] = set()
        self.current_score: Tensor | None = None
        self.best_k_models: dict[str, Tensor] = {}
        self.kth_best_model_path = ""
        self.best_model_score: Tensor | None = None
        self.best_model_path = ""
        self.last_model_path = ""
        self._last_checkpoint_saved = ""

        if mode not in ("min", "max"):
            raise MisconfigurationException(f"`mode` can be min, max but got {mode}")
        self.mode = mode
        self.kth_value = torch.tensor(torch.inf if mode == "min" else -torch.inf)

        self._fs_path = dirpath or ""
        self._fs_instance: Any = None
        self._dirpath_given = bool(dirpath)  # else the folder comes from the logger or default_root_dir
        if dirpath and is_local(dirpath):
            dirpath = os.path.realpath(os.path.expanduser(dirpath))
        self.dirpath: str | Path | None = dirpath
        self.filename = filename

        if every_n_train_steps is None and every_n_epochs is None and train_time_interval is None:
            every_n_epochs, every_n_train_steps = 1, 0
        self._every_n_epochs: int = every_n_epochs or 0
        self._every_n_train_steps: int = every_n_train_steps or 0
        self._train_time_interval: timedelta | None = train_time_interval
        self._validate_init_configuration()

    def _validate_init_configuration(self) -> None:
        if self.save_top_k < -1:
            raise MisconfigurationException(f"Invalid value for save_top_k={self.save_top_k}. Must be >= -1")
        if self._every_n_train_steps < 0:
            raise MisconfigurationException(
                f"Invalid value for every_n_train_steps={self._every_n_train_steps}. Must be >= 0"
            )
        if self._every_n_epochs < 0:
            raise MisconfigurationException(f"Invalid value for every_n_epochs={self._every_n_epochs}. Must be >= 0")
        triggers = (
            (self._every_n_train_steps >= 1) + (self._every_n_epochs >= 1) + (self._train_time_interval is not None)
        )
        if triggers > 1:
            raise MisconfigurationException(
                f"Combination of parameters every_n_train_steps={self._every_n_train_steps}, "
                f"every_n_epochs={self._every_n_epochs} and train_time_interval={self._train_time_interval} "
                "should be mutually exclusive."
            )
        if self.filename and _escapes_folder(self.filename):
            raise MisconfigurationException(
                f"`ModelCheckpoint(filename={self.filename!r})` would put checkpoints outside `dirpath`: `filename` is"
                " a name inside the checkpoint folder (subfolders are fine). Choose the folder with `dirpath` and keep"
                " `filename` relative, e.g. `ModelCheckpoint(dirpath='other/folder', filename='{epoch}-{step}')`."
            )
        if self.monitor is None and self.save_top_k not in (-1, 0, 1):
            raise MisconfigurationException(
                f"ModelCheckpoint(save_top_k={self.save_top_k}, monitor=None) is not a valid"
                " configuration. No quantity for top_k to track."
            )

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            monitor=self.monitor,
            mode=self.mode,
            every_n_train_steps=self._every_n_train_steps,
            every_n_epochs=self._every_n_epochs,
            train_time_interval=self._train_time_interval,
        )

    @property
    def every_n_epochs(self) -> int | None:
        return self._every_n_epochs

    @property
    def _fs(self) -> Any:
        """The fsspec filesystem of ``dirpath``, created when first needed (fsspec loads then)."""
        if self._fs_instance is None:
            self._fs_instance = get_filesystem(self._fs_path)
        return self._fs_instance

    @_fs.setter
    def _fs(self, path: Any) -> None:
        self._fs_path = path
        self._fs_instance = None

    # ---- hooks ----------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        dirpath = self._resolve_ckpt_dir(trainer)
        saves = stage == "fit" and (self.save_top_k != 0 or bool(self.save_last) or self.save_on_exception)
        problem = folder_problem(dirpath) if saves and trainer.is_global_zero else None
        # all ranks: rank 0's folder, and its verdict on it, so that every rank stops together
        dirpath, problem = trainer.strategy.broadcast((dirpath, problem))
        self.dirpath = dirpath
        self._fs = dirpath or ""
        if problem is not None:
            error, reason = problem
            given = getattr(self, "_dirpath_given", True)
            fix = (
                "`ModelCheckpoint(dirpath=...)`"
                if given
                else "`Trainer(default_root_dir=...)` (or the logger's `save_dir`)"
            )
            raise error(
                f"ModelCheckpoint cannot save checkpoints to '{dirpath}': {reason}. Set {fix} to a folder that can"
                " be written (or does not exist yet). (Checked when fit starts, so that no epoch is lost.)"
            )
        if trainer.is_global_zero and stage == "fit":
            self._sweep_stale_temporaries(dirpath)
            self._warn_if_dir_not_empty(dirpath)
        if self.save_last == "link" and not is_local(dirpath):
            raise ValueError(
                f"`ModelCheckpoint(save_last='link')` is only supported for local file paths, got `dirpath={dirpath}`."
            )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_time_checked = time.monotonic()
        self._monitor_missing_since = None

    def _idle_hooks(self) -> frozenset[str]:
        """The hooks that have nothing to do in this run, which the trainer need not call (see
        ``HookDispatcher``): the batch end, where no step or time interval saves and it is this class's own."""
        if self._every_n_train_steps or self._train_time_interval is not None:
            return frozenset()
        if type(self).on_train_batch_end is not _OWN_BATCH_END or "on_train_batch_end" in self.__dict__:
            return frozenset()  # a subclass's or a patched hook may do something else
        return frozenset({"on_train_batch_end"})

    @ignores_outputs
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Save when ``every_n_train_steps`` or ``train_time_interval`` says so."""
        if not self._every_n_train_steps and self._train_time_interval is None:
            return  # (a trainer does not call it then: `_idle_hooks`)
        # a step already saved (a batch without an optimizer step) still reads and restarts the clock, as in
        # Lightning: a time trigger falling on it is used up
        skip_state = self._should_skip_saving_checkpoint(trainer)
        skip_batch = self._every_n_train_steps < 1 or trainer.global_step % self._every_n_train_steps != 0
        skip_time = True
        now = time.monotonic()
        if self._train_time_interval is not None:
            previous = self._last_time_checked
            skip_time = previous is None or (now - previous) < self._train_time_interval.total_seconds()
            # all ranks: clocks differ between processes, so rank 0 decides for everyone.
            skip_time = trainer.strategy.broadcast(skip_time)
        if skip_batch and skip_time:
            return
        if not skip_time:
            self._last_time_checked = now
        if skip_state:
            return
        if self._monitor_may_still_come(trainer):
            # not logged yet in the epoch the wait began: validation or an epoch-end hook may log it
            self._defer_save_until_validation = self._validation_will_run(trainer)
            return
        if self._should_defer_to_validation(trainer, batch_idx):
            # Validation has not produced the monitored metric yet, or is about to refresh it:
            # save when validation ends instead of ranking a file by a missing or stale value.
            self._defer_save_until_validation = True
            return
        if getattr(pl_module, "automatic_optimization", True):
            self._save_at_trigger(trainer, topk=True)
            return
        with self._pre_step_weights(trainer, pl_module):
            self._save_at_trigger(trainer, topk=True)

    @contextmanager
    def _pre_step_weights(self, trainer: Trainer, pl_module: LightningModule) -> Iterator[None]:
        """In manual optimization, save the weights the step's metrics were computed with.

        ``training_step`` has already called ``opt.step()`` when this callback runs. The module keeps
        its weights from before the step in ``self.saved_models[batch_idx]``, and the newest entry is
        loaded for the time of the write. An entry is the module's ``state_dict()``, or, as in
        Lightning 2.6's recipe, the state dict of ``self.layer``. Without one, a warning says so (once;
        Lightning repeats it at every save).
        """
        saved = getattr(pl_module, "saved_models", None)
        if not (isinstance(saved, dict) and saved):
            if trainer.is_global_zero and "no_pre_step_state" not in self._warned:
                self._warned.add("no_pre_step_state")
                monitor = f" (`monitor={self.monitor!r}`)" if self.monitor else ""
                # the trigger this callback has: a save from `on_train_batch_end` comes from one of the two
                trigger = "every_n_train_steps" if self._every_n_train_steps >= 1 else "train_time_interval"
                message = _NO_PRE_STEP_STATE.format(module=type(pl_module).__name__, monitor=monitor, trigger=trigger)
                rank_zero_warn(message, category=UserWarning)
            yield
            return
        newest = max(saved)
        target = self._pre_step_target(pl_module, saved[newest], f"{type(pl_module).__name__}.saved_models[{newest!r}]")
        with torch.no_grad():
            live = {name: value.detach().clone() for name, value in target.state_dict().items()}
            target.load_state_dict(saved[newest])
            try:
                yield
            finally:
                target.load_state_dict(live)

    @staticmethod
    def _pre_step_target(pl_module: LightningModule, pre_step: Any, where: str) -> torch.nn.Module:
        """The module whose weights ``pre_step`` holds: the whole LightningModule or its ``layer``."""
        if not isinstance(pre_step, Mapping):
            raise TypeError(
                f"`{where}` is a {type(pre_step).__name__}; ModelCheckpoint loads it into the module for the"
                " time of the save, so it must be a state dict: `{k: v.detach().clone() for k, v in"
                " self.state_dict().items()}`."
            )
        keys = set(pre_step)
        if keys == set(pl_module.state_dict()):
            return pl_module
        layer = getattr(pl_module, "layer", None)
        if isinstance(layer, torch.nn.Module) and keys == set(layer.state_dict()):
            return layer

        def shown(names: list[str]) -> str:
            return f"{names[:4]}{' ...' if len(names) > 4 else ''}"

        nor_layer = " nor of `self.layer.state_dict()`" if isinstance(layer, torch.nn.Module) else ""
        raise ValueError(
            f"`{where}` has the keys {shown(sorted(keys))}, which are not those of"
            f" `{type(pl_module).__name__}.state_dict()` ({shown(sorted(pl_module.state_dict()))}){nor_layer}."
            " Keep the whole module's weights from before `optimizer.step()`: `self.saved_models = {batch_idx:"
            " {k: v.detach().clone() for k, v in self.state_dict().items()}}`."
        )

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Save at the end of the training epoch (when validation does not decide instead)."""
        if (
            self._saves_at_epoch_ends
            and not self._should_skip_saving_checkpoint(trainer)
            and self._should_save_on_train_epoch_end(trainer)
        ):
            self._save_at_trigger(trainer, topk=self._epoch_is_due(trainer))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Save after validation, including a step/time-triggered save that waited for its metric."""
        if self._should_skip_saving_checkpoint(trainer):
            return
        if self._defer_save_until_validation:
            self._defer_save_until_validation = False
            if not self._monitor_may_still_come(trainer):
                self._save_at_trigger(trainer, topk=True)
        elif self._saves_at_epoch_ends and not self._should_save_on_train_epoch_end(trainer):
            self._save_at_trigger(trainer, topk=self._epoch_is_due(trainer))

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.save_last or self._outside_training(trainer):
            return
        # Training can end between triggers (max_steps, a stop signal): keep `last` the latest state. And
        # with no top-k file in the run (none due, or `save_top_k=0`) Lightning writes `last` only now,
        # with the state at the end of training (the last epoch counted, its scheduler steps taken); so
        # does Ember, over the `last` of its final epoch end, which holds the state from before them.
        if self._last_global_step_saved != trainer.global_step or self._last_topk_saved is None:
            self._save_at_trigger(trainer, topk=False)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """With ``save_on_exception``, save the state reached when the exception was raised."""
        if not self._should_save_on_exception(trainer):
            return
        monitor_candidates = self._monitor_candidates(trainer)
        filepath = self._get_metric_interpolated_filepath_name(monitor_candidates, trainer)
        self._save_checkpoint(trainer, filepath)
        self._save_last_checkpoint(trainer, monitor_candidates)
        self._flush_removals(trainer)
        rank_zero_info(
            f"An {type(exception).__name__} was raised with message: {exception}, saved checkpoint to {filepath}"
        )

    def _should_save_on_exception(self, trainer: Trainer) -> bool:
        return (
            self.save_on_exception
            and not bool(trainer.fast_dev_run)
            and not trainer.sanity_checking
            and self._last_global_step_saved != trainer.global_step
        )

    # ---- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "best_model_score": self.best_model_score,
            "best_model_path": self.best_model_path,
            "current_score": self.current_score,
            "dirpath": self.dirpath,
            "best_k_models": self.best_k_models,
            "kth_best_model_path": self.kth_best_model_path,
            "kth_value": self.kth_value,
            "last_model_path": self.last_model_path,
        }

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """What this callback last saved, in Ember's entry (its state stays Lightning's)."""
        if EMBER_KEY in checkpoint:
            topk = None if self._last_topk_saved is None else list(self._last_topk_saved)
            checkpoint[EMBER_KEY].setdefault("model_checkpoints", {})[self.state_key] = {
                "last_global_step_saved": self._last_global_step_saved,
                "last_topk_saved": topk,
                "save_waits_for_validation": self._defer_save_until_validation,
            }

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """A resumed run goes on from what this callback had saved and had still to save: it does not save the
        step it resumed at again (Lightning's does, when the first batches after a checkpoint written inside an
        accumulation window do not step), nor `last` at the end of training when the uninterrupted run would
        not have, and a step-triggered save that waited for validation's metric is made when validation ends.
        ``current_score`` comes back too (``load_state_dict`` leaves it, as Lightning's does)."""
        saved = checkpoint.get(EMBER_KEY, {}).get("model_checkpoints", {}).get(self.state_key)
        if saved is not None:
            own_state = checkpoint.get("callbacks", {}).get(self.state_key, {})
            self.current_score = own_state.get("current_score", self.current_score)
            self._last_global_step_saved = saved["last_global_step_saved"]
            topk = saved["last_topk_saved"]
            self._last_topk_saved = None if topk is None else (topk[0], topk[1])
            self._defer_save_until_validation = saved.get("save_waits_for_validation", False)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        dirpath_from_ckpt = state_dict.get("dirpath", self.dirpath)
        if self.dirpath == dirpath_from_ckpt:
            self.best_model_score = state_dict["best_model_score"]
            self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
            self.kth_value = state_dict.get("kth_value", self.kth_value)
            self.best_k_models = state_dict.get("best_k_models", self.best_k_models)
            self.last_model_path = state_dict.get("last_model_path", self.last_model_path)
        else:
            warnings.warn(
                f"The dirpath has changed from {dirpath_from_ckpt!r} to {self.dirpath!r},"
                " therefore `best_model_score`, `kth_best_model_path`, `kth_value`, `last_model_path` and"
                " `best_k_models` won't be reloaded. Only `best_model_path` will be reloaded.",
                stacklevel=2,
            )
        self.best_model_path = state_dict["best_model_path"]

    # ---- when to save ---------------------------------------------------------------------
    def _should_skip_saving_checkpoint(self, trainer: Trainer) -> bool:
        return self._outside_training(trainer) or self._last_global_step_saved == trainer.global_step

    @staticmethod
    def _outside_training(trainer: Trainer) -> bool:
        """No checkpoint is due: a fast dev run, another call than ``fit``, or the sanity check."""
        return bool(trainer.fast_dev_run) or trainer.state.fn != "fit" or trainer.sanity_checking

    def _should_save_on_train_epoch_end(self, trainer: Trainer) -> bool:
        if self._save_on_train_epoch_end is not None:
            return self._save_on_train_epoch_end
        if not isinstance(trainer.val_check_interval, (int, float)):
            return False  # validation runs on a clock: save after it
        if trainer.check_val_every_n_epoch != 1:
            return False
        num_val_batches = trainer.num_val_batches
        if (sum(num_val_batches) if isinstance(num_val_batches, list) else num_val_batches) == 0:
            return True
        return trainer.val_check_interval == 1.0

    @property
    def _saves_at_epoch_ends(self) -> bool:
        """Epochs are a trigger (``every_n_epochs`` >= 1): ``last`` follows every epoch's end. With
        ``every_n_epochs=0`` (the steps or the clock are the trigger) no epoch end writes anything."""
        return self._every_n_epochs >= 1

    def _epoch_is_due(self, trainer: Trainer) -> bool:
        return self._saves_at_epoch_ends and (trainer.current_epoch + 1) % self._every_n_epochs == 0

    def _monitor_may_still_come(self, trainer: Trainer) -> bool:
        """Whether a save at a step/time trigger should wait for a monitored key that is not logged yet.

        A key may first be logged by validation or by an epoch-end hook (`on_train_epoch_end`, which
        runs after this callback's). Until an epoch has passed since a trigger first missed it, the
        save waits for validation (or, with none to come, is skipped, as Lightning skips it); after
        that the key is reported missing as at any other save.
        """
        if self.monitor is None or self.save_top_k == 0 or self._monitor_logged(trainer):
            self._monitor_missing_since = None
            return False
        if self._monitor_missing_since is None:
            self._monitor_missing_since = trainer.current_epoch
        return self._monitor_missing_since == trainer.current_epoch

    @staticmethod
    def _validation_will_run(trainer: Trainer) -> bool:
        num_val_batches = trainer.num_val_batches
        if isinstance(num_val_batches, list) and not num_val_batches:
            # not loaded yet (with `check_val_every_n_epoch`, only in the first epoch that validates)
            return bool(trainer.enable_validation)
        return bool(sum(num_val_batches) if isinstance(num_val_batches, list) else num_val_batches)

    def _should_defer_to_validation(self, trainer: Trainer, batch_idx: int) -> bool:
        if self.monitor is None or self.save_top_k == 0:
            return False
        if not self._validation_will_run(trainer):
            return False  # no validation will come
        if not self._monitor_logged(trainer):
            return True
        return self._validation_follows(trainer, batch_idx)

    def _monitor_logged(self, trainer: Trainer) -> bool:
        """Whether the monitored key is among the values a save can read now: the logged ones, and the
        ``epoch`` and ``step`` every save has (:meth:`_monitor_candidates`)."""
        return self.monitor in ("epoch", "step") or self.monitor in trainer.callback_metrics

    @staticmethod
    def _validation_follows(trainer: Trainer, batch_idx: int) -> bool:
        """Whether the trainer validates right after this training batch."""
        every_n = trainer.check_val_every_n_epoch
        val_check_batch = trainer.val_check_batch
        if every_n is None:
            # validation every `val_check_batch` batches counted across epochs, as the loop counts them (by time:
            # it cannot be known)
            if val_check_batch is None or val_check_batch == float("inf"):
                return False
            return (trainer.fit_loop.total_batch_idx + 1) % val_check_batch == 0
        if (trainer.current_epoch + 1) % every_n != 0:
            return False
        if val_check_batch is None or val_check_batch == float("inf"):  # None: by time, so not after a batch count
            return batch_idx + 1 >= trainer.num_training_batches
        return (batch_idx + 1) % val_check_batch == 0

    # ---- saving ---------------------------------------------------------------------------
    def _save_at_trigger(self, trainer: Trainer, topk: bool) -> None:
        # host sync: naming and ranking read metric values; this runs only at checkpoint triggers.
        monitor_candidates = self._monitor_candidates(trainer)
        if topk:
            self._save_topk_checkpoint(trainer, monitor_candidates)
        self._save_last_checkpoint(trainer, monitor_candidates)
        self._flush_removals(trainer)

    def _monitor_candidates(self, trainer: Trainer) -> dict[str, Tensor]:
        monitor_candidates = deepcopy(trainer.callback_metrics)
        # `self.log("epoch", 3)` stores a float; names want the integer.
        epoch, step = monitor_candidates.get("epoch"), monitor_candidates.get("step")
        monitor_candidates["epoch"] = epoch.int() if isinstance(epoch, Tensor) else torch.tensor(trainer.current_epoch)
        monitor_candidates["step"] = step.int() if isinstance(step, Tensor) else torch.tensor(trainer.global_step)
        return monitor_candidates

    def _save_topk_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        if self.save_top_k == 0:
            return
        if self.monitor is None:
            self._save_none_monitor_checkpoint(trainer, monitor_candidates)
            return
        if self.monitor not in monitor_candidates:
            if missing_before_first_step(trainer, self.monitor, "ModelCheckpoint"):
                return
            message = (
                f"`ModelCheckpoint(monitor={self.monitor!r})` could not find the monitored key in the returned"
                f" metrics: {list(monitor_candidates)}."
                f" HINT: Did you call `log({self.monitor!r}, value)` in the `LightningModule`?"
            )
            if trainer._run.evaluation_batches_run:  # a validation batch has run: no longer a warning, as in Lightning
                raise MisconfigurationException(message)
            if message not in self._warned:
                self._warned.add(message)
                rank_zero_warn(message)
        self._save_monitor_checkpoint(trainer, monitor_candidates)

    def check_monitor_top_k(self, trainer: Trainer, current: Tensor | None = None) -> bool:
        """Whether ``current`` earns a place among the best ``save_top_k`` checkpoints."""
        if current is None:
            return False
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        monitor_op = torch.lt if self.mode == "min" else torch.gt
        # host sync: reads the comparison at a checkpoint trigger only.
        better = bool(monitor_op(current, self.best_k_models[self.kth_best_model_path]))
        return trainer.strategy.reduce_boolean_decision(better)  # all ranks: unanimous

    def _save_monitor_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        current = monitor_candidates.get(self.monitor)  # type: ignore[arg-type]
        if self.check_monitor_top_k(trainer, current):
            self._update_best_and_save(current, trainer, monitor_candidates)  # type: ignore[arg-type]
        elif self.verbose:
            epoch, step = monitor_candidates["epoch"], monitor_candidates["step"]
            rank_zero_info(f"Epoch {epoch:d}, global step {step:d}: {self.monitor!r} was not in top {self.save_top_k}")

    def _save_none_monitor_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        filepath = self._get_metric_interpolated_filepath_name(monitor_candidates, trainer, self.best_model_path)
        # Set before saving: the path is part of the state written into the file.
        previous, self.best_model_path = self.best_model_path, filepath
        self._save_checkpoint(trainer, filepath)
        if self.save_top_k == 1 and previous and self._should_remove_checkpoint(trainer, previous, filepath):
            self._pending_removals.append(previous)

    def _update_best_and_save(self, current: Tensor, trainer: Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        k = len(self.best_k_models) + 1 if self.save_top_k == -1 else self.save_top_k
        del_filepath = None
        if len(self.best_k_models) == k and k > 0:
            del_filepath = self.kth_best_model_path
            self.best_k_models.pop(del_filepath)
        # host sync: reads the score once per checkpoint trigger; a NaN ranks last, never first.
        if torch.isnan(current):
            current = torch.tensor(float("inf" if self.mode == "min" else "-inf"), device=current.device)
        filepath = self._get_metric_interpolated_filepath_name(monitor_candidates, trainer, del_filepath)
        self.current_score = current
        self.best_k_models[filepath] = current
        if len(self.best_k_models) == k:
            worst = max if self.mode == "min" else min
            self.kth_best_model_path = worst(self.best_k_models, key=self.best_k_models.get)  # type: ignore[arg-type]
            self.kth_value = self.best_k_models[self.kth_best_model_path]
        best = min if self.mode == "min" else max
        self.best_model_path = best(self.best_k_models, key=self.best_k_models.get)  # type: ignore[arg-type]
        self.best_model_score = self.best_k_models[self.best_model_path]
        if self.verbose:
            epoch, step = monitor_candidates["epoch"], monitor_candidates["step"]
            rank_zero_info(
                f"Epoch {epoch:d}, global step {step:d}: {self.monitor!r} reached {current:0.5f}"
                f" (best {self.best_model_score:0.5f}), saving model to {filepath!r} as top {k}"
            )
        self._save_checkpoint(trainer, filepath)
        if del_filepath and self._should_remove_checkpoint(trainer, del_filepath, filepath):
            self._pending_removals.append(del_filepath)

    def _save_last_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        if not self.save_last:
            return
        filepath = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
        if self._enable_version_counter:
            version = self.STARTING_VERSION
            while self.file_exists(filepath, trainer) and filepath != self.last_model_path:
                filepath = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST, ver=version)
                version += 1
        previous, self.last_model_path = self.last_model_path, filepath
        linked = self._last_topk_saved
        if self.save_last == "link" and linked is not None and linked[1] == trainer.global_step:
            # A top-k file holds exactly this state: point at it instead of writing it twice.
            self._link_checkpoint(trainer, linked[0], filepath)
        else:
            self._save_checkpoint(trainer, filepath)
        if previous and self._should_remove_checkpoint(trainer, previous, filepath):
            self._pending_removals.append(previous)

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        # before the write, as the file records them for a resumed run (`on_save_checkpoint`)
        self._last_global_step_saved = trainer.global_step
        # a top-k file (ranked, or the one kept without a monitor) was entered before its save, `last` was not
        if filepath != self.last_model_path and (filepath in self.best_k_models or filepath == self.best_model_path):
            self._last_topk_saved = (filepath, trainer.global_step)
        trainer.save_checkpoint(filepath, self.save_weights_only)
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            self._notify_loggers(trainer)
            self._loggers_saw_pending |= write_pending(trainer.strategy, filepath)

    def _notify_loggers(self, trainer: Trainer) -> None:
        for logger in trainer.loggers:
            logger.after_save_checkpoint(proxy(self))

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # AsyncCheckpointIO: the files a logger was told about while they were written are on disk now
        if self._loggers_saw_pending:
            self._loggers_saw_pending = False
            if trainer.is_global_zero:
                self._notify_loggers(trainer)

    @staticmethod
    def _link_checkpoint(trainer: Trainer, filepath: str, linkpath: str) -> None:
        if trainer.is_global_zero:
            # with AsyncCheckpointIO, once the file linked to is on disk: the link never dangles
            after_pending_writes(trainer.strategy, atomic_link, filepath, linkpath, what=f"the link {linkpath}")
        trainer.strategy.barrier("ModelCheckpoint._link_checkpoint")  # all ranks: barrier

    def _flush_removals(self, trainer: Trainer) -> None:
        # Runs only after the new top-k file and `last` are written, so a crash in between
        # leaves an extra file, never a missing one.
        pending, self._pending_removals = self._pending_removals, []
        keep = {self.last_model_path, self.best_model_path, *self.best_k_models}
        for path in pending:
            if path not in keep:
                self._remove_checkpoint(trainer, path)

    def _should_remove_checkpoint(self, trainer: Trainer, previous: str, current: str) -> bool:
        """Never delete the file just written, the file resumed from, or a file outside ``dirpath``."""
        if previous == current:
            return False
        if not is_local(previous):
            return True
        previous_path = Path(previous).absolute()
        resume_path = Path(trainer.ckpt_path).absolute() if trainer.ckpt_path is not None else None
        if resume_path is not None and previous_path == resume_path:
            return False
        assert self.dirpath is not None
        return Path(self.dirpath).absolute() in previous_path.parents

    def _remove_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        """Through the strategy's ``CheckpointIO`` (on rank 0): after the writes queued before it."""
        trainer.strategy.remove_checkpoint(filepath)

    # ---- names ----------------------------------------------------------------------------
    def _format_checkpoint_name(
        self,
        filename: str | None,
        metrics: dict[str, Any],
        prefix: str | None = None,
        auto_insert_metric_name: bool = True,
    ) -> str:
        if not filename:
            filename = "{epoch}" + self.CHECKPOINT_JOIN_CHAR + "{step}"
        template = filename
        # Longest names first, so "{epoch}" does not clobber "{epoch_test}".
        groups = sorted(_FILENAME_GROUPS.findall(filename), key=len, reverse=True)
        for group in groups:
            name = group[1:]
            if auto_insert_metric_name:
                filename = filename.replace(group, name + self.CHECKPOINT_EQUALS_CHAR + "{" + name)
            # `{0[name]}` indexes the dict, so names with "." or "/" format too.
            filename = filename.replace(group, f"{{0[{name}]")
            if name not in metrics:
                metrics[name] = torch.tensor(0)
        try:
            filename = filename.format(metrics)
        except (ValueError, TypeError) as error:
            # a format the logged value cannot take (`{step:d}` on a float: "Unknown format code 'd'"), at a save
            raise ValueError(
                f"The checkpoint name template {template!r} could not be filled in with the logged values ({error})."
                " Logged values are floats: use a float format, e.g. `{name:.0f}` or `{name:.4f}`."
            ) from error
        if prefix:
            filename = self.CHECKPOINT_JOIN_CHAR.join([prefix, filename])
        return filename

    def format_checkpoint_name(
        self, metrics: dict[str, Any], filename: str | None = None, ver: int | None = None, prefix: str | None = None
    ) -> str:
        """The file path for ``metrics`` under the filename template (``prefix`` goes first, joined by ``-``).

        Example::

            >>> ckpt = ModelCheckpoint(dirpath="/tmp", filename="{epoch}-{val_loss:.2f}")
            >>> os.path.basename(ckpt.format_checkpoint_name(dict(epoch=2, val_loss=0.123456)))
            'epoch=2-val_loss=0.12.ckpt'
        """
        filename = self._format_checkpoint_name(
            filename or self.filename,
            metrics,
            prefix=prefix,
            auto_insert_metric_name=self.auto_insert_metric_name,
        )
        if ver is not None:
            filename = self.CHECKPOINT_JOIN_CHAR.join((filename, f"v{ver}"))
        name = f"{filename}{self.FILE_EXTENSION}"
        return os.path.join(self.dirpath, name) if self.dirpath else name

    def _get_metric_interpolated_filepath_name(
        self, monitor_candidates: dict[str, Tensor], trainer: Trainer, del_filepath: str | None = None
    ) -> str:
        self._warn_of_missing_filename_metrics(monitor_candidates, trainer)
        filepath = self.format_checkpoint_name(monitor_candidates)
        if self._enable_version_counter:
            version = self.STARTING_VERSION
            while self.file_exists(filepath, trainer) and filepath != del_filepath:
                filepath = self.format_checkpoint_name(monitor_candidates, ver=version)
                version += 1
        return filepath

    def _warn_of_missing_filename_metrics(self, metrics: dict[str, Any], trainer: Trainer) -> None:
        """Name (once each) a metric the filename asks for that is not there when a checkpoint is saved: it is
        written as 0, as Lightning writes it without a word."""
        if not self.filename:
            return
        for name in dict.fromkeys(group[1:] for group in _FILENAME_GROUPS.findall(self.filename)):
            if name in metrics or f"filename:{name}" in self._warned:
                continue
            self._warned.add(f"filename:{name}")
            rank_zero_warn(
                f"`ModelCheckpoint(filename={self.filename!r})` names `{name}`, which has not been logged when this"
                f" checkpoint is saved (epoch {trainer.current_epoch}, step {trainer.global_step}), so the name holds"
                f" 0 for it. Log `{name}` before this save, or save when it exists (e.g. `monitor={name!r}` saves"
                " after the validation that logs it).",
                category=PossibleUserWarning,
            )

    def file_exists(self, filepath: str | Path, trainer: Trainer) -> bool:
        """Whether ``filepath`` exists (or is being written) on any rank, so that all ranks pick the same names
        (only rank 0 writes); asked through ``strategy.reduce_boolean_decision``, as Lightning asks it."""
        exists = path_exists(filepath) or write_pending(trainer.strategy, filepath)
        return trainer.strategy.reduce_boolean_decision(exists, all=False)

    def _resolve_ckpt_dir(self, trainer: Trainer) -> str | Path:
        if self.dirpath is not None:
            return self.dirpath
        if len(trainer.loggers) > 0:
            # each property read as often and in the order Lightning reads it: a logger may compute them
            logger = trainer.loggers[0]
            save_dir = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
            name = logger.name
            version = logger.version
            version = version if isinstance(version, str) else f"version_{version}"
            return os.path.join(save_dir, str(name), version, "checkpoints")
        return os.path.join(trainer.default_root_dir, "checkpoints")

    _resolve_dirpath = _resolve_ckpt_dir  # the name the trainer's ckpt_path="last" lookup uses

    def _find_last_checkpoints(self, trainer: Trainer) -> set[str]:
        """The ``last*.ckpt`` files in this callback's folder (for ``ckpt_path="last"``)."""
        folder = self._resolve_ckpt_dir(trainer)
        pattern = rf"^{self.CHECKPOINT_NAME_LAST}(-(\d+))?"

        def is_last(path: Path) -> bool:
            return path.suffix == self.FILE_EXTENSION and bool(re.match(pattern, path.stem))

        return {os.path.normpath(p) for p in folder_entries(folder) if is_last(Path(p))}

    def _sweep_stale_temporaries(self, dirpath: str | Path) -> None:
        """Remove the temp files that saves killed mid-write (preemption, OOM) left in the folder."""
        removed = sweep_stale_temporaries(dirpath)
        if removed:
            names = ", ".join(os.path.basename(path) for path in removed)
            rank_zero_info(f"Removed what interrupted checkpoint saves left in {dirpath}: {names}")

    def _warn_if_dir_not_empty(self, dirpath: str | Path) -> None:
        if self.save_top_k != 0 and folder_entries(dirpath):
            rank_zero_warn(f"Checkpoint directory {dirpath} exists and is not empty.")

    def to_yaml(self, filepath: str | Path | None = None) -> None:
        """Write ``best_k_models`` (path -> score) to a YAML file, by default ``best_k_models.yaml`` in ``dirpath``."""
        import yaml

        best_k = {k: v.item() for k, v in self.best_k_models.items()}  # host sync: once, on request
        if filepath is None:
            assert self.dirpath
            filepath = os.path.join(self.dirpath, "best_k_models.yaml")
        with open_file(filepath, "w") as file:
            yaml.dump(best_k, file)


# `inspect.signature(ModelCheckpoint)` gives the types themselves, in Lightning's forms, rather than their text
# (this module's annotations are strings): a parser given a parameter's annotation as its `type` reads `save_last=yes`
lightning_style_annotations(ModelCheckpoint)


_OWN_BATCH_END = ModelCheckpoint.on_train_batch_end


def _escapes_folder(filename: str) -> bool:
    """Whether the ``filename`` template resolves outside its folder (an absolute path, ``..``, ``~``)."""
    name = re.sub(r"\{[^{}]*\}", "x", filename)  # a placeholder becomes a metric's value: no separators
    if os.path.isabs(name) or name.startswith("~") or os.path.splitdrive(name)[0]:
        return True
    normalized = os.path.normpath(name)
    return normalized == os.pardir or normalized.startswith(os.pardir + os.sep)


def _check_argument_types(
    monitor: Any,
    save_top_k: Any,
    every_n_train_steps: Any,
    every_n_epochs: Any,
    filename: Any,
    dirpath: Any,
    train_time_interval: Any,
) -> None:
    """Arguments of a type that would fail later, in the loop, with Python's words, refused where they are given.
    False values of the interval and file name arguments (``0``, ``""``) mean "not set", as in Lightning."""
    call = "ModelCheckpoint"
    check_type(call, "monitor", monitor, (str, type(None)), "the name of a logged value, or None")
    check_type(call, "save_top_k", save_top_k, (int,), "an int: how many best checkpoints to keep (-1: all, 0: none)")
    for name, value in (("every_n_train_steps", every_n_train_steps), ("every_n_epochs", every_n_epochs)):
        if value:
            check_number(call, name, value, "an int: the interval between saves (0 or None: not by this trigger)")
    if filename:
        check_type(call, "filename", filename, (str,), "a str, e.g. '{epoch}-{val_loss:.2f}'")
        try:  # (an unbalanced brace failed at the first save, after an epoch of training)
            list(string.Formatter().parse(filename))
        except ValueError as error:
            raise ValueError(
                f"`ModelCheckpoint(filename={filename!r})` is not a name template ({error}): values go in braces,"
                " '{epoch}-{val_loss:.2f}', and a brace meant as text is written twice, '{{' or '}}'."
            ) from None
    check_type(call, "dirpath", dirpath, (str, os.PathLike, type(None)), "a folder path (a str or a `pathlib.Path`)")
    check_type(call, "train_time_interval", train_time_interval, (timedelta, type(None)), "a `datetime.timedelta`")
