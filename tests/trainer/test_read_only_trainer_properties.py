"""The ``Trainer`` attributes that are read-only properties in Lightning 2.6.6 refuse assignment with Python's
``AttributeError`` for a property without a setter, and those Lightning lets a program set stay settable."""

from __future__ import annotations

import pytest
from tests.helpers.core_models import CoreModel, loader, quiet_trainer

from ember.loggers.logger import DummyLogger

READ_ONLY = [
    "global_step",
    "current_epoch",
    "max_epochs",
    "max_steps",
    "min_epochs",
    "min_steps",
    "num_training_batches",
    "is_global_zero",
    "world_size",
    "global_rank",
    "local_rank",
    "node_rank",
    "num_nodes",
    "num_devices",
    "strategy",
    "precision_plugin",
    "accelerator",
    "lightning_module",
    "model",
    "callback_metrics",
    "logged_metrics",
    "progress_bar_metrics",
    "enable_validation",
    "train_dataloader",
    "val_dataloaders",
    "test_dataloaders",
    "predict_dataloaders",
]


@pytest.mark.parametrize("name", READ_ONLY)
def test_a_read_only_property_refuses_assignment_and_keeps_its_value(name):
    trainer = quiet_trainer(max_epochs=2)
    before = getattr(trainer, name)
    with pytest.raises(AttributeError, match=rf"^property '{name}' of 'Trainer' object has no setter$"):
        setattr(trainer, name, 7)
    assert getattr(trainer, name) is before or getattr(trainer, name) == before


def test_the_loop_limits_are_set_through_the_fit_loop_and_the_training_runs_with_them():
    trainer = quiet_trainer(max_epochs=5)
    trainer.fit_loop.max_epochs = 3
    trainer.fit_loop.epoch_loop.max_steps = 6
    trainer.fit_loop.epoch_loop.min_steps = 2
    assert (trainer.max_epochs, trainer.max_steps, trainer.min_steps) == (3, 6, 2)
    trainer.fit(CoreModel(), loader(16))  # 4 batches an epoch
    assert (trainer.global_step, trainer.current_epoch) == (6, 2)  # as on Lightning 2.6.6


def test_loggers_keep_the_object_assigned_as_lightning_does():
    trainer = quiet_trainer()
    given = [DummyLogger()]
    trainer.loggers = given
    assert trainer.loggers is given
    given.append(DummyLogger())  # the trainer sees what the program adds to it
    assert len(trainer.loggers) == 2
    trainer.loggers = None
    assert trainer.loggers == [] and trainer.logger is None
