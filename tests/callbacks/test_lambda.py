"""LambdaCallback: functions passed by hook name run at those hooks, and only those."""

from __future__ import annotations

import pytest
from tests.helpers.callback_models import QUIET, make_regressor, train_loader, val_loader

import ember as pl
from ember.callbacks import Callback, LambdaCallback

Regressor = make_regressor(pl)


def test_functions_run_at_their_hooks():
    calls: list[tuple] = []
    callback = LambdaCallback(
        on_fit_start=lambda trainer, pl_module: calls.append(("fit_start",)),
        on_train_epoch_end=lambda trainer, pl_module: calls.append(("epoch_end", trainer.current_epoch)),
        on_train_batch_end=lambda trainer, pl_module, outputs, batch, batch_idx: calls.append(("batch", batch_idx)),
        on_validation_end=lambda trainer, pl_module: calls.append(("val_end", trainer.sanity_checking)),
        setup=lambda trainer, pl_module, stage: calls.append(("setup", stage)),
        on_test_end=None,
    )
    trainer = pl.Trainer(**QUIET, max_epochs=2, limit_train_batches=2, num_sanity_val_steps=1, callbacks=[callback])
    trainer.fit(Regressor(), train_loader(), val_loader())
    assert calls == [
        ("setup", "fit"),
        ("fit_start",),
        ("val_end", True),
        ("batch", 0),
        ("batch", 1),
        ("val_end", False),
        ("epoch_end", 0),
        ("batch", 0),
        ("batch", 1),
        ("val_end", False),
        ("epoch_end", 1),
    ]


def test_every_callback_hook_is_accepted():
    hooks = [name for name in vars(Callback) if name.startswith("on_") or name in ("setup", "teardown")]
    callback = LambdaCallback(**{name: print for name in hooks})
    assert all(getattr(callback, name) is print for name in hooks)
    assert len(hooks) == 37


def test_unknown_hook_and_non_callable_are_rejected():
    with pytest.raises(TypeError, match="unexpected"):
        LambdaCallback(on_train_step=print)
    with pytest.raises(TypeError, match="must be a function"):
        LambdaCallback(on_fit_start=3)


def test_hooks_not_given_stay_the_base_no_ops():
    callback = LambdaCallback(on_fit_start=print)
    assert type(callback).on_train_start is Callback.on_train_start
    assert "on_train_start" not in vars(callback)


def test_signature_is_lightnings_in_its_order():
    import inspect

    params = inspect.signature(LambdaCallback).parameters
    assert len(params) == 37 and all(p.default is None and p.kind is p.POSITIONAL_OR_KEYWORD for p in params.values())
    # Lightning's order (not the order of Callback's methods): setup, teardown, then the fit/sanity/batch/epoch hooks
    assert list(params)[:8] == [
        "setup",
        "teardown",
        "on_fit_start",
        "on_fit_end",
        "on_sanity_check_start",
        "on_sanity_check_end",
        "on_train_batch_start",
        "on_train_batch_end",
    ]
    assert list(params)[-3:] == ["on_predict_batch_end", "on_predict_epoch_start", "on_predict_epoch_end"]


def test_positional_functions_take_the_hooks_in_lightnings_order():
    calls: list[tuple] = []
    callback = LambdaCallback(
        lambda trainer, pl_module, stage: calls.append(("setup", stage)),
        lambda trainer, pl_module, stage: calls.append(("teardown", stage)),
        lambda trainer, pl_module: calls.append(("fit_start",)),
    )
    pl.Trainer(**QUIET, max_epochs=1, limit_train_batches=1, callbacks=[callback]).fit(Regressor(), train_loader())
    assert calls == [("setup", "fit"), ("fit_start",), ("teardown", "fit")]
    with pytest.raises(TypeError, match="both by position and by keyword"):
        LambdaCallback(print, setup=print)
    with pytest.raises(TypeError, match="at most 37 positional"):
        LambdaCallback(*[print] * 38)
