"""Lightning's loop objects as views: what libraries built on Lightning read off the trainer.

Lightning keeps its counters in loop objects (``trainer.fit_loop``, ``trainer.validate_loop``,
``trainer.test_loop``, ``trainer.predict_loop``) and libraries read them: ``trainer.fit_loop.max_epochs``,
``fit_loop.epoch_progress.current.completed``, ``fit_loop.epoch_loop.batch_progress``,
``fit_loop.epoch_loop.val_loop.batch_progress``, ``predict_loop.epoch_batch_indices``,
``trainer._accelerator_connector.is_distributed``. Ember has one loop and one ``Progress``; these
views answer with Lightning's names and meanings, reading the current run's counters when asked.

Example::

    trainer.fit_loop.epoch_progress.current.completed   # epochs finished
    trainer.fit_loop.epoch_loop.batch_idx               # the batch being trained on
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from ember.checkpoint import ckpt_path, contents
from ember.trainer import arguments
from ember.trainer.metrics import print_results
from ember.trainer.states import TrainerFn
from ember.utilities.rank_zero import WarningCache

if TYPE_CHECKING:
    from ember.trainer.run import Progress, Run
    from ember.trainer.trainer import Trainer


class _View:
    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    @property
    def _run(self) -> Run:
        return self._trainer._run

    @property
    def _progress(self) -> Progress:
        return self._trainer._run.progress


_TRACKERS = {
    frozenset({"ready", "completed"}): "_ReadyCompletedTracker",
    frozenset({"ready", "completed", "started"}): "_StartedTracker",
    frozenset({"ready", "completed", "started", "processed"}): "_ProcessedTracker",
}
_PROGRESS = {
    frozenset({"total", "current"}): "_Progress",
    frozenset({"total", "current", "is_last_batch"}): "_BatchProgress",
    frozenset({"step", "zero_grad"}): "_OptimizerProgress",
    frozenset({"optimizer"}): "_OptimizationProgress",
}


def progress_repr(state: dict[str, Any]) -> str:
    """How Lightning's progress dataclass with this state dict prints, e.g.
    ``_Progress(total=_ReadyCompletedTracker(ready=2, completed=2), current=...)``."""
    keys = frozenset(state)
    name = _TRACKERS.get(keys) or _PROGRESS.get(keys, "_Progress")
    fields = (
        f"{key}={progress_repr(value) if isinstance(value, dict) else repr(value)}" for key, value in state.items()
    )
    return f"{name}({', '.join(fields)})"


class _ProgressRepr:
    """Prints as Lightning's progress object of the same state does (its dataclass ``repr``)."""

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return progress_repr(self.state_dict())


class _EpochCounter(_ProgressRepr, _View):
    """``epoch_progress.current`` / ``.total``: epochs ready, started, processed and completed."""

    @property
    def ready(self) -> int:
        p = self._progress
        return p.epoch + (1 if p.epoch_batches or p.epoch_done else 0)

    started = ready

    @property
    def processed(self) -> int:
        return self._progress.epochs_processed

    @property
    def completed(self) -> int:
        return self._progress.epoch

    @completed.setter
    def completed(self, value: int) -> None:
        self._progress.epoch = value

    def state_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "completed": self.completed, "started": self.started, "processed": self.processed}


class _Counts(_ProgressRepr):
    """A read-only tracker of Lightning's progress objects (``ready``, ``started``, ...), from its state dict."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.__dict__.update(counts)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _counts(trainer: Trainer, *key: str) -> dict[str, Any]:
    """The counts a checkpoint written now holds under ``key`` (a path into ``loops["fit_loop"]``)."""
    state: Any = contents.fit_loop_counts(trainer, trainer._run)
    for part in key:
        state = state[part]
    return dict(state)


class _Progress(_ProgressRepr):
    """A read-only Lightning progress object (``total``, ``current``, ``state_dict()``), from its state dict."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state
        self.total, self.current = _Counts(state["total"]), _Counts(state["current"])

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._state)


class _EpochProgress(_ProgressRepr, _View):
    @property
    def current(self) -> _EpochCounter:
        return _EpochCounter(self._trainer)

    total = current

    def state_dict(self) -> dict[str, Any]:
        return _counts(self._trainer, "epoch_progress")


