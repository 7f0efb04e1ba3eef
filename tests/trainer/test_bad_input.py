"""Input that used to crash later, or pass silently: empty dataloaders, a validation loader nobody
uses, and Trainer arguments that are not what they claim to be."""

from __future__ import annotations

import warnings

import pytest
from tests.helpers.core_models import CoreModel, dataset, loader, quiet_trainer
from torch.utils.data import DataLoader

import ember

ZERO = r"Total length of `DataLoader` across ranks is zero. Please make sure this was your intention."


def empty_loader() -> DataLoader:
    # a small split with drop_last=True: 3 samples never fill a batch of 4
    return DataLoader(dataset(3), batch_size=4, drop_last=True)


def test_an_empty_validation_loader_is_named_and_skipped():
    model = CoreModel()
    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=2)
    with pytest.warns(UserWarning, match=ZERO + r" The `val_dataloader` has no batches.*validation loop is skipped"):
        trainer.fit(model, loader(8), empty_loader())
    assert trainer.global_step == 4 and trainer.current_epoch == 2  # training ran in full
    assert trainer.num_val_batches == [0]
    assert "val_loss" not in trainer.callback_metrics
    with pytest.warns(UserWarning, match=ZERO):
        assert trainer.validate(model, empty_loader()) == []
    with pytest.warns(UserWarning, match=r"The `test_dataloader` has no batches.*the test loop is skipped"):
        assert trainer.test(model, empty_loader()) == []
    with pytest.warns(UserWarning, match=r"The `predict_dataloader` has no batches.*prediction is skipped"):
        assert trainer.predict(model, empty_loader()) is None


def test_an_empty_training_loader_is_named_and_fit_stops(caplog):
    trainer = quiet_trainer(max_epochs=2)
    with pytest.warns(UserWarning, match=ZERO + r" The `train_dataloader` has no batches.*training is skipped"):
        trainer.fit(CoreModel(), empty_loader(), loader(8))
    assert trainer.global_step == 0 and trainer.current_epoch == 0
    assert trainer.num_training_batches == 0


def test_one_empty_loader_among_several_is_named_by_its_index():
    class TwoLoaders(CoreModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            super().validation_step(batch, batch_idx)

    trainer = quiet_trainer()
    with pytest.warns(UserWarning, match=r"The `val_dataloader` #1 has no batches.*it is skipped"):
        results = trainer.validate(TwoLoaders(), [loader(8), empty_loader()], verbose=False)
    assert len(results) == 2 and "val_loss/dataloader_idx_0" in results[0]


def test_val_dataloaders_without_validation_step_warn_as_lightning_does():
    class NoValidation(CoreModel):
        validation_step = ember.LightningModule.validation_step

    trainer = quiet_trainer(max_epochs=1)
    with pytest.warns(
        UserWarning, match=r"^You passed in a `val_dataloader` but have no `validation_step`. Skipping val"
    ):
        trainer.fit(NoValidation(), loader(8), loader(8))
    assert trainer.global_step == 2

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with a validation_step, or without validation data: nothing to say
        quiet_trainer(max_epochs=1).fit(CoreModel(), loader(8), loader(8))
        quiet_trainer(max_epochs=1).fit(NoValidation(), loader(8))
