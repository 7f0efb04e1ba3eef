"""``CombinedLoader`` and training on several dataloaders, against what Lightning 2.6.6 answered.

The programs are in ``tests/helpers/combined_loader_cases.py``; Lightning's answers in
``tests/fixtures/lightning_combined_loader.json`` (``make_lightning_combined_loader.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.helpers import combined_loader_cases as cases
from torch.utils.data import DataLoader

import ember
from ember.utilities import CombinedLoader
from ember.utilities.exceptions import MisconfigurationException

FIXTURE = Path(__file__).parent / "fixtures" / "lightning_combined_loader.json"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text())


def _as_json(value):
    return json.loads(json.dumps(value))


def test_the_reference_is_small_and_from_lightning_2_6_6(reference):
    assert FIXTURE.stat().st_size < 100_000
    assert reference["versions"]["pytorch_lightning"] == "2.6.6"
    assert {"combined_loader", "training"} <= set(reference)


def test_every_mode_and_property_matches_lightning(reference):
    expected = reference["combined_loader"]
    got = _as_json(cases.combined_loader_cases(ember))
    assert set(got) == set(expected)
    for key in expected:
        assert got[key] == expected[key], key
    # what the recorded values say, spelled out for the reader
    assert expected["modes"]["max_size_cycle/dict"]["len"] == 3
    # each item is [batch, batch_idx, dataloader_idx]
    assert expected["modes"]["max_size/list"]["items"][2] == {
        "list": [{"list": [None, [20, 21, 22, 23, 24], None]}, 2, 0]
    }
    assert expected["modes"]["sequential/dict"]["items"][2] == {"list": [[10, 11, 12, 13, 14], 0, 1]}
    assert "tuple" in expected["modes"]["max_size_cycle/tuple"]["items"][0]["list"][0]  # a tuple stays a tuple


def test_training_evaluation_and_prediction_match_lightning(reference):
    expected = reference["training"]
    got = _as_json(cases.training_cases(ember))
    assert set(got) == set(expected)
    # a CombinedLoader of another mode than "sequential" runs its combined batches in evaluation, and
    # `num_val_batches` counts each inner loader, as in Lightning
    assert got["val_max_size_cycle"]["num_val_batches"] == [2, 3]
    for key in expected:
        assert got[key] == expected[key], key
    fit_list = expected["fit_list"]
    assert fit_list["num_training_batches"] == 3 and fit_list["global_step"] == 6
    assert fit_list["seen"][2] == [2, {"list": [[0, 1, 2, 3], [20, 21, 22, 23, 24], [100, 101]]}]  # a cycled again
    assert expected["fit_sequential"]["error"][0] == "ValueError"


def test_next_before_iter_names_the_fix():
    loader = CombinedLoader([DataLoader(range(4))], "max_size_cycle")
    with pytest.raises(RuntimeError, match=r"Please call `iter\(combined_loader\)` first"):
        next(loader)  # Lightning fails an assertion here


def test_an_empty_loader_among_cycled_ones_is_an_error(tmp_path):
    model = cases._model(ember)()
    trainer = cases._trainer(ember, default_root_dir=tmp_path)
    empty = DataLoader(torch.zeros(0, 1), batch_size=2)
    with (
        pytest.warns(UserWarning, match="`train_dataloader` #1 has no batches"),
        pytest.raises(MisconfigurationException, match="The training dataloader #1 has no batches"),
    ):
        trainer.fit(model, [DataLoader(range(4), batch_size=2), empty])


def test_fit_refuses_sequential_mode_before_any_training_hook(tmp_path):
    class Model(cases._model(ember)):
        started = False

        def on_train_start(self):
            Model.started = True

    trainer = cases._trainer(ember, default_root_dir=tmp_path)
    loaders = CombinedLoader([DataLoader(range(4)), DataLoader(range(2))], "sequential")
    with pytest.raises(ValueError, match=r'does not support the `CombinedLoader\(mode="sequential"\)` mode'):
        trainer.fit(Model(), loaders)
    assert not Model.started
    assert trainer.num_training_batches == 6  # counted first, as Lightning counts the loaders one after another


def test_fit_on_sequential_mode_with_no_training_batch_ends_without_training_as_in_lightning(tmp_path):
    # Lightning refuses the mode when it starts an epoch's batches; with none to train on, its fit ends first
    trainer = cases._trainer(ember, default_root_dir=tmp_path, max_epochs=2)
    loaders = CombinedLoader([DataLoader(range(0)), DataLoader(range(0))], "sequential")
    trainer.fit(cases._model(ember)(), loaders)
    assert trainer.num_training_batches == 0 and trainer.global_step == 0
    assert trainer.state.finished


class _LogsItsLoader(ember.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.hooks: list[str] = []

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.log("v", float(dataloader_idx))

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        self.log("t", float(dataloader_idx))

    def on_validation_start(self):
        self.hooks.append("on_validation_start")

    def on_validation_epoch_end(self):
        self.hooks.append("on_validation_epoch_end")


class _NothingToYield(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter(())


def _zeros(n: int) -> DataLoader:
    return DataLoader(torch.zeros(n, 1), batch_size=2)


@pytest.mark.parametrize(
    ("loaders", "expected"),
    [
        ([_zeros(4), _zeros(0), _zeros(2)], [{"t/dataloader_idx_0": 0.0}, {"t/dataloader_idx_2": 2.0}]),
        (
            [_zeros(4), DataLoader(_NothingToYield()), _zeros(2)],
            [{"t/dataloader_idx_0": 0.0}, {"t/dataloader_idx_2": 2.0}],
        ),
        ([_zeros(4), _zeros(0)], [{"t/dataloader_idx_0": 0.0}]),
        # a leading loader without batches keeps its (empty) entry, as in Lightning
        ([_zeros(0), _zeros(2)], [{}, {"t/dataloader_idx_1": 1.0}]),
        ([_zeros(0), _zeros(0), _zeros(2)], [{}, {"t/dataloader_idx_2": 2.0}]),
    ],
)
def test_evaluation_results_have_no_entry_for_a_loader_that_ran_no_batch(tmp_path, loaders, expected):
    trainer = cases._trainer(ember, default_root_dir=tmp_path)
    assert trainer.test(_LogsItsLoader(), loaders, verbose=False) == expected


def test_a_combined_loader_with_an_empty_member_still_runs_the_evaluation_loop(tmp_path):
    """As in Lightning: whether the loop runs is decided on each loader's batches, not on the combined ones."""
    model = _LogsItsLoader()
    trainer = cases._trainer(ember, default_root_dir=tmp_path)
    assert trainer.validate(model, CombinedLoader([_zeros(4), _zeros(0)], "min_size"), verbose=False) == [{}]
    assert trainer.num_val_batches == [2, 0]
    assert model.hooks == ["on_validation_start", "on_validation_epoch_end"]


class _Predicts(ember.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.started = False

    def predict_step(self, batch, batch_idx):
        return batch_idx

    def on_predict_start(self):
        self.started = True


def test_predict_refuses_other_modes_than_sequential_after_checking_and_counting_the_loaders(tmp_path):
    trainer = cases._trainer(ember, default_root_dir=tmp_path)
    model = _Predicts()
    with pytest.raises(ValueError, match=r'only supports the `CombinedLoader\(mode="sequential"\)` mode'):
        trainer.predict(model, CombinedLoader([_zeros(4), _zeros(4)], "max_size_cycle"))
    assert not model.started
    assert trainer.num_predict_batches == [2, 2]  # as in Lightning, counted before the refusal
    assert isinstance(trainer.predict_dataloaders, list)
    # an invalid member is named first, as Lightning checks each loader before the mode
    with pytest.raises(TypeError, match=r"An invalid dataloader was passed to `Trainer.predict\(dataloaders=...\)`"):
        trainer.predict(model, CombinedLoader([_zeros(4), None], "max_size_cycle"))
    # no batches at all: nothing to refuse, the call returns None
    assert trainer.predict(model, CombinedLoader([_zeros(0), _zeros(0)], "min_size")) is None