class _BatchCounter(_ProgressRepr, _View):
    """Batches fetched (``ready``), started, trained on (``processed``) and done with (``completed``), as
    Lightning counts them at this point: the counts a checkpoint written now holds."""

    def __init__(self, trainer: Trainer, across_epochs: bool) -> None:
        super().__init__(trainer)
        self._part = "total" if across_epochs else "current"

    def _count(self, name: str) -> int:
        counts: int = self.state_dict()[name]
        return counts

    def state_dict(self) -> dict[str, Any]:
        return dict(contents.batch_progress(self._trainer, self._run)[self._part])

    @property
    def ready(self) -> int:
        return self._count("ready")

    @property
    def started(self) -> int:
        return self._count("started")

    @property
    def processed(self) -> int:
        return self._count("processed")

    @property
    def completed(self) -> int:
        return self._count("completed")


class _BatchProgress(_ProgressRepr, _View):
    @property
    def current(self) -> _BatchCounter:
        return _BatchCounter(self._trainer, across_epochs=False)

    @property
    def total(self) -> _BatchCounter:
        return _BatchCounter(self._trainer, across_epochs=True)

    @property
    def is_last_batch(self) -> bool:
        return self._trainer.is_last_batch

    def state_dict(self) -> dict[str, Any]:
        return contents.batch_progress(self._trainer, self._run)


class EvaluationLoopView(_View):
    """``trainer.validate_loop``, ``trainer.test_loop`` and ``trainer.fit_loop.epoch_loop.val_loop``: the
    batches run by that loop in the current (or last) call of its entry point, kept through other calls."""

    def __init__(self, trainer: Trainer, fn: str, key: str) -> None:
        super().__init__(trainer)
        self._fn, self._key = fn, key
        self._counts_name = "fit_val" if fn == "fit" else fn  # the name `Trainer._batch_counts` gives this loop
        # Lightning's attributes: `validate`/`test(verbose=...)` set the first, the Trainer's argument the second
        self.verbose = True
        self.inference_mode = trainer.inference_mode

    @staticmethod
    def _print_results(results: list[dict[str, Any]], stage: str) -> None:
        """Print the table of ``validate``/``test`` results (one dict of tensors per dataloader), as Lightning's
        loop does; a library that puts its own loop on ``trainer.test_loop`` prints its own table here."""
        print_results(results, stage)

    @property
    def batch_progress(self) -> _Progress:
        """The batches this loop ran in its last (or running) epoch (``current``) and in all (``total``), as
        Lightning counts them: inside a batch, ``ready`` counts it from its fetch, ``completed`` after its end hooks."""
        return _Progress(contents.eval_batch_progress(self._trainer, TrainerFn(self._fn), self._key))

    @property
    def max_batches(self) -> list[int | float]:
        """Batches per dataloader that this loop runs (after the ``limit_*_batches``), from its current or last
        call; in the sanity check, every evaluation loop reads them cut to ``num_sanity_val_steps``, as Lightning's."""
        counts: list[int | float] = self._trainer._batch_counts(self._counts_name)
        if self._trainer.sanity_checking:
            return [min(self._trainer.num_sanity_val_steps, batches) for batches in counts]
        return counts

    @property
    def num_dataloaders(self) -> int:
        """The number of dataloaders of this loop, known in its own call once they are loaded; as Lightning's, it
        fails before that and in any other call (their loaders belong to the call)."""
        run = self._run
        counts = run.eval_batches.get(self._key) if run.fn == self._fn else None
        assert counts is not None, f"`{self._counts_name}` loop has no dataloaders in this call"
        return len(counts)

    @property
    def _data_source(self) -> _DataSource:
        """Where this loop's dataloaders come from, as Lightning's private ``_DataLoaderSource``: the
        loaders passed to the call, else the datamodule, else the module (gluonts asks
        ``val_loop._data_source.is_defined()`` to choose the metric its scheduler monitors)."""
        trainer = self._trainer
        passed = trainer._run.eval_sources.get(self._key)
        instance = passed if passed is not None else (trainer._run.datamodule or trainer.lightning_module)
        return _DataSource(instance, f"{self._key}_dataloader")

    def setup_data(self) -> None:
        """Request and prepare this loop's dataloaders now (``trainer.num_<stage>_batches`` is known after)."""
        from ember.trainer import dataloaders
        from ember.trainer.states import RunningStage

        stage = {"val": RunningStage.VALIDATING, "test": RunningStage.TESTING}.get(self._key, RunningStage.PREDICTING)
        dataloaders.eval_dataloaders(self._trainer, self._run, stage)


