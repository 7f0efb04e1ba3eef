"""A time-based ``val_check_interval``: when validation runs, on a fake clock.

Each expected value was observed on pytorch_lightning 2.6.6 with the same program.
"""

from __future__ import annotations

import time
from unittest import mock

import pytest
from tests.helpers.core_models import CoreModel, loader, quiet_trainer

from ember.callbacks import Callback


class ValidationBatches(Callback):
    """Where validation ran: (epoch, training batches done in that epoch) per validation."""

    def __init__(self) -> None:
        self.at: list[tuple[int, int]] = []

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.at.append((trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_idx + 1))


def _fit_on_fake_clock(**kwargs) -> list[tuple[int, int]]:
    ticks = iter(range(10_000))  # every read of time.monotonic() advances the clock by one second
    seen = ValidationBatches()
    with mock.patch("time.monotonic", side_effect=lambda: next(ticks)):
        trainer = quiet_trainer(callbacks=[seen], limit_val_batches=1, **kwargs)
        trainer.fit(CoreModel(), loader(32, batch_size=4), loader(8))
    return seen.at


def test_the_clock_starts_with_training_and_restarts_after_each_validation():
    # 8 batches an epoch; start at t=0, one read per batch: t=1..4 -> validate after batch 4 (ends t=5),
    # t=6..9 -> after batch 8 (ends t=10) -> epoch 1: after batch 4 and 8 again. No extra run at an epoch's end.
    at = _fit_on_fake_clock(max_epochs=2, val_check_interval="00:00:00:04")
    assert at == [(0, 4), (0, 8), (1, 4), (1, 8)]


def test_the_sanity_check_restarts_the_clock_too():
    at = _fit_on_fake_clock(max_epochs=1, val_check_interval={"seconds": 3}, num_sanity_val_steps=1)
    # sanity check ends at t=0, training starts at t=1, then one read per batch: t=2,3,4 -> after batch 3
    assert at == [(0, 3), (0, 6)]


@pytest.mark.parametrize("every", [2, None])
def test_the_clock_is_read_only_in_epochs_that_validate(every):
    at = _fit_on_fake_clock(max_epochs=2, val_check_interval="00:00:00:06", check_val_every_n_epoch=every)
    if every is None:
        # after batch 6 (ends t=7), t=8, 9 in epoch 0, then t=10.. from batch 1 of epoch 1 on
        assert at == [(0, 6), (1, 4)]
    else:
        # epoch 0 does not validate and does not read the clock: epoch 1 reads t=1.. from batch 1 on
        assert at == [(1, 6)]


def test_the_progress_bar_leaves_time_monotonic_to_the_loop():
    reads = []
    real = time.monotonic

    def clock():
        reads.append(1)
        return real()

    with mock.patch("time.monotonic", side_effect=clock):
        trainer = quiet_trainer(max_epochs=1, enable_progress_bar=True)
        trainer.fit(CoreModel(), loader(32, batch_size=4))
    assert reads == []


def test_a_zero_fraction_validates_after_every_batch_as_in_lightning():
    # Lightning takes max(1, int(batches * 0.0)) = 1: a validation after each of the 8 batches
    seen = ValidationBatches()
    trainer = quiet_trainer(callbacks=[seen], limit_val_batches=1, max_epochs=1, val_check_interval=0.0)
    trainer.fit(CoreModel(), loader(32, batch_size=4), loader(8))
    assert seen.at == [(0, batch) for batch in range(1, 9)]
