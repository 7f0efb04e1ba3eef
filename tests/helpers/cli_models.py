"""Tiny modules and datamodules that CLI tests name by class path (``tests.helpers.cli_models.Regressor``).

Example::

    LightningCLI(Regressor, RegressionData, args=["fit", "--trainer.max_epochs", "1"])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember as pl
from ember.cli import OptimizerCallable


class RegressionData(pl.LightningDataModule):
    """64 samples of ``y = sum(x)`` with ``num_features`` inputs."""

    def __init__(self, batch_size: int = 16, num_samples: int = 64, num_features: int = 4) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_samples = num_samples
        self.num_features = num_features
        g = torch.Generator().manual_seed(0)
        x = torch.randn(num_samples, num_features, generator=g)
        self.dataset = TensorDataset(x, x.sum(1, keepdim=True))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)


class SavingRegressionData(RegressionData):
    """``RegressionData`` that records its arguments with ``save_hyperparameters()``."""

    def __init__(self, batch_size: int = 16, num_samples: int = 64, num_features: int = 4) -> None:
        super().__init__(batch_size, num_samples, num_features)
        self.save_hyperparameters()


class Regressor(pl.LightningModule):
    """An MLP with ``in_features -> hidden -> 1``, SGD at ``lr`` unless the CLI configures an optimizer."""

    def __init__(self, hidden: int = 8, lr: float = 0.05, in_features: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", nn.functional.mse_loss(self(x), y))

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self(batch[0])

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class BareRegressor(Regressor):
    """The same model without its own ``configure_optimizers``: the CLI's optimizer group provides one."""

    configure_optimizers = pl.LightningModule.configure_optimizers  # type: ignore[assignment]


class RecordingCallback(pl.Callback):
    """Counts the fits it saw; configurable from YAML (``trainer.callbacks``)."""

    def __init__(self, label: str = "x") -> None:
        self.label = label
        self.fit_starts = 0

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.fit_starts += 1


class InjectedRegressor(pl.LightningModule):
    """A model given its layer and optimizer by the config (``--model.backbone=torch.nn.Linear``), as Lightning
    users write them: what ``save_hyperparameters()`` records is the config, not the objects."""

    def __init__(self, backbone: nn.Module, optimizer: OptimizerCallable = torch.optim.SGD, scale: float = 1.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone = backbone
        self.optimizer = optimizer
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x) * self.scale

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self) -> Any:
        return self.optimizer(self.parameters())


class Teacher(pl.LightningModule):
    """A LightningModule that another one builds inside its ``__init__``."""

    def __init__(self, width: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()


class Student(Regressor):
    """Builds a ``Teacher`` while it is being built: each records its own hyperparameters."""

    def __init__(self, hidden: int = 8, lr: float = 0.05, in_features: int = 4) -> None:
        super().__init__(hidden, lr, in_features)
        self.teacher = Teacher(width=7)
