"""``Trainer``: the arguments, the four entry points, and the properties users read.

How a call runs is in ``lifecycle.py`` (set-up, teardown, failures) and ``loop.py`` (the loops);
the state of one call is a ``Run`` (``run.py``).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
from collections.abc import Iterable, Iterator
from datetime import timedelta
from operator import attrgetter
from typing import Any, NamedTuple, Union  # noqa: F401  # `Union`: the annotations' Lightning form names it

import torch

from ember.callbacks.callback import Callback
from ember.core.optimizer import LightningOptimizer
from ember.trainer import arguments, dataloaders, lifecycle, types, views
from ember.trainer.defaults import configure_callbacks, configure_loggers
from ember.trainer.run import Run
from ember.trainer.states import RunningStage, TrainerFn, TrainerState, TrainerStatus
from ember.utilities.enums import GradClipAlgorithmType
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info
from ember.utilities.signature_utils import lightning_style_annotations


class _ReadOnly:
    """A documented read-only ``Trainer`` property that reads ``path`` (e.g. ``"strategy.world_size"``).

    Assigning it raises Python's ``AttributeError`` for a property without a setter, as Lightning's
    properties do, rather than hiding the value the trainer runs with behind an instance attribute.
    """

    def __init__(self, path: str, doc: str) -> None:
        self._get = attrgetter(path)
        self.__doc__ = doc
        self._name = path

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, trainer: Any, owner: type | None = None) -> Any:
        return self if trainer is None else self._get(trainer)

    def __set__(self, trainer: Any, value: Any) -> None:
        raise AttributeError(f"property {self._name!r} of {type(trainer).__name__!r} object has no setter")


class _LoopsLeft(NamedTuple):
    """What a call leaves on Lightning's loops for later calls to read: its evaluation loops' progress and
    its batch counts (the loaders go with the call)."""

    eval_progress: dict[str, list[int]]
    num_training_batches: int | float
    eval_batches: dict[str, list[int | float]]
    val_check_batch: int | float | None  # None: no fit has set its training data up
    is_last_batch: bool
    num_sanity_val_batches: list[int | float]


# the call that runs each of Lightning's loops (see `Trainer._batch_counts`)
_LOOP_FN = {
    "train": TrainerFn.FITTING.value,
    "fit_val": TrainerFn.FITTING.value,
    "validate": TrainerFn.VALIDATING.value,
    "test": TrainerFn.TESTING.value,
    "predict": TrainerFn.PREDICTING.value,
}


class _StageFlag:
    """``trainer.training`` and friends: whether ``stage`` runs now; setting True enters it, False leaves it."""

    def __init__(self, stage: RunningStage, doc: str) -> None:
        self.stage = stage
        self.__doc__ = doc

    def __get__(self, trainer: Any, owner: type | None = None) -> Any:
        return self if trainer is None else trainer.state.stage == self.stage

    def __set__(self, trainer: Any, value: bool) -> None:
        if value:
            trainer.state.stage = self.stage
        elif trainer.state.stage == self.stage:
            trainer.state.stage = None


class Trainer:
    """Runs the training, validation, test and prediction loops for a ``LightningModule``.

    Every argument has Lightning's name, default and meaning; where Ember differs, the entry says so
    (all differences: ``docs/compat.md``). Arguments are keyword-only, and ``PL_TRAINER_<NAME>``
    environment variables set defaults, as in Lightning.

    Args:
        accelerator: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"gpu"``, ``"mps"``, or an
            ``Accelerator`` (an instance, or the name it is registered under in ``AcceleratorRegistry``).
        strategy: ``"auto"``, ``"single_device"``, ``"ddp"``, ``"ddp_spawn"``, ``"ddp_fork"``,
            ``"ddp_notebook"`` (DDP ones also with ``_find_unused_parameters_true/false``), ``"fsdp"``,
            or a ``Strategy`` object such as ``DDPStrategy(...)`` or ``FSDPStrategy(...)``. ``"ddp"``
            starts the other processes by re-running the script, or joins those ``torchrun`` or SLURM
            started.
        devices: how many devices (``int``), which ones (a list or ``"0,1"``), ``-1`` for all, or
            ``"auto"``. On the CPU, the number of processes.
        num_nodes: the number of machines in a multi-node run.
        precision: ``"32-true"`` (default), ``"16-mixed"``, ``"bf16-mixed"``, ``"16-true"``,
            ``"bf16-true"``, ``"64-true"``, or the aliases ``64``, ``32``, ``16``, ``"bf16"``. On the
            CPU, ``"16-mixed"`` runs as ``"bf16-mixed"`` with a warning, as in Lightning.
        logger: ``True``/``None`` for the default logger (``TensorBoardLogger`` when tensorboard is
            installed, else ``CSVLogger``, in ``default_root_dir``), ``False`` for none, or a logger or
            list of loggers. Ember writes logged scalars to an event file of its own, without loading
            TensorBoard's writer (``docs/compat.md``).
        callbacks: a ``Callback`` or a list of them. A ``ModelCheckpoint``, a ``TQDMProgressBar`` and
            a ``ModelSummary`` are added unless turned off below.
        fast_dev_run: ``True`` or ``n``: run ``n`` batches (1 for ``True``) of each loop once, with no
            logging, checkpointing or sanity check, to find bugs quickly.
        max_epochs: stop after this many epochs. ``None`` means 1000 when no other limit is set
            (with a warning); ``-1`` means no limit.
        min_epochs: train at least this many epochs even if ``EarlyStopping`` asks to stop.
        max_steps: stop after this many optimizer steps; ``-1`` (default) for no limit.
        min_steps: train at least this many optimizer steps even if asked to stop.
        max_time: stop after this much time: ``"DD:HH:MM:SS"``, a ``timedelta`` or a dict such as
            ``{"hours": 1}`` (adds a ``Timer`` callback).
        limit_train_batches: how much of each training epoch to run: a fraction (``float``) or a
            number of batches (``int``). Default 1.0, the whole loader.
        limit_val_batches: the same for each validation run; 0 turns validation off.
        limit_test_batches: the same for ``test``.
        limit_predict_batches: the same for ``predict``.
        overfit_batches: train and validate on this fraction (or number) of training batches,
            without shuffling, to check that the model can overfit them.
        val_check_interval: validate every this many training batches (``int``), this fraction of an
            epoch (``float``), or this much wall-clock time (``"DD:HH:MM:SS"``, a ``timedelta`` or a
            dict). Default 1.0: once per epoch.
        check_val_every_n_epoch: validate every n epochs (default 1); ``None`` to count
            ``val_check_interval`` in batches across epochs.
        num_sanity_val_steps: validation batches run before training to catch bugs early (default
            2; ``-1`` for all, 0 for none).
        log_every_n_steps: send step values to the loggers every n steps (default 50).
        enable_checkpointing: add a ``ModelCheckpoint`` if none is given (default ``True``).
        enable_progress_bar: show a progress bar (default ``True``).
        enable_model_summary: print a model summary when fit starts (default ``True``).
        accumulate_grad_batches: sum the gradients of this many batches before each optimizer step.
        gradient_clip_val: clip gradients at this value before each optimizer step (``None``/0: no
            clipping).
        gradient_clip_algorithm: ``"norm"`` (default) or ``"value"``.
        deterministic: ``True`` to use deterministic algorithms only (``"warn"`` to warn instead of
            failing on a nondeterministic one).
        benchmark: the value of ``torch.backends.cudnn.benchmark`` (left as it is when ``None``,
            ``False`` when ``deterministic``).
        inference_mode: evaluate under ``torch.inference_mode()`` (default) rather than
            ``torch.no_grad()``.
        use_distributed_sampler: give each process its own shard of the data in a multi-process
            run (a ``DistributedSampler`` replaces the loader's sampler).
        profiler: ``"simple"``, ``"advanced"``, ``"pytorch"`` or a ``Profiler``: time every hook,
            step and dataloader fetch and report at the end. ``None``: no profiling, at no cost.
        detect_anomaly: run training under ``torch.autograd.set_detect_anomaly`` (slow).
        barebones: turn off everything that costs speed (logging, checkpointing, progress bar,
            model summary, sanity check); combining it with any of those is an error.
        plugins: cluster environments (e.g. ``SLURMEnvironment(auto_requeue=False)``) and a
            ``CheckpointIO`` (e.g. ``AsyncCheckpointIO()``) for every checkpoint save, load and removal.
        sync_batchnorm: convert BatchNorm layers to ``SyncBatchNorm`` in a multi-process run.
        reload_dataloaders_every_n_epochs: ask the module or datamodule for new dataloaders every
            n epochs (0: never).
        default_root_dir: where logs and checkpoints go when loggers and callbacks don't say
            (default: the current folder). Local paths and fsspec URLs.
        enable_autolog_hparams: send the module's and datamodule's saved hyperparameters to the
            loggers when a run starts (default ``True``).
        model_registry: the name to register checkpoints under in a model registry (accepted for
            compatibility; Ember has no registry integration).

    Example::

        trainer = Trainer(max_epochs=10, callbacks=[EarlyStopping("val_loss")])
        trainer.fit(model, train_loader, val_loader)
        trainer.test(model, test_loader)
    """

    @arguments.defaults_from_env_vars
    def __init__(
        self,
        *,
        accelerator: str | types.Accelerator = "auto",
        strategy: str | types.Strategy = "auto",
        devices: list[int] | str | int = "auto",
        num_nodes: int = 1,
        precision: types._PRECISION_INPUT | None = None,
        logger: types.Logger | Iterable[types.Logger] | bool | None = None,
        callbacks: list[Callback] | Callback | None = None,
        fast_dev_run: int | bool = False,
        max_epochs: int | None = None,
        min_epochs: int | None = None,
        max_steps: int = -1,
        min_steps: int | None = None,
        max_time: str | timedelta | dict[str, int] | None = None,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        overfit_batches: int | float = 0.0,
        val_check_interval: int | float | str | timedelta | dict[str, int] | None = None,
        check_val_every_n_epoch: int | None = 1,
        num_sanity_val_steps: int | None = None,
        log_every_n_steps: int | None = None,
        enable_checkpointing: bool | None = None,
        enable_progress_bar: bool | None = None,
        enable_model_summary: bool | None = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
        deterministic: bool | types._LITERAL_WARN | None = None,
        benchmark: bool | None = None,
        inference_mode: bool = True,
        use_distributed_sampler: bool = True,
        profiler: types.Profiler | str | None = None,
        detect_anomaly: bool = False,
        barebones: bool = False,
        plugins: types._PLUGIN | list[types._PLUGIN] | None = None,
        sync_batchnorm: bool = False,
        reload_dataloaders_every_n_epochs: int = 0,
        default_root_dir: str | os.PathLike | None = None,
        enable_autolog_hparams: bool = True,
        model_registry: str | None = None,
    ) -> None:
        from ember.distributed.factory import create_hardware
        from ember.profilers import create_profiler

        arguments.check_switches(
            enable_checkpointing=enable_checkpointing,
            enable_progress_bar=enable_progress_bar,
            enable_model_summary=enable_model_summary,
            inference_mode=inference_mode,
            use_distributed_sampler=use_distributed_sampler,
            detect_anomaly=detect_anomaly,
            barebones=barebones,
            sync_batchnorm=sync_batchnorm,
            enable_autolog_hparams=enable_autolog_hparams,
        )
        # (0 and numpy's False turn a default off, 2 leaves it on: Lightning reads them for their truth)
        enable_checkpointing, enable_progress_bar, enable_model_summary = (
            None if value is None else bool(value)
            for value in (enable_checkpointing, enable_progress_bar, enable_model_summary)
        )
        # ---- barebones: everything that costs speed is off --------------------------------------
        if barebones:
            arguments.check_barebones(
                detect_anomaly=detect_anomaly,
                num_sanity_val_steps=num_sanity_val_steps,
                fast_dev_run=fast_dev_run,
                logger=logger,
                enable_checkpointing=enable_checkpointing,
                enable_progress_bar=enable_progress_bar,
                enable_model_summary=enable_model_summary,
                log_every_n_steps=log_every_n_steps,
                profiler=profiler,
            )
            logger, enable_checkpointing, enable_progress_bar, enable_model_summary = False, False, False, False
            log_every_n_steps, num_sanity_val_steps = 0, 0
        self.barebones = barebones

        # ---- hardware and precision --------------------------------------------------------------
        self._accelerator, _, self._strategy = create_hardware(
            accelerator, devices, strategy, num_nodes, precision, plugins, sync_batchnorm
        )
        self.plugins = plugins
        self.sync_batchnorm = sync_batchnorm
        self.use_distributed_sampler = use_distributed_sampler
        self.inference_mode = inference_mode
        self.detect_anomaly = detect_anomaly
        self.profiler = create_profiler(profiler)
        self.deterministic = deterministic
        self.benchmark = arguments.apply_determinism(deterministic, benchmark)
        self.model_registry = model_registry
        self.enable_autolog_hparams = enable_autolog_hparams

        # ---- paths, loggers, callbacks -----------------------------------------------------------
        self._default_root_dir = arguments.folder(default_root_dir, "default_root_dir")
        self.loggers = configure_loggers(logger, self.default_root_dir)
        self.callbacks = configure_callbacks(
            callbacks, enable_checkpointing, enable_progress_bar, enable_model_summary, max_time
        )
        if detect_anomaly:
            rank_zero_info(
                "You have turned on `Trainer(detect_anomaly=True)`. This will significantly slow down compute speed"
                " and is recommended only for model debugging."
            )

        # ---- loop limits (after the callbacks, so that their messages come in Lightning's order) -----------
        arguments.check_loop_limits(max_epochs, min_epochs, max_steps, min_steps)
        arguments.check_optimization(accumulate_grad_batches, gradient_clip_val, gradient_clip_algorithm)
        dev_run_batches = arguments.fast_dev_run_batches(fast_dev_run)
        self.fast_dev_run = True if fast_dev_run == 1 else fast_dev_run  # Lightning keeps 1 as True, others as given
        self.check_val_every_n_epoch = check_val_every_n_epoch
        sanity_steps = arguments.count(
            num_sanity_val_steps, "num_sanity_val_steps", 2, -1, " (-1 runs all validation batches)"
        )
        self.num_sanity_val_steps: int | float = float("inf") if sanity_steps == -1 else sanity_steps
        self.log_every_n_steps = arguments.count(log_every_n_steps, "log_every_n_steps", 50, 0, "")
        arguments.check_reload(reload_dataloaders_every_n_epochs)
        self.reload_dataloaders_every_n_epochs = reload_dataloaders_every_n_epochs
        # Lightning's notes on a limit of 1 or 1.0 only for the limits it reads: none under `fast_dev_run`,
        # and not the training and validation ones that `overfit_batches` replaces
        noted = dev_run_batches is None
        noted_fit = noted and not overfit_batches
        self.limit_train_batches = arguments.batch_limit(limit_train_batches, "limit_train_batches", noted_fit)
        self.limit_val_batches = arguments.batch_limit(limit_val_batches, "limit_val_batches", noted_fit)
        self.limit_test_batches = arguments.batch_limit(limit_test_batches, "limit_test_batches", noted)
        self.limit_predict_batches = arguments.batch_limit(limit_predict_batches, "limit_predict_batches", noted)
        # (None, 0 and False: no overfitting, as Lightning takes 0 and False; any other value is checked, where
        # text or an empty list passed through unnoticed)
        no_overfit = overfit_batches is None or (isinstance(overfit_batches, (int, float)) and overfit_batches == 0)
        self.overfit_batches = 0.0 if no_overfit else arguments.batch_limit(overfit_batches, "overfit_batches")
        # after the limits: Lightning notes `limit_*_batches=1.0` before `val_check_interval=1.0`
        self.val_check_interval, self._val_check_seconds = arguments.validation_interval(
            val_check_interval, check_val_every_n_epoch, noted
        )
        if self.overfit_batches:
            self.limit_train_batches = self.limit_val_batches = self.overfit_batches
        self.accumulate_grad_batches = accumulate_grad_batches
        self.gradient_clip_val = gradient_clip_val
        # Lightning's enum, from the name in any case ("Norm", "VALUE"); it compares equal to "norm"/"value"
        self.gradient_clip_algorithm = (
            None if gradient_clip_algorithm is None else GradClipAlgorithmType(str(gradient_clip_algorithm).lower())
        )
        self.max_time = max_time
        # read-only on the trainer, as in Lightning: set through `trainer.fit_loop` (and its `epoch_loop`)
        self._max_steps = max_steps
        self._min_steps = min_steps
        self._max_epochs: int | None = max_epochs  # None: decided when fit starts (1000, or -1 with max_steps)
        self._min_epochs: int | None = min_epochs
        if dev_run_batches is not None:
            arguments.apply_fast_dev_run(self, dev_run_batches)
        if self.fast_dev_run and self.loggers:
            from ember.loggers.logger import DummyLogger

            self.loggers = [DummyLogger()]

        # ---- what the calls change -----------------------------------------------------------------
        self.state = TrainerState()
        self.should_stop = False
        self.datamodule: Any = None
        self.optimizers = []
        self._lr_scheduler_configs: list[Any] = []
        self._ckpt_path: Any = None
        self._ckpt_path_user_managed = False  # set through `trainer.ckpt_path = ...`: later calls load it
        self._run = Run(self)  # the state of the current (or last) call; a new one per call
        # what the earlier calls left on their loops, by kind ("fit", "validate", ...): Lightning's loop objects keep
        # their progress (a checkpoint has them all) and batch counts through other calls
        self._loops_left: dict[str, _LoopsLeft] = {}
        self.fit_loop, self.validate_loop, self.test_loop, self.predict_loop = views.loop_views(self)  # Lightning's
        self._accelerator_connector = views.AcceleratorConnectorView(self)
        self._checkpoint_connector = views.CheckpointConnectorView(self)
        self._callback_connector = views.CallbackConnectorView(self)

    # ---- entry points ----------------------------------------------------------------------------
    def fit(
        self,
        model: Any,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: Any = None,
        ckpt_path: str | os.PathLike | None = None,
        weights_only: bool | None = None,
    ) -> None:
        """Train ``model``, validating as configured.

        ``train_dataloaders`` may also be a ``LightningDataModule``. ``ckpt_path`` resumes from a
        checkpoint file, ``"last"``, ``"best"`` or ``"hpc"``; ``weights_only=False`` loads a
        checkpoint you trust that safe loading refuses.

        Example::

            trainer.fit(model, train_loader, val_loader, ckpt_path="last")
        """
        from ember.core.datamodule import LightningDataModule

        model = arguments.check_model(self, model, "fit")
        # as Lightning: this process holds the module even when the run happens in processes it starts
        self.strategy._lightning_module = model
        if isinstance(train_dataloaders, LightningDataModule):
            if datamodule is not None:
                raise MisconfigurationException(
                    "You cannot pass a `LightningDataModule` as `train_dataloaders` and also `datamodule=`: pass one."
                )
            datamodule, train_dataloaders = train_dataloaders, None
        if datamodule is not None and (train_dataloaders is not None or val_dataloaders is not None):
            raise MisconfigurationException(
                "You cannot pass `train_dataloader` or `val_dataloaders` to `trainer.fit(datamodule=...)`"
            )
        self._start(TrainerFn.FITTING, RunningStage.TRAINING, datamodule, train_source=train_dataloaders)
        self._run.eval_sources["val"] = val_dataloaders
        self.should_stop = False
        self._run_guarded(self._execute, model, ckpt_path, weights_only, True)

    def validate(
        self,
        model: Any = None,
        dataloaders: Any = None,
        ckpt_path: str | os.PathLike | None = None,
        verbose: bool = True,
        datamodule: Any = None,
        weights_only: bool | None = None,
    ) -> list[dict[str, float]]:
        """Run one validation epoch; returns one dict of logged epoch metrics per dataloader.

        Example::

            [metrics] = trainer.validate(model, val_loader)
        """
        self.validate_loop.verbose = verbose  # the loop object holds it, as Lightning's
        return self._evaluate(TrainerFn.VALIDATING, model, dataloaders, datamodule, ckpt_path, weights_only, {})

    def test(
        self,
        model: Any = None,
        dataloaders: Any = None,
        ckpt_path: str | os.PathLike | None = None,
        verbose: bool = True,
        datamodule: Any = None,
        weights_only: bool | None = None,
    ) -> list[dict[str, float]]:
        """Run one test epoch; returns one dict of logged epoch metrics per dataloader.

        Example::

            [metrics] = trainer.test(ckpt_path="best")
        """
        self.test_loop.verbose = verbose  # the loop object holds it, as Lightning's
        return self._evaluate(TrainerFn.TESTING, model, dataloaders, datamodule, ckpt_path, weights_only, {})

    def predict(
        self,
        model: Any = None,
        dataloaders: Any = None,
        datamodule: Any = None,
        return_predictions: bool | None = None,
        ckpt_path: str | os.PathLike | None = None,
        weights_only: bool | None = None,
    ) -> list[Any] | None:
        """Run ``predict_step`` over the data; returns the predictions (a list per dataloader if several).

        Example::

            predictions = trainer.predict(model, predict_loader)
        """
        settings = {"return_predictions": arguments.return_predictions(self, return_predictions)}
        return self._evaluate(TrainerFn.PREDICTING, model, dataloaders, datamodule, ckpt_path, weights_only, settings)

    def _evaluate(
        self,
        fn: TrainerFn,
        model: Any,
        dataloaders: Any,
        datamodule: Any,
        ckpt_path: Any,
        weights_only: bool | None,
        settings: dict[str, Any],
    ) -> Any:
        """``validate``, ``test`` and ``predict``: one loop over ``dataloaders`` (or the datamodule's)."""
        from ember.core.datamodule import LightningDataModule

        model_given = model is not None
        model = arguments.check_model(self, model, fn.value)
        self.strategy._lightning_module = model
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        if dataloaders is not None and datamodule is not None:
            raise MisconfigurationException(
                f"You cannot pass both `trainer.{fn.value}(dataloaders=..., datamodule=...)`"
            )
        stage = {TrainerFn.VALIDATING: RunningStage.VALIDATING, TrainerFn.TESTING: RunningStage.TESTING}.get(
            fn, RunningStage.PREDICTING
        )
        with lifecycle.call_inside_running_call(self):  # one made by a hook of `fit` gives `fit` its state back
            self._start(fn, stage, datamodule)
            self._run.eval_sources[stage.dataloader_prefix or ""] = dataloaders
            for name, value in settings.items():
                setattr(self._run, name, value)
            return self._run_guarded(self._execute, model, ckpt_path, weights_only, model_given)

    def _start(self, fn: TrainerFn, stage: RunningStage, datamodule: Any, train_source: Any = None) -> None:
        """A new ``Run`` for this call, with the last one's counters (a second ``fit`` continues, as in Lightning)."""
        self.state.fn, self.state.status, self.state.stage = fn, TrainerStatus.RUNNING, stage
        previous = self._run
        if previous.fn is not None:
            self._loops_left[TrainerFn(previous.fn).value] = self._loops_left_by_last_call()
        self._run = Run(self, fn, progress=previous.progress, fit_resuming=previous.fit_resuming)
        # a later fit starts between epochs: till its first epoch starts, Lightning's loop reads the last one's
        self._run.between_epochs = fn == TrainerFn.FITTING and "fit" in self._loops_left
        self._run.metrics.carry_over(previous.metrics)  # cleared where `lifecycle.start` restores the checkpoint
        self._run.train_source = train_source
        self._run.datamodule = datamodule
        if datamodule is not None:
            self.datamodule = datamodule
            datamodule.trainer = self

    def _loops_left_by_last_call(self) -> _LoopsLeft:
        """What the call ending now leaves on Lightning's loops. Lightning's fit loop sets its counts only as it
        loads the data they count: a fit that failed before it loaded its training or its validation data (in
        its sanity check, say) leaves those counts as the fit before it left them (none before any)."""
        run = self._run
        if run.fn != TrainerFn.FITTING:
            training = validation = run
        else:
            training, validation = self._fit_training_record(), self._fit_validation_record()
        return _LoopsLeft(
            run.eval_progress,
            training.num_training_batches if training is not None else math.inf,
            validation.eval_batches if validation is not None else run.eval_batches,
            training.val_check_batch if training is not None else None,
            self.is_last_batch if run.fn == TrainerFn.FITTING else run.is_last_batch,
            validation.num_sanity_val_batches if validation is not None else [],
        )

    def _loops_of(self, fn: str) -> Any:
        """What Lightning's loops of the last ``fn`` call hold (its counts): the running call if it is one, else the
        record the last such call left (None before any). A ``predict`` after a ``fit`` leaves the fit's readable,
        as Lightning's loop objects keep theirs (the loaders are the current call's only, as in Lightning)."""
        run = self._run
        return run if run.fn == fn else self._loops_left.get(fn)

    def _record(self, fn: str, loaded: bool) -> Any:
        """Where Lightning's loop of ``fn`` calls reads counts from: the running call's once it has ``loaded`` the
        data they count; until then (its ``setup``, a fit's sanity check) the last such call's, which Lightning's
        loops still hold (None before any)."""
        if self._run.fn == fn and not loaded:
            return self._loops_left.get(fn)
        return self._loops_of(fn)

    def _fit_training_record(self) -> Any:
        """The record of ``num_training_batches``, ``val_check_batch`` and ``is_last_batch``."""
        return self._record("fit", self._run.train_dataloader is not None)

    def _fit_validation_record(self) -> Any:
        """The record of the fit's validation counts (``num_val_batches``, ``num_sanity_val_batches``)."""
        return self._record("fit", "val" in self._run.eval_batches)

    def _batch_counts(self, name: str) -> Any:
        """The batch counts of Lightning's loop ``name`` (``train``, ``fit_val``, ``validate``, ``test``,
        ``predict``), from the last call that ran it."""
        if name == "train":
            source = self._fit_training_record()
            return source.num_training_batches if source is not None else math.inf
        key = name if name in ("test", "predict") else "val"
        if name == "fit_val":
            source = self._fit_validation_record()
        else:
            source = self._record(_LOOP_FN[name], key in self._run.eval_batches)
        return source.eval_batches.get(key, []) if source else []

    def _eval_loop_counts(self, fn: str, key: str) -> list[int]:
        """``[in its last epoch, in all]``: the batches run by the ``key`` loop ("val", "test", "predict") of the
        last ``fn`` call ("fit", "validate", ...): the running one's, else an earlier one's."""
        source = self._loops_of(fn)
        return source.eval_progress.get(key, [0, 0]) if source is not None else [0, 0]

    def _execute(self, model: Any, ckpt_path: Any, weights_only: bool | None, model_given: bool) -> Any:
        return lifecycle.execute(self, model, ckpt_path, weights_only, model_given)

    def _configured_optimizers(self, model: Any) -> tuple[list[Any], list[Any]]:
        """``model``'s optimizers and scheduler configs, made as ``fit`` makes them but not set on this trainer
        (Lightning's ``core.optimizer._init_optimizers_and_lr_schedulers`` reaches them through here)."""
        return lifecycle.configured_optimizers(self._run, model)

    def _run_guarded(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn`` in the processes the strategy launches, with failures handled (``lifecycle.guarded``)."""
        return lifecycle.guarded(self, fn, *args, **kwargs)

    @property
    def _results(self) -> Any:
        """The values logged in the running loop (Lightning's private ``_ResultCollection``), or None between
        loops; finetuning-scheduler reads ``trainer._results.result_metrics``."""
        return self._run.results

    @property
    def _evaluation_loop(self) -> Any:
        """The evaluation loop of the running call (Lightning's private name): ``fit``'s validation loop,
        ``validate_loop`` or ``test_loop``. lightning-ir sets its ``_print_results`` to print its own table."""
        fn = self.state.fn
        if fn == TrainerFn.FITTING:
            return self.fit_loop.epoch_loop.val_loop
        if fn == TrainerFn.VALIDATING:
            return self.validate_loop
        if fn == TrainerFn.TESTING:
            return self.test_loop
        raise RuntimeError("The `Trainer._evaluation_loop` property isn't defined. Accessed outside of scope")

    def _teardown(self) -> None:
        """Release what the last call holds (checkpoint writes, workers, process group); safe to call again.

        Every call already does this when it ends; Lightning's tests and some tools call it afterwards.
        """
        lifecycle.teardown(self)

    # ---- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(
        self, filepath: str | os.PathLike, weights_only: bool | None = None, storage_options: Any = None
    ) -> None:
        """Write a checkpoint of the current state on every rank: rank 0 writes the file (sharded FSDP: every
        rank its shards). With ``AsyncCheckpointIO`` the write is queued; it is on disk when ``fit`` returns.
        ``weights_only=True`` leaves out the optimizer, scheduler and callback states; not given, it is
        ``False``, and an info line says so, as in Lightning.

        Example::

            trainer.save_checkpoint("example.ckpt")
        """
        from ember.checkpoint.contents import dump_checkpoint, resolve_weights_only

        if self.lightning_module is None:
            raise AttributeError(
                "Saving a checkpoint is only possible if a model is attached to the Trainer. Did you call"
                " `Trainer.save_checkpoint()` before calling `Trainer.{fit,validate,test,predict}`?"
            )
        weights_only = resolve_weights_only(weights_only)
        profiler = self._run.profiler
        with profiler.profile("save_checkpoint") if profiler is not None else contextlib.nullcontext():
            checkpoint = dump_checkpoint(self, self._run, weights_only)
            # rank 0 writes the file, or every rank its shards
            self.strategy.save_checkpoint(checkpoint, filepath, storage_options=storage_options)
        self.strategy.barrier("Trainer.save_checkpoint")  # all ranks: the file is written (or queued)

    @contextlib.contextmanager
    def init_module(self, empty_init: bool | None = None) -> Iterator[None]:
        """Create the model's tensors on the device and in the precision's dtype right away.

        ``empty_init=True`` skips the weights' initialisation (for a model about to load a checkpoint).

        Example::

            with trainer.init_module():
                model = MyModel()
        """
        with self.strategy.tensor_init_context(empty_init=empty_init):  # by keyword, as Lightning calls it
            yield

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on the first process of each machine (local rank 0)."""
        if self.local_rank == 0:
            print(*args, **kwargs)

    # ---- metrics ---------------------------------------------------------------------------------
    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        """Every value logged (step and epoch forms), as tensors: what callbacks such as EarlyStopping read."""
        return self._run.metrics.callback_metrics()

    @property
    def logged_metrics(self) -> dict[str, torch.Tensor]:
        """The values sent to the loggers."""
        return self._run.metrics.logged_metrics()

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        """``prog_bar=True`` values as Python numbers. Reading this is a host-device sync."""
        return self._run.metrics.progress_bar_values()

    # ---- optimizers ------------------------------------------------------------------------------
    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimizers ``configure_optimizers`` returned (set when ``fit`` starts)."""
        return self._optimizers

    @optimizers.setter
    def optimizers(self, optimizers: list[torch.optim.Optimizer]) -> None:
        # what `self.optimizers()` returns: a `LightningOptimizer` that `configure_optimizers` returned is kept, as
        # in Lightning, and the optimizer inside it is the one the trainer steps
        wrappers = [opt if isinstance(opt, LightningOptimizer) else LightningOptimizer(opt, self) for opt in optimizers]
        for wrapper in wrappers:
            wrapper._trainer = self
        self._optimizers = [wrapper.optimizer for wrapper in wrappers]
        self._lightning_optimizers = wrappers

    @property
    def lr_scheduler_configs(self) -> list[Any]:
        """The scheduler configs ``configure_optimizers`` returned (read-only, as in Lightning: set
        ``trainer.strategy.lr_scheduler_configs``)."""
        return self._lr_scheduler_configs

    @property
    def ckpt_path(self) -> Any:
        """The checkpoint the current (or last) call loaded, or None.

        Set it to choose the checkpoint of the calls that follow, as in Lightning: each call without a
        ``ckpt_path`` loads it until it is set back to None (a call that passes one loads that, and forgets it)::

            trainer.ckpt_path = "runs/best.ckpt"
            trainer.test(model)
        """
        return self._ckpt_path

    @ckpt_path.setter
    def ckpt_path(self, ckpt_path: Any) -> None:
        self._ckpt_path = ckpt_path
        self._ckpt_path_user_managed = bool(ckpt_path)

    precision_plugin = _ReadOnly(
        "strategy.precision_plugin",
        "The precision plugin: the one in ``plugins``, or the one ``precision`` names (see ``ember.precision``).",
    )

    @property
    def precision(self) -> Any:
        """The precision the run uses (``"32-true"``, ``"bf16-mixed"``, ...): its precision plugin's, read each time."""
        return self.strategy.precision_plugin.precision

    @property
    def scaler(self) -> Any:
        """The ``torch.amp.GradScaler`` of fp16 mixed precision (None otherwise)."""
        return getattr(self.strategy.precision_plugin, "scaler", None)

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any] | None:
        """``num_replicas`` and ``rank`` the training data is split by, for a strategy of several processes (else
        None)."""
        from ember.distributed.parallel import ParallelStrategy

        return self.strategy.distributed_sampler_kwargs if isinstance(self.strategy, ParallelStrategy) else None

    # ---- progress and limits ---------------------------------------------------------------------
    max_epochs = _ReadOnly("_max_epochs", "The epoch limit (-1: none); set it through ``trainer.fit_loop``.")
    min_epochs = _ReadOnly(
        "_min_epochs", "The epochs to train before a stop is heard; set through ``trainer.fit_loop``."
    )
    max_steps = _ReadOnly("_max_steps", "The optimizer step limit (-1: none); set through ``fit_loop.epoch_loop``.")
    min_steps = _ReadOnly(
        "_min_steps", "The steps to train before a stop is heard; set through ``fit_loop.epoch_loop``."
    )

    @property
    def current_epoch(self) -> int:
        """The epoch being trained (counted from 0)."""
        return self._run.progress.epoch

    @property
    def global_step(self) -> int:
        """The number of optimizer steps taken."""
        return self._run.progress.global_step

    @property
    def estimated_stepping_batches(self) -> int | float:
        """The total optimizer steps fit will run (for schedulers such as ``OneCycleLR(total_steps=...)``)."""
        return dataloaders.estimated_stepping_batches(self, self._run)

    @property
    def is_last_batch(self) -> bool:
        """Whether the training batch being run (or last run, by the last ``fit``) is the epoch's last."""
        run = self._run
        if run.fn == TrainerFn.FITTING and run.resume is not None:
            # a fit that restored a checkpoint and has run no epoch since: the checkpoint's, before its training
            # data is loaded too (Lightning's batch progress holds what it loaded)
            return run.is_last_batch
        loops = self._fit_training_record()
        return loops.is_last_batch if loops is not None else False

    @property
    def num_sanity_val_batches(self) -> list[int | float]:
        """Batches per validation dataloader that the sanity check of the last ``fit`` runs."""
        loops = self._fit_validation_record()
        return list(loops.num_sanity_val_batches) if loops is not None else []

    @property
    def received_sigterm(self) -> bool:
        """Whether this process received SIGTERM during the current call (training then saves and stops)."""
        return self._run.stop_flag.signum == signal.SIGTERM

    # ---- data ------------------------------------------------------------------------------------
    train_dataloader = _ReadOnly(
        "_run.train_dataloader", "The training dataloader in use (None until fit asks for it)."
    )
    val_dataloaders = _ReadOnly("_run.val_dataloaders", "The validation dataloader, or the list of them.")
    test_dataloaders = _ReadOnly("_run.test_dataloaders", "The test dataloader, or the list of them.")
    predict_dataloaders = _ReadOnly("_run.predict_dataloaders", "The predict dataloader, or the list of them.")

    @property
    def num_training_batches(self) -> int | float:
        """Training batches per epoch of the current (or last) ``fit``, after ``limit_train_batches`` (inf for an
        unsized loader, or before any ``fit``)."""
        return self._batch_counts("train")

    @property
    def num_val_batches(self) -> list[int | float]:
        """Batches per validation dataloader, after ``limit_val_batches``: the last ``validate``'s while it is the
        last call, else the last ``fit``'s (as Lightning reads them)."""
        return self._batch_counts("validate" if self.state.fn == TrainerFn.VALIDATING else "fit_val")

    @property
    def num_test_batches(self) -> list[int | float]:
        """Batches per test dataloader, after ``limit_test_batches``."""
        return self._batch_counts("test")

    @property
    def num_predict_batches(self) -> list[int | float]:
        """Batches per predict dataloader, after ``limit_predict_batches``."""
        return self._batch_counts("predict")

    @property
    def val_check_batch(self) -> int | float | None:
        """Validation runs after every this many training batches of the last ``fit`` (inf: at the epoch's end);
        None before one, and with a time-based ``val_check_interval``, as in Lightning."""
        loops = self._fit_training_record()
        if loops is None or self._val_check_seconds is not None:
            return None
        return loops.val_check_batch

    @val_check_batch.setter
    def val_check_batch(self, value: int | float) -> None:
        """Validate after every ``value`` training batches from now on: a callback may change it during ``fit``
        (in ``on_train_start``, or mid-epoch), as in Lightning; it is computed anew from ``val_check_interval``
        whenever the training data is loaded again."""
        loops = self._fit_training_record()
        run = loops if loops is not None else self._run
        run.val_check_batch = value
        if run is self._run and run.epoch_plan is not None:
            run.epoch_plan.read_val_check_batch()

    # ---- model, processes, devices ---------------------------------------------------------------
    strategy = _ReadOnly(
        "_strategy", "The ``Strategy`` that runs the calls (``SingleDeviceStrategy``, ``DDPStrategy``...)."
    )
    lightning_module = _ReadOnly("strategy.lightning_module", "The ``LightningModule`` of the current (or last) call.")
    model = _ReadOnly("strategy.model", "The module the loops call: the LightningModule, or its distributed wrapper.")
    is_global_zero = _ReadOnly(
        "strategy.is_global_zero", "Whether this is the process with global rank 0 (the one that writes files)."
    )
    global_rank = _ReadOnly("strategy.global_rank", "This process's rank among all processes.")
    local_rank = _ReadOnly("strategy.local_rank", "This process's rank on its machine.")
    node_rank = _ReadOnly("strategy.node_rank", "The rank of this process's machine.")
    world_size = _ReadOnly("strategy.world_size", "The number of processes in the run.")
    num_nodes = _ReadOnly("strategy.num_nodes", "The number of machines in the run.")

    @property
    def num_devices(self) -> int:
        """The number of devices (processes) per machine."""
        from ember.distributed.processes import runs_distributed  # here: `import ember` loads no strategy

        return getattr(self.strategy, "num_processes", 1) if runs_distributed(self.strategy) else 1

    @property
    def device_ids(self) -> list[int]:
        """The indices of the devices this machine uses (for CPU processes, their local ranks)."""
        devices = getattr(self.strategy, "parallel_devices", None) or [self.strategy.root_device]
        return [device.index or index for index, device in enumerate(devices)]

    accelerator = _ReadOnly("_accelerator", "The ``Accelerator`` in use (``CPUAccelerator``, ``CUDAAccelerator``...).")

    # ---- paths, loggers, callbacks ---------------------------------------------------------------
    @property
    def default_root_dir(self) -> str:
        """Where logs and checkpoints go by default (the current folder unless set)."""
        if self._default_root_dir is None:
            return os.getcwd()
        from ember.checkpoint.files import is_local

        path = self._default_root_dir
        return os.path.normpath(os.path.expanduser(path)) if is_local(path) else path

    @property
    def loggers(self) -> list[Any]:
        """The loggers (empty for none)."""
        return self._loggers

    @loggers.setter
    def loggers(self, loggers: list[Any] | None) -> None:
        self._loggers = loggers if loggers else []  # the list given, as Lightning keeps it

    @property
    def logger(self) -> Any:
        """The first logger, or None."""
        return self.loggers[0] if self.loggers else None

    @logger.setter
    def logger(self, logger: Any) -> None:
        self.loggers = [logger] if logger is not None else []

    @property
    def log_dir(self) -> str | None:
        """The first logger's ``log_dir`` for a ``TensorBoardLogger`` or ``CSVLogger``, its ``save_dir`` for any
        other (as in Lightning: a logger's own ``log_dir`` is not read), else ``default_root_dir``."""
        if not self.loggers:
            dirpath = self.default_root_dir
        else:
            from ember.loggers.csv_logs import CSVLogger
            from ember.loggers.tensorboard import TensorBoardLogger

            logger = self.loggers[0]
            dirpath = logger.log_dir if isinstance(logger, (TensorBoardLogger, CSVLogger)) else logger.save_dir
        return self.strategy.broadcast(dirpath)

    @property
    def checkpoint_callback(self) -> Any:
        """The first checkpoint callback (``ModelCheckpoint``), or None."""
        callbacks = self.checkpoint_callbacks
        return callbacks[0] if callbacks else None

    @property
    def checkpoint_callbacks(self) -> list[Any]:
        """Every checkpoint callback."""
        from ember.callbacks.checkpoint import Checkpoint

        return [cb for cb in self.callbacks if isinstance(cb, Checkpoint)]

    @property
    def early_stopping_callback(self) -> Any:
        """The first ``EarlyStopping`` callback, or None."""
        callbacks = self.early_stopping_callbacks
        return callbacks[0] if callbacks else None

    @property
    def early_stopping_callbacks(self) -> list[Any]:
        """Every ``EarlyStopping`` callback."""
        from ember.callbacks.early_stopping import EarlyStopping

        return [cb for cb in self.callbacks if isinstance(cb, EarlyStopping)]

    @property
    def progress_bar_callback(self) -> Any:
        """The progress bar callback, or None."""
        from ember.callbacks.progress_bar import ProgressBar

        return next((cb for cb in self.callbacks if isinstance(cb, ProgressBar)), None)

    # ---- what is running -------------------------------------------------------------------------
    @property
    def interrupted(self) -> bool:
        """Whether the last call ended early (an exception, Ctrl+C or a preemption signal)."""
        return self.state.status == TrainerStatus.INTERRUPTED

    training = _StageFlag(RunningStage.TRAINING, "Whether the training loop is running.")
    validating = _StageFlag(RunningStage.VALIDATING, "Whether a validation loop is running.")
    testing = _StageFlag(RunningStage.TESTING, "Whether the test loop is running.")
    predicting = _StageFlag(RunningStage.PREDICTING, "Whether the predict loop is running.")
    sanity_checking = _StageFlag(RunningStage.SANITY_CHECKING, "Whether the sanity check (validation before fit) runs.")

    enable_validation = views.EnableValidation()

    @property
    def evaluating(self) -> bool:
        """Whether a validation, test or sanity-check loop is running."""
        return self.state.stage is not None and self.state.stage.evaluating


# as text, resolved when asked for: the hints name classes `import ember` does not load
lightning_style_annotations(Trainer, resolve=False)  # Lightning's `typing` forms in the signature