class _DataSource:
    """``instance`` (dataloaders, a datamodule or the module) and the hook ``name`` that gives them."""

    def __init__(self, instance: Any, name: str) -> None:
        self.instance, self.name = instance, name

    def _base(self) -> type | None:
        from ember.core.datamodule import LightningDataModule
        from ember.core.module import LightningModule

        return next((base for base in (LightningModule, LightningDataModule) if isinstance(self.instance, base)), None)

    def is_module(self) -> bool:
        return self._base() is not None

    def is_defined(self) -> bool:
        """Dataloaders can be had: they were passed, or the module or datamodule overrides the hook."""
        from ember.core.hooks import runs_other_code

        base = self._base()
        return self.instance is not None and (base is None or runs_other_code(self.instance, base, self.name))


class _StepCounter(_ProgressRepr, _View):
    """``optim_step_progress.total`` / ``.current``: optimizer steps, which ``trainer.global_step`` reads.

    A module that steps raw torch optimizers adds its steps here, as on Lightning (PINA's
    manual-optimization solvers do ``total.completed += 1``): setting ``completed`` moves the global step;
    ``ready`` follows it.
    """

    @property
    def completed(self) -> int:
        return self._progress.global_step

    @completed.setter
    def completed(self, value: int) -> None:
        self._progress.global_step = int(value)

    @property
    def ready(self) -> int:
        return self._progress.global_step

    @ready.setter
    def ready(self, value: int) -> None:
        pass  # counted once, through `completed`

    def state_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "completed": self.completed}


_MANUAL_STEPS = ("epoch_loop.manual_optimization.optim_step_progress",)
_AUTOMATIC = ("epoch_loop.automatic_optimization.optim_progress", "optimizer")


class _StepProgress(_ProgressRepr, _View):
    """Lightning's optimizer-step progress. Programs that step raw torch optimizers in manual optimization count
    their steps with ``increment_completed()``, which moves ``trainer.global_step``."""

    def __init__(self, trainer: Trainer, key: tuple[str, ...]) -> None:
        super().__init__(trainer)
        self._key = key  # where a checkpoint keeps these counts

    @property
    def total(self) -> _StepCounter:
        return _StepCounter(self._trainer)

    @property
    def current(self) -> _Counts:
        """This epoch's steps (read-only)."""
        return _Progress(_counts(self._trainer, *self._key)).current

    def increment_ready(self) -> None:
        pass  # `ready` follows `completed`

    def increment_completed(self) -> None:
        self._progress.global_step += 1

    def state_dict(self) -> dict[str, Any]:
        return _counts(self._trainer, *self._key)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._progress.global_step = int(state_dict["total"]["completed"])


class _ManualOptimizationView(_View):
    """``epoch_loop.manual_optimization``: its ``optim_step_progress``."""

    @property
    def optim_step_progress(self) -> _StepProgress:
        return _StepProgress(self._trainer, _MANUAL_STEPS)


class _OptimizerProgress(_ProgressRepr, _View):
    """``optim_progress.optimizer``: its optimizer ``step`` and ``zero_grad`` counts."""

    @property
    def step(self) -> _StepProgress:
        return _StepProgress(self._trainer, (*_AUTOMATIC, "step"))

    @property
    def zero_grad(self) -> _Progress:
        return _Progress(_counts(self._trainer, *_AUTOMATIC, "zero_grad"))

    def state_dict(self) -> dict[str, Any]:
        return _counts(self._trainer, *_AUTOMATIC)


