"""StochasticWeightAveraging: the averaged weights, the SWA learning rate, BatchNorm statistics, errors."""

from __future__ import annotations

import pytest
import torch
from tests.helpers.callback_models import QUIET, make_regressor, train_loader

import ember as pl
from ember.callbacks import Callback, StochasticWeightAveraging
from ember.utilities.exceptions import MisconfigurationException

Regressor = make_regressor(pl)


class Snapshots(Callback):
    """Parameters and learning rate at the start of every epoch (runs after the SWA callback)."""

    def __init__(self):
        self.params, self.lrs = [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.params.append([p.detach().clone() for p in pl_module.parameters()])

    def on_train_epoch_end(self, trainer, pl_module):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def _fit(swa, model, max_epochs=4):
    snaps = Snapshots()
    trainer = pl.Trainer(**QUIET, max_epochs=max_epochs, limit_val_batches=0, callbacks=[swa, snaps])
    torch.manual_seed(0)
    trainer.fit(model, train_loader(n=16, batch_size=4))
    return trainer, snaps


def test_final_weights_are_the_average_of_epoch_starts():
    swa = StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=2, annealing_epochs=1)
    model = Regressor()
    trainer, snaps = _fit(swa, model)
    # swa_epoch_start=2 (1-based) averages the weights at the start of epochs 1, 2 and 3
    expected = [torch.stack(ps).mean(0) for ps in zip(*snaps.params[1:4])]
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)
    assert int(swa.n_averaged) == 3
    # epoch 0 trains at the optimizer's lr; from the SWA epoch on, SWALR anneals to swa_lrs in one epoch
    assert snaps.lrs[0] == pytest.approx(0.05)
    assert snaps.lrs[1:] == pytest.approx([0.01, 0.01, 0.01])


def test_without_an_epoch_limit_averaging_runs_until_training_stops():
    swa = StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=2, annealing_epochs=1)
    model, snaps = Regressor(), Snapshots()
    # 4 batches an epoch, 14 steps: epochs 0-3 start, epoch 3 stops after two batches
    trainer = pl.Trainer(**QUIET, max_epochs=-1, max_steps=14, limit_val_batches=0, callbacks=[swa, snaps])
    torch.manual_seed(0)
    trainer.fit(model, train_loader(n=16, batch_size=4))
    assert trainer.global_step == 14 and trainer.max_epochs == -1
    assert swa.swa_end == float("inf") and int(swa.n_averaged) == 3
    expected = [torch.stack(ps).mean(0) for ps in zip(*snaps.params[1:4])]
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)

    with pytest.raises(MisconfigurationException, match="`swa_epoch_start` as a float is not supported when"):
        pl.Trainer(**QUIET, max_steps=4, callbacks=[StochasticWeightAveraging(swa_lrs=0.01)]).fit(
            Regressor(), train_loader(n=16, batch_size=4)
        )


def test_float_start_and_state_dict():
    swa = StochasticWeightAveraging(swa_lrs=[0.02], swa_epoch_start=0.5)
    _fit(swa, Regressor())
    assert swa.swa_start == 1
    state = swa.state_dict()
    assert state["n_averaged"] == 3 and state["latest_update_epoch"] == 3
    assert set(state) == {"n_averaged", "latest_update_epoch", "scheduler_state", "average_model_state"}


