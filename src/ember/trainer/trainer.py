"""``Trainer``: the arguments and their validation, the entry points, and the properties users read.

The loops themselves live in ``loop.py``; the checkpoint dict in ``checkpoint.py``.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import math
import os
import signal
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

import torch

from ember.callbacks.callback import Callback
from ember.core.optimizer import LightningOptimizer
from ember.trainer import dataloaders, loop
from ember.trainer.defaults import configure_callbacks, configure_loggers, merge_model_callbacks
from ember.trainer.logging import LoggedResults
from ember.trainer.metrics import MetricStore, print_results
from ember.trainer.optim import configure_optimizers
from ember.trainer.preemption import StopFlag
from ember.trainer.states import Progress, RunningStage, TrainerFn, TrainerState, TrainerStatus
from ember.tuner.exceptions import _TunerExitException
from ember.utilities.exceptions import MisconfigurationException, PreemptionExit
from ember.utilities.rank_zero import _set_rank, rank_zero_info, rank_zero_warn
from ember.utilities.warnings import PossibleUserWarning


def _defaults_from_env_vars(fn: Callable) -> Callable:
    """Let ``PL_TRAINER_<ARG>`` environment variables set defaults (explicit arguments win)."""
    params = inspect.signature(fn).parameters

    @wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError("Trainer() takes keyword arguments only, e.g. Trainer(max_epochs=3).")
        for name in params:
            env = os.environ.get(f"PL_TRAINER_{name.upper()}")
            if env is not None and name not in kwargs:
                try:
                    kwargs[name] = ast.literal_eval(env)
                except (ValueError, SyntaxError):
                    kwargs[name] = env
        return fn(self, **kwargs)

    return wrapper


def _batch_limit(value: int | float | None, name: str) -> int | float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MisconfigurationException(
            f"`{name}={value!r}` must be an int (a count of batches) or a float in [0.0, 1.0]."
        )
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise MisconfigurationException(
            f"You have passed invalid value {value} for {name}, it has to be in [0.0, 1.0] or an int."
        )
    if isinstance(value, int) and value < 0:
        raise MisconfigurationException(f"`{name}={value}` must not be negative.")
    if isinstance(value, int) and value == 1 and name != "overfit_batches":
        return 1
    return value


def _parse_time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return timedelta(**value).total_seconds()
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) != 4:
            raise MisconfigurationException(f"`{value!r}` is not a duration: use 'DD:HH:MM:SS', a timedelta or a dict.")
        days, hours, minutes, seconds = (int(p) for p in parts)
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()
    return None


class Trainer:
    """Runs the training, validation, test and prediction loops for a ``LightningModule``.

    Example::

        trainer = Trainer(max_epochs=10, callbacks=[EarlyStopping("val_loss")])
        trainer.fit(model, train_loader, val_loader)
        trainer.test(model, test_loader)
    """

    @_defaults_from_env_vars
    def __init__(
        self,
        *,
        accelerator: str | Any = "auto",
        strategy: str | Any = "auto",
        devices: list[int] | str | int = "auto",
        num_nodes: int = 1,
        precision: Any = None,
        logger: Any = None,
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
        val_check_interval: int | float | str | timedelta | dict | None = None,
        check_val_every_n_epoch: int | None = 1,
        num_sanity_val_steps: int | None = None,
        log_every_n_steps: int | None = None,
        enable_checkpointing: bool | None = None,
        enable_progress_bar: bool | None = None,
        enable_model_summary: bool | None = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
        deterministic: bool | str | None = None,
        benchmark: bool | None = None,
        inference_mode: bool = True,
        use_distributed_sampler: bool = True,
        profiler: Any = None,
        detect_anomaly: bool = False,
        barebones: bool = False,
        plugins: Any = None,
        sync_batchnorm: bool = False,
        reload_dataloaders_every_n_epochs: int = 0,
        default_root_dir: str | os.PathLike | None = None,
        enable_autolog_hparams: bool = True,
        model_registry: str | None = None,
    ) -> None:
        from ember.distributed.factory import create_strategy, parse_devices, resolve_accelerator
        from ember.precision import normalize_precision

        # ---- barebones: everything that costs speed is off ---------------------------------
        if barebones:
            for name, value in (
                ("logger", logger),
                ("enable_checkpointing", enable_checkpointing),
                ("enable_progress_bar", enable_progress_bar),
                ("enable_model_summary", enable_model_summary),
                ("log_every_n_steps", log_every_n_steps),
                ("profiler", profiler),
            ):
                if value not in (None, False) and not (name == "log_every_n_steps" and value == 0):
                    raise ValueError(
                        f"`Trainer(barebones=True)` turns off everything that slows training, but `{name}={value!r}` was"
                        f" also passed. Remove `{name}` or set `barebones=False`."
                    )
            if detect_anomaly:
                raise ValueError(
                    "`Trainer(barebones=True, detect_anomaly=True)`: anomaly detection is slow; remove one."
                )
            if num_sanity_val_steps not in (None, 0):
                raise ValueError("`Trainer(barebones=True)` runs no sanity check: remove `num_sanity_val_steps`.")
            logger, enable_checkpointing, enable_progress_bar, enable_model_summary = False, False, False, False
            log_every_n_steps, num_sanity_val_steps = 0, 0
        self.barebones = barebones

        # ---- loop limits ----------------------------------------------------------------
        for name, value in (("max_epochs", max_epochs), ("min_epochs", min_epochs), ("min_steps", min_steps)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise MisconfigurationException(f"`{name}` must be an int, got {value!r}.")
        if max_epochs is not None and max_epochs < -1:
            raise MisconfigurationException(
                f"`max_epochs` must be a non-negative integer or -1 (no limit). You passed in {max_epochs}."
            )
        if not isinstance(max_steps, int) or max_steps < -1:
            raise MisconfigurationException(
                f"`max_steps` must be a non-negative integer or -1 (no limit). You passed in {max_steps}."
            )
        if min_epochs is not None and min_epochs < 0:
            raise MisconfigurationException(f"`min_epochs` must be >= 0. You passed in {min_epochs}.")
        if min_steps is not None and min_steps < 0:
            raise MisconfigurationException(f"`min_steps` must be >= 0. You passed in {min_steps}.")
        if (
            not isinstance(accumulate_grad_batches, int)
            or isinstance(accumulate_grad_batches, bool)
            or accumulate_grad_batches < 1
        ):
            raise MisconfigurationException(
                f"`Trainer(accumulate_grad_batches={accumulate_grad_batches!r})` must be an int >= 1: the number of"
                " batches whose gradients are summed before each optimizer step."
            )
        if gradient_clip_val is not None and (
            isinstance(gradient_clip_val, bool) or not isinstance(gradient_clip_val, (int, float))
        ):
            raise TypeError(f"`gradient_clip_val` should be an int or a float. Got {gradient_clip_val!r}.")
        if gradient_clip_algorithm is not None and gradient_clip_algorithm not in ("norm", "value"):
            raise MisconfigurationException(
                f"`gradient_clip_algorithm` {gradient_clip_algorithm!r} is invalid. Allowed algorithms: ['value', 'norm']."
            )
        if isinstance(fast_dev_run, bool):
            fast_dev_run = int(fast_dev_run)
        if not isinstance(fast_dev_run, int) or fast_dev_run < 0:
            raise MisconfigurationException(
                f"fast_dev_run={fast_dev_run!r} is not a valid configuration. It should be >= 0 (or True/False)."
            )
        if check_val_every_n_epoch is not None and (
            not isinstance(check_val_every_n_epoch, int) or check_val_every_n_epoch <= 0
        ):
            raise MisconfigurationException(
                f"`check_val_every_n_epoch` should be an integer greater than 0 or None. Found {check_val_every_n_epoch!r}."
            )
        self._val_check_seconds: float | None = None
        if val_check_interval is None:
            val_check_interval = 1.0
        elif isinstance(val_check_interval, (str, timedelta, dict)):
            self._val_check_seconds = _parse_time(val_check_interval)
        elif isinstance(val_check_interval, bool) or not isinstance(val_check_interval, (int, float)):
            raise MisconfigurationException(
                f"`val_check_interval={val_check_interval!r}` must be an int, a float in [0, 1] or a duration."
            )
        elif isinstance(val_check_interval, float) and not 0.0 < val_check_interval <= 1.0:
            raise MisconfigurationException(
                f"`val_check_interval` should be a fraction of the epoch in (0.0, 1.0] or an int number of batches."
                f" Found {val_check_interval}."
            )
        elif isinstance(val_check_interval, int) and val_check_interval <= 0:
            raise MisconfigurationException(
                f"`val_check_interval` should be a positive int. Found {val_check_interval}."
            )
        if check_val_every_n_epoch is None and isinstance(val_check_interval, float):
            raise MisconfigurationException(
                f"`val_check_interval` should be an integer when `check_val_every_n_epoch=None`, found {val_check_interval!r}."
            )
        if num_sanity_val_steps is None:
            num_sanity_val_steps = 2
        if not isinstance(num_sanity_val_steps, int) or num_sanity_val_steps < -1:
            raise MisconfigurationException(
                f"`num_sanity_val_steps` must be an int >= -1 (-1 runs all validation batches), got {num_sanity_val_steps!r}."
            )
        if log_every_n_steps is None:
            log_every_n_steps = 50
        if not isinstance(log_every_n_steps, int) or log_every_n_steps < 0:
            raise MisconfigurationException(f"`log_every_n_steps` must be an int >= 0, got {log_every_n_steps!r}.")
        if not isinstance(reload_dataloaders_every_n_epochs, int) or reload_dataloaders_every_n_epochs < 0:
            raise MisconfigurationException(
                f"`reload_dataloaders_every_n_epochs` should be an int >= 0, got {reload_dataloaders_every_n_epochs}."
            )

        self.limit_train_batches = _batch_limit(limit_train_batches, "limit_train_batches")
        self.limit_val_batches = _batch_limit(limit_val_batches, "limit_val_batches")
        self.limit_test_batches = _batch_limit(limit_test_batches, "limit_test_batches")
        self.limit_predict_batches = _batch_limit(limit_predict_batches, "limit_predict_batches")
        self.overfit_batches = _batch_limit(overfit_batches, "overfit_batches") if overfit_batches else 0.0
        if self.overfit_batches:
            self.limit_train_batches = self.overfit_batches
            self.limit_val_batches = self.overfit_batches
        self.val_check_interval = val_check_interval
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.num_sanity_val_steps = num_sanity_val_steps
        self.log_every_n_steps = log_every_n_steps
        self.accumulate_grad_batches = accumulate_grad_batches
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.reload_dataloaders_every_n_epochs = reload_dataloaders_every_n_epochs
        self.fast_dev_run = fast_dev_run
        self.max_time = max_time
        self._max_steps = max_steps
        self.min_steps = min_steps
        self._max_epochs_arg = max_epochs
        self._min_epochs_arg = min_epochs
        if fast_dev_run:
            self.limit_train_batches = fast_dev_run if not self.overfit_batches else self.limit_train_batches
            self.limit_val_batches = fast_dev_run if not self.overfit_batches else self.limit_val_batches
            self.limit_test_batches = fast_dev_run
            self.limit_predict_batches = fast_dev_run
            self._max_steps = fast_dev_run
            self.num_sanity_val_steps = 0
            self._max_epochs_arg = 1
            self.val_check_interval = 1.0
            self._val_check_seconds = None
            self.check_val_every_n_epoch = 1
            rank_zero_info(
                f"Running in `fast_dev_run` mode: will run the requested loop using {fast_dev_run} batch(es)."
                " Logging and checkpointing is suppressed."
            )

        # ---- hardware and precision ------------------------------------------------------
        accelerator_name = resolve_accelerator(accelerator)
        device_ids = parse_devices(devices, accelerator_name)
        if not isinstance(num_nodes, int) or num_nodes < 1:
            raise MisconfigurationException(f"`num_nodes` must be an int >= 1, got {num_nodes!r}.")
        self._accelerator = accelerator_name
        self.strategy = create_strategy(
            strategy,
            accelerator_name,
            device_ids,
            num_nodes,
            sync_batchnorm=sync_batchnorm,
            plugins=plugins,
        )
        self._precision_name = normalize_precision(precision)
        self.precision = self._precision_name
        if self._precision_name == "16-mixed" and accelerator_name == "cpu":
            # as Lightning 2.6: a GPU program still runs on a CPU machine, in the precision CPUs support
            rank_zero_warn(
                "You passed `Trainer(accelerator='cpu', precision='16-mixed')` but AMP with fp16 is not supported on"
                " CPU. Using `precision='bf16-mixed'` instead."
            )
            self._precision_name = "bf16-mixed"
            self.precision = self._precision_name
        self.plugins = plugins
        self.sync_batchnorm = sync_batchnorm
        self.use_distributed_sampler = use_distributed_sampler
        self.inference_mode = inference_mode
        self.detect_anomaly = detect_anomaly
        from ember.profilers import create_profiler

        self.profiler = create_profiler(profiler)
        self.deterministic = deterministic
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=deterministic == "warn")
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if benchmark is None and deterministic:
            benchmark = False
        if benchmark is not None and torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = benchmark
        self.benchmark = benchmark
        self.model_registry = model_registry
        self.enable_autolog_hparams = enable_autolog_hparams

        # ---- paths, loggers, callbacks ---------------------------------------------------
        self._default_root_dir = os.fspath(default_root_dir) if default_root_dir is not None else None
        self.loggers = configure_loggers(logger, self.default_root_dir)
        if fast_dev_run and self.loggers:
            from ember.loggers.logger import DummyLogger

            self.loggers = [DummyLogger()]
        self.callbacks = configure_callbacks(
            callbacks, enable_checkpointing, enable_progress_bar, enable_model_summary, max_time
        )
        self._enable_checkpointing = enable_checkpointing is not False

        # ---- run state ---------------------------------------------------------------------
        self.state = TrainerState()
        self.should_stop = False
        self._progress = Progress()
        self._train_results = LoggedResults(training=True)
        self._val_results = LoggedResults(training=False)
        self._test_results = LoggedResults(training=False)
        self._results: LoggedResults | None = None
        self._metrics = MetricStore(self)
        self._module: Any = None
        self._hooks: Any = None
        self._profiling: Any = None  # the profiler to record spans in during a run, None for none
        self._precision: Any = None
        self.datamodule: Any = None
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lr_scheduler_configs: list[Any] = []
        self._lightning_optimizers: list[LightningOptimizer] = []
        self._custom_scheduler_step = False
        self.train_dataloader: Any = None
        self.val_dataloaders: Any = None
        self.test_dataloaders: Any = None
        self.predict_dataloaders: Any = None
        self._train_source: Any = None
        self._eval_sources: dict[str, Any] = {}
        self._loaded_eval: dict[str, list[Any]] = {}
        self.num_training_batches: int | float = float("inf")
        self.num_sanity_val_batches: list[int | float] = []
        self._eval_batches: dict[str, list[int | float]] = {}
        self.val_check_batch: int | float = float("inf")
        self._train_iterator: Any = None
        self._epoch_rng: Any = None
        self._resume: dict[str, Any] | None = None
        self._last_train_reload_epoch: int | None = None
        self._eval_steps_seen: dict[Any, int] = {}
        self._evaluation_has_run = False
        self._evaluation_batches_run = False
        self._stop_flag = StopFlag()
        self._last_val_time = 0.0
        self.ckpt_path: str | None = None
        self.sanity_checking = False
        self.predictions: Any = None
        self.predict_batch_indices: Any = None
        self.predict_loop = dataloaders.PredictLoopView()
        _set_rank(self.strategy.global_rank)

    # =====================================================================================
    # configuration helpers
    # =====================================================================================
    # =====================================================================================
    # entry points
    # =====================================================================================
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
        checkpoint file, ``"last"`` or ``"best"``.
        """
        from ember.core.datamodule import LightningDataModule

        model = self._check_model(model, "fit")
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
        self.state.fn = TrainerFn.FITTING
        self.state.status = TrainerStatus.RUNNING
        self.training = True
        self.should_stop = False
        self._reset_data_sources()
        self._train_source = train_dataloaders
        self._eval_sources["val"] = val_dataloaders
        self._set_datamodule(datamodule)
        self._run_guarded(self._run, model, ckpt_path, weights_only)

    def validate(
        self,
        model: Any = None,
        dataloaders: Any = None,
        ckpt_path: str | os.PathLike | None = None,
        verbose: bool = True,
        datamodule: Any = None,
        weights_only: bool | None = None,
    ) -> list[dict[str, float]]:
        """Run one validation epoch; returns one dict of logged epoch metrics per dataloader."""
        return self._evaluate(TrainerFn.VALIDATING, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def test(
        self,
        model: Any = None,
        dataloaders: Any = None,
        ckpt_path: str | os.PathLike | None = None,
        verbose: bool = True,
        datamodule: Any = None,
        weights_only: bool | None = None,
    ) -> list[dict[str, float]]:
        """Run one test epoch; returns one dict of logged epoch metrics per dataloader."""
        return self._evaluate(TrainerFn.TESTING, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def predict(
        self,
        model: Any = None,
        dataloaders: Any = None,
        datamodule: Any = None,
        return_predictions: bool | None = None,
        ckpt_path: str | os.PathLike | None = None,
        weights_only: bool | None = None,
    ) -> list[Any] | None:
        """Run ``predict_step`` over the data; returns the predictions (a list per dataloader if several)."""
        from ember.core.datamodule import LightningDataModule

        model_given = model is not None
        model = self._check_model(model, "predict")
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        if dataloaders is not None and datamodule is not None:
            raise MisconfigurationException("You cannot pass both `trainer.predict(dataloaders=..., datamodule=...)`")
        self.state.fn = TrainerFn.PREDICTING
        self.state.status = TrainerStatus.RUNNING
        self.predicting = True
        self._reset_data_sources()
        self._eval_sources["predict"] = dataloaders
        if datamodule is not None or not model_given:
            self._set_datamodule(datamodule)
        if return_predictions is None:
            return_predictions = True
        self._return_predictions = return_predictions
        return self._run_guarded(self._run, model, ckpt_path, weights_only, model_given=model_given)

    def _evaluate(
        self,
        fn: TrainerFn,
        model: Any,
        dataloaders: Any,
        ckpt_path: Any,
        verbose: bool,
        datamodule: Any,
        weights_only: bool | None,
    ) -> list[dict[str, float]]:
        from ember.core.datamodule import LightningDataModule

        model_given = model is not None
        model = self._check_model(model, fn.value)
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        if dataloaders is not None and datamodule is not None:
            raise MisconfigurationException(
                f"You cannot pass both `trainer.{fn.value}(dataloaders=..., datamodule=...)`"
            )
        self.state.fn = fn
        self.state.status = TrainerStatus.RUNNING
        if fn == TrainerFn.VALIDATING:
            self.validating = True
        else:
            self.testing = True
        self._reset_data_sources()
        self._eval_sources["val" if fn == TrainerFn.VALIDATING else "test"] = dataloaders
        if datamodule is not None or not model_given:
            self._set_datamodule(datamodule)
        self._verbose = verbose
        return self._run_guarded(self._run, model, ckpt_path, weights_only, model_given=model_given)

    def _check_model(self, model: Any, fn: str) -> Any:
        from ember.core.module import LightningModule

        if model is None:
            model = self._module
            if model is None:
                raise MisconfigurationException(
                    f"`model` must be provided to `trainer.{fn}()` when it hasn't been passed in a previous run"
                )
            return model
        if not isinstance(model, LightningModule):
            raise TypeError(
                f"`model` must be a `LightningModule` or `torch._dynamo.OptimizedModule`, got `{type(model).__qualname__}`."
                " Subclass `ember.LightningModule` (or `import ember as pl` and use `pl.LightningModule`)."
            )
        return model

    def _set_datamodule(self, datamodule: Any) -> None:
        if datamodule is not None:
            self.datamodule = datamodule
            datamodule.trainer = self

    def _reset_data_sources(self) -> None:
        self._train_source = None
        self._eval_sources = {}
        self._loaded_eval = {}
        self._eval_batches = {}
        self.train_dataloader = None
        self.val_dataloaders = None
        self.test_dataloaders = None
        self.predict_dataloaders = None

    # =====================================================================================
    # one run: setup, the stage, teardown, and failure handling
    # =====================================================================================
    def _run_guarded(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        launcher = getattr(self.strategy, "launcher", None)
        try:
            if launcher is not None and not launcher.is_launched:
                return launcher.launch(fn, *args, trainer=self, **kwargs)
            return fn(*args, **kwargs)
        except KeyboardInterrupt as exception:
            rank_zero_info("\nDetected KeyboardInterrupt, attempting graceful shutdown ...")
            previous = signal.getsignal(signal.SIGINT)
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not break the shutdown
            try:
                self._interrupt(exception)
                self._teardown()
            finally:
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(signal.SIGINT, previous)
            raise SystemExit(1) from None
        except PreemptionExit:
            self.state.status = TrainerStatus.INTERRUPTED
            self._stop_profiling()
            self._teardown()
            raise
        except _TunerExitException:
            # a tuner finished its search inside this call: end it as a finished run
            self._call_teardown_hooks(self.state.fn.value)
            self._teardown()
            self.state.status = TrainerStatus.FINISHED
            self.state.stage = None
        except BaseException as exception:
            self._interrupt(exception)
            self._teardown()
            self.state.stage = None
            raise

    def _interrupt(self, exception: BaseException) -> None:
        self.state.status = TrainerStatus.INTERRUPTED
        # the strategy first: in a distributed run it stops the other ranks and makes collectives
        # local, so a checkpoint saved by `on_exception` below cannot wait forever for a peer
        self.strategy.on_exception(exception)
        if self._hooks is not None:
            self._hooks.call_callbacks("on_exception", exception)
            if self.datamodule is not None:
                self.datamodule.on_exception(exception)
        for logger in self.loggers:
            with contextlib.suppress(Exception):
                logger.finalize("failed")
        self._stop_profiling()

    def _stop_profiling(self) -> None:
        """A run that ends early writes no report, but stops what the profiler runs (torch.profiler)."""
        if self._profiling is not None:
            with contextlib.suppress(Exception):
                self._profiling.teardown(stage=self.state.fn.value if self.state.fn is not None else None)

    def _teardown(self) -> None:
        self.strategy.teardown()
        self._stop_flag.uninstall()
        self._results = None
        self._metrics.live = None
        self._metrics.to_cpu()

    def _run(self, model: Any, ckpt_path: Any, weights_only: bool | None, model_given: bool = True) -> Any:
        from ember.checkpoint import contents as ckpt
        from ember.checkpoint.ckpt_path import resolve_ckpt_path
        from ember.precision import Precision
        from ember.profilers.profiler import active
        from ember.trainer.dispatch import HookDispatcher

        fn = self.state.fn
        self._module = model
        self.strategy.connect(model)
        model.trainer = self
        profiler = self._profiling = active(self.profiler)  # None: the loop is built without spans
        self._hooks = HookDispatcher(self, model, self.callbacks, profiler)
        self.callbacks = merge_model_callbacks(self.callbacks, self._hooks.call_module("configure_callbacks"))
        self._hooks = HookDispatcher(self, model, self.callbacks, profiler)
        self._validate_configuration(model)
        self._precision = Precision(self._precision_name, self.strategy.root_device)
        self.strategy.precision_plugin = self._precision

        for logger in self.loggers:
            check = getattr(logger, "_check_save_dir_writable", None)
            if check is not None and self.is_global_zero:
                check()  # fail before any work is done, naming the folder
        self.strategy.setup_environment()  # the process group first: prepare_data's barrier needs it
        _set_rank(self.strategy.global_rank)
        if profiler is not None:
            profiler._lightning_module = model
            profiler.setup(
                stage=fn.value, local_rank=self.local_rank if self.world_size > 1 else None, log_dir=self.log_dir
            )
        self._prepare_data()
        self._call_setup_hooks(fn.value)
        if self._hooks.module_overrides("configure_model"):
            self._hooks.call_module("configure_model")
        self._precision.convert_module(model)

        path = resolve_ckpt_path(self, ckpt_path, fn.value, model_given)
        self.ckpt_path = path
        checkpoint = None
        if path is not None:
            checkpoint = ckpt.load_for_trainer(self, path, weights_only)
            ckpt.restore_modules_and_callbacks(self, checkpoint)

        self._reset_metrics()
        self._train_results = LoggedResults(training=True)
        self._val_results = LoggedResults(training=False)
        self._test_results = LoggedResults(training=False)
        for results in (self._train_results, self._val_results, self._test_results):
            results.sync = self.strategy.sync_fn
        self._progress = Progress() if fn == TrainerFn.FITTING else self._progress
        self._eval_steps_seen = {}
        self._evaluation_has_run = False
        model.to(self.strategy.root_device)
        optimizers_after = getattr(self.strategy, "setup_optimizers_after_module", False)  # FSDP: sharded params
        if fn == TrainerFn.FITTING and not optimizers_after:
            self._setup_optimizers(model)
        self.strategy.model = self.strategy.setup_module(model)
        if fn == TrainerFn.FITTING and optimizers_after:
            self._setup_optimizers(model)
        if fn == TrainerFn.FITTING:
            self._hooks.call_both("on_fit_start")
        self._log_hyperparams(model)
        if checkpoint is not None and fn == TrainerFn.FITTING:
            ckpt.restore_training_state(self, checkpoint)
        del checkpoint
        self._stop_flag = StopFlag()
        if fn == TrainerFn.FITTING:
            requeue = self._slurm_requeue()
            self._stop_flag.install(extra=(requeue.requeue_signal,) if requeue is not None else ())

        results = self._run_stage(model)

        self._teardown()
        if fn == TrainerFn.FITTING:
            self._hooks.call_both("on_fit_end")
        self._call_teardown_hooks(fn.value)
        if profiler is not None:
            profiler.describe()  # after the loggers are finalized, as in Lightning
        self.state.status = TrainerStatus.FINISHED
        self.state.stage = None
        return results

    def _run_stage(self, model: Any) -> Any:
        self.strategy.barrier("run-stage")
        model.zero_grad()
        fn = self.state.fn
        if fn == TrainerFn.FITTING:
            with (
                torch.autograd.set_detect_anomaly(self.detect_anomaly)
                if self.detect_anomaly
                else contextlib.nullcontext()
            ):
                loop.run_fit(self)
            return None
        if fn == TrainerFn.PREDICTING:
            return loop.run_predict(self, self._return_predictions)
        stage = RunningStage.VALIDATING if fn == TrainerFn.VALIDATING else RunningStage.TESTING
        outputs = loop.run_evaluation(self, stage)
        outputs = [{k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in d.items()} for d in outputs]
        if getattr(self, "_verbose", True) and self.is_global_zero and outputs:
            print_results(outputs, "validate" if stage == RunningStage.VALIDATING else "test")
        return outputs

    def _validate_configuration(self, model: Any) -> None:
        fn = self.state.fn
        hooks = self._hooks
        if fn == TrainerFn.FITTING:
            if not hooks.module_overrides("training_step"):
                raise MisconfigurationException(
                    "No `training_step()` method defined. Lightning `Trainer` expects as minimum a `training_step()`,"
                    " `train_dataloader()` and `configure_optimizers()` to be defined."
                )
            has_train_data = (
                self._train_source is not None
                or (self.datamodule is not None and dataloaders.overridden(self.datamodule, "train_dataloader"))
                or hooks.module_overrides("train_dataloader")
            )
            if not has_train_data:
                raise MisconfigurationException(
                    "No `train_dataloader()` method defined and no training data given: pass"
                    " `trainer.fit(model, train_dataloaders=...)`, a datamodule, or define `train_dataloader()`."
                )
            if not model.automatic_optimization:
                if self.gradient_clip_val is not None and self.gradient_clip_val != 0:
                    raise MisconfigurationException(
                        "Automatic gradient clipping is not supported for manual optimization. Remove"
                        f" `Trainer(gradient_clip_val={self.gradient_clip_val})` or switch to automatic optimization."
                    )
                if self.accumulate_grad_batches != 1:
                    raise MisconfigurationException(
                        "Automatic gradient accumulation is not supported for manual optimization. Remove"
                        f" `Trainer(accumulate_grad_batches={self.accumulate_grad_batches})` or switch to automatic"
                        " optimization."
                    )
            if "optimizer_idx" in inspect.signature(model.training_step).parameters:
                raise RuntimeError(
                    "Training with multiple optimizers is only supported with manual optimization. Remove the"
                    " `optimizer_idx` argument from `training_step`, set `self.automatic_optimization = False` and"
                    " access your optimizers in `training_step` with `opt1, opt2, ... = self.optimizers()`."
                )
        elif fn in (TrainerFn.VALIDATING, TrainerFn.TESTING):
            step = "validation_step" if fn == TrainerFn.VALIDATING else "test_step"
            if not hooks.module_overrides(step):
                raise MisconfigurationException(f"No `{step}()` method defined to run `Trainer.{fn.value}`.")
        elif (
            fn == TrainerFn.PREDICTING
            and not hooks.module_overrides("predict_step")
            and not hooks.module_overrides("forward")
        ):
            raise MisconfigurationException("`predict_step` cannot be None to run `Trainer.predict`")

    def _prepare_data(self) -> None:
        module, datamodule = self._module, self.datamodule
        local_rank_zero = self.strategy.local_rank == 0
        global_rank_zero = self.strategy.global_rank == 0
        if datamodule is not None:
            per_node = getattr(datamodule, "prepare_data_per_node", True)
            if (per_node and local_rank_zero) or (not per_node and global_rank_zero):
                datamodule.prepare_data()
        per_node = getattr(module, "prepare_data_per_node", True)
        if (per_node and local_rank_zero) or (not per_node and global_rank_zero):
            self._hooks.call_module("prepare_data")
        self.strategy.barrier("prepare_data")  # all ranks: the others wait for the data

    def _call_setup_hooks(self, stage: str) -> None:
        module = self._module
        for child in module.modules():
            if hasattr(child, "_device"):
                child._device = self.strategy.root_device
        for logger in self.loggers:
            if getattr(logger, "_lazy_experiment", False):
                # its writer (and the backend import) waits for the first value; the folder exists now
                if self.is_global_zero and logger.log_dir and "://" not in str(logger.log_dir):
                    os.makedirs(logger.log_dir, exist_ok=True)
            elif hasattr(logger, "experiment"):
                _ = logger.experiment  # e.g. wandb must start its run before any other writer
        self.strategy.barrier("pre_setup")
        if self.datamodule is not None:
            self.datamodule.setup(stage=stage)
        self._hooks.call_callbacks("setup", stage)
        self._hooks.call_module("setup", stage)
        self.strategy.barrier("post_setup")

    def _call_teardown_hooks(self, stage: str) -> None:
        if self.datamodule is not None:
            self.datamodule.teardown(stage=stage)
        self._hooks.call_callbacks("teardown", stage)
        self._hooks.call_module("teardown", stage)
        self._module._current_fx_name = None
        for logger in self.loggers:
            logger.finalize("success")

    def _setup_optimizers(self, model: Any) -> None:
        from ember.trainer.optim import check_non_torch_schedulers

        result = self._hooks.call_module("configure_optimizers")
        optimizers, configs, _ = configure_optimizers(result, automatic=model.automatic_optimization)
        if model.automatic_optimization and len(optimizers) > 1:
            raise RuntimeError(
                "Training with multiple optimizers is only supported with manual optimization. Set"
                " `self.automatic_optimization = False`, then access your optimizers in `training_step` with"
                " `opt1, opt2, ... = self.optimizers()`."
            )
        if not model.automatic_optimization:
            for config in configs:
                if config.monitor is not None or config.reduce_on_plateau:
                    rank_zero_warn(
                        "The lr scheduler dict contains the key(s) ['monitor', 'strict', 'reduce_on_plateau'], but"
                        " the keys will be ignored. You need to call `lr_scheduler.step()` manually in manual optimization."
                    )
        self._custom_scheduler_step = self._hooks.module_overrides("lr_scheduler_step")
        check_non_torch_schedulers(model, configs, self._custom_scheduler_step)
        self.optimizers = optimizers
        self.lr_scheduler_configs = configs
        self._lightning_optimizers = [LightningOptimizer(opt, self) for opt in optimizers]

    def _log_hyperparams(self, model: Any) -> None:
        if not self.loggers or not self.enable_autolog_hparams:
            return
        datamodule = self.datamodule
        module_log = getattr(model, "_log_hyperparams", False)
        dm_log = datamodule is not None and getattr(datamodule, "_log_hyperparams", False)
        hparams: dict[str, Any] = {}
        if module_log:
            hparams.update(model.hparams_initial)
        if dm_log:
            dm_hparams = datamodule.hparams_initial
            overlap = [k for k in dm_hparams if k in hparams and hparams[k] != dm_hparams[k]]
            if overlap:
                raise RuntimeError(
                    f"Error while merging hparams: the keys {overlap} are present in both the LightningModule's and"
                    " LightningDataModule's hparams but have different values."
                )
            hparams.update(dm_hparams)
        for logger in self.loggers:
            if hparams:
                logger.log_hyperparams(hparams)
            if hasattr(logger, "log_graph"):
                logger.log_graph(model)
            if hparams or getattr(logger, "_log_graph", False):
                logger.save()  # nothing was written otherwise: the first metrics write saves

    # =====================================================================================
    # data
    # =====================================================================================
    def _setup_train_dataloader(self) -> Any:
        return dataloaders.setup_train_dataloader(self)

    def _reload_train_dataloader_now(self) -> bool:
        return dataloaders.reload_train_dataloader_now(self)

    def _setup_eval_dataloaders(self, stage: RunningStage) -> list[Any]:
        return dataloaders.setup_eval_dataloaders(self, stage)

    def _eval_dataloaders(self, stage: RunningStage) -> list[Any]:
        return dataloaders.eval_dataloaders(self, stage)

    def _eval_num_batches(self, stage: RunningStage) -> list[int | float]:
        return dataloaders.eval_num_batches(self, stage)

    def _eval_grad_context(self) -> contextlib.AbstractContextManager:
        if self.inference_mode and getattr(self.strategy, "supports_inference_mode", True):
            return torch.inference_mode()
        return torch.no_grad()

    # =====================================================================================
    # loop decisions
    # =====================================================================================
    @property
    def enable_validation(self) -> bool:
        module = self._module
        if module is None or not self._hooks.module_overrides("validation_step"):
            return False
        if self.limit_val_batches == 0:
            return False
        return (
            self._eval_sources.get("val") is not None
            or (self.datamodule is not None and dataloaders.overridden(self.datamodule, "val_dataloader"))
            or self._hooks.module_overrides("val_dataloader")
        )

    def _should_sanity_check(self) -> bool:
        return not (not self.enable_validation or self.num_sanity_val_steps == 0)

    def _should_check_val_epoch(self) -> bool:
        return self.enable_validation and (
            self.check_val_every_n_epoch is None or (self._progress.epoch + 1) % self.check_val_every_n_epoch == 0
        )

    def _should_check_val(self, batch_idx: int, is_last: bool) -> bool:
        """Whether this batch ends a validation interval (the loop has checked the epoch already)."""
        if self._val_check_seconds is not None:
            import time

            now = time.monotonic()
            if now - self._last_val_time >= self._val_check_seconds:
                self._last_val_time = now
                return True
            return is_last and self.check_val_every_n_epoch is not None
        if self.val_check_batch == float("inf"):
            return is_last
        if self.check_val_every_n_epoch is None:
            return self._progress.total_batches % self.val_check_batch == 0
        return (batch_idx + 1) % self.val_check_batch == 0

    def _can_stop_early(self) -> bool:
        progress = self._progress
        processed = progress.epoch + (1 if progress.epoch_done else 0)
        met_epochs = processed >= self.min_epochs if self.min_epochs else True
        met_steps = progress.global_step >= self.min_steps if self.min_steps else True
        return met_epochs and met_steps

    def _warn_min_not_reached(self) -> None:
        if not getattr(self, "_warned_min", False):
            self._warned_min = True
            rank_zero_info(
                f"Trainer was signaled to stop but the required `min_epochs={self.min_epochs!r}` or"
                f" `min_steps={self.min_steps!r}` has not been met. Training will continue..."
            )

    def _slurm_requeue(self) -> Any:
        """The SLURM environment when this job requeues itself on its requeue signal (else None)."""
        from ember.distributed.environments import SLURMEnvironment, environment_in

        env = getattr(self.strategy, "cluster_environment", None)
        if env is None:  # one process: an environment passed in `plugins`, else the one detected
            env = environment_in(self.plugins)
        if env is None and SLURMEnvironment.detect():
            env = SLURMEnvironment()  # one task on one device: no process group, still a SLURM job
        return env if isinstance(env, SLURMEnvironment) and env.auto_requeue else None

    def _on_stop_request(self) -> None:
        """A preemption signal arrived: save where training stands, then exit on every rank.

        Under SLURM with ``auto_requeue``, the requeue signal (SIGUSR1 by default) saves
        ``hpc_ckpt_<n>.ckpt`` in ``default_root_dir`` and requeues the job; the requeued job's
        ``fit`` resumes from it.
        """
        from ember.callbacks.model_checkpoint import ModelCheckpoint
        from ember.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
        from ember.checkpoint.ckpt_path import hpc_save_path

        name = signal.Signals(self._stop_flag.signum).name if self._stop_flag.signum else "a stop signal"
        requeue = self._slurm_requeue()
        if requeue is not None and self._stop_flag.signum == requeue.requeue_signal:
            # every rank must write the same name: rank 0's listing decides
            path = self.strategy.broadcast(hpc_save_path(self.default_root_dir))
            self.save_checkpoint(path)
            if self.is_global_zero:
                requeue.requeue()
            raise PreemptionExit(
                f"Received {name}: training stopped at epoch {self.current_epoch}, step {self.global_step}, and the"
                f" state was saved to {path}. SLURM job {requeue.job_id()} was requeued: when it starts again,"
                " `trainer.fit` resumes from that checkpoint."
            )
        path = None
        for cb in self.callbacks:
            if isinstance(cb, OnExceptionCheckpoint):
                path = cb.ckpt_path
                break
        if path is None:
            for cb in self.callbacks:
                if isinstance(cb, ModelCheckpoint):
                    dirpath = cb.dirpath or os.path.join(self.default_root_dir, "checkpoints")
                    path = os.path.join(dirpath, cb.CHECKPOINT_NAME_LAST + cb.FILE_EXTENSION)
                    break
        if path is None:
            path = os.path.join(self.default_root_dir, "checkpoints", "last.ckpt")
        self.save_checkpoint(path)
        message = (
            f"Received {name}: training stopped at epoch {self.current_epoch}, step {self.global_step}, and the state"
            f" was saved to {path}. Resume with `trainer.fit(model, ckpt_path='last')` (or ckpt_path={path!r})."
        )
        raise PreemptionExit(message)  # the exit prints the message

    # =====================================================================================
    # metrics (stored in trainer/metrics.py)
    # =====================================================================================
    def _reset_metrics(self) -> None:
        self._metrics.reset()

    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        """What callbacks see: every logged value (step and epoch forms), as tensors."""
        self._metrics.current()
        return self._metrics.callback

    @callback_metrics.setter
    def callback_metrics(self, metrics: dict[str, Any]) -> None:
        self._metrics.callback = dict(metrics)

    @property
    def logged_metrics(self) -> dict[str, torch.Tensor]:
        """The values sent to the loggers."""
        self._metrics.current()
        return self._metrics.logged

    @logged_metrics.setter
    def logged_metrics(self, metrics: dict[str, Any]) -> None:
        self._metrics.logged = dict(metrics)

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        """``prog_bar=True`` values as Python numbers. Reading this is a host-device sync."""
        return self._metrics.progress_bar_values()

    def _progress_bar_metrics_nowait(self) -> dict[str, float]:
        """The progress-bar values for display; never waits for the GPU (see ``MetricStore``)."""
        return self._metrics.progress_bar_values_nowait()

    @property
    def _logger_step(self) -> int:
        return self._progress.batches_that_stepped

    # =====================================================================================
    # manual optimization
    # =====================================================================================
    def _manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        hooks, module = self._hooks, self._module
        hooks.call_callbacks("on_before_backward", loss)
        hooks.call_module("on_before_backward", loss)
        self.strategy.pre_backward(loss)  # DDP: get its reducer ready for this backward
        scaled = self._precision.scale_loss(loss)
        hooks.call_module("backward", scaled, *args, **kwargs)
        hooks.call_callbacks("on_after_backward")
        hooks.call_module("on_after_backward")
        module._current_fx_name = "training_step"

    def _optimizer_step_from_wrapper(self, wrapper: LightningOptimizer, closure: Callable | None, **kwargs: Any) -> Any:
        optimizer = wrapper._optimizer
        automatic = self._module.automatic_optimization
        before = getattr(wrapper, "_closure_hook", None)
        if automatic and before is not None:
            return self._precision.optimizer_step(optimizer, closure, before)

        def before_step() -> None:
            self._hooks.call_callbacks("on_before_optimizer_step", optimizer)
            self._hooks.call_module("on_before_optimizer_step", optimizer)
            self._module._current_fx_name = "training_step"

        result = (
            self._precision.optimizer_step(optimizer, closure if closure is not None else (lambda: None), before_step)
            if self._precision.scaler is None
            else self._precision.optimizer_step(
                optimizer, closure if closure is not None else (lambda: True), before_step
            )
        )
        if not automatic:
            self._progress.global_step += 1
        return result

    # =====================================================================================
    # checkpoints
    # =====================================================================================
    def save_checkpoint(
        self, filepath: str | os.PathLike, weights_only: bool | None = False, storage_options: Any = None
    ) -> None:
        """Write a checkpoint of the current state. Call it on every rank; rank 0 writes the file
        (with ``FSDPStrategy(state_dict_type="sharded")``, every rank writes its shards into a folder).

        Example::

            trainer.save_checkpoint("example.ckpt")
        """
        from ember.checkpoint.contents import dump_checkpoint

        if self._module is None:
            raise AttributeError(
                "Saving a checkpoint is only possible if a model is attached to the Trainer. Did you call"
                " `Trainer.save_checkpoint()` before calling `Trainer.{fit,validate,test,predict}`?"
            )
        with self._profiling.profile("save_checkpoint") if self._profiling is not None else contextlib.nullcontext():
            checkpoint = dump_checkpoint(self, bool(weights_only))
            self.strategy.save_checkpoint(
                checkpoint, filepath, storage_options=storage_options
            )  # rank 0, or every rank's shards
        self.strategy.barrier("Trainer.save_checkpoint")  # all ranks: the file exists when anyone returns

    # =====================================================================================
    # properties
    # =====================================================================================
    @property
    def current_epoch(self) -> int:
        return self._progress.epoch

    @property
    def global_step(self) -> int:
        return self._progress.global_step

    @property
    def max_epochs(self) -> int:
        if self._max_epochs_arg is None:
            if (
                self._max_steps == -1
                and self.max_time is None
                and not any(type(cb).__name__ == "Timer" for cb in self.callbacks)
            ):
                if not getattr(self, "_warned_max_epochs", False):
                    self._warned_max_epochs = True
                    rank_zero_warn(
                        "`max_epochs` was not set. Setting it to 1000 epochs. To train without an epoch limit,"
                        " set `max_epochs=-1`.",
                        category=PossibleUserWarning,
                    )
                return 1000
            return -1
        return self._max_epochs_arg

    @max_epochs.setter
    def max_epochs(self, value: int) -> None:
        self._max_epochs_arg = value

    @property
    def max_steps(self) -> int:
        return self._max_steps

    @max_steps.setter
    def max_steps(self, value: int) -> None:
        self._max_steps = value

    @property
    def min_epochs(self) -> int:
        if self._min_epochs_arg is None:
            return 1 if self.min_steps is not None else 0
        return self._min_epochs_arg

    @min_epochs.setter
    def min_epochs(self, value: int) -> None:
        self._min_epochs_arg = value

    @property
    def num_val_batches(self) -> list[int | float]:
        return self._eval_batches.get("val", [])

    @property
    def num_test_batches(self) -> list[int | float]:
        return self._eval_batches.get("test", [])

    @property
    def num_predict_batches(self) -> list[int | float]:
        return self._eval_batches.get("predict", [])

    @property
    def estimated_stepping_batches(self) -> int | float:
        """The total optimizer steps fit will run (for schedulers such as OneCycleLR)."""
        if self.max_epochs == -1:
            return float("inf") if self.max_steps == -1 else self.max_steps
        if self.train_dataloader is None:
            rank_zero_info("Loading `train_dataloader` to estimate number of stepping batches.")
            self._setup_train_dataloader()
        total = self.num_training_batches
        if total == float("inf"):
            return self.max_steps
        estimate = math.ceil(total / self.accumulate_grad_batches) * max(self.max_epochs, 1)
        return min(estimate, self.max_steps) if self.max_steps != -1 else estimate

    @property
    def precision_plugin(self) -> Any:
        return self._precision

    @property
    def lightning_module(self) -> Any:
        return self._module

    @property
    def model(self) -> Any:
        """The module the loops call (a distributed wrapper of the LightningModule, if any)."""
        return self.strategy.model

    @property
    def is_global_zero(self) -> bool:
        return self.strategy.is_global_zero

    @property
    def global_rank(self) -> int:
        return self.strategy.global_rank

    @property
    def local_rank(self) -> int:
        return self.strategy.local_rank

    @property
    def node_rank(self) -> int:
        return self.strategy.node_rank

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def num_nodes(self) -> int:
        return self.strategy.num_nodes

    @property
    def num_devices(self) -> int:
        return getattr(self.strategy, "num_processes", 1) if self.strategy.is_distributed else 1

    @property
    def device_ids(self) -> list[int]:
        return getattr(self.strategy, "parallel_devices_ids", [self.strategy.root_device.index or 0])

    @property
    def accelerator(self) -> str:
        return self._accelerator

    @property
    def default_root_dir(self) -> str:
        if self._default_root_dir is None:
            return os.getcwd()
        from ember.checkpoint import is_local

        path = self._default_root_dir
        return os.path.normpath(os.path.expanduser(path)) if is_local(path) else path

    @property
    def logger(self) -> Any:
        return self.loggers[0] if self.loggers else None

    @logger.setter
    def logger(self, logger: Any) -> None:
        self.loggers = [logger] if logger is not None else []

    @property
    def log_dir(self) -> str | None:
        """The first logger's ``log_dir`` (or ``save_dir``), else ``default_root_dir``."""
        if not self.loggers:
            dirpath = self.default_root_dir
        else:
            logger = self.loggers[0]
            dirpath = getattr(logger, "log_dir", None) or logger.save_dir
        return self.strategy.broadcast(dirpath)

    @property
    def checkpoint_callback(self) -> Any:
        callbacks = self.checkpoint_callbacks
        return callbacks[0] if callbacks else None

    @property
    def checkpoint_callbacks(self) -> list[Any]:
        from ember.callbacks.checkpoint import Checkpoint

        return [cb for cb in self.callbacks if isinstance(cb, Checkpoint)]

    @property
    def early_stopping_callback(self) -> Any:
        callbacks = self.early_stopping_callbacks
        return callbacks[0] if callbacks else None

    @property
    def early_stopping_callbacks(self) -> list[Any]:
        from ember.callbacks.early_stopping import EarlyStopping

        return [cb for cb in self.callbacks if isinstance(cb, EarlyStopping)]

    @property
    def progress_bar_callback(self) -> Any:
        from ember.callbacks.progress_bar import ProgressBar

        return next((cb for cb in self.callbacks if isinstance(cb, ProgressBar)), None)

    @property
    def interrupted(self) -> bool:
        return self.state.status == TrainerStatus.INTERRUPTED

    # ---- the running stage as flags --------------------------------------------------------
    @property
    def training(self) -> bool:
        return self.state.stage == RunningStage.TRAINING

    @training.setter
    def training(self, value: bool) -> None:
        if value:
            self.state.stage = RunningStage.TRAINING
        elif self.training:
            self.state.stage = None

    @property
    def validating(self) -> bool:
        return self.state.stage == RunningStage.VALIDATING

    @validating.setter
    def validating(self, value: bool) -> None:
        if value:
            self.state.stage = RunningStage.VALIDATING
        elif self.validating:
            self.state.stage = None

    @property
    def testing(self) -> bool:
        return self.state.stage == RunningStage.TESTING

    @testing.setter
    def testing(self, value: bool) -> None:
        if value:
            self.state.stage = RunningStage.TESTING
        elif self.testing:
            self.state.stage = None

    @property
    def predicting(self) -> bool:
        return self.state.stage == RunningStage.PREDICTING

    @predicting.setter
    def predicting(self, value: bool) -> None:
        if value:
            self.state.stage = RunningStage.PREDICTING
        elif self.predicting:
            self.state.stage = None

    @property
    def sanity_checking(self) -> bool:
        return self.state.stage == RunningStage.SANITY_CHECKING

    @sanity_checking.setter
    def sanity_checking(self, value: bool) -> None:
        if value:
            self.state.stage = RunningStage.SANITY_CHECKING
        elif self.sanity_checking:
            self.state.stage = None

    @property
    def evaluating(self) -> bool:
        return self.state.stage is not None and self.state.stage.evaluating
