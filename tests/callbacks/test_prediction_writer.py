"""BasePredictionWriter: what write_on_batch_end / write_on_epoch_end receive during trainer.predict."""

from __future__ import annotations

import pytest
import torch
from tests.helpers.callback_models import QUIET, make_regressor, val_loader

import ember as pl
from ember.callbacks import BasePredictionWriter
from ember.utilities.exceptions import MisconfigurationException

Regressor = make_regressor(pl)


class Recorder(BasePredictionWriter):
    def __init__(self, write_interval):
        super().__init__(write_interval)
        self.batches = []
        self.epochs = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self.batches.append((prediction.shape, list(batch_indices), batch_idx, dataloader_idx))

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        self.epochs.append((predictions, batch_indices))


def _predict(writer, loaders=None, return_predictions=True):
    trainer = pl.Trainer(**QUIET, callbacks=[writer])
    return trainer.predict(Regressor(), loaders or val_loader(n=10), return_predictions=return_predictions)


def test_batch_interval():
    writer = Recorder("batch")
    _predict(writer)
    assert writer.batches == [
        (torch.Size([4, 1]), [0, 1, 2, 3], 0, 0),
        (torch.Size([4, 1]), [4, 5, 6, 7], 1, 0),
        (torch.Size([2, 1]), [8, 9], 2, 0),
    ]
    assert writer.epochs == []


def test_batch_interval_without_returned_predictions_keeps_no_epoch_indices():
    writer = Recorder("batch")
    seen = []

    class Model(Regressor):
        def on_predict_epoch_end(self):
            seen.append(self.trainer.predict_loop.epoch_batch_indices)

    trainer = pl.Trainer(**QUIET, callbacks=[writer])
    trainer.predict(Model(), val_loader(n=10), return_predictions=False)
    assert [indices for _, indices, _, _ in writer.batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert seen == [[[]]]  # nobody reads them: not kept, as in Lightning


def test_epoch_interval_even_without_returned_predictions():
    writer = Recorder("epoch")
    assert _predict(writer, return_predictions=False) is None
    assert writer.batches == []
    ((predictions, indices),) = writer.epochs
    assert [p.shape for p in predictions] == [torch.Size([4, 1]), torch.Size([4, 1]), torch.Size([2, 1])]
    assert all(p.device.type == "cpu" for p in predictions)
    assert indices == [[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]]


def test_batch_and_epoch_with_two_dataloaders():
    writer = Recorder("batch_and_epoch")

    class TwoLoaders(Regressor):
        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return self(batch[0]) + dataloader_idx

    trainer = pl.Trainer(**QUIET, callbacks=[writer])
    returned = trainer.predict(TwoLoaders(), [val_loader(n=4), val_loader(n=8)])
    assert [b[2:] for b in writer.batches] == [(0, 0), (0, 1), (1, 1)]
    ((predictions, indices),) = writer.epochs
    assert [len(p) for p in predictions] == [1, 2]
    assert indices == [[[0, 1, 2, 3]], [[0, 1, 2, 3], [4, 5, 6, 7]]]
    torch.testing.assert_close(predictions[1][0], returned[1][0])


def test_invalid_interval():
    message = r"`write_interval` should be one of \['batch', 'epoch', 'batch_and_epoch'\]"
    with pytest.raises(MisconfigurationException, match=message):
        BasePredictionWriter("step")


def test_base_methods_must_be_overridden():
    with pytest.raises(NotImplementedError):
        _predict(BasePredictionWriter("batch"))
