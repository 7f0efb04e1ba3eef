"""``Tuner``: run the learning rate finder or the batch size finder as a short ``trainer.fit`` call.

Example::

    trainer = Trainer(max_epochs=10)
    tuner = Tuner(trainer)
    tuner.scale_batch_size(model, mode="power")
    lr_finder = tuner.lr_find(model)
    print(lr_finder.suggestion())
    trainer.fit(model)
"""

from __future__ import annotations

from typing import Any, Literal

from ember.distributed.processes import runs_distributed
from ember.trainer.trainer import Trainer
from ember.tuner.lr_finder import _LRFinder
from ember.utilities.exceptions import MisconfigurationException

_METHODS = ("fit", "validate", "test", "predict")


class Tuner:
    """Tunes the learning rate and the batch size of a model before the real run.

    Each search runs inside one ``trainer.<method>`` call and restores the model, optimizer and
    loop state afterwards; only the tuned attribute (``lr``/``learning_rate``, ``batch_size``) changes.

    Example::

        tuner = Tuner(trainer)
        tuner.lr_find(model)           # model.lr is now the suggestion
        trainer.fit(model)
    """

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    def scale_batch_size(
        self,
        model: Any,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        dataloaders: Any = None,
        datamodule: Any = None,
        method: Literal["fit", "validate", "test", "predict"] = "fit",
        mode: str = "power",
        steps_per_trial: int = 3,
        init_val: int = 2,
        max_trials: int = 25,
        batch_arg_name: str = "batch_size",
        margin: float = 0.05,
        max_val: int = 8192,
    ) -> int | None:
        """Find the largest batch size that runs without an out-of-memory error; returns it (and sets it).

        ``mode="power"`` doubles until a failure; ``"binsearch"`` then bisects between the last
        success and the failure and keeps ``margin`` (5%) below the result. The size is read from and
        written to ``batch_arg_name`` on the model, ``model.hparams`` or the datamodule.
        """
        _check_tuner_configuration(train_dataloaders, val_dataloaders, dataloaders, method)
        _check_scale_batch_size_configuration(self._trainer)
        from ember.callbacks.batch_size_finder import BatchSizeFinder, check_batch_size_arguments

        check_batch_size_arguments(
            "Tuner.scale_batch_size", mode, steps_per_trial, init_val, max_trials, batch_arg_name, margin, max_val
        )

        finder = BatchSizeFinder(
            mode=mode,
            steps_per_trial=steps_per_trial,
            init_val=init_val,
            max_trials=max_trials,
            batch_arg_name=batch_arg_name,
            margin=margin,
            max_val=max_val,
        )
        finder._early_exit = True
        self._run(finder, method, model, train_dataloaders, val_dataloaders, dataloaders, datamodule)
        return finder.optimal_batch_size

    def lr_find(
        self,
        model: Any,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        dataloaders: Any = None,
        datamodule: Any = None,
        method: Literal["fit", "validate", "test", "predict"] = "fit",
        min_lr: float = 1e-8,
        max_lr: float = 1,
        num_training: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
        update_attr: bool = True,
        attr_name: str = "",
    ) -> _LRFinder | None:
        """Run a learning rate range test and return its results (``suggestion()``, ``plot()``).

        The learning rate grows from ``min_lr`` to ``max_lr`` over ``num_training`` steps
        (``mode="exponential"`` or ``"linear"``); the sweep stops early once the smoothed loss exceeds
        ``early_stop_threshold`` times the best. With ``update_attr`` the suggestion is written to
        ``model.lr`` / ``model.learning_rate`` (or ``attr_name``).
        """
        if method != "fit":
            raise MisconfigurationException("method='fit' is the only valid configuration to run lr finder.")
        _check_tuner_configuration(train_dataloaders, val_dataloaders, dataloaders, method)
        _check_lr_find_configuration(self._trainer)
        from ember.callbacks.lr_finder import LearningRateFinder, check_lr_find_arguments

        # (in the names this method takes: the callback's `num_training_steps` is `num_training` here)
        check_lr_find_arguments(
            "Tuner.lr_find", min_lr, max_lr, ("num_training", num_training), mode, early_stop_threshold, attr_name
        )

        finder = LearningRateFinder(
            min_lr=min_lr,
            max_lr=max_lr,
            num_training_steps=num_training,
            mode=mode,
            early_stop_threshold=early_stop_threshold,
            update_attr=update_attr,
            attr_name=attr_name,
        )
        finder._early_exit = True
        self._run(finder, method, model, train_dataloaders, val_dataloaders, dataloaders, datamodule)
        return finder.optimal_lr

    def _run(
        self,
        finder: Any,
        method: str,
        model: Any,
        train_dataloaders: Any,
        val_dataloaders: Any,
        dataloaders: Any,
        datamodule: Any,
    ) -> None:
        trainer = self._trainer
        trainer.callbacks = [finder] + trainer.callbacks
        try:
            if method == "fit":
                trainer.fit(model, train_dataloaders, val_dataloaders, datamodule)
            elif method == "validate":
                trainer.validate(model, dataloaders, datamodule=datamodule)
            elif method == "test":
                trainer.test(model, dataloaders, datamodule=datamodule)
            else:
                trainer.predict(model, dataloaders, datamodule=datamodule)
        finally:
            trainer.callbacks = [cb for cb in trainer.callbacks if cb is not finder]


def _check_tuner_configuration(train_dataloaders: Any, val_dataloaders: Any, dataloaders: Any, method: str) -> None:
    if method not in _METHODS:
        raise ValueError(f"method {method!r} is invalid. Should be one of {_METHODS}.")
    if method == "fit":
        if dataloaders is not None:
            raise MisconfigurationException(
                f"In tuner with method={method!r}, `dataloaders` argument should be None,"
                " please consider setting `train_dataloaders` and `val_dataloaders` instead."
            )
    elif train_dataloaders is not None or val_dataloaders is not None:
        raise MisconfigurationException(
            f"In tuner with `method`={method!r}, `train_dataloaders` and `val_dataloaders`"
            " arguments should be None, please consider setting `dataloaders` instead."
        )


def _check_lr_find_configuration(trainer: Trainer) -> None:
    from ember.callbacks.lr_finder import LearningRateFinder
    from ember.distributed.launch import MultiProcessingLauncher

    if isinstance(getattr(trainer.strategy, "launcher", None), MultiProcessingLauncher):
        # the sweep runs in the processes the trainer starts, and its results stay there
        raise ValueError(
            "`Tuner.lr_find` does not support strategies that start their processes from the trainer"
            " (`ddp_spawn`, `ddp_fork`): its results would stay in those processes. Use `strategy='ddp'`,"
            " or add a `LearningRateFinder` callback to the `Trainer`."
        )

    if any(isinstance(cb, LearningRateFinder) for cb in trainer.callbacks):
        raise ValueError(
            "Trainer is already configured with a `LearningRateFinder` callback."
            " Please remove it if you want to use the Tuner."
        )


def _check_scale_batch_size_configuration(trainer: Trainer) -> None:
    if runs_distributed(trainer.strategy):
        raise ValueError("Tuning the batch size is currently not supported with distributed strategies.")
    from ember.callbacks.batch_size_finder import BatchSizeFinder

    if any(isinstance(cb, BatchSizeFinder) for cb in trainer.callbacks):
        raise ValueError(
            "Trainer is already configured with a `BatchSizeFinder` callback."
            " Please remove it if you want to use the Tuner."
        )
