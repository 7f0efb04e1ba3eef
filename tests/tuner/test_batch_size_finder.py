"""Batch size finder: power and binsearch search up to an out-of-memory budget, where the size lives, the
eval loops, restoring the state, and bad input.

Expected sizes were observed on Lightning 2.6.6 with the same budget and data.
"""

from __future__ import annotations

import re

import pytest
import torch
from tests.helpers.tuner_models import (
    QUIET,
    BatchSizeData,
    BudgetModel,
    ConfiguredRegression,
    LinearRegression,
    TrainConfig,
)

import ember as pl
from ember.callbacks import BatchSizeFinder, LearningRateFinder
from ember.tuner import Tuner
from ember.utilities.exceptions import MisconfigurationException


def _trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(max_epochs=1, **{**QUIET, **kwargs})


@pytest.mark.parametrize(
    ("mode", "margin", "expected"),
    [("power", 0.05, 32), ("binsearch", 0.0, 40), ("binsearch", 0.05, 38)],
)
def test_largest_size_under_the_budget(mode, margin, expected):
    model = BudgetModel(budget=40)
    assert Tuner(_trainer()).scale_batch_size(model, mode=mode, margin=margin) == expected
    assert model.batch_size == expected
    assert max(model.sizes) > 40  # the search did hit the budget
    assert 3 in {model.sizes.count(size) for size in (2, 4, 8)}  # steps_per_trial=3 steps per size


@pytest.mark.parametrize("error", ["cuda-message", "mps-message", "xpu-message", "cublas-message"])
def test_a_runtime_error_that_says_out_of_memory_counts_too(error):
    # Lightning counts CUDA's message only: the others (and a torch.OutOfMemoryError whose text does not
    # say "CUDA out of memory") end its search with the error (docs/compat.md)
    model = BudgetModel(budget=40, error=error)
    assert Tuner(_trainer()).scale_batch_size(model) == 32


def test_other_errors_propagate():
    model = BudgetModel(budget=40, error="bug")
    with pytest.raises(RuntimeError, match="nothing to do with memory"):
        Tuner(_trainer()).scale_batch_size(model)


def test_size_in_hparams_and_in_the_datamodule():
    model = BudgetModel(budget=40, where="hparams")
    assert Tuner(_trainer()).scale_batch_size(model) == 32
    assert model.hparams.batch_size == 32

    model, data = BudgetModel(budget=40, where="datamodule"), BatchSizeData()
    assert Tuner(_trainer()).scale_batch_size(model, datamodule=data) == 32
    assert data.batch_size == 32


def test_limits_max_trials_max_val_and_the_dataset_length():
    assert Tuner(_trainer()).scale_batch_size(BudgetModel(budget=40), max_trials=2) == 4
    assert Tuner(_trainer()).scale_batch_size(BudgetModel(budget=10**6), max_val=16) == 16
    assert Tuner(_trainer()).scale_batch_size(BudgetModel(budget=10**6), init_val=8, steps_per_trial=1) == 512
    small = BudgetModel(budget=10**6, n=20)
    # a size already larger than the dataset stops growing (32 >= 20 samples), as in Lightning
    assert Tuner(_trainer()).scale_batch_size(small) == 32


def test_state_is_restored_and_the_tuner_leaves_no_trace():
    model = BudgetModel(budget=40)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer()
    callbacks = list(trainer.callbacks)
    Tuner(trainer).scale_batch_size(model)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert trainer.callbacks == callbacks
    assert trainer.global_step == 0 and trainer.state.status == "finished"


def test_callback_grows_the_batch_then_fits_with_it():
    model = BudgetModel(budget=40)
    finder = BatchSizeFinder(mode="binsearch", margin=0.0)
    trainer = _trainer(limit_train_batches=2, limit_val_batches=1)
    trainer.fit(model)  # warm-up: without the finder the model trains at size 2
    trainer = _trainer(callbacks=[finder], limit_train_batches=2, limit_val_batches=1)
    model.sizes.clear()
    trainer.fit(model)
    assert finder.optimal_batch_size == 40
    assert trainer.train_dataloader.batch_size == 40
    assert trainer.global_step == 2  # the search's steps are not counted
    assert model.sizes[-3:] == [40, 40, 40]  # two training batches and one validation batch


