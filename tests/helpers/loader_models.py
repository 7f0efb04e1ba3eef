"""Data that names its samples, a module that records the samples it trains on, and a callback that saves a
checkpoint at a step: for the tests of where training data continues after a resume."""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.utils.data import Dataset

import ember
from ember.callbacks import Callback


class Indexed(Dataset):
    """Sample ``i`` is ``tensor([i])``."""

    def __init__(self, samples: int) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(index)])


class Recorder(ember.LightningModule):
    """Records the samples of every batch it trains on; with a ``folder``, each rank writes them there at the
    end of fit (``<name>-rank<r>.pt``), with its loader's class, ``tag`` attribute and sampler."""

    def __init__(self, folder: str | os.PathLike | None = None, name: str = "run") -> None:
        super().__init__()
        self.folder, self.name = folder, name
        self.layer = nn.Linear(1, 1)
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch.flatten().long().tolist())
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def on_train_end(self) -> None:
        if self.folder is None:
            return
        loader = self.trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        record = {
            "seen": self.seen,
            "loader": type(loader).__name__,
            "tag": getattr(loader, "tag", None),
            "sampler": (type(sampler).__name__, getattr(sampler, "shuffle", None)),
        }
        torch.save(record, os.path.join(self.folder, f"{self.name}-rank{self.global_rank}.pt"))


class SaveAt(Callback):
    """Saves a checkpoint to ``path`` once ``step`` optimizer steps have run."""

    def __init__(self, path: str | os.PathLike, step: int) -> None:
        self.path, self.step = str(path), step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)
