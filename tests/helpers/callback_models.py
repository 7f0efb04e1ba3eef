"""Tiny modules and data for the built-in callback tests; they run unchanged on Lightning and Ember.

``make_regressor(pl)`` returns a small LightningModule class for the framework module ``pl``
(``ember`` in tests; ``pytorch_lightning`` when the expected values were observed).

Example::

    import ember as pl
    Regressor = make_regressor(pl)
    model = Regressor(optimizers=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    pl.Trainer(max_epochs=1).fit(model, train_loader(), val_loader())
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

QUIET = {
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "enable_checkpointing": False,
    "logger": False,
}


def _dataset(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


def train_loader(n: int = 16, batch_size: int = 4) -> DataLoader:
    return DataLoader(_dataset(n, 0), batch_size=batch_size)


def val_loader(n: int = 8, batch_size: int = 4) -> DataLoader:
    return DataLoader(_dataset(n, 1), batch_size=batch_size)


def make_regressor(pl: Any) -> type:
    """A 4 -> 8 -> 1 MLP (optionally with BatchNorm) logging ``train_loss`` and ``val_loss`` to the bar."""

    class Regressor(pl.LightningModule):
        def __init__(
            self,
            optimizers: Callable[[nn.Module], Any] | None = None,
            batch_norm: bool = False,
            example_input: bool = False,
        ) -> None:
            super().__init__()
            layers: list[nn.Module] = [nn.Linear(4, 8)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(8))
            layers.append(nn.ReLU())
            self.net = nn.Sequential(*layers)
            self.head = nn.Linear(8, 1)
            self._optimizers_fn = optimizers
            if example_input:
                self.example_input_array = torch.zeros(2, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.net(x))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = nn.functional.mse_loss(self(x), y)
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self(x), y), prog_bar=True)

        def test_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("test_loss", nn.functional.mse_loss(self(x), y))

        def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
            return self(batch[0])

        def configure_optimizers(self) -> Any:
            if self._optimizers_fn is not None:
                return self._optimizers_fn(self)
            return torch.optim.SGD(self.parameters(), lr=0.05)

    return Regressor


def make_recording_logger(pl: Any) -> Any:
    """A logger (subclass of the framework's ``Logger``) that remembers every ``log_metrics`` call."""
    base = importlib.import_module(f"{pl.__name__}.loggers").Logger

    class RecordingLogger(base):
        def __init__(self, version: int | str = 7) -> None:
            super().__init__()
            self.calls: list[tuple[dict[str, float], int | None]] = []
            self._version = version

        @property
        def name(self) -> str:
            return "recording"

        @property
        def version(self) -> int | str:
            return self._version

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            self.calls.append((dict(metrics), step))

        def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
            pass

    return RecordingLogger