@pytest.mark.parametrize("method", ["validate", "test", "predict"])
def test_eval_loops(method):
    model = BudgetModel(budget=40)
    trainer = _trainer()
    assert Tuner(trainer).scale_batch_size(model, method=method) == 32
    assert set(model.sizes) >= {2, 4, 8, 16, 32, 64}
    prefix = {"validate": "val"}.get(method, method)
    loader = getattr(trainer, f"{prefix}_dataloaders")
    if method == "predict":
        # predict draws through a batch sampler that records each batch's indices, as Lightning's does, and
        # a DataLoader given a batch sampler has no batch size of its own: the batch sampler holds it
        assert loader.batch_size is None
        loader = loader.batch_sampler
    assert loader.batch_size == 32  # the loaders of the new size are in place
    assert getattr(trainer, f"{method}_loop").batch_progress.current.completed == 0  # the trials are not counted


def test_after_the_search_the_trainer_holds_loaders_of_the_new_size():
    model = BudgetModel(budget=40)
    trainer = _trainer()
    Tuner(trainer).scale_batch_size(model, mode="binsearch", margin=0.0)
    assert trainer.train_dataloader.batch_size == 40 and trainer.val_dataloaders.batch_size == 40


@pytest.mark.parametrize("method", ["validate", "test", "predict"])
def test_callback_in_an_evaluation_runs_the_loop_with_the_new_size(method):
    model = BudgetModel(budget=40, n=128)
    trainer = _trainer(callbacks=[BatchSizeFinder(max_trials=4)])
    getattr(trainer, method)(model)
    assert model.batch_size == 16  # 2, 4, 8, 16: four trials
    assert model.sizes[-8:] == [16] * 8  # the real loop: 128 samples in batches of 16
    assert getattr(trainer, f"{method}_loop").batch_progress.current.completed == 8


def test_callback_refuses_several_evaluation_loaders():
    class TwoLoaders(BudgetModel):
        def val_dataloader(self):
            return [super().val_dataloader(), super().val_dataloader()]

    with pytest.raises(MisconfigurationException, match="The Batch size finder cannot be used with multiple val"):
        _trainer(callbacks=[BatchSizeFinder()]).validate(TwoLoaders())


def test_bad_input():
    with pytest.raises(ValueError, match="`mode` should be either of"):
        BatchSizeFinder(mode="doubling")
    with pytest.raises(ValueError, match="`margin` should be between 0 and 1"):
        Tuner(_trainer()).scale_batch_size(BudgetModel(), margin=1.5)
    with pytest.raises(ValueError, match="method 'tune' is invalid"):
        Tuner(_trainer()).scale_batch_size(BudgetModel(), method="tune")
    with pytest.raises(ValueError, match="already configured with a `BatchSizeFinder`"):
        Tuner(_trainer(callbacks=[BatchSizeFinder()])).scale_batch_size(BudgetModel())
    with pytest.raises(MisconfigurationException, match="`train_dataloaders` and `val_dataloaders`"):
        Tuner(_trainer()).scale_batch_size(BudgetModel(), method="test", train_dataloaders=[])
    with pytest.raises(MisconfigurationException, match="Field batch_size not found"):
        Tuner(_trainer()).scale_batch_size(BudgetModel(where="nowhere"))
    model = BudgetModel()
    with pytest.raises(
        MisconfigurationException, match=r"cannot be used with dataloaders passed directly to `.fit\(\)`"
    ):
        Tuner(_trainer()).scale_batch_size(model, train_dataloaders=model.train_dataloader())
    # a loader passed in keeps its batch size: Lightning runs a search that cannot change anything
    with pytest.raises(MisconfigurationException, match=r"passed directly to `.validate\(\)`"):
        Tuner(_trainer()).scale_batch_size(model, dataloaders=model.train_dataloader(), method="validate")


