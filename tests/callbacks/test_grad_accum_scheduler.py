"""GradientAccumulationScheduler: the factor per epoch, its effect on optimizer steps, and its errors."""

from __future__ import annotations

import pytest
import torch
from tests.helpers.callback_models import QUIET, make_regressor, train_loader

import ember as pl
from ember.callbacks import Callback, GradientAccumulationScheduler
from ember.utilities.exceptions import MisconfigurationException

Regressor = make_regressor(pl)


class RecordFactor(Callback):
    def __init__(self):
        self.factors = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.factors.append(trainer.accumulate_grad_batches)


def test_factor_changes_by_epoch_and_steps_follow():
    record = RecordFactor()
    scheduler = GradientAccumulationScheduler(scheduling={1: 2, 3: 4})
    # the scheduler runs before the recorder, so the recorder sees this epoch's factor
    trainer = pl.Trainer(**QUIET, max_epochs=4, limit_val_batches=0, callbacks=[scheduler, record])
    trainer.fit(Regressor(), train_loader(n=32))  # 8 batches per epoch
    assert record.factors == [1, 2, 2, 4]
    assert trainer.global_step == 8 + 4 + 4 + 2


def test_get_accumulate_grad_batches():
    scheduler = GradientAccumulationScheduler({2: 3, 5: 1})
    assert [scheduler.get_accumulate_grad_batches(e) for e in range(7)] == [1, 1, 3, 3, 3, 1, 1]
    assert scheduler.epochs == [0, 2, 5]
    assert scheduler.going_to_accumulate_grad_batches()


@pytest.mark.parametrize(
    ("scheduling", "error", "message"),
    [
        ({}, TypeError, "Empty dict cannot be interpreted correct"),
        ({-1: 2}, MisconfigurationException, r"Epoch should be an int greater than or equal to 0. Got \[-1\]"),
        ({"1": 2}, MisconfigurationException, "Epoch should be an int"),
        ({1: 0}, MisconfigurationException, r"Accumulation factor should be an int greater than 0. Got \[0\]"),
        ({1: 1.5}, MisconfigurationException, "Accumulation factor should be an int"),
        # (no dict: "'int' object is not iterable", "'str' object has no attribute 'keys'")
        (2, TypeError, r"^`GradientAccumulationScheduler\(scheduling=2\)` must be a dict from epochs to factors"),
        ("0:2", TypeError, r"^`GradientAccumulationScheduler\(scheduling='0:2'\)` must be a dict from epochs"),
        ([(0, 2)], TypeError, r"^`GradientAccumulationScheduler\(scheduling=\[\(0, 2\)\]\)` must be a dict"),
    ],
)
def test_invalid_schedules(scheduling, error, message):
    with pytest.raises(error, match=message):
        GradientAccumulationScheduler(scheduling)


def test_not_with_manual_optimization():
    class Manual(Regressor):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            opt.zero_grad()
            x, y = batch
            self.manual_backward(torch.nn.functional.mse_loss(self(x), y))
            opt.step()

    trainer = pl.Trainer(**QUIET, max_epochs=1, callbacks=[GradientAccumulationScheduler({0: 2})])
    with pytest.raises(RuntimeError) as raised:
        trainer.fit(Manual(), train_loader())
    message = str(raised.value)
    # Lightning's first words, on one line (Lightning's text breaks the line and indents the rest)
    assert message.startswith(
        "Automatic gradient accumulation and the `GradientAccumulationScheduler` is not supported for manual"
        " optimization: `Manual.training_step` steps the optimizers itself"
    )
    assert "\n" not in message and "  " not in message
    assert "Remove the callback, or switch to automatic optimization" in message
    assert "step every N batches yourself" in message


def test_not_with_trainer_accumulation():
    trainer = pl.Trainer(
        **QUIET, max_epochs=1, accumulate_grad_batches=2, callbacks=[GradientAccumulationScheduler({1: 2})]
    )
    message = "Either remove `accumulate_grad_batches` from the Trainer or remove the callback"
    with pytest.raises(ValueError, match=message):
        trainer.fit(Regressor(), train_loader())


def test_warns_when_optimizer_step_is_overridden():
    class CustomStep(Regressor):
        def optimizer_step(self, *args, **kwargs):
            super().optimizer_step(*args, **kwargs)

    trainer = pl.Trainer(
        **QUIET,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        callbacks=[GradientAccumulationScheduler({0: 2})],
    )
    with pytest.warns(UserWarning, match="the hooks will not be called on every batch"):
        trainer.fit(CustomStep(), train_loader())