class _OptimizationProgress(_ProgressRepr, _View):
    """``epoch_loop.automatic_optimization.optim_progress``."""

    @property
    def optimizer(self) -> _OptimizerProgress:
        return _OptimizerProgress(self._trainer)

    @property
    def optimizer_steps(self) -> int:
        """Steps automatic optimization took (0 in manual optimization, as in Lightning)."""
        steps: int = _counts(self._trainer, *_AUTOMATIC, "step")["total"]["completed"]
        return steps

    def state_dict(self) -> dict[str, Any]:
        return _counts(self._trainer, _AUTOMATIC[0])


class _AutomaticOptimizationView(_View):
    """``epoch_loop.automatic_optimization``: its ``optim_progress``."""

    @property
    def optim_progress(self) -> _OptimizationProgress:
        return _OptimizationProgress(self._trainer)


class _TrainingEpochLoopView(_View):
    """``trainer.fit_loop.epoch_loop``; its ``val_loop`` is one object, quiet (``verbose=False``) as Lightning's."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        self.val_loop = EvaluationLoopView(trainer, "fit", "val")  # the validation loop run inside `fit`
        self.val_loop.verbose = False

    @property
    def manual_optimization(self) -> _ManualOptimizationView:
        return _ManualOptimizationView(self._trainer)

    @property
    def automatic_optimization(self) -> _AutomaticOptimizationView:
        return _AutomaticOptimizationView(self._trainer)

    @property
    def batch_progress(self) -> _BatchProgress:
        return _BatchProgress(self._trainer)

    @property
    def scheduler_progress(self) -> _Progress:
        """Learning-rate scheduler steps, as Lightning counts them (read-only)."""
        return _Progress(_counts(self._trainer, "epoch_loop.scheduler_progress"))

    @property
    def restarting(self) -> bool:
        """``fit_loop.restarting`` until the first batch after the resume has completed (or the epoch ended)."""
        run = self._run
        return run.restarting and self.batch_progress.total.completed == run.restarted_at_batch

    @property
    def batch_idx(self) -> int:
        """The batch being trained on (within the epoch)."""
        return self.batch_progress.current.ready - 1

    @property
    def total_batch_idx(self) -> int:
        """The batch being trained on (across epochs)."""
        return self.batch_progress.total.ready - 1

    @property
    def global_step(self) -> int:
        return self._progress.global_step

    @property
    def _batches_that_stepped(self) -> int:
        return self._progress.batches_that_stepped

    @_batches_that_stepped.setter
    def _batches_that_stepped(self, value: int) -> None:
        self._progress.batches_that_stepped = value

    @property
    def max_steps(self) -> int:
        return self._trainer.max_steps

    @max_steps.setter
    def max_steps(self, value: int) -> None:
        self._trainer._max_steps = value

    @property
    def min_steps(self) -> int | None:
        return self._trainer.min_steps

    @min_steps.setter
    def min_steps(self, value: int | None) -> None:
        self._trainer._min_steps = value

    def _accumulated_batches_reached(self) -> bool:
        return (self.batch_idx + 1) % self._trainer.accumulate_grad_batches == 0

    def _should_accumulate(self) -> bool:
        """Whether the current batch only accumulates gradients (no optimizer step after it)."""
        return not self._accumulated_batches_reached() and not self._trainer.is_last_batch


class FitLoopView(_View):
    """``trainer.fit_loop``: the epoch limits and counters, with Lightning's names."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        self.epoch_loop = _TrainingEpochLoopView(trainer)  # one object, which programs may give attributes

    def state_dict(self) -> dict[str, Any]:
        """The loop's state: what a checkpoint written now holds under ``loops["fit_loop"]``."""
        state: dict[str, Any] = contents.loops_state(self._trainer, self._run)["fit_loop"]
        return state

    @property
    def max_epochs(self) -> int | None:
        return self._trainer.max_epochs

    @max_epochs.setter
    def max_epochs(self, value: int) -> None:
        self._trainer._max_epochs = value

    @property
    def min_epochs(self) -> int | None:
        return self._trainer.min_epochs

    @min_epochs.setter
    def min_epochs(self, value: int) -> None:
        self._trainer._min_epochs = value

    @property
    def max_steps(self) -> int:
        return self._trainer.max_steps

    @property
    def min_steps(self) -> int | None:
        return self._trainer.min_steps

    @property
    def max_batches(self) -> int | float:
        """Training batches per epoch (``trainer.num_training_batches``): inf before a ``fit`` has loaded its data."""
        return self._trainer.num_training_batches

    @property
    def epoch_progress(self) -> _EpochProgress:
        return _EpochProgress(self._trainer)

    @property
    def done(self) -> bool:
        """Whether ``fit`` has nothing left to train: no training batches, ``max_steps`` or ``max_epochs`` reached,
        or a stop set that ``min_epochs``/``min_steps`` allow. Lightning's property also logs why each time it is
        read; this one only answers."""
        from ember.trainer.loop import fit_done

        return fit_done(self._trainer, self._run)

    @property
    def restarting(self) -> bool:
        """Whether training resumed from a checkpoint written inside an epoch (or by a run that ``max_steps``
        limits), until that epoch ends, as in Lightning."""
        return self._run.restarting

    @restarting.setter
    def restarting(self, value: bool) -> None:
        self._run.restarting = bool(value)

    @property
    def is_resuming(self) -> bool:
        """Whether fit loaded a checkpoint and has not trained a whole epoch since, as in Lightning (it stays
        true through a ``fit`` that trained nothing)."""
        return self._run.fit_resuming

    @property
    def batch_idx(self) -> int:
        return self.epoch_loop.batch_idx

    @property
    def total_batch_idx(self) -> int:
        return self.epoch_loop.total_batch_idx

    def _should_accumulate(self) -> bool:
        return self.epoch_loop._should_accumulate()

    @property
    def _combined_loader(self) -> Any:
        """The ``CombinedLoader`` of the training loaders, one loader too (cellarium-ml sets its datasets'
        epoch through it); ``None`` until ``fit`` asks for them."""
        return self._run.train_combined_loader

    def setup_data(self) -> None:
        """Request and prepare the training dataloader now (``trainer.num_training_batches`` is known after)."""
        from ember.trainer import dataloaders

        if self._run.train_dataloader is None:
            dataloaders.setup_train_dataloader(self._trainer, self._run)


