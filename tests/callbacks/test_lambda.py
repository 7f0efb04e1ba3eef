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


def test_signature_lists_every_hook_as_a_keyword():
    import inspect

    params = inspect.signature(LambdaCallback).parameters
    assert len(params) == 37 and all(p.default is None and p.kind is p.KEYWORD_ONLY for p in params.values())
