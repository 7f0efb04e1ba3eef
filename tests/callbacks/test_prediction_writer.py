"""BasePredictionWriter: what write_on_batch_end / write_on_epoch_end receive during trainer.predict."""

from __future__ import annotations

import warnings

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


class IndexedSamples(torch.utils.data.Dataset):
    """Sample ``i`` is ``[i]``, so a batch says which indices it holds."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index):
        return torch.tensor([float(index)])


class ContentsWriter(BasePredictionWriter):
    def __init__(self):
        super().__init__("batch")
        self.pairs = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self.pairs.append((list(batch_indices), batch.flatten().long().tolist()))


class Identity(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def predict_step(self, batch, batch_idx):
        return batch


class _IndicesAtEpochEnd(pl.Callback):
    """The batch indices of the predict loop at the epoch's end (they are cleared before `on_predict_end`)."""

    def on_predict_epoch_end(self, trainer, pl_module):
        self.seen = trainer.predict_loop.epoch_batch_indices


def test_the_predict_loop_forgets_the_indices_and_unreturned_outputs_before_its_end_hooks():
    # as Lightning's loop: an epoch writer gets them at the epoch's end; `on_predict_end` and later find them gone
    class EpochWriter(BasePredictionWriter):
        def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
            self.batch_indices = batch_indices

        def on_predict_end(self, trainer, pl_module):
            self.at_end = (trainer.predict_loop.epoch_batch_indices, trainer.predict_loop.predictions)

    class TwoLoaders(Identity):
        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return batch

    for returned in (True, False):
        writer = EpochWriter("epoch")
        trainer = pl.Trainer(**QUIET, callbacks=[writer])
        two = [torch.utils.data.DataLoader(IndexedSamples(), batch_size=4) for _ in range(2)]
        trainer.predict(TwoLoaders(), two, return_predictions=returned)
        assert writer.batch_indices == [[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]] * 2
        assert writer.at_end[0] == [] and trainer.predict_loop.epoch_batch_indices == []
        assert len(writer.at_end[1]) == len(trainer.predict_loop.predictions) == (2 if returned else 0)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_shuffled_loader_gives_the_writer_the_indices_of_the_batches_it_predicted(workers):
    # the indices are recorded as the loader draws its batches, as Lightning records them: the order is
    # the one an iteration of that loader gives, and nothing draws the shuffle a second time
    def shuffled():
        return torch.utils.data.DataLoader(IndexedSamples(), batch_size=4, shuffle=True, num_workers=workers)

    torch.manual_seed(0)
    expected = [batch.flatten().long().tolist() for batch in shuffled()]
    after_expected = torch.rand(1)

    writer, model = ContentsWriter(), Identity()  # the layer's initialisation draws from the RNG: before the seed
    trainer = pl.Trainer(**QUIET, callbacks=[writer])
    torch.manual_seed(0)
    predictions = trainer.predict(model, shuffled())
    assert [indices for indices, _ in writer.pairs] == [contents for _, contents in writer.pairs] == expected
    assert torch.equal(torch.rand(1), after_expected)  # the shuffle's seed was drawn once
    assert [p.flatten().long().tolist() for p in predictions] == expected
    assert trainer.predict_loop.epoch_batch_indices == []  # cleared before `on_predict_end`, as in Lightning


def test_a_loader_subclass_its_init_cannot_make_again_predicts_as_it_is():
    class Opaque(torch.utils.data.DataLoader):
        def __init__(self, secret, **kwargs):
            super().__init__(IndexedSamples(), batch_size=4, **kwargs)
            self._kept = secret  # not under its argument's name: the class cannot be made again from the instance

        def __iter__(self):
            assert self._kept == "s"
            return super().__iter__()

    indices = _IndicesAtEpochEnd()
    trainer = pl.Trainer(**QUIET, callbacks=[indices])
    predictions = trainer.predict(Identity(), Opaque("s"))
    assert [p.flatten().long().tolist() for p in predictions] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert indices.seen == [[]]  # no indices, as for any loader without them


def test_a_custom_batch_samplers_attributes_stay_readable_through_the_recording_one():
    class Tagged(torch.utils.data.BatchSampler):
        def __init__(self):
            super().__init__(torch.utils.data.SequentialSampler(range(12)), batch_size=4, drop_last=False)
            self.tag = "kept"

    indices = _IndicesAtEpochEnd()
    trainer = pl.Trainer(**QUIET, callbacks=[indices])
    trainer.predict(Identity(), torch.utils.data.DataLoader(IndexedSamples(), batch_sampler=Tagged()))
    batch_sampler = trainer.predict_dataloaders.batch_sampler
    assert (batch_sampler.tag, batch_sampler.batch_size) == ("kept", 4)
    assert indices.seen == [[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]]


