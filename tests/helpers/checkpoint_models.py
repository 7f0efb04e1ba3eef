"""Tiny modules whose logged metrics follow a given sequence, for checkpoint and early-stopping tests,
and ``FakeTrainer``: just what the checkpoint callbacks read, to drive them hook by hook.

Example::

    model = SequenceModel(val_losses=[3.0, 2.0, 2.5])  # val_loss of the 1st, 2nd, 3rd validation
    trainer = ember.Trainer(max_epochs=3, callbacks=[ModelCheckpoint(monitor="val_loss")])
    trainer.fit(model)

    fake = FakeTrainer(tmp_path)
    callback.setup(fake, None, "fit")
    fake.advance(steps=4, epoch=0, metrics={"val_loss": 1.0})
    callback.on_train_epoch_end(fake, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ember.checkpoint import atomic_save, remove_checkpoint
from ember.core.module import LightningModule

QUIET = {
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "logger": False,
    "num_sanity_val_steps": 0,
}


def _loader(samples: int, batch_size: int) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 4, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=batch_size)


class SequenceModel(LightningModule):
    """Logs ``val_loss`` = ``val_losses[i]`` at the i-th validation run (sanity checks don't count),
    and ``train_metric`` = ``train_metrics[global_step]`` at each training step (if given).

    ``train_batches`` batches of 2 samples per epoch, ``val_batches`` for validation (turn
    validation off with the trainer's ``limit_val_batches=0``).
    """

    def __init__(
        self,
        val_losses: Sequence[float] = (),
        train_metrics: Sequence[float] | None = None,
        train_batches: int = 4,
        val_batches: int = 2,
        log_val_key: str = "val_loss",
    ) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.val_losses = list(val_losses)
        self.train_metrics = None if train_metrics is None else list(train_metrics)
        self.train_batches = train_batches
        self.val_batches = val_batches
        self.log_val_key = log_val_key
        self.validation_runs = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        if self.train_metrics is not None:
            value = self.train_metrics[min(self.global_step, len(self.train_metrics) - 1)]
            self.log("train_metric", torch.tensor(float(value)))
        return loss

    def validation_step(self, batch, batch_idx):
        if self.trainer.sanity_checking or not self.val_losses:
            return
        value = self.val_losses[min(self.validation_runs, len(self.val_losses) - 1)]
        self.log(self.log_val_key, torch.tensor(float(value)))

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            self.validation_runs += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return _loader(2 * self.train_batches, 2)

    def val_dataloader(self):
        return _loader(2 * self.val_batches, 2)


class FakeStrategy:
    def __init__(self) -> None:
        self.broadcasts = 0
        self.reduced: list[tuple[bool, bool]] = []

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        self.broadcasts += 1
        return obj

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        self.reduced.append((decision, all))
        return decision

    def barrier(self, name: str | None = None) -> None:
        pass

    def remove_checkpoint(self, filepath: Any) -> None:
        remove_checkpoint(filepath)


class FakeLogger:
    def __init__(self, save_dir: Any = None, name: str = "lightning_logs", version: Any = 0) -> None:
        self.save_dir, self.name, self.version = save_dir, name, version
        self.saved: list[Any] = []

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.saved.append(checkpoint_callback.last_model_path or checkpoint_callback.best_model_path)


class FakeTrainer:
    """Holds the counters and metrics; ``save_checkpoint`` writes a small dict atomically."""

    def __init__(self, root: Any, **overrides: Any) -> None:
        self.default_root_dir = str(root)
        self.global_step = 0
        self.current_epoch = 0
        self.callback_metrics: dict[str, torch.Tensor] = {}
        self.fast_dev_run = False
        self.sanity_checking = False
        self.state = SimpleNamespace(fn="fit", stage="train")
        self.strategy = FakeStrategy()
        self.is_global_zero = True
        self.global_rank = 0
        self.world_size = 1
        self.loggers: list[Any] = []
        self.ckpt_path: str | None = None
        self._run = SimpleNamespace(evaluation_batches_run=False)
        self.num_val_batches = [2]
        self.val_check_interval = 1.0
        self.val_check_batch: float = float("inf")
        self.num_training_batches: float = 4
        self.check_val_every_n_epoch = 1
        self.enable_validation = True
        self.should_stop = False
        self.saved: list[tuple[str, bool]] = []
        self.callbacks: list[Any] = []
        for key, value in overrides.items():
            setattr(self, key, value)

    @property
    def logger(self) -> Any:
        return self.loggers[0] if self.loggers else None

    def advance(self, steps: int = 0, epoch: int | None = None, metrics: dict[str, float] | None = None) -> None:
        self.global_step += steps
        if epoch is not None:
            self.current_epoch = epoch
        if metrics is not None:
            self.callback_metrics.update({k: torch.tensor(float(v)) for k, v in metrics.items()})

    def save_checkpoint(self, filepath: str, weights_only: bool = False, storage_options: Any = None) -> None:
        checkpoint: dict[str, Any] = {
            "epoch": self.current_epoch,
            "global_step": self.global_step,
            "state_dict": {"w": torch.tensor(float(self.global_step))},
        }
        if not weights_only:
            checkpoint["callbacks"] = {cb.state_key: cb.state_dict() for cb in self.callbacks}
            checkpoint["optimizer_states"] = [{}]
        self.saved.append((str(filepath), weights_only))
        if self.is_global_zero:
            atomic_save(checkpoint, filepath, storage_options)
