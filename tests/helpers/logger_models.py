"""A tiny regression module with known logging cadence, for the logger end-to-end tests.

``LoggedRegressor`` logs ``train_loss`` in ``training_step`` (Lightning default: per step) and
``val_loss`` in ``validation_step`` (per epoch). With ``train_loader()`` (4 batches) and
``val_loader()`` (2 batches) a fit of E epochs has steps 0 .. 4E-1; ``train_loss`` reaches the
loggers at the steps where ``(step + 1) % log_every_n_steps == 0`` and ``val_loss`` at each
epoch's last step.

Example::

    import ember as pl
    trainer = pl.Trainer(max_epochs=2, log_every_n_steps=2, logger=pl.loggers.CSVLogger(tmp_path))
    trainer.fit(LoggedRegressor(), train_loader(), val_loader())
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember as pl

BATCHES_PER_EPOCH = 4


def _data(samples: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 3, generator=generator)
    return TensorDataset(x, x.sum(dim=1, keepdim=True))


def train_loader() -> DataLoader:
    return DataLoader(_data(2 * BATCHES_PER_EPOCH, 0), batch_size=2)


def val_loader() -> DataLoader:
    return DataLoader(_data(4, 1), batch_size=2)


class LoggedRegressor(pl.LightningModule):
    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(3, 1)
        self.example_input_array = torch.zeros(1, 3)

    def forward(self, x):
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
