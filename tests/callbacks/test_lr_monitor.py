"""LearningRateMonitor: keys, values and steps as Lightning 2.6.6 logs them (observed on the same runs)."""

from __future__ import annotations

import pytest
import torch
from tests.helpers.callback_models import QUIET, make_recording_logger, make_regressor, train_loader, val_loader

import ember as pl
from ember.callbacks import LearningRateMonitor
from ember.utilities.exceptions import MisconfigurationException

Regressor = make_regressor(pl)
RecordingLogger = make_recording_logger(pl)


def _adam_steplr(m):
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)}


def _sgd_groups_step_scheduler(m):
    opt = torch.optim.SGD(
        [{"params": m.net.parameters()}, {"params": m.head.parameters(), "lr": 0.01}], lr=0.1, momentum=0.9
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _named_groups(m):
    opt = torch.optim.SGD(
        [{"params": m.net.parameters(), "name": "body"}, {"params": m.head.parameters(), "name": "head"}], lr=0.1
    )
    return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1), "name": "my_lr"}}


def _sgd(m):
    return torch.optim.SGD(m.parameters(), lr=0.1)


m_, w_ = "-momentum", "-weight_decay"
# (optimizers, monitor kwargs, max_epochs, log_every_n_steps) -> Lightning's log_metrics calls (lr keys only)
CASES = {
    "no_scheduler": (_sgd, {}, 2, 1, [({"lr-SGD": 0.1}, s) for s in (0, 0, 1, 2, 3, 4, 4, 5, 6, 7)]),
    "epoch_scheduler": (
        _adam_steplr,
        {"log_momentum": True, "log_weight_decay": True},
        2,
        1,
        [
            ({"lr-Adam": 0.1, "lr-Adam" + m_: 0.9, "lr-Adam" + w_: 0}, 0),
            ({"lr-Adam": 0.05, "lr-Adam" + m_: 0.9, "lr-Adam" + w_: 0}, 4),
        ],
    ),
    "step_scheduler_param_groups": (
        _sgd_groups_step_scheduler,
        {"log_momentum": True},
        2,
        2,
        [
            ({"lr-SGD/pg1": lr, "lr-SGD/pg1" + m_: 0.9, "lr-SGD/pg2": lr / 10, "lr-SGD/pg2" + m_: 0.9}, step)
            for lr, step in ((0.1, 1), (0.05, 3), (0.025, 5), (0.0125, 7))
        ],
    ),
    "named_scheduler_and_groups": (
        _named_groups,
        {"logging_interval": "step"},
        1,
        2,
        [({"my_lr/body": 0.1, "my_lr/head": 0.1}, 1), ({"my_lr/body": 0.1, "my_lr/head": 0.1}, 3)],
    ),
    "step_logging_off": (_sgd, {}, 2, 0, [({"lr-SGD": 0.1}, 0), ({"lr-SGD": 0.1}, 4)]),
    "epoch_interval": (_sgd, {"logging_interval": "epoch"}, 2, 1, [({"lr-SGD": 0.1}, 0), ({"lr-SGD": 0.1}, 4)]),
}


def _fit(optimizers, monitor, max_epochs, log_every_n_steps):
    logger = RecordingLogger()
    trainer = pl.Trainer(
        **{**QUIET, "logger": logger},
        max_epochs=max_epochs,
        log_every_n_steps=log_every_n_steps,
        num_sanity_val_steps=0,
        callbacks=[monitor],
    )
    trainer.fit(Regressor(optimizers=optimizers), train_loader(), val_loader())
    lr_calls = [(m, s) for m, s in logger.calls if any(k.startswith(("lr-", "my_lr")) for k in m)]
    return trainer, lr_calls


@pytest.mark.parametrize("case", list(CASES))
def test_logged_keys_values_and_steps_match_lightning(case):
    optimizers, kwargs, max_epochs, every_n, expected = CASES[case]
    monitor = LearningRateMonitor(**kwargs)
    trainer, calls = _fit(optimizers, monitor, max_epochs, every_n)
    assert len(calls) == len(expected)
    for (got, got_step), (want, want_step) in zip(calls, expected):
        assert got_step == want_step
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key])
    # the values also reach callback_metrics, as tensors
    last = expected[-1][0]
    for key, value in last.items():
        assert float(trainer.callback_metrics[key]) == pytest.approx(value)
    lr_keys = [k for k in last if not k.endswith((m_, w_))]
    assert sorted(monitor.lrs) == sorted(lr_keys)
    assert [v for v in monitor.lrs[lr_keys[0]]] == pytest.approx([c[0][lr_keys[0]] for c in calls])


def test_duplicate_optimizer_classes_get_numbered_keys():
    monitor = LearningRateMonitor()

    class TwoOptimizers(Regressor):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            for opt in self.optimizers():
                opt.zero_grad()
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.manual_backward(loss)
            for opt in self.optimizers():
                opt.step()

        def configure_optimizers(self):
            return [torch.optim.Adam(self.net.parameters(), lr=0.1), torch.optim.Adam(self.head.parameters(), lr=0.2)]

    logger = RecordingLogger()
    trainer = pl.Trainer(
        **{**QUIET, "logger": logger}, max_epochs=1, limit_train_batches=1, limit_val_batches=0, callbacks=[monitor]
    )
    trainer.fit(TwoOptimizers(), train_loader())
    assert logger.calls[0] == ({"lr-Adam": 0.1, "lr-Adam-1": 0.2}, 0)


def test_requires_a_logger():
    trainer = pl.Trainer(**QUIET, max_epochs=1, limit_train_batches=1, callbacks=[LearningRateMonitor()])
    message = "`LearningRateMonitor` callback with `Trainer` that has no logger"
    with pytest.raises(MisconfigurationException, match=message):
        trainer.fit(Regressor(), train_loader(), val_loader())


def test_rejects_unknown_interval():
    with pytest.raises(MisconfigurationException, match="logging_interval should be `step` or `epoch` or `None`"):
        LearningRateMonitor(logging_interval="batch")


def test_duplicate_param_group_names_raise():
    def same_names(m):
        return torch.optim.SGD(
            [{"params": m.net.parameters(), "name": "a"}, {"params": m.head.parameters(), "name": "a"}], lr=0.1
        )

    with pytest.raises(MisconfigurationException, match="duplicated parameter group names"):
        _fit(same_names, LearningRateMonitor(), 1, 1)


def test_momentum_warning_for_optimizers_without_momentum():
    def rprop(m):
        return torch.optim.Rprop(m.parameters(), lr=0.1)

    with pytest.warns(RuntimeWarning, match="some optimizers do not have momentum"):
        _, calls = _fit(rprop, LearningRateMonitor(log_momentum=True), 1, 1)
    assert calls[0][0]["lr-Rprop-momentum"] == 0
