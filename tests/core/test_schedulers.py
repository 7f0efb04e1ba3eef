"""When learning-rate schedulers step in automatic optimization."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tests.core.test_optimizers import CustomScheduler
from tests.helpers.core_models import CoreModel, loader, quiet_trainer

import ember
from ember.utilities import MisconfigurationException
from ember.utilities.types import LRSchedulerConfig


class LrRecorder(CoreModel):
    """Records the learning rate seen by each training batch and each validation run."""

    def __init__(self, scheduler: Any, val_metric: list[float] | None = None):
        super().__init__(lr=1.0)
        self._scheduler = scheduler
        self._val_metric = val_metric
        self.train_lrs: list[float] = []
        self.val_lrs: list[float] = []

    def _lr(self) -> float:
        return self.trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_start(self, batch, batch_idx):
        self.train_lrs.append(self._lr())

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.val_lrs.append(self._lr())
        if self._val_metric is not None:
            self.log("metric", self._val_metric[len(self.val_lrs) - 1])

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=1.0)
        return {"optimizer": opt, "lr_scheduler": self._scheduler(opt)}


def _halving(**config: Any):
    return lambda opt: {"scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5), **config}


def _run(model: LrRecorder, n: int = 16, val: bool = False, **trainer_kwargs: Any) -> LrRecorder:
    trainer = quiet_trainer(**{"max_epochs": 2, **trainer_kwargs})
    trainer.fit(model, loader(n=n), loader(n=4) if val else None)
    return model


def test_step_interval_steps_after_every_batch():
    model = _run(LrRecorder(_halving(interval="step")))
    assert model.train_lrs == [0.5**i for i in range(8)]


def test_step_interval_frequency_counts_batches_in_the_epoch():
    model = _run(LrRecorder(_halving(interval="step", frequency=3)))
    # batch_idx + 1 divisible by 3: after batch 2 of each 4-batch epoch
    assert model.train_lrs == [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25]


def test_epoch_interval_steps_on_the_last_batch_before_validation():
    model = _run(LrRecorder(_halving()), val=True)
    assert model.train_lrs == [1.0] * 4 + [0.5] * 4
    assert model.val_lrs == [0.5, 0.25]  # validation already sees the stepped rate


def test_epoch_interval_frequency():
    model = _run(LrRecorder(_halving(frequency=2)), max_epochs=4, n=4)
    assert model.train_lrs == [1.0, 1.0, 0.5, 0.5]


def test_no_step_scheduler_steps_while_accumulating():
    model = _run(LrRecorder(_halving(interval="step")), accumulate_grad_batches=3, max_epochs=1, n=20)
    # 5 batches: steps after batch 2 (window end) and batch 4 (last batch of the epoch)
    assert model.train_lrs == [1.0, 1.0, 1.0, 0.5, 0.5]
    assert model.trainer.global_step == 2


def test_plateau_steps_after_validation_from_callback_metrics():
    def plateau(opt):
        return {
            "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5),
            "monitor": "metric",
        }

    model = _run(LrRecorder(plateau, val_metric=[1.0, 1.0, 1.0]), val=True, max_epochs=3)
    # epoch 0 sets the best value; epochs 1 and 2 do not improve
    assert model.val_lrs == [1.0, 1.0, 0.5]
    assert model.trainer.optimizers[0].param_groups[0]["lr"] == 0.25


def test_plateau_with_step_interval_steps_after_each_validation_check():
    def plateau(opt):
        return {
            "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5),
            "monitor": "metric",
            "interval": "step",
        }

    model = LrRecorder(plateau, val_metric=[2.0, 2.0, 2.0, 2.0])
    _run(model, val=True, max_epochs=1, val_check_interval=1)  # 4 validations, each after a batch
    assert model.val_lrs == [1.0, 1.0, 0.5, 0.25]


def test_plateau_missing_monitor_strict_raises_with_the_available_metrics():
    def plateau(opt):
        return {"scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt), "monitor": "missing"}

    with pytest.raises(
        MisconfigurationException, match=r"conditioned on metric missing which is not available.*\['metric'\]"
    ):
        _run(LrRecorder(plateau, val_metric=[1.0, 1.0]), val=True)


def test_plateau_missing_monitor_not_strict_warns_and_skips():
    def plateau(opt):
        return {
            "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0),
            "monitor": "missing",
            "strict": False,
        }

    with pytest.warns(RuntimeWarning, match="strict is set to `False`. Skipping learning rate update"):
        model = _run(LrRecorder(plateau, val_metric=[1.0, 1.0]), val=True)
    assert model.trainer.optimizers[0].param_groups[0]["lr"] == 1.0


def test_lr_scheduler_step_override_drives_a_custom_scheduler():
    calls = []

    class Custom(LrRecorder):
        def lr_scheduler_step(self, scheduler, metric):
            calls.append((type(scheduler).__name__, metric, self.trainer.current_epoch))
            scheduler.step()

    model = Custom(lambda opt: {"scheduler": CustomScheduler(opt), "interval": "epoch"})
    _run(model, n=8)
    assert calls == [("CustomScheduler", None, 0), ("CustomScheduler", None, 1)]
    assert model.trainer.lr_scheduler_configs[0].scheduler.steps == 2


def test_lr_scheduler_step_override_gets_the_plateau_metric():
    metrics = []

    class Custom(LrRecorder):
        def lr_scheduler_step(self, scheduler, metric):
            metrics.append(float(metric))
            scheduler.step(metric)

    def plateau(opt):
        return {"scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt), "monitor": "metric"}

    _run(Custom(plateau, val_metric=[3.0, 2.0]), val=True)
    assert metrics == [3.0, 2.0]


def test_schedulers_are_not_stepped_in_manual_optimization():
    class Manual(LrRecorder):
        def __init__(self, scheduler):
            super().__init__(scheduler)
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            loss = super().training_step(batch, batch_idx)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            if batch_idx == 1:
                self.lr_schedulers().step()

    model = _run(Manual(_halving(interval="step")), max_epochs=1)
    assert model.train_lrs == [1.0, 1.0, 0.5, 0.5]


def test_scheduler_state_is_in_the_checkpoint(tmp_path):
    model = _run(LrRecorder(_halving(interval="step")), max_epochs=1)
    path = tmp_path / "s.ckpt"
    model.trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=True)["lr_schedulers"]
    assert state[0]["last_epoch"] == 4 and state[0]["_last_lr"] == [0.0625]


class CutsEpochOne(LrRecorder):
    """Returns -1 from `on_train_batch_start` at batch 2 of epoch 1: the epoch ends there, untrained."""

    def on_train_batch_start(self, batch, batch_idx):
        super().on_train_batch_start(batch, batch_idx)
        return -1 if (self.current_epoch, batch_idx) == (1, 2) else None


def test_an_epoch_a_module_cuts_short_steps_its_schedulers_as_at_its_last_batch():
    # as Lightning: the batch that ends the epoch counts as its last, so a step-interval scheduler steps
    # for it, and an epoch-interval one and ReduceLROnPlateau step at the epoch's end
    model = _run(CutsEpochOne(_halving(interval="step")), max_epochs=3)
    # 4 steps, 2 steps and the cut batch, 4 steps: 10 halvings in all
    assert model.train_lrs == [0.5**i for i in range(4)] + [0.5**4, 0.5**5, 0.5**6] + [0.5**i for i in range(7, 11)]
    model = _run(CutsEpochOne(_halving()), max_epochs=3)
    assert model.train_lrs == [1.0] * 4 + [0.5] * 3 + [0.25] * 4

    def plateau(opt):
        return {
            "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5),
            "monitor": "metric",
        }

    model = _run(CutsEpochOne(plateau, val_metric=[1.0, 1.0, 1.0]), val=True, max_epochs=3)
    # epoch 1 ends before its validation: the plateau steps on epoch 0's stale value, which did not improve
    assert model.val_lrs == [1.0, 0.5] and model.trainer.optimizers[0].param_groups[0]["lr"] == 0.25


def test_plateau_steps_at_the_end_of_an_epoch_of_unknown_length():
    # an iterable dataset has no length: the epoch's end is known when its data runs out, as in Lightning
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(loader(n=16).dataset)

    def plateau(opt):
        return {
            "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5),
            "monitor": "metric",
        }

    model = LrRecorder(plateau, val_metric=[1.0, 1.0, 1.0])
    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(model, torch.utils.data.DataLoader(Stream(), batch_size=4), loader(n=4))
    assert model.val_lrs == [1.0, 1.0, 0.5] and trainer.optimizers[0].param_groups[0]["lr"] == 0.25


class _SwapsSchedulersAtStep2(ember.Callback):
    """Replaces ``trainer.strategy.lr_scheduler_configs`` with ``make(optimizer)`` after the second step."""

    def __init__(self, make: Any):
        self.make = make

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 2:
            trainer.strategy.lr_scheduler_configs = self.make(trainer.optimizers[0])


def _halving_every_step(opt: torch.optim.Optimizer) -> list[LRSchedulerConfig]:
    return [LRSchedulerConfig(torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5), interval="step")]


def test_schedulers_set_in_the_middle_of_an_epoch_take_effect_from_the_next_epoch():
    # Lightning reads the list after every batch; Ember once an epoch (docs/compat.md, "Smaller ones")
    class Plain(LrRecorder):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1.0)

    added = _run(Plain(None), callbacks=[_SwapsSchedulersAtStep2(_halving_every_step)])
    assert added.train_lrs == [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]
    removed = _run(LrRecorder(_halving(interval="step")), callbacks=[_SwapsSchedulersAtStep2(lambda opt: [])])
    assert removed.train_lrs == [1.0, 0.5, 0.25, 0.125, 0.0625, 0.0625, 0.0625, 0.0625]


def test_a_scheduler_that_keeps_its_optimizer_under_another_name_trains():
    # Lightning reads `scheduler.optimizer` to check it belongs to a returned optimizer (an AttributeError here)
    class OwnScheduler:
        def __init__(self, opt):
            self._opt = opt

        def step(self):
            for group in self._opt.param_groups:
                group["lr"] *= 0.5

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    class SteppedByTheModule(LrRecorder):
        def lr_scheduler_step(self, scheduler, metric):
            scheduler.step()

    model = _run(SteppedByTheModule(OwnScheduler))
    assert model.train_lrs == [1.0] * 4 + [0.5] * 4


def test_the_trainers_scheduler_configs_are_read_only_and_the_strategys_set_them_as_in_lightning():
    trainer = ember.Trainer(logger=False)
    with pytest.raises(AttributeError):
        trainer.lr_scheduler_configs = []
    assert trainer.lr_scheduler_configs == []