class PredictLoopView(EvaluationLoopView):
    """``trainer.predict_loop``: what prediction writers read about the current and past batches."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer, "predict", "predict")
        self.current_batch_indices: list[int] = []  # the current batch's dataset indices, as in Lightning
        self._warning_cache = WarningCache()  # the predict loop's warnings: once per trainer, as in Lightning
        self._last_return_predictions = False  # the last `predict`'s setting: Lightning's loop starts with False

    @property
    def return_predictions(self) -> bool:
        """Whether ``predict`` keeps its outputs and returns them: the running (or last) call's setting."""
        run = self._run
        return run.return_predictions if run.fn == TrainerFn.PREDICTING else self._last_return_predictions

    @return_predictions.setter
    def return_predictions(self, value: bool | None) -> None:
        """Set in a callback's ``setup`` or during prediction (libraries set it False so that nothing is kept): from
        then on the loop keeps the outputs or not, and ``predict`` returns them or None. ``None`` is Lightning's
        default: True, except with processes spawned or forked."""
        setting = arguments.return_predictions(self._trainer, value)
        self._last_return_predictions = setting
        if self._run.fn == TrainerFn.PREDICTING:
            self._run.return_predictions = setting

    @property
    def max_batches(self) -> list[int | float]:
        """Batches per predict dataloader of the current or last ``predict`` (no sanity check cuts them)."""
        counts: list[int | float] = self._trainer._batch_counts("predict")
        return counts

    @property
    def epoch_batch_indices(self) -> list[list[list[int]]]:
        """Per predict dataloader, the dataset indices of each batch of the last ``predict``."""
        return self._run.predict_batch_indices or []

    @property
    def predictions(self) -> Any:
        """The outputs the running (or last) ``predict`` keeps: a list, or a list per dataloader when there are
        several; an empty list when it keeps none, and outside a ``predict``."""
        predictions = self._run.predictions
        if predictions is None:
            return []
        if isinstance(predictions, list) and len(predictions) == 1:
            return predictions[0]
        return predictions


