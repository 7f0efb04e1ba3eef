"""A DataLoader subclass made in a `*_dataloader` hook is made again through its own `__init__`, with the
arguments it was given, whatever its `__init__` calls the dataset: in `predict` (to record the batch indices)
and where its sampler is replaced (`overfit_batches`, the distributed sampler)."""

from __future__ import annotations

import warnings

import pytest
from tests.helpers.core_models import CoreModel, dataset, quiet_trainer
from torch.utils.data import DataLoader, SequentialSampler

from ember.callbacks import BasePredictionWriter
from ember.utilities.exceptions import MisconfigurationException


class Tagged(DataLoader):
    """Takes its dataset as `ds` and keeps an argument of its own."""

    def __init__(self, ds, tag="x", **kwargs):
        self.tag = tag
        super().__init__(ds, **kwargs)


class Sized(DataLoader):
    """Makes its dataset itself from a size: it takes no dataset at all."""

    def __init__(self, n, **kwargs):
        self.n = n
        super().__init__(dataset(n), **kwargs)


class Fixed(DataLoader):
    """Its `__init__` can take no sampler: it cannot be made again with another one."""

    def __init__(self, ds, bs):
        super().__init__(ds, batch_size=bs)


class OwnShuffle(DataLoader):
    """Passes a `shuffle` of its own to its parent as well as its `**kwargs`: made again with `shuffle=...`,
    its `__init__` fails with "got multiple values for keyword argument 'shuffle'"."""

    def __init__(self, randomize, *args, **kwargs):
        self.randomize = randomize
        super().__init__(*args, shuffle=randomize, **kwargs)


class IndicesWriter(BasePredictionWriter):
    def __init__(self):
        super().__init__("batch")
        self.indices = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self.indices.append(list(batch_indices))


def _predict_with(make_loader):
    class Predicts(CoreModel):
        def predict_dataloader(self):
            return make_loader()

    writer = IndicesWriter()
    trainer = quiet_trainer(callbacks=[writer])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictions = trainer.predict(Predicts())
    return trainer, writer.indices, predictions, [str(w.message) for w in caught]


@pytest.mark.parametrize(
    ("make_loader", "attribute", "value"),
    [
        (lambda: Tagged(dataset(6), tag="mine", batch_size=4), "tag", "mine"),
        (lambda: Sized(6, batch_size=4), "n", 6),
    ],
    ids=["dataset-named-ds", "dataset-made-inside"],
)
def test_a_prediction_writer_gets_the_indices_of_a_subclass_whose_dataset_is_not_called_dataset(
    make_loader, attribute, value
):
    trainer, indices, _, said = _predict_with(make_loader)
    assert indices == [[0, 1, 2, 3], [4, 5]]
    assert not [message for message in said if "Couldn't infer the batch indices" in message]
    remade = trainer.predict_dataloaders
    assert type(remade) is not DataLoader and getattr(remade, attribute) == value


def test_overfitting_remakes_a_subclass_whose_dataset_is_not_called_dataset_through_its_own_init():
    seen = []

    class Overfits(CoreModel):
        def train_dataloader(self):
            return Tagged(dataset(8), tag="mine", batch_size=2, shuffle=True)

        def training_step(self, batch, batch_idx):
            seen.append(self.trainer.train_dataloader.tag)
            return super().training_step(batch, batch_idx)

    trainer = quiet_trainer(max_epochs=1, overfit_batches=2)
    with pytest.warns(UserWarning, match="You requested to overfit but enabled train dataloader shuffling"):
        trainer.fit(Overfits())
    assert isinstance(trainer.train_dataloader, Tagged)
    assert isinstance(trainer.train_dataloader.sampler, SequentialSampler)
    assert seen == ["mine", "mine"]


def test_a_subclass_that_cannot_be_made_again_still_predicts_every_sample_without_indices():
    """Lightning raises ("Trying to inject parameters into the `Fixed` instance ..."); Ember predicts with the
    loader as it is, and a prediction writer gets no indices, with Lightning's warning (docs/compat.md)."""
    trainer, indices, predictions, said = _predict_with(lambda: Fixed(dataset(6), 4))
    assert [len(batch) for batch in predictions] == [4, 2]
    assert indices == [[], []]
    assert "Couldn't infer the batch indices fetched from your dataloader: `Fixed`" in said
    assert isinstance(trainer.predict_dataloaders, Fixed)


def test_the_arguments_a_subclass_passed_through_its_kwargs_are_passed_again():
    """A loader that got its dataset (and a torch setting the copy does not hold) through `**kwargs`."""

    class Keywords(DataLoader):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

    writer = IndicesWriter()

    class Predicts(CoreModel):
        def predict_dataloader(self):
            return Keywords(dataset=dataset(6), batch_size=4, in_order=False)

    trainer = quiet_trainer(callbacks=[writer])
    trainer.predict(Predicts())
    assert writer.indices == [[0, 1, 2, 3], [4, 5]]
    remade = trainer.predict_dataloaders
    assert isinstance(remade, Keywords) and remade.in_order is False


def test_a_subclass_that_passes_an_argument_of_ours_on_twice_is_refused_before_training_with_the_fix():
    """Lightning refuses it in these words; Ember made the copy with `DataLoader.__init__` alone and trained
    with a loader its own `__init__` never set up (no `randomize`)."""
    steps = []

    class Overfits(CoreModel):
        def train_dataloader(self):
            return OwnShuffle(True, dataset(8), batch_size=2)

        def training_step(self, batch, batch_idx):
            steps.append(batch_idx)
            return super().training_step(batch, batch_idx)

    trainer = quiet_trainer(max_epochs=1, overfit_batches=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (overfitting's note that it turns the shuffling off)
        with pytest.raises(MisconfigurationException) as caught:
            trainer.fit(Overfits())
    message = str(caught.value)
    assert message.startswith(
        "The OwnShuffle implementation has an error where more than one `__init__` argument can be passed to its"
        " parent's `shuffle=...` `__init__` argument."
    )
    assert "kwargs.pop('shuffle', None)" in message
    assert steps == []


def test_a_subclass_that_passes_an_argument_of_ours_on_twice_still_predicts_every_sample_without_indices():
    """In `predict` the loader is made again only to record the batch indices: it predicts as it is."""
    trainer, indices, predictions, said = _predict_with(lambda: OwnShuffle(False, dataset(6), batch_size=4))
    assert [len(batch) for batch in predictions] == [4, 2]
    assert indices == [[], []]
    assert "Couldn't infer the batch indices fetched from your dataloader: `OwnShuffle`" in said
    assert trainer.predict_dataloaders.randomize is False