def test_batch_norm_statistics_are_recomputed_for_the_average():
    swa = StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=2)
    model = Regressor(batch_norm=True)
    _fit(swa, model)
    bn = model.net[1]
    with torch.no_grad():
        means = [model.net[0](x).mean(0) for x, _ in train_loader(n=16, batch_size=4)]
    # momentum None: the running mean is the plain average of the batch means under the averaged weights
    torch.testing.assert_close(bn.running_mean, torch.stack(means).mean(0))
    assert bn.momentum == 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"swa_lrs": 0.1, "swa_epoch_start": 0}, "swa_epoch_start should be a >0 integer or a float between 0 and 1"),
        ({"swa_lrs": 0.1, "swa_epoch_start": 1.5}, "swa_epoch_start should be a >0 integer"),
        ({"swa_lrs": -1.0}, "The `swa_lrs` should a positive float, or a list of positive floats"),
        ({"swa_lrs": [0.1, 1]}, "The `swa_lrs` should a positive float"),
        ({"swa_lrs": 0.1, "avg_fn": 3}, "The `avg_fn` should be callable."),
        ({"swa_lrs": 0.1, "device": 3}, "device is expected to be a torch.device or a str"),
        # Lightning: a TypeError from comparing "a" with 0, and torch's ValueError once the SWA phase starts
        ({"swa_lrs": [0.1, "a"]}, "The `swa_lrs` should a positive float"),
        ({"swa_lrs": 0.1, "annealing_strategy": "foo"}, "`annealing_strategy` should be 'cos' or 'linear', got 'foo'"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(MisconfigurationException, match=message):
        StochasticWeightAveraging(**kwargs)


def test_more_than_one_scheduler_is_refused():
    def two_schedulers(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, 1), torch.optim.lr_scheduler.StepLR(opt, 2)]

    with pytest.raises(MisconfigurationException, match="SWA currently not supported for more than 1 `lr_scheduler`"):
        _fit(StochasticWeightAveraging(swa_lrs=0.1), Regressor(optimizers=two_schedulers))


def test_resume_inside_the_swa_phase_matches_an_uninterrupted_run(tmp_path):
    path = tmp_path / "mid_swa.ckpt"

    class SaveAfterEpoch2(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 2:
                trainer.save_checkpoint(path)

    def run(ckpt_path=None, extra=()):
        torch.manual_seed(0)
        model = Regressor()
        swa = StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=2, annealing_epochs=2)
        trainer = pl.Trainer(**QUIET, max_epochs=5, limit_val_batches=0, callbacks=[swa, *extra])
        trainer.fit(model, train_loader(), ckpt_path=ckpt_path)
        return model, swa

    full, _ = run(extra=[SaveAfterEpoch2()])
    resumed, swa = run(ckpt_path=path)
    for a, b in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)
    assert int(swa.n_averaged) == 4


def test_batch_norm_pass_runs_training_step_on_any_batch_format():
    class DictBatches(Regressor):
        def training_step(self, batch, batch_idx):
            loss = torch.nn.functional.mse_loss(self(batch["x"]), batch["y"])
            self.log("train_loss", loss)  # silenced during the BatchNorm pass
            return loss

    x, y = train_loader().dataset.tensors
    loader = torch.utils.data.DataLoader([{"x": a, "y": b} for a, b in zip(x, y)], batch_size=4)
    model = DictBatches(batch_norm=True)
    swa = StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=1)
    trainer = pl.Trainer(**QUIET, max_epochs=2, limit_val_batches=0, callbacks=[swa])
    trainer.fit(model, loader)
    with torch.no_grad():
        means = [model.net[0](b["x"]).mean(0) for b in loader]
    torch.testing.assert_close(model.net[1].running_mean, torch.stack(means).mean(0))
    assert "log" not in vars(model)


def test_a_config_with_an_unknown_annealing_strategy_is_a_parse_error():
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(StochasticWeightAveraging, "swa")
    assert (
        parser.parse_args(["--swa.swa_lrs=0.1", "--swa.annealing_strategy=linear"]).swa.annealing_strategy == "linear"
    )
    with pytest.raises(jsonargparse.ArgumentError, match="annealing_strategy"):
        parser.parse_args(["--swa.swa_lrs=0.1", "--swa.annealing_strategy=cosine"])
    assert "{cos,linear}" in parser.format_help()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"swa_epoch_start": None}, "`StochasticWeightAveraging(swa_epoch_start=None)` must be an epoch"),
        ({"swa_epoch_start": "0.8"}, "`StochasticWeightAveraging(swa_epoch_start='0.8')` must be an epoch"),
        ({"annealing_epochs": None}, "`StochasticWeightAveraging(annealing_epochs=None)` must be an int: the epochs"),
        ({"annealing_epochs": 2.5}, "`StochasticWeightAveraging(annealing_epochs=2.5)` must be an int: the epochs"),
    ],
)
def test_a_start_or_annealing_length_of_the_wrong_type_is_refused_where_it_is_given(kwargs, message):
    # (Lightning fails in `fit`: an AssertionError for a None start, torch's ValueError for None epochs)
    with pytest.raises(TypeError) as raised:
        StochasticWeightAveraging(swa_lrs=0.1, **kwargs)
    assert str(raised.value).startswith(message)