@pytest.mark.parametrize(
    ("argument", "value", "error", "says"),
    [
        ("mode", None, TypeError, "must be 'power' or 'binsearch', not NoneType"),
        ("steps_per_trial", None, TypeError, "must be a whole number of at least 1: the steps each size runs"),
        ("steps_per_trial", 0, ValueError, "must be a whole number of at least 1"),
        ("steps_per_trial", 1e-9, ValueError, "must be a whole number of at least 1"),
        ("steps_per_trial", float("inf"), ValueError, "must be a whole number of at least 1"),
        ("init_val", 0.5, ValueError, "must be a whole number of at least 1: the first batch size to try"),
        (
            "init_val",
            "8",
            TypeError,
            "must be a whole number of at least 1: the first batch size to try (None: the model's own)",
        ),
        ("max_trials", 2.0, TypeError, "must be an int: the most batch sizes to try, not float"),
        ("batch_arg_name", None, TypeError, "must be the name of the attribute that holds the batch size"),
        ("margin", "0.1", TypeError, "must be a number in [0, 1)"),
        ("max_val", None, TypeError, "must be a number: the largest batch size to try, not NoneType"),
    ],
)
def test_an_argument_of_the_wrong_kind_is_refused_by_name_before_any_trial(argument, value, error, says):
    # each of these failed inside the search with Python's or torch's words ("unsupported operand type(s) for +",
    # "'NoneType' object has no attribute 'lower'", the DataLoader's "batch_size should be a positive integer
    # value"), or, for `steps_per_trial=1e-9`, with advice about `limit_val_batches`
    model = BudgetModel()
    with pytest.raises(error, match=re.escape(f"`Tuner.scale_batch_size({argument}={value!r})` {says}")):
        Tuner(_trainer()).scale_batch_size(model, **{argument: value})
    assert model.sizes == []
    with pytest.raises(error, match=re.escape(f"`BatchSizeFinder({argument}={value!r})` {says}")):
        BatchSizeFinder(**{argument: value})


def test_a_whole_float_init_val_is_the_first_size_tried():
    # as in Lightning, where `init_val=10.0` finds the same size as 10; the trials get an int
    model = BudgetModel(budget=24, batch_size=2)
    assert Tuner(_trainer()).scale_batch_size(model, init_val=8.0, max_trials=3) == 16
    assert model.sizes[0] == 8 and type(model.sizes[0]) is int


def test_fast_dev_run_skips_the_search():
    with pytest.warns(UserWarning, match="Skipping batch size scaler"):
        assert Tuner(_trainer(fast_dev_run=True)).scale_batch_size(BudgetModel()) is None


