"""Learning rate finder: the sweep, its suggestion, early stop on divergence, restoring the state, errors.

Expected numbers were observed on Lightning 2.6.6 with the same model and data.
"""

from __future__ import annotations

import re

import pytest
import torch
from tests.helpers.tuner_models import QUIET, ConfiguredRegression, LinearRegression, TrainConfig

import ember as pl
from ember.callbacks import LearningRateFinder
from ember.tuner import Tuner
from ember.utilities.exceptions import MisconfigurationException


def _trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(max_epochs=1000, **{**QUIET, **kwargs})


def test_exponential_sweep_matches_lightning_and_lands_in_the_good_range():
    model = LinearRegression(batch_size=160)  # full batch: the loss depends on the learning rate only
    lr_finder = Tuner(_trainer()).lr_find(model, min_lr=1e-4, max_lr=10, num_training=100)
    lrs, losses = lr_finder.results["lr"], lr_finder.results["loss"]
    # SGD diverges above lr=1 on this problem: the sweep stops early, 94 steps in (as Lightning)
    assert len(lrs) == len(losses) == 94
    assert lrs[0] == pytest.approx(1e-4)
    assert lrs[1] == pytest.approx(1e-4 * 1e5 ** (2 / 100))  # Lightning's schedule skips r=1/N
    assert all(b > a for a, b in zip(lrs, lrs[1:]))
    assert lr_finder.suggestion() == pytest.approx(0.005623413251903489)
    assert 1e-3 <= lr_finder.suggestion() <= 1.0
    assert model.lr == lr_finder.suggestion()  # update_attr=True by default


def test_linear_sweep_grows_linearly_and_suggests_the_steepest_descent():
    model = LinearRegression(batch_size=160)
    lr_finder = Tuner(_trainer()).lr_find(model, min_lr=1e-3, max_lr=2, num_training=100, mode="linear")
    lrs = lr_finder.results["lr"]
    assert len(lrs) == 100 and lrs[-1] == pytest.approx(2.0)
    steps = [b - a for a, b in zip(lrs[1:], lrs[2:])]
    assert max(steps) == pytest.approx(min(steps))
    assert lr_finder.suggestion() == pytest.approx(0.22089)
    assert 0.05 <= model.lr <= 1.0


def test_early_stop_threshold_none_runs_every_step():
    model = LinearRegression(batch_size=160)
    lr_finder = Tuner(_trainer()).lr_find(model, min_lr=1e-4, max_lr=10, num_training=100, early_stop_threshold=None)
    assert len(lr_finder.results["lr"]) == 100
    assert lr_finder.results["lr"][-1] == pytest.approx(10.0)


def test_the_finder_records_the_index_of_the_sweeps_last_batch_as_lightning():
    lr_finder = Tuner(_trainer()).lr_find(LinearRegression(batch_size=160), num_training=10, early_stop_threshold=None)
    assert lr_finder._total_batch_idx == 9  # Lightning's `fit_loop.total_batch_idx` after 10 steps


