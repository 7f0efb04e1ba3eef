"""``BatchSizeFinder``: find the largest batch size that fits before the loop starts.

Example::

    trainer = Trainer(callbacks=[BatchSizeFinder(mode="binsearch")])
    trainer.fit(model)       # model.batch_size is grown until memory runs out, then the fit runs
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ember.callbacks.callback import Callback
from ember.distributed.processes import runs_distributed
from ember.utilities.argument_checks import check_count, check_number, check_type
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


class BatchSizeFinder(Callback):
    """Grows the batch size until an out-of-memory error, then keeps the largest that worked.

    Each trial runs ``steps_per_trial`` steps of the current loop (``fit``, ``validate``,
    ``test`` or ``predict``). The size lives in ``batch_arg_name`` on the model, ``model.hparams`` or
    the datamodule, and the dataloader hooks must read it (data passed straight to ``fit`` can't grow).

    Args:
        mode: ``"power"`` doubles until a failure; ``"binsearch"`` then bisects between success and failure.
        steps_per_trial: steps run with each candidate size.
        init_val: the first size tried.
        max_trials: the most sizes tried.
        batch_arg_name: the attribute that holds the batch size.
        margin: ``binsearch`` keeps this fraction below the largest size found (default 5%).
        max_val: never try a size above this.

    Example::

        class EvalBatchSizeFinder(BatchSizeFinder):
            def on_fit_start(self, *args, **kwargs):
                return

            def on_test_start(self, trainer, pl_module):
                self.scale_batch_size(trainer, pl_module)
    """

    SUPPORTED_MODES = ("power", "binsearch")

    def __init__(
        self,
        mode: str = "power",
        steps_per_trial: int = 3,
        init_val: int = 2,
        max_trials: int = 25,
        batch_arg_name: str = "batch_size",
        margin: float = 0.05,
        max_val: int = 8192,
    ) -> None:
        mode, init_val = check_batch_size_arguments(
            "BatchSizeFinder", mode, steps_per_trial, init_val, max_trials, batch_arg_name, margin, max_val
        )
        self.optimal_batch_size: int | None = init_val
        self._mode = mode
        self._steps_per_trial = steps_per_trial
        self._init_val = init_val
        self._max_trials = max_trials
        self._batch_arg_name = batch_arg_name
        self._margin = margin
        self._max_val = max_val
        self._early_exit = False

    def setup(self, trainer: Trainer, pl_module: Any, stage: str | None = None) -> None:
        from ember.utilities.parsing import lightning_hasattr

        if runs_distributed(trainer.strategy):
            raise MisconfigurationException("The Batch size finder is not supported with distributed strategies.")
        given = (
            trainer._run.train_source
            if stage == "fit"
            else trainer._run.eval_sources.get(
                {"validate": "val", "test": "test", "predict": "predict"}.get(stage or "", "val")
            )
        )
        if given is not None:
            # (for validate/test/predict Lightning runs the search, but a loader passed in keeps its batch size, so
            # every trial runs the same batches and the search ends at its largest size, meaning nothing)
            raise MisconfigurationException(
                f"The Batch size finder cannot be used with dataloaders passed directly to `.{getattr(stage, 'value', stage) or 'fit'}()`."
                " Please disable the feature or incorporate the dataloader into your LightningModule or"
                " LightningDataModule."
            )
        if stage in ("validate", "test", "predict"):
            prefix = {"validate": "val", "test": "test", "predict": "predict"}[stage]
            getattr(trainer, f"{getattr(stage, 'value', stage)}_loop").setup_data()
            loaders = getattr(trainer, f"{prefix}_dataloaders")
            if isinstance(loaders, (list, tuple)) and len(loaders) > 1:
                raise MisconfigurationException(
                    f"The Batch size finder cannot be used with multiple {prefix} dataloaders."
                )
        if not lightning_hasattr(pl_module, self._batch_arg_name):
            raise MisconfigurationException(
                f"Field {self._batch_arg_name} not found in `model`, `datamodule`, nor their `hparams` attributes."
            )
        hparams = getattr(pl_module, "hparams", None)
        if hasattr(pl_module, self._batch_arg_name) and hparams is not None and self._batch_arg_name in hparams:
            rank_zero_warn(
                f"Field `model.{self._batch_arg_name}` and `model.hparams.{self._batch_arg_name}` are mutually"
                f" exclusive! `model.{self._batch_arg_name}` will be used as the initial batch size for scaling."
                " If this is not the intended behavior, please remove either one."
            )

    def scale_batch_size(self, trainer: Trainer, pl_module: Any) -> None:
        """Run the search now; the result lands in ``self.optimal_batch_size``."""
        from ember.tuner.batch_size_scaling import _scale_batch_size
        from ember.tuner.exceptions import _TunerExitException

        self.optimal_batch_size = _scale_batch_size(
            trainer,
            self._mode,
            self._steps_per_trial,
            self._init_val,
            self._max_trials,
            self._batch_arg_name,
            self._margin,
            self._max_val,
        )
        if self._early_exit:
            raise _TunerExitException()

    def on_fit_start(self, trainer: Trainer, pl_module: Any) -> None:
        self.scale_batch_size(trainer, pl_module)

    def on_validation_start(self, trainer: Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking or trainer.state.fn != "validate":
            return
        self.scale_batch_size(trainer, pl_module)

    def on_test_start(self, trainer: Trainer, pl_module: Any) -> None:
        self.scale_batch_size(trainer, pl_module)

    def on_predict_start(self, trainer: Trainer, pl_module: Any) -> None:
        self.scale_batch_size(trainer, pl_module)


def check_batch_size_arguments(
    call: str,
    mode: Any,
    steps_per_trial: Any,
    init_val: Any,
    max_trials: Any,
    batch_arg_name: Any,
    margin: Any,
    max_val: Any,
) -> tuple[str, Any]:
    """Refuse, naming the argument, what the search would fail on with Python's or torch's words (a float
    ``init_val`` reached the `DataLoader` as "batch_size should be a positive integer value"); return ``mode``
    in lower case and ``init_val`` as an int where it is a whole float (``10.0``), as Lightning's trials use it.
    """
    check_type(call, "mode", mode, (str,), "'power' or 'binsearch'")
    mode = mode.lower()
    if mode not in BatchSizeFinder.SUPPORTED_MODES:
        raise ValueError(f"`mode` should be either of {BatchSizeFinder.SUPPORTED_MODES}")
    check_count(call, "steps_per_trial", steps_per_trial, "a whole number of at least 1: the steps each size runs")
    if init_val is not None:
        expected = "a whole number of at least 1: the first batch size to try (None: the model's own)"
        check_number(call, "init_val", init_val, expected)
        if init_val != float("inf"):  # (infinity: as large as `max_val` allows)
            check_count(call, "init_val", init_val, expected)
            init_val = int(init_val)
    check_type(call, "max_trials", max_trials, (int,), "an int: the most batch sizes to try")
    check_type(call, "batch_arg_name", batch_arg_name, (str,), "the name of the attribute that holds the batch size")
    check_number(call, "margin", margin, "a number in [0, 1): how far below the largest size binsearch stays")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"`margin` should be between 0 and 1. Found margin={margin}")
    check_number(call, "max_val", max_val, "a number: the largest batch size to try")
    return mode, init_val


lightning_style_annotations(BatchSizeFinder)  # Lightning's `typing` forms in the signature