class EnableValidation:
    """Whether ``fit`` validates: it has validation data, a ``validation_step`` and ``limit_val_batches > 0``."""

    def __get__(self, trainer: Trainer | None, owner: type | None = None) -> Any:
        if trainer is None:
            return self
        from ember.core.datamodule import LightningDataModule
        from ember.core.hooks import overrides
        from ember.core.module import LightningModule

        module, run = trainer.lightning_module, trainer._run
        datamodule = run.datamodule
        if module is None or not trainer.limit_val_batches:
            return False
        # the hook of the call's datamodule, alone where there is one (the module's is not asked then), as the
        # loop takes its data (`dataloaders.hook_defined`)
        source, base = (module, LightningModule) if datamodule is None else (datamodule, LightningDataModule)
        has_data = (
            run.val_dataloaders is not None
            or run.eval_sources.get("val") is not None
            or overrides(source, base, "val_dataloader")
        )
        return bool(has_data) and overrides(module, LightningModule, "validation_step")

    def __set__(self, trainer: Trainer, value: Any) -> None:  # read-only, as Lightning's property
        raise AttributeError(f"property 'enable_validation' of {type(trainer).__name__!r} object has no setter")


def loop_views(trainer: Trainer) -> tuple[FitLoopView, EvaluationLoopView, EvaluationLoopView, PredictLoopView]:
    """``trainer.fit_loop``, ``.validate_loop``, ``.test_loop`` and ``.predict_loop``."""
    validate, test = EvaluationLoopView(trainer, "validate", "val"), EvaluationLoopView(trainer, "test", "test")
    return FitLoopView(trainer), validate, test, PredictLoopView(trainer)


