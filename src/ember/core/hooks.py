"""Every event of a run, in loop order, and the one function that delivers them.

The loop, as ``trainer.fit`` runs it (callbacks receive each hook before the module unless noted)::

    configure_callbacks; prepare_data; setup("fit"); configure_model
    [ckpt_path] on_load_checkpoint (module, then callbacks), load_state_dict
    configure_optimizers; on_fit_start
    [sanity check, RNG isolated] on_sanity_check_start; <evaluation loop>; on_sanity_check_end
    train_dataloader; on_train_start
    for epoch:
        on_train_epoch_start
        for batch:
            on_before_batch_transfer; transfer_batch_to_device; on_after_batch_transfer
            on_train_batch_start                       # module returning -1 ends the epoch
            optimizer_step(closure):                   # skipped while accumulating: closure() alone
                closure: training_step; [window start] on_before_zero_grad, optimizer_zero_grad
                         on_before_backward; backward; on_after_backward
                on_before_optimizer_step; configure_gradient_clipping; optimizer.step()
            lr_scheduler_step (step interval; epoch interval on the last batch)
            on_train_batch_end; loggers every log_every_n_steps
            [val check] on_validation_model_zero_grad; <evaluation loop>
        on_train_epoch_end (module first, then EarlyStopping and Checkpoint callbacks)
    on_train_end; on_fit_end; teardown("fit")

    <evaluation loop>: on_validation_model_eval; on_validation_start; on_validation_epoch_start;
        per batch: transfer hooks; on_validation_batch_start; validation_step; on_validation_batch_end;
        on_validation_epoch_end; on_validation_end; on_validation_model_train

The module's and the datamodule's default hooks live here too, in Lightning's three classes:
``ModelHooks`` (the loop's events), ``DataHooks`` (data preparation, dataloaders, batch transfer)
and ``CheckpointHooks``; ``LightningModule`` inherits all three, ``LightningDataModule`` the second.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.optim import Optimizer

from ember.utilities.exceptions import MisconfigurationException


class LogRule(NamedTuple):
    """Where ``self.log`` may be called and with which defaults."""

    allowed_on_step: tuple[bool, ...]
    allowed_on_epoch: tuple[bool, ...]
    default_on_step: bool
    default_on_epoch: bool


_FREE_STEP = LogRule((False, True), (False, True), True, False)
_FREE_EPOCH = LogRule((False, True), (False, True), False, True)
_EPOCH_ONLY = LogRule((False,), (True,), False, True)

# ``None``: logging is not allowed in that hook. A hook missing here cannot log either.
LOG_RULES: dict[str, LogRule | None] = {
    "training_step": _FREE_STEP,
    "on_train_batch_start": _FREE_STEP,
    "on_train_batch_end": _FREE_STEP,
    "on_before_backward": _FREE_STEP,
    "backward": _FREE_STEP,
    "on_after_backward": _FREE_STEP,
    "on_before_optimizer_step": _FREE_STEP,
    "optimizer_step": _FREE_STEP,
    "on_before_zero_grad": _FREE_STEP,
    "optimizer_zero_grad": _FREE_STEP,
    "configure_gradient_clipping": _FREE_STEP,
    "clip_gradients": _FREE_STEP,
    "validation_step": _FREE_EPOCH,
    "test_step": _FREE_EPOCH,
    "on_validation_batch_start": _FREE_EPOCH,
    "on_validation_batch_end": _FREE_EPOCH,
    "on_test_batch_start": _FREE_EPOCH,
    "on_test_batch_end": _FREE_EPOCH,
    "on_train_start": _EPOCH_ONLY,
    "on_train_epoch_start": _EPOCH_ONLY,
    "on_train_epoch_end": _EPOCH_ONLY,
    "on_validation_start": _EPOCH_ONLY,
    "on_validation_epoch_start": _EPOCH_ONLY,
    "on_validation_epoch_end": _EPOCH_ONLY,
    "on_test_start": _EPOCH_ONLY,
    "on_test_epoch_start": _EPOCH_ONLY,
    "on_test_epoch_end": _EPOCH_ONLY,
}
for _name in (
    "predict_step",
    "on_predict_start",
    "on_predict_end",
    "on_predict_epoch_start",
    "on_predict_epoch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
    "setup",
    "teardown",
    "configure_model",
    "configure_optimizers",
    "configure_callbacks",
    "configure_sharded_model",
    "prepare_data",
    "train_dataloader",
    "val_dataloader",
    "test_dataloader",
    "predict_dataloader",
    "on_before_batch_transfer",
    "transfer_batch_to_device",
    "on_after_batch_transfer",
    "on_fit_start",
    "on_fit_end",
    "on_sanity_check_start",
    "on_sanity_check_end",
    "on_train_end",
    "on_validation_end",
    "on_test_end",
    "on_exception",
    "state_dict",
    "load_state_dict",
    "on_save_checkpoint",
    "on_load_checkpoint",
    "lr_scheduler_step",
    "on_validation_model_zero_grad",
    "on_validation_model_eval",
    "on_validation_model_train",
    "on_test_model_eval",
    "on_test_model_train",
    "on_predict_model_eval",
    "on_predict_model_train",
):
    LOG_RULES[_name] = None

# Hooks a callback may receive (``Callback`` defines each as a no-op), in the order of Lightning's
# ``LambdaCallback`` parameters, which ``LambdaCallback`` takes positionally in this order.
CALLBACK_HOOKS = (
    "setup",
    "teardown",
    "on_fit_start",
    "on_fit_end",
    "on_sanity_check_start",
    "on_sanity_check_end",
    "on_train_batch_start",
    "on_train_batch_end",
    "on_train_epoch_start",
    "on_train_epoch_end",
    "on_validation_epoch_start",
    "on_validation_epoch_end",
    "on_test_epoch_start",
    "on_test_epoch_end",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_train_start",
    "on_train_end",
    "on_validation_start",
    "on_validation_end",
    "on_test_start",
    "on_test_end",
    "on_exception",
    "on_save_checkpoint",
    "on_load_checkpoint",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_predict_start",
    "on_predict_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
    "on_predict_epoch_start",
    "on_predict_epoch_end",
)


def overrides(obj: Any, base: type, name: str) -> bool:
    """Whether ``obj``'s class (or the instance itself) replaces ``base.name``.

    A hook set to ``None`` (``model.validation_step = None``) counts as absent, and a ``Mock`` (e.g.
    ``Mock(spec=Callback)``) as overriding every hook, as in Lightning.
    """
    if name in getattr(obj, "__dict__", {}):
        return obj.__dict__[name] is not None
    if type(obj).__module__ == "unittest.mock":
        return callable(getattr(obj, name, None))
    attr = getattr(type(obj), name, None)
    base_attr = getattr(base, name, None)
    return attr is not None and attr is not base_attr


def program_overrides(obj: Any, *names: str) -> bool:
    """Whether ``obj``'s class (or a patch on it) replaces one of Ember's methods ``names`` with code that is not
    Ember's: a strategy written Lightning's way. (A function keeps its module's name, whatever name the alias
    gives Ember's classes.)"""
    for name in names:
        function = getattr(type(obj), name, None)
        if function is None:
            continue
        module = getattr(function, "__module__", None) or ""
        if module != "ember" and not module.startswith("ember."):
            return True
    return False


def runs_other_code(obj: Any, base: type, name: str) -> bool:
    """Whether ``obj.name`` runs other code than ``base.name``, looking through wrappers: Lightning's test
    for the datamodule's optional hooks. An instance attribute that only wraps the inherited method
    (``functools.wraps``/``update_wrapper``, ``functools.partial``, ``Mock(wraps=...)``) does not count.
    """
    if type(obj).__module__ == "unittest.mock":
        return callable(getattr(obj, name, None))
    attr = getattr(obj, name, None)
    if attr is None:
        return False
    attr = getattr(attr, "__wrapped__", attr)
    if type(attr).__module__ == "unittest.mock":
        attr = getattr(attr, "_mock_wraps", None)
    elif isinstance(attr, functools.partial):
        attr = attr.func
    base_attr = getattr(base, name, None)
    base_attr = getattr(base_attr, "__wrapped__", base_attr)
    if attr is None:
        return False
    code, base_code = getattr(attr, "__code__", None), getattr(base_attr, "__code__", None)
    if code is None or base_code is None:
        return overrides(obj, base, name)  # a callable object, not a function: as any other override
    return code is not base_code


# =====================================================================================
# the default hooks (the trainer calls a no-op hook only when it is overridden)
# =====================================================================================
class ModelHooks:
    """The loop's events a ``LightningModule`` may override; each default does nothing unless said."""

    def on_fit_start(self) -> None:
        """Called at the very beginning of fit."""

    def on_fit_end(self) -> None:
        """Called at the very end of fit."""

    def on_train_start(self) -> None:
        """Called at the beginning of training after the sanity check."""

    def on_train_end(self) -> None:
        """Called at the end of training before the logger experiment is closed."""

    def on_validation_start(self) -> None:
        """Called at the beginning of validation."""

    def on_validation_end(self) -> None:
        """Called at the end of validation."""

    def on_test_start(self) -> None:
        """Called at the beginning of testing."""

    def on_test_end(self) -> None:
        """Called at the end of testing."""

    def on_predict_start(self) -> None:
        """Called at the beginning of predicting."""

    def on_predict_end(self) -> None:
        """Called at the end of predicting."""

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        """Called before the training batch; returning -1 skips the rest of the epoch."""

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Called after the training batch."""

    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before the validation batch."""

    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called after the validation batch."""

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before the test batch."""

    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called after the test batch."""

    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before the predict batch."""

    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called after the predict batch."""

    def on_validation_model_zero_grad(self) -> None:
        """Called before validation inside fit: zeroes gradients (as ``set_to_none``)."""
        self.zero_grad()  # type: ignore[attr-defined]  # torch >= 2.0 sets grads to None by default

    def on_validation_model_eval(self) -> None:
        """Puts the model in eval mode before validation."""
        self.trainer.model.eval()  # type: ignore[attr-defined]

    def on_validation_model_train(self) -> None:
        """Puts the model back in train mode after validation (when overridden; else modes are restored)."""
        self.trainer.model.train()  # type: ignore[attr-defined]

    def on_test_model_eval(self) -> None:
        """Puts the model in eval mode before testing."""
        self.trainer.model.eval()  # type: ignore[attr-defined]

    def on_test_model_train(self) -> None:
        """Puts the model back in train mode after testing."""
        self.trainer.model.train()  # type: ignore[attr-defined]

    def on_predict_model_eval(self) -> None:
        """Puts the model in eval mode before predicting."""
        self.trainer.model.eval()  # type: ignore[attr-defined]

    def on_train_epoch_start(self) -> None:
        """Called at the start of a training epoch."""

    def on_train_epoch_end(self) -> None:
        """Called at the end of a training epoch, after its validation."""

    def on_validation_epoch_start(self) -> None:
        """Called at the start of a validation epoch."""

    def on_validation_epoch_end(self) -> None:
        """Called at the end of a validation epoch."""

    def on_test_epoch_start(self) -> None:
        """Called at the start of a test epoch."""

    def on_test_epoch_end(self) -> None:
        """Called at the end of a test epoch."""

    def on_predict_epoch_start(self) -> None:
        """Called at the start of predicting."""

    def on_predict_epoch_end(self) -> None:
        """Called at the end of predicting."""

    def on_before_zero_grad(self, optimizer: Optimizer) -> None:
        """Called before ``optimizer.zero_grad()``."""

    def on_before_backward(self, loss: Tensor) -> None:
        """Called before ``loss.backward()``."""

    def on_after_backward(self) -> None:
        """Called after ``loss.backward()`` and before the optimizer steps."""

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """Called before ``optimizer.step()`` (after AMP unscaling)."""

    def configure_sharded_model(self) -> None:
        """Deprecated name of :meth:`configure_model`."""

    def configure_model(self) -> None:
        """Create layers here to build them directly on the device (or sharded)."""


_PASS_IT = {
    "train": "`trainer.fit(model, train_dataloaders=...)`",
    "val": "`trainer.fit(model, val_dataloaders=...)` or `trainer.validate(model, dataloaders=...)`",
    "test": "`trainer.test(model, dataloaders=...)`",
    "predict": "`trainer.predict(model, dataloaders=...)`",
}


def dataloader_not_implemented(name: str) -> MisconfigurationException:
    """Lightning's error for a data hook nobody defined, with the two ways to give the data."""
    return MisconfigurationException(
        f"`{name}_dataloader` must be implemented to be used with the Lightning Trainer. Define"
        f" `{name}_dataloader()` in the module or a datamodule, or pass the data to {_PASS_IT[name]}."
    )


class DataHooks:
    """Data preparation, the dataloaders and the batch's way to the device, for a module or a datamodule.

    Attributes:
        prepare_data_per_node: True: ``prepare_data`` runs on local rank 0 of every node; False: on
            global rank 0 only.
        allow_zero_length_dataloader_with_multiple_devices: True: a rank may have an empty dataloader
            while others have batches.
    """

    def __init__(self) -> None:
        super().__init__()
        self.prepare_data_per_node: bool = True
        self.allow_zero_length_dataloader_with_multiple_devices: bool = False

    def prepare_data(self) -> None:
        """Download or prepare data, once per node (or once in all with ``prepare_data_per_node=False``);
        don't set state here: it runs on one process."""

    def setup(self, stage: str) -> None:
        """Called at the beginning of fit, validate, test and predict, on every process."""

    def teardown(self, stage: str) -> None:
        """Called at the end of fit, validate, test and predict."""

    def train_dataloader(self) -> Any:
        """The training dataloader (or any iterable of batches)."""
        raise dataloader_not_implemented("train")

    def test_dataloader(self) -> Any:
        """The test dataloader(s)."""
        raise dataloader_not_implemented("test")

    def val_dataloader(self) -> Any:
        """The validation dataloader(s)."""
        raise dataloader_not_implemented("val")

    def predict_dataloader(self) -> Any:
        """The prediction dataloader(s)."""
        raise dataloader_not_implemented("predict")

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move the batch to ``device`` (tensors in lists, tuples, dicts, dataclasses; objects with ``.to``).
        A datamodule's override is used instead of the module's."""
        from ember.utilities.apply_func import move_data_to_device

        return move_data_to_device(batch, device)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Alter the batch before it moves to the device."""
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Alter the batch after it moved to the device."""
        return batch


class CheckpointHooks:
    """What a module adds to a checkpoint it saves, and reads from one it loads."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Read from the checkpoint dict before the state is restored."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add to the checkpoint dict before it is written."""
