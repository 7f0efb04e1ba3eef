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
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple


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

# Hooks a callback may receive (``Callback`` defines each as a no-op).
CALLBACK_HOOKS = (
    "setup",
    "teardown",
    "on_fit_start",
    "on_fit_end",
    "on_sanity_check_start",
    "on_sanity_check_end",
    "on_train_start",
    "on_train_end",
    "on_train_epoch_start",
    "on_train_epoch_end",
    "on_train_batch_start",
    "on_train_batch_end",
    "on_validation_start",
    "on_validation_end",
    "on_validation_epoch_start",
    "on_validation_epoch_end",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_start",
    "on_test_end",
    "on_test_epoch_start",
    "on_test_epoch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_predict_start",
    "on_predict_end",
    "on_predict_epoch_start",
    "on_predict_epoch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
    "on_exception",
    "on_save_checkpoint",
    "on_load_checkpoint",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
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