class CheckpointConnectorView(_View):
    """``trainer._checkpoint_connector``: Lightning's private checkpoint connector. Integrations call
    ``dump_checkpoint`` to write a checkpoint themselves (mlflow's autologging, on rank 0 only),
    ``restore`` to load one into a running trainer (NeMo's checkpoint callback loads the best weights
    back at the end of training), or its steps one by one (finetuning-scheduler restores the best
    checkpoint's weights and optimizers at each phase change):

        connector.resume_start(path)       # read the file (all ranks)
        connector.restore_model()          # and restore_datamodule(), restore_callbacks(),
        connector.restore_optimizers_and_schedulers()   # restore_precision_plugin_state(), ...
        connector.resume_end()             # forget the checkpoint, wait for every rank
    """

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        self._ckpt_path: Any = None
        self._loaded_checkpoint: dict[str, Any] = {}

    def hpc_save_path(self, folderpath: Any) -> str:
        """Where the next SLURM requeue checkpoint goes in ``folderpath``: ``hpc_ckpt_<n+1>.ckpt`` (Lightning's names;
        its pipelines save there to simulate a requeue)."""
        return ckpt_path.hpc_save_path(str(folderpath))

    @property
    def _hpc_resume_path(self) -> str | None:
        """The newest ``hpc_ckpt_<n>.ckpt`` in ``default_root_dir``, what ``ckpt_path="hpc"`` resumes from, or None."""
        return ckpt_path.hpc_resume_path(str(self._trainer.default_root_dir))

    def dump_checkpoint(self, weights_only: bool | None = None) -> dict[str, Any]:
        """The checkpoint dict ``trainer.save_checkpoint`` would write, built on this rank alone."""
        return contents.dump_checkpoint(
            self._trainer, self._trainer._run, contents.resolve_weights_only(weights_only), all_ranks=False
        )

    def restore(self, checkpoint_path: Any = None, weights_only: bool | None = None) -> None:
        """Load a checkpoint into the trainer's module, datamodule and callbacks, and, in ``fit``, the
        optimizers, schedulers and counters, as ``fit(ckpt_path=...)`` does at its start. All ranks call it.
        """
        self.resume_start(checkpoint_path, weights_only)
        if self._loaded_checkpoint:
            try:
                contents.restore_modules_and_callbacks(self._trainer, self._run, self._loaded_checkpoint)
                self.restore_training_state()
            except BaseException:
                self._ckpt_path, self._loaded_checkpoint = None, {}  # no barrier: the other ranks may not fail
                raise
        self.resume_end()

    # ---- the steps of `restore`, which libraries also call one by one ----------------------------
    def resume_start(self, checkpoint_path: Any = None, weights_only: bool | None = None) -> None:
        """Read the checkpoint (through the strategy's CheckpointIO plugin); nothing without a path."""
        self._ckpt_path, self._loaded_checkpoint = checkpoint_path, {}
        if checkpoint_path is None:
            return  # Lightning's: nothing to restore
        if self._trainer.lightning_module is None or self._run.hooks is None:
            raise RuntimeError(
                "`trainer._checkpoint_connector` restores into a trainer that has run: call it from a hook or a"
                " callback, or after `fit`/`validate`/`test`/`predict`. To start from a checkpoint, pass"
                " `ckpt_path=...` to that call instead."
            )
        self._loaded_checkpoint = contents.read_checkpoint(self._trainer, checkpoint_path, weights_only)

    def restore_datamodule(self) -> None:
        if self._loaded_checkpoint:
            contents.restore_datamodule(self._trainer, self._run, self._loaded_checkpoint)

    def restore_model(self) -> None:
        if self._loaded_checkpoint:
            contents.restore_model(self._trainer, self._run, self._loaded_checkpoint)

    def restore_callbacks(self) -> None:
        if self._loaded_checkpoint:
            contents.restore_callbacks(self._trainer, self._run, self._loaded_checkpoint)

    def restore_training_state(self) -> None:
        """The precision plugin's state, and in ``fit`` the counters, optimizers and schedulers."""
        if not self._loaded_checkpoint:
            return
        if self._trainer.state.fn == "fit":
            contents.restore_training_state(self._trainer, self._run, self._loaded_checkpoint)
        else:
            self.restore_precision_plugin_state()

    def restore_precision_plugin_state(self) -> None:
        if self._loaded_checkpoint:
            contents.restore_precision_state(self._trainer, self._loaded_checkpoint)

    def restore_optimizers_and_schedulers(self) -> None:
        if self._loaded_checkpoint:
            contents.restore_optimizers_and_schedulers(self._trainer, self._loaded_checkpoint)

    def resume_end(self) -> None:
        """Say what was restored, forget the checkpoint, and wait for every rank."""
        if self._ckpt_path is not None:
            contents.say_restored(self._trainer, self._ckpt_path)
        self._ckpt_path, self._loaded_checkpoint = None, {}
        self._trainer.strategy.barrier("_CheckpointConnector.resume_end")


# Lightning's name for the connector's type (`trainer.connectors.checkpoint_connector`)
_CheckpointConnector = CheckpointConnectorView


class CallbackConnectorView(_View):
    """``trainer._callback_connector``: Lightning's private callback connector, whose ``_reorder_callbacks``
    finetuning-scheduler calls after it adds its own callbacks."""

    @staticmethod
    def _reorder_callbacks(callbacks: list[Any]) -> list[Any]:
        """Tuner callbacks first, checkpoint callbacks last, the rest in the given order."""
        from ember.trainer.defaults import reorder_callbacks

        return reorder_callbacks(callbacks)


class AcceleratorConnectorView(_View):
    """``trainer._accelerator_connector``: the outcome of the accelerator/strategy/precision arguments.

    Lightning keeps it on a private connector that some integrations read (Optuna's pruning
    callback asks ``is_distributed``).
    """

    @property
    def accelerator(self) -> Any:
        return self._trainer.accelerator

    @property
    def strategy(self) -> Any:
        return self._trainer.strategy

    @property
    def precision_plugin(self) -> Any:
        return self._trainer.strategy.precision_plugin

    @property
    def is_distributed(self) -> bool:
        """Whether the run uses several processes (DDP, FSDP)."""
        from ember.distributed.processes import runs_distributed  # here: `import ember` loads no strategy

        return runs_distributed(self._trainer.strategy)

    @property
    def _parallel_devices(self) -> list[Any]:
        """The devices of this run, one per process (PINA reads it to pick its batch size)."""
        strategy = self._trainer.strategy
        return list(getattr(strategy, "parallel_devices", None) or [strategy.root_device])