class _Stream(torch.utils.data.IterableDataset):
    """Samples without indices: a predict loader over it has no batch indices."""

    def __iter__(self):
        return iter([torch.zeros(1)] * 4)


class _AllIndices(BasePredictionWriter):
    def __init__(self):
        super().__init__("batch_and_epoch")
        self.batches, self.epochs = [], []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self.batches.append((dataloader_idx, batch_indices))

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        self.epochs.append(batch_indices)


class _AnyLoader(Identity):
    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return batch


def test_a_loader_without_indices_gives_the_writer_empty_ones_with_lightnings_warning():
    writer = _AllIndices()
    trainer = pl.Trainer(**QUIET, callbacks=[writer])
    with pytest.warns(UserWarning) as records:
        trainer.predict(_AnyLoader(), torch.utils.data.DataLoader(_Stream(), batch_size=2), return_predictions=False)
    said = [str(r.message) for r in records if "infer" in str(r.message)]
    assert said == ["Couldn't infer the batch indices fetched from your dataloader: `DataLoader`"]  # once
    assert writer.batches == [(0, []), (0, [])]
    assert writer.epochs == [[[]]]  # as in Lightning: nothing recorded for the loader, not one list per batch
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        trainer.predict(_AnyLoader(), torch.utils.data.DataLoader(_Stream(), batch_size=2), return_predictions=False)
    assert not [w for w in again if "infer" in str(w.message)]  # once per trainer, as Lightning's predict loop


def test_a_loader_without_indices_gives_the_writer_empty_ones_not_the_previous_loaders():
    # Lightning hands the batches of a loader without indices the last indices of the loader before it
    writer = _AllIndices()
    trainer = pl.Trainer(**QUIET, callbacks=[writer])
    indexed = torch.utils.data.DataLoader(IndexedSamples(), batch_size=6)
    trainer.predict(_AnyLoader(), [indexed, torch.utils.data.DataLoader(_Stream(), batch_size=2)])
    assert writer.batches == [(0, [0, 1, 2, 3, 4, 5]), (0, [6, 7, 8, 9, 10, 11]), (1, []), (1, [])]
    assert writer.epochs == [[[[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]], []]]


def test_the_current_batch_indices_are_an_empty_list_before_any_predict_as_in_lightning():
    assert pl.Trainer(logger=False).predict_loop.current_batch_indices == []


class _OwnBatchEnd(BasePredictionWriter):
    """A writer that overrides ``on_predict_batch_end`` without calling ``super()``."""

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        pass

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        self.written = (predictions, batch_indices)


@pytest.mark.parametrize("return_predictions", [True, False])
def test_the_epoch_writer_gets_the_loops_predictions_even_when_it_overrides_the_batch_hook(return_predictions):
    writer = _OwnBatchEnd("epoch")
    trainer = pl.Trainer(**QUIET, callbacks=[writer])
    trainer.predict(
        Identity(), torch.utils.data.DataLoader(IndexedSamples(), batch_size=6), return_predictions=return_predictions
    )
    predictions, indices = writer.written
    assert [p.flatten().long().tolist() for p in predictions] == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    assert indices == [[[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]]


class _Movable:
    """A prediction with a ``.to``: the copy it returns says where it went."""

    def __init__(self, where="as returned"):
        self.where = where

    def to(self, device, *args, **kwargs):
        return _Movable(f"moved to {torch.device(device)}")


def test_the_epoch_writer_gets_the_predictions_moved_to_the_cpu_and_the_batch_writer_as_returned():
    class Writer(BasePredictionWriter):
        def __init__(self):
            super().__init__("batch_and_epoch")
            self.batches = []

        def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
            self.batches.append(prediction.where)

        def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
            self.epoch = [p.where for p in predictions]

    class Model(Identity):
        def predict_step(self, batch, batch_idx):
            return _Movable()

    writer = Writer()
    trainer = pl.Trainer(**QUIET, callbacks=[writer])
    trainer.predict(Model(), torch.utils.data.DataLoader(IndexedSamples(), batch_size=6), return_predictions=False)
    assert writer.batches == ["as returned"] * 2
    assert writer.epoch == ["moved to cpu"] * 2
