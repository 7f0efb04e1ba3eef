"""Loop-limit cases that run unchanged on Lightning and on Ember.

``run_limits_case(pl, case)`` fits a tiny counting model under one grid entry of ``LIMIT_CASES``
and returns what the loops did: step calls, optimizer steps, when validation ran, the final
counters and the learning rate after every training batch. The reference fixture stores the
Lightning result of every case; Ember's tests run the same function with ``ember``.

Example::

    import ember as pl
    got = run_limits_case(pl, LIMIT_CASES["val_check_interval_0.5"])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

try:  # imported as tests.helpers.limits_models, or by path with tests/helpers on sys.path
    from .hook_recording import RandomDataset
except ImportError:
    from hook_recording import RandomDataset

# 5 training batches and 4 validation batches of 2 samples each, unless a case says otherwise.
BASE_TRAINER_ARGS = {
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "logger": False,
    "enable_checkpointing": False,
}

_STEP_LR = {"kind": "step_lr", "interval": "step", "frequency": 1}


def _case(trainer: dict, **model: Any) -> dict:
    return {"trainer_args": trainer, "model_args": model}


LIMIT_CASES: dict[str, dict] = {
    "max_epochs_2": _case({"max_epochs": 2}),
    "max_epochs_0": _case({"max_epochs": 0}),
    "max_steps_7": _case({"max_steps": 7}),
    "max_epochs_3_max_steps_4": _case({"max_epochs": 3, "max_steps": 4}),
    "max_epochs_-1_max_steps_12": _case({"max_epochs": -1, "max_steps": 12}),
    "should_stop_epoch0_batch1": _case({"max_epochs": 3}, stop_at=[0, 1]),
    "min_epochs_3_should_stop": _case({"min_epochs": 3, "max_epochs": 5}, stop_at=[0, 1]),
    "min_steps_8_should_stop": _case({"min_steps": 8, "max_epochs": 5}, stop_at=[0, 1]),
    "limit_train_batches_3": _case({"max_epochs": 2, "limit_train_batches": 3}),
    "limit_train_batches_0.5": _case({"max_epochs": 2, "limit_train_batches": 0.5}),
    "limit_train_batches_0": _case({"max_epochs": 2, "limit_train_batches": 0}),
    "limit_val_batches_2": _case({"max_epochs": 2, "limit_val_batches": 2}),
    "limit_val_batches_0.5": _case({"max_epochs": 2, "limit_val_batches": 0.5}),
    "limit_val_batches_0": _case({"max_epochs": 2, "limit_val_batches": 0}),
    "val_check_interval_0.5": _case({"max_epochs": 2, "val_check_interval": 0.5}),
    "val_check_interval_0.25": _case({"max_epochs": 2, "val_check_interval": 0.25}),
    "val_check_interval_2": _case({"max_epochs": 2, "val_check_interval": 2}),
    "val_check_interval_7_no_epoch_check": _case(
        {"max_epochs": 3, "val_check_interval": 7, "check_val_every_n_epoch": None}
    ),
    "check_val_every_n_epoch_2": _case({"max_epochs": 3, "check_val_every_n_epoch": 2}),
    "num_sanity_val_steps_0": _case({"max_epochs": 1, "num_sanity_val_steps": 0}),
    "num_sanity_val_steps_2": _case({"max_epochs": 1, "num_sanity_val_steps": 2}),
    "num_sanity_val_steps_-1": _case({"max_epochs": 1, "num_sanity_val_steps": -1}),
    "fast_dev_run_true": _case({"fast_dev_run": True}),
    "fast_dev_run_3": _case({"fast_dev_run": 3}),
    "overfit_batches_2": _case({"max_epochs": 2, "overfit_batches": 2}),
    "accumulate_3_odd_batches": _case({"max_epochs": 2, "accumulate_grad_batches": 3}, scheduler=_STEP_LR),
    "sched_step": _case({"max_epochs": 2}, scheduler=_STEP_LR),
    "sched_step_freq_2": _case({"max_epochs": 2}, scheduler={"kind": "step_lr", "interval": "step", "frequency": 2}),
    "sched_epoch": _case({"max_epochs": 3}, scheduler={"kind": "step_lr", "interval": "epoch", "frequency": 1}),
    "sched_epoch_freq_2": _case({"max_epochs": 4}, scheduler={"kind": "step_lr", "interval": "epoch", "frequency": 2}),
    "sched_plateau_epoch_val_metric": _case(
        {"max_epochs": 4}, scheduler={"kind": "plateau", "interval": "epoch", "frequency": 1, "monitor": "val_metric"}
    ),
    "sched_plateau_step_train_metric": _case(
        {"max_epochs": 2}, scheduler={"kind": "plateau", "interval": "step", "frequency": 1, "monitor": "train_metric"}
    ),
}


def make_counting_module(pl: Any) -> type:
    """Return ``CountingModule``: counts loop events and records the lr after each batch."""

    class CountingModule(pl.LightningModule):
        """``Linear(32, 2)``; ``stop_at=[epoch, batch_idx]`` sets ``trainer.should_stop`` there.

        Logs ``val_metric`` = current epoch (worsens every epoch) and ``train_metric`` = 1.0
        (never improves), so ReduceLROnPlateau schedules are fully predictable.
        """

        def __init__(self, train_len: int = 10, val_len: int = 8, stop_at=None, scheduler: dict | None = None) -> None:
            super().__init__()
            self.layer = nn.Linear(32, 2)
            self.train_len, self.val_len = train_len, val_len
            self.stop_at = list(stop_at) if stop_at else None
            self.scheduler_spec = scheduler
            self.counts = {"training_step": 0, "validation_step": 0, "sanity_validation_step": 0, "optimizer_step": 0}
            self.train_batches_per_epoch: dict[int, int] = {}
            self.val_runs: list = []  # [current_epoch, global_step] at each real validation end
            self.lrs: list = []

        def forward(self, x):
            return self.layer(x)

        def training_step(self, batch, batch_idx):
            self.counts["training_step"] += 1
            epoch = self.trainer.current_epoch
            self.train_batches_per_epoch[epoch] = self.train_batches_per_epoch.get(epoch, 0) + 1
            self.log("train_metric", 1.0)
            out = self(batch)
            return nn.functional.mse_loss(out, torch.ones_like(out))

        def on_before_optimizer_step(self, optimizer):
            self.counts["optimizer_step"] += 1

        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.lrs.append(float(self.trainer.optimizers[0].param_groups[0]["lr"]))
            if self.stop_at == [self.trainer.current_epoch, batch_idx]:
                self.trainer.should_stop = True

        def validation_step(self, batch, batch_idx):
            key = "sanity_validation_step" if self.trainer.sanity_checking else "validation_step"
            self.counts[key] += 1
            self.log("val_metric", float(self.trainer.current_epoch))

        def on_validation_epoch_end(self):
            if not self.trainer.sanity_checking:
                self.val_runs.append([self.trainer.current_epoch, self.trainer.global_step])

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=1.0)
            spec = self.scheduler_spec
            if spec is None:
                return optimizer
            if spec["kind"] == "plateau":
                scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
            else:
                scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
            config = {"scheduler": scheduler, "interval": spec["interval"], "frequency": spec["frequency"]}
            if "monitor" in spec:
                config["monitor"] = spec["monitor"]
            return {"optimizer": optimizer, "lr_scheduler": config}

        def train_dataloader(self):
            return DataLoader(RandomDataset(32, self.train_len), batch_size=2)

        def val_dataloader(self):
            return DataLoader(RandomDataset(32, self.val_len, seed=1), batch_size=2)

    return CountingModule


def _number(value: Any) -> Any:
    """JSON-safe counter: ``inf`` becomes the string ``"inf"``."""
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return value


def run_limits_case(pl: Any, case: dict) -> dict:
    """Fit a ``CountingModule`` under ``case`` and return the observed loop behaviour."""
    model = make_counting_module(pl)(**case["model_args"])
    trainer = pl.Trainer(**{**BASE_TRAINER_ARGS, **case["trainer_args"]})
    trainer.fit(model)
    return {
        **model.counts,
        "global_step": int(trainer.global_step),
        "current_epoch": int(trainer.current_epoch),
        "train_batches_per_epoch": [model.train_batches_per_epoch[k] for k in sorted(model.train_batches_per_epoch)],
        "val_runs": model.val_runs,
        "num_training_batches": _number(trainer.num_training_batches),
        "num_val_batches": [_number(n) for n in trainer.num_val_batches],
        "num_sanity_val_batches": [_number(n) for n in trainer.num_sanity_val_batches],
        "val_check_batch": _number(trainer.val_check_batch),
        "lrs": model.lrs,
        "final_lr": float(trainer.optimizers[0].param_groups[0]["lr"]),
    }
