"""Models for the tuner tests: a regression with a known good learning rate range, and a model whose
steps "run out of memory" above a chosen batch size.

Example::

    model = BudgetModel(budget=40)           # batches larger than 40 raise torch.OutOfMemoryError
    Tuner(trainer).scale_batch_size(model)   # -> 32 in power mode
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember as pl

QUIET = {
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "enable_checkpointing": False,
    "logger": False,
}


def regression_dataset(n: int = 160, features: int = 4, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    w = torch.linspace(-1.0, 1.0, features)
    return TensorDataset(x, (x @ w).unsqueeze(1))


class LinearRegression(pl.LightningModule):
    """Linear regression on unit-variance inputs trained with SGD.

    The MSE Hessian is about 2I, so plain SGD converges fastest near lr=0.5 and diverges above lr=1:
    the loss falls steeply for learning rates between about 0.01 and 0.5.
    """

    def __init__(self, lr: float = 1e-3, optimizer: str = "sgd", batch_size: int = 16, n: int = 160) -> None:
        super().__init__()
        self.lr = lr
        self.optimizer_name = optimizer
        self.batch_size = batch_size
        self.layer = nn.Linear(4, 1)
        with torch.no_grad():
            self.layer.weight.fill_(2.0)
            self.layer.bias.fill_(1.0)
        self.dataset = regression_dataset(n)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.layer(x), y))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)

    def configure_optimizers(self) -> Any:
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.lr)
        return torch.optim.SGD(self.parameters(), lr=self.lr)


# what each device's allocator says when it runs out (BudgetModel's `error`)
OUT_OF_MEMORY_MESSAGES = {
    "cuda-message": "CUDA out of memory. Tried to allocate 2.00 GiB",
    "mps-message": "MPS backend out of memory (MPS allocated: 1.00 GB, other allocations: 0 bytes)",
    "xpu-message": "XPU out of memory. Tried to allocate 2.00 GiB",
    "cublas-message": "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
}


class BudgetModel(pl.LightningModule):
    """Raises ``torch.OutOfMemoryError`` from any step that sees a batch larger than ``budget``.

    ``batch_size`` lives on the model (``where="model"``), in ``self.hparams`` (``"hparams"``) or only on
    the datamodule (``"datamodule"``); ``sizes`` records every batch size each step saw.
    """

    def __init__(
        self, budget: int = 40, batch_size: int = 2, where: str = "model", n: int = 512, error: str = "oom"
    ) -> None:
        super().__init__()
        if where == "hparams":
            self.save_hyperparameters("batch_size")
        elif where == "model":
            self.batch_size = batch_size
        self.budget = budget
        self.error = error
        self.layer = nn.Linear(4, 1)
        self.dataset = regression_dataset(n)
        self.sizes: list[int] = []

    def _check(self, batch: Any) -> torch.Tensor:
        x, y = batch
        self.sizes.append(len(x))
        if len(x) > self.budget:
            if self.error == "oom":
                raise torch.OutOfMemoryError(f"simulated: a batch of {len(x)} does not fit")
            if self.error in OUT_OF_MEMORY_MESSAGES:
                raise RuntimeError(OUT_OF_MEMORY_MESSAGES[self.error])
            raise RuntimeError("a bug that has nothing to do with memory")
        return nn.functional.mse_loss(self.layer(x), y)

    def _size(self) -> int:
        if hasattr(self, "batch_size"):
            return self.batch_size
        if "batch_size" in self.hparams:
            return self.hparams.batch_size
        return self.trainer.datamodule.batch_size

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._check(batch)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._check(batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._check(batch)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._check(batch)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self._size())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self._size())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self._size())

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self._size())

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class BatchSizeData(pl.LightningDataModule):
    """Holds ``batch_size`` for a model that has none; serves the model's dataset."""

    def __init__(self, batch_size: int = 2, n: int = 512) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.dataset = regression_dataset(n)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)


class TrainConfig:
    """A library's own configuration object among the hyperparameters (NeuralProphet keeps its config so)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs


class ConfiguredRegression(LinearRegression):
    """``LinearRegression`` whose saved hyperparameters hold a ``TrainConfig`` (not plain data)."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(batch_size=2)
        self.save_hyperparameters()