def test_weights_are_restored_and_the_tuner_leaves_no_trace():
    model = LinearRegression(batch_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer()
    callbacks = list(trainer.callbacks)
    Tuner(trainer).lr_find(model, num_training=20, update_attr=False)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.lr == 1e-3
    assert trainer.callbacks == callbacks
    assert trainer.state.status == "finished"
    assert trainer.global_step == 0


def test_the_last_trials_logged_values_stay_readable_after_a_tuner_call_as_in_lightning():
    trainer = _trainer()
    Tuner(trainer).lr_find(LinearRegression(batch_size=32), num_training=5, update_attr=False)
    assert set(trainer.callback_metrics) == set(trainer.logged_metrics) == {"train_loss", "val_loss"}
    trainer = _trainer(limit_train_batches=2, limit_val_batches=1)
    Tuner(trainer).scale_batch_size(LinearRegression(batch_size=2), max_trials=2, steps_per_trial=1)
    assert set(trainer.callback_metrics) == {"train_loss"}  # its trials stop before any validation


@pytest.mark.filterwarnings("ignore:These hyperparameters are not plain data")
def test_the_sweep_restores_a_module_whose_hyperparameters_hold_arbitrary_objects():
    # Lightning saves the state to a temporary checkpoint and loads it back with weights_only=True, which
    # refuses the config class ("Unsupported global"): NeuralProphet 0.9's default fit fails there on
    # Lightning 2.6.6 with torch >= 2.6. Ember keeps the state in memory: nothing to load, nothing refused
    model = ConfiguredRegression(TrainConfig(epochs=3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lr_finder = Tuner(_trainer()).lr_find(model, num_training=20, update_attr=False)
    assert len(lr_finder.results["lr"]) == 20
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.hparams.config.epochs == 3


def test_callback_in_a_fit_equals_a_fit_at_the_suggested_rate():
    """The sweep restores weights, optimizer state, counters and RNG: the fit that follows is the same as a
    fit started directly at the suggested learning rate, bit for bit."""
    pl.seed_everything(1)
    tuned = LinearRegression(optimizer="adam", batch_size=32)
    finder = LearningRateFinder(min_lr=1e-4, max_lr=1.0, num_training_steps=30)
    trainer = pl.Trainer(max_epochs=8, callbacks=[finder], **QUIET)
    trainer.fit(tuned)
    suggestion = finder.optimal_lr.suggestion()
    assert tuned.lr == suggestion
    assert trainer.global_step == 40  # 8 epochs of 5 batches, none of the sweep's steps counted

    pl.seed_everything(1)
    direct = LinearRegression(optimizer="adam", batch_size=32, lr=suggestion)
    pl.Trainer(max_epochs=8, **QUIET).fit(direct)
    for (name, a), b in zip(tuned.state_dict().items(), direct.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_finder_run_at_chosen_epochs_from_a_callback_lets_training_go_on():
    # the recipe of Lightning's docs: a LearningRateFinder subclass that sweeps in `on_train_epoch_start`
    # at some epochs; the sweep's restore dropped the training data, and the epoch failed to start
    class AtEpochs(LearningRateFinder):
        def on_fit_start(self, *args):
            return

        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch in (0, 2):
                self.lr_find(trainer, pl_module)
                found.append((trainer.current_epoch, pl_module.lr))

    found: list[tuple[int, float]] = []
    pl.seed_everything(1)
    model = LinearRegression(batch_size=32)
    finder = AtEpochs(min_lr=1e-4, max_lr=1.0, num_training_steps=20, update_attr=True)
    trainer = pl.Trainer(max_epochs=3, callbacks=[finder], **QUIET)
    trainer.fit(model)
    assert [epoch for epoch, _ in found] == [0, 2]
    assert all(lr != 1e-3 for _, lr in found)  # each sweep set the module's rate
    assert trainer.global_step == 15  # 3 epochs of 5 batches: the sweeps' steps are not counted


def test_attribute_in_hparams_and_custom_name():
    class WithHparams(LinearRegression):
        def __init__(self, learning_rate: float = 1e-3, my_lr: float = 1e-3) -> None:
            super().__init__(batch_size=160)
            del self.lr
            self.save_hyperparameters()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)

    model = WithHparams()
    result = Tuner(_trainer()).lr_find(model, min_lr=1e-4, max_lr=10, num_training=50)
    assert model.hparams.learning_rate == result.suggestion()
    model = WithHparams()
    result = Tuner(_trainer()).lr_find(model, min_lr=1e-4, max_lr=10, num_training=50, attr_name="my_lr")
    assert model.hparams.my_lr == result.suggestion() and model.hparams.learning_rate == 1e-3


def test_plot_returns_a_figure_with_a_log_axis():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    lr_finder = Tuner(_trainer()).lr_find(LinearRegression(batch_size=160), min_lr=1e-4, max_lr=10, num_training=50)
    fig = lr_finder.plot(suggest=True)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "Learning rate" and ax.get_ylabel() == "Loss"
    assert len(ax.lines) == 2  # the curve and the red suggestion point
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_too_few_points_gives_no_suggestion(caplog):
    lr_finder = Tuner(_trainer()).lr_find(LinearRegression(batch_size=160), num_training=5)
    assert lr_finder.suggestion() is None
    assert "not enough points" in caplog.text


def test_missing_learning_rate_attribute():
    class NoLr(LinearRegression):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = NoLr()
    del model.lr
    with pytest.raises(AttributeError, match="should have one of these fields"):
        Tuner(_trainer()).lr_find(model)
    with pytest.raises(AttributeError, match="was set to nope"):
        Tuner(_trainer()).lr_find(LinearRegression(), attr_name="nope")


def test_bad_configurations():
    trainer = _trainer()
    with pytest.raises(MisconfigurationException, match="method='fit' is the only valid"):
        Tuner(trainer).lr_find(LinearRegression(), method="validate")
    with pytest.raises(ValueError, match="`mode` should be either of"):
        LearningRateFinder(mode="cubic")
    with pytest.raises(ValueError, match="already configured with a `LearningRateFinder`"):
        Tuner(_trainer(callbacks=[LearningRateFinder()])).lr_find(LinearRegression())
    with pytest.raises(MisconfigurationException, match="`dataloaders` argument should be None"):
        Tuner(trainer).lr_find(LinearRegression(), dataloaders=[])


@pytest.mark.parametrize(
    ("argument", "value", "error", "says"),
    [
        ("mode", 1, TypeError, "must be 'exponential' or 'linear', not int"),
        ("min_lr", None, TypeError, "must be a number: the first learning rate of the sweep, not NoneType"),
        ("min_lr", 0, ValueError, "must be above 0 with mode='exponential'"),
        ("max_lr", "1", TypeError, "must be a number: the last learning rate of the sweep, not str"),
        ("max_lr", -1.0, ValueError, "must be at least 0 with mode='exponential'"),
        ("num_training", 0, ValueError, "must be a whole number of at least 1: how many learning rates"),
        ("num_training", float("nan"), ValueError, "must be a whole number of at least 1"),
        ("early_stop_threshold", "4", TypeError, "must be a number: the loss ratio that ends the sweep, or None"),
        ("attr_name", 1, TypeError, "must be the name of the attribute that holds the learning rate, not int"),
    ],
)
def test_an_argument_of_the_wrong_kind_is_refused_by_name_before_the_sweep(argument, value, error, says):
    # each of these failed inside the sweep with Python's or torch's words ("division by zero", "bad operand
    # type for unary -", "argument alpha must not be a complex number", "cannot convert float NaN to integer")
    model = LinearRegression()
    before = model.lr
    with pytest.raises(error, match=re.escape(f"`Tuner.lr_find({argument}={value!r})` {says}")):
        Tuner(_trainer()).lr_find(model, **{argument: value})
    assert model.lr == before
    name = "num_training_steps" if argument == "num_training" else argument
    with pytest.raises(error, match=re.escape(f"`LearningRateFinder({name}={value!r})` {says}")):
        LearningRateFinder(**{name: value})


def test_linear_mode_takes_a_sweep_from_zero_and_a_false_attr_name_means_found_by_itself():
    model = LinearRegression()
    finder = Tuner(_trainer()).lr_find(model, min_lr=0, max_lr=0.1, num_training=5, mode="linear", attr_name=None)
    assert finder is not None and finder.results["lr"][0] == 0


def test_two_optimizers_are_refused():
    with pytest.raises(MisconfigurationException, match="only works with single optimizer"):
        Tuner(_trainer()).lr_find(_TwoOptimizers())


def test_fast_dev_run_skips_the_sweep():
    with pytest.warns(UserWarning, match="Skipping learning rate finder"):
        assert Tuner(_trainer(fast_dev_run=True)).lr_find(LinearRegression()) is None


@pytest.mark.parametrize("enable_progress_bar", [True, False])
def test_the_sweep_shows_its_bar_only_when_the_trainer_shows_progress(capsys, enable_progress_bar):
    # Lightning shows "Finding best initial lr" even with enable_progress_bar=False
    trainer = _trainer(enable_progress_bar=enable_progress_bar)
    Tuner(trainer).lr_find(LinearRegression(batch_size=160), num_training=5, update_attr=False)
    assert ("Finding best initial lr" in capsys.readouterr().err) is enable_progress_bar


def test_the_epoch_after_a_sweep_in_fit_shuffles_as_lightnings_does():
    """Lightning makes the first epoch's iterator before it puts the RNG back after the sweep: that epoch
    draws its order from the states the sweep left, and the run goes on with the RNG as before the sweep.
    The orders below were observed on Lightning 2.6.6 with this program."""
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    seen, states = [], {}

    class Shuffled(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(4, 1)
            self.lr = 0.1

        def training_step(self, batch, batch_idx):
            seen.append(batch[2].tolist())
            return nn.functional.mse_loss(self.l(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr)

        def on_fit_start(self):
            states["fit_start"] = torch.get_rng_state()

        def on_train_start(self):
            states["train_start"] = torch.get_rng_state()

    pl.seed_everything(0)
    data = DataLoader(TensorDataset(x, x[:, :1] * 0.5, torch.arange(8)), batch_size=2, shuffle=True)
    finder = LearningRateFinder(num_training_steps=3, early_stop_threshold=None)
    pl.Trainer(max_epochs=1, callbacks=[finder], **QUIET).fit(Shuffled(), data)
    assert seen == [[7, 1], [4, 6], [2, 0], [4, 5], [2, 7], [0, 1], [3, 6]]  # the sweep's 3 batches, then the epoch
    assert torch.equal(states["train_start"], states["fit_start"])  # the epoch's draw left the run's RNG alone
    assert torch.rand(1).item() == pytest.approx(0.8964447379112244)


class _LaterEpochFinder(LearningRateFinder):
    def on_fit_start(self, *args, **kwargs):
        return

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            self.lr_find(trainer, pl_module)


class _ValidationStepWithoutLoader(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.lr = 0.1
        self.x = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
        self.y = self.x.sum(1, keepdim=True)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x, self.y), batch_size=4)


def test_a_sweep_at_a_later_epoch_reloads_only_the_training_data():
    # a module with a validation_step and no val_dataloader trains without validation, the sweep included
    trainer = pl.Trainer(max_epochs=2, callbacks=[_LaterEpochFinder(num_training_steps=5)], **QUIET)
    trainer.fit(_ValidationStepWithoutLoader())
    assert trainer.global_step == 16


@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_fork"])
def test_lr_find_refuses_a_strategy_that_launches_its_processes_from_the_trainer(strategy):
    # the sweep would run in the launched processes only, and its result would be lost: say so before fitting
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_epochs=1, **QUIET)
    model = _ValidationStepWithoutLoader()
    with pytest.raises(ValueError, match="`Tuner.lr_find` does not support"):
        Tuner(trainer).lr_find(model, num_training=5)
    assert model.lr == 0.1


class _TwoOptimizers(LinearRegression):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return [torch.optim.SGD(self.parameters(), lr=0.1), torch.optim.SGD(self.parameters(), lr=0.1)]


class _FailsInTheSweep(LinearRegression):
    def training_step(self, batch, batch_idx):
        if batch_idx == 2:
            raise RuntimeError("a bug in the training step")
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize(
    ("model", "error"),
    [(_TwoOptimizers, "only works with single optimizer"), (_FailsInTheSweep, "a bug in the training step")],
)
def test_an_lr_find_that_fails_leaves_the_trainers_callbacks_and_schedulers_as_they_were(model, error):
    # Lightning leaves the sweep's callback on the trainer and, once the sweep has begun, its `_ExponentialLR`
    trainer = _trainer()
    callbacks = list(trainer.callbacks)
    with pytest.raises(Exception, match=error):
        Tuner(trainer).lr_find(model())
    assert trainer.callbacks == callbacks
    assert trainer.lr_scheduler_configs == []
    assert Tuner(trainer).lr_find(LinearRegression(), num_training=5) is not None