@pytest.mark.filterwarnings("ignore:These hyperparameters are not plain data")
def test_the_search_restores_a_module_whose_hyperparameters_hold_arbitrary_objects():
    # Lightning restores from a temporary checkpoint loaded with weights_only=True, which refuses the
    # config class ("Weights only load failed"); Ember keeps the state in memory
    model = ConfiguredRegression(TrainConfig(epochs=3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    found = Tuner(pl.Trainer(max_epochs=1000, **QUIET)).scale_batch_size(model, max_trials=2)
    assert found == 4 and model.batch_size == 4
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.hparams.config.epochs == 3


def test_after_the_search_the_batch_hooks_read_the_steps_values_as_in_lightning():
    # the search resets the metric store; the evaluation it hands back to reads its step values live again
    class Logs(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.batch_size = 2
            self.layer = torch.nn.Linear(2, 1)

        def val_dataloader(self):
            data = torch.utils.data.TensorDataset(torch.randn(64, 2))
            return torch.utils.data.DataLoader(data, batch_size=self.batch_size)

        def validation_step(self, batch, batch_idx):
            self.log("v", self.layer(batch[0]).mean(), on_step=True, on_epoch=False)

    seen = []

    class Reads(pl.Callback):
        def on_validation_batch_end(self, trainer, *args):
            seen.append((sorted(trainer.logged_metrics), sorted(trainer.callback_metrics)))

    finder = BatchSizeFinder(max_trials=2, steps_per_trial=1)
    trainer = pl.Trainer(callbacks=[finder, Reads()], limit_val_batches=8, **QUIET)
    trainer.validate(Logs(), verbose=False)
    assert seen[-1] == (["v"], [])  # Lightning 2.6.6: the step value is logged, and no callback metric


def test_each_trial_of_an_evaluation_search_runs_steps_per_trial_batches_predict_included():
    # Lightning limits the trials of fit, validate and test, but runs the whole predict loader in each
    model = BudgetModel(budget=40)
    Tuner(_trainer()).scale_batch_size(model, method="predict", steps_per_trial=2)
    assert [model.sizes.count(size) for size in (2, 4, 8, 16, 32)] == [2] * 5


def test_init_val_is_the_size_of_the_first_trial():
    # Lightning's first trial runs the loader built with the model's old size, and counts it for `init_val`
    model = BudgetModel(budget=24, batch_size=2)
    assert Tuner(_trainer()).scale_batch_size(model, init_val=32, max_trials=3) == 16
    assert model.sizes[0] == 32


def test_a_finder_run_again_at_a_later_epoch_runs_real_trials():
    # Lightning's own recipe (a `BatchSizeFinder` called in `on_train_epoch_start`): Lightning's trials stop at
    # once there, since their step limit counts from 0, and the search ends at the dataset's length
    class AtEpochOne(BatchSizeFinder):
        def on_fit_start(self, trainer, pl_module):
            return

        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                self.scale_batch_size(trainer, pl_module)

    model = BudgetModel(budget=8, n=64)
    trainer = pl.Trainer(**{**QUIET, "max_epochs": 3, "limit_train_batches": 5, "callbacks": [AtEpochOne()]})
    trainer.fit(model)
    assert model.batch_size == 8
    assert trainer.global_step == 15  # every epoch trained its five batches


def test_a_tuner_call_that_fails_takes_its_finder_out_of_the_callbacks():
    # Lightning leaves it there, and the next tuner call on the Trainer says one is already configured
    trainer = _trainer()
    callbacks = list(trainer.callbacks)
    with pytest.raises(MisconfigurationException, match="Field bsz not found"):
        Tuner(trainer).scale_batch_size(BudgetModel(), batch_arg_name="bsz")
    assert trainer.callbacks == callbacks
    assert Tuner(trainer).scale_batch_size(BudgetModel(budget=40), max_trials=2) == 4


class _TrainingOnly(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.batch_size = 2

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(64, 4))
        return torch.utils.data.DataLoader(data, batch_size=self.batch_size)


def test_a_module_without_validation_is_searched_as_in_lightning():
    assert Tuner(_trainer()).scale_batch_size(_TrainingOnly(), max_trials=3) == 8


class _ShuffledRegression(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.batch_size = 2
        self.x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
        self.y = self.x.sum(1, keepdim=True)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(self.x, self.y)
        return torch.utils.data.DataLoader(data, batch_size=self.batch_size, shuffle=True)


def _weights(model) -> list[float]:
    return [round(v, 6) for v in torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()]


def test_the_fit_after_a_search_shuffles_as_in_lightning():
    # Lightning makes a training iterator as the search ends (drawing its seeds) and drops it when the Tuner
    # call ends; values observed on Lightning 2.6.6
    expected = [0.289101, 0.569632, 0.599918, 0.405398, -0.308187]
    pl.seed_everything(0)
    model, trainer = _ShuffledRegression(), _trainer()
    assert Tuner(trainer).scale_batch_size(model, max_trials=3) == 8
    state = torch.get_rng_state()
    assert round(torch.rand(1).item(), 6) == 0.282269
    torch.set_rng_state(state)
    trainer.fit(model)
    assert _weights(model) == expected

    pl.seed_everything(0)
    model = _ShuffledRegression()
    _trainer(callbacks=[BatchSizeFinder(max_trials=3)]).fit(model)  # no reload: the fit uses that iterator
    assert _weights(model) == [0.322453, 0.567124, 0.549924, 0.403156, -0.33314]


class _CountedLoaders(_ShuffledRegression):
    def __init__(self):
        super().__init__()
        self.x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
        self.y = self.x.sum(1, keepdim=True)
        self.requested: list[int] = []

    def train_dataloader(self):
        self.requested.append(self.batch_size)
        return super().train_dataloader()


def test_each_trial_asks_for_the_training_data_once_as_in_lightning():
    model = _CountedLoaders()
    Tuner(_trainer()).scale_batch_size(model, max_trials=4)
    assert model.requested == [2, 4, 8, 16, 16]  # one call per trial, and one as the search ends


class _CountsSanityValidation(_ShuffledRegression):
    def __init__(self):
        super().__init__()
        self.sanity_steps = 0

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.sanity_steps += self.trainer.sanity_checking
        return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x, self.y), batch_size=self.batch_size)


def _logged_steps(log_dir) -> list[str]:
    import csv

    (metrics,) = log_dir.glob("**/metrics.csv")
    with metrics.open() as f:
        return [row["step"] for row in csv.DictReader(f) if row["train_loss"]]


@pytest.mark.parametrize("search", ["tuner", "callback"])
def test_with_max_steps_the_fit_after_a_search_runs_its_sanity_check_and_logs_from_step_0(tmp_path, search):
    # Lightning's search leaves a step-limited fit "restarting": no sanity check, and every row one step late
    model = _CountsSanityValidation()
    callbacks = [BatchSizeFinder(max_trials=2)] if search == "callback" else []
    logger = pl.loggers.CSVLogger(tmp_path, name="csv")
    trainer = pl.Trainer(**{**QUIET, "logger": logger}, max_steps=4, log_every_n_steps=1, callbacks=callbacks)
    if search == "tuner":
        Tuner(trainer).scale_batch_size(model, max_trials=2)
    trainer.fit(model)
    assert model.sanity_steps == 2
    assert _logged_steps(tmp_path) == ["0", "1", "2", "3"]


def test_an_out_of_memory_error_in_validation_counts_as_any_other(tmp_path):
    # Lightning fails with KeyError: 'limit_eval_batches' and leaves the trial's state and its checkpoint file
    class ValidationOutOfMemory(BudgetModel):
        def training_step(self, batch, batch_idx):
            return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

    model = ValidationOutOfMemory(budget=8, n=64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer(default_root_dir=tmp_path)
    assert Tuner(trainer).scale_batch_size(model) == 16  # the trial of 32 reaches the epoch's end and validates
    assert max(model.sizes) == 32
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
    assert trainer.global_step == 0
    assert list(tmp_path.iterdir()) == []


class _LearningRateRegression(_ShuffledRegression):
    def __init__(self):
        super().__init__()
        self.x = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
        self.y = self.x.sum(1, keepdim=True)
        self.batch_size = 4
        self.lr = 0.1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def _finder(kind: str) -> pl.Callback:
    return LearningRateFinder(num_training_steps=5) if kind == "lr" else BatchSizeFinder(max_trials=2)


class _EpochEnds(pl.Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.seen.append((trainer.current_epoch, trainer.global_step))


@pytest.mark.parametrize("finder", ["lr", "batch_size"])
def test_a_finder_callback_in_a_resumed_fit_keeps_the_resume(tmp_path, finder):
    # Lightning searches before it restores the loops, and its search's restore drops the checkpoint
    first = tmp_path / "first.ckpt"
    trainer = pl.Trainer(**QUIET, max_epochs=1)
    trainer.fit(_LearningRateRegression())
    trainer.save_checkpoint(first)
    epochs = _EpochEnds()
    trainer = pl.Trainer(**QUIET, max_epochs=3, callbacks=[_finder(finder), epochs])
    trainer.fit(_LearningRateRegression(), ckpt_path=first)
    assert epochs.seen == [(1, 16), (2, 24)]


@pytest.mark.parametrize("call", ["lr_find", "scale_batch_size"])
def test_trainer_ckpt_path_stays_none_after_a_tuner_call_or_a_finder_callback(tmp_path, call):
    # Lightning's holds the path of its temporary checkpoint, a file it has already deleted
    trainer = _trainer(default_root_dir=tmp_path)
    getattr(Tuner(trainer), call)(_LearningRateRegression(), **{"lr_find": {"num_training": 5}}.get(call, {}))
    assert trainer.ckpt_path is None

    class CkptPathInTraining(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            self.seen = trainer.ckpt_path

    seen = CkptPathInTraining()
    finder = _finder("lr" if call == "lr_find" else "batch_size")
    _trainer(default_root_dir=tmp_path, callbacks=[finder, seen]).fit(_LearningRateRegression())
    assert seen.seen is None


def test_a_finder_in_a_fit_that_reloads_every_epoch_sets_the_training_data_up_as_lightning():
    # Lightning sets the training data up again after the first trial, since that trial ended an epoch, and
    # makes (then drops) an iterator of it: the hook runs once more and the fit shuffles after that draw
    pl.seed_everything(0)
    model = _ShuffledRegression()
    _trainer(callbacks=[BatchSizeFinder(max_trials=3)], reload_dataloaders_every_n_epochs=1).fit(model)
    assert _weights(model) == [0.289101, 0.569632, 0.599918, 0.405398, -0.308187]

    model = _CountedLoaders()
    _trainer(callbacks=[BatchSizeFinder(max_trials=4)], reload_dataloaders_every_n_epochs=1).fit(model)
    assert model.requested == [2, 2, 4, 8, 16, 16]


class _TrainingDataOnly(pl.LightningDataModule):
    def __init__(self, batch_size: int = 2) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.dataset = BatchSizeData().dataset

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.dataset, batch_size=self.batch_size)


def test_a_datamodule_without_validation_data_is_searched_as_its_fit_runs():
    # the model has a validation_step and its own val_dataloader, which a datamodule given to the call hides:
    # the fit skips validation (trainer.enable_validation is False, as in Lightning), and so does the search
    # (Lightning's search fails asking the datamodule for its val_dataloader)
    trainer = _trainer()
    datamodule = _TrainingDataOnly()
    assert Tuner(trainer).scale_batch_size(LinearRegression(), datamodule=datamodule, max_trials=3) == 8
    assert datamodule.batch_size == 8
    assert not trainer.enable_validation
