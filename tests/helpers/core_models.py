"""Tiny modules, data and a quiet Trainer for the LightningModule / optimizer / precision tests.

Example::

    from tests.helpers.core_models import CoreModel, loader, quiet_trainer
    model = CoreModel()
    quiet_trainer(max_epochs=1).fit(model, loader())
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember

QUIET: dict[str, Any] = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
}


def dataset(n: int = 16, seed: int = 0) -> TensorDataset:
    """``n`` samples of ``x`` (4 features) and ``y = sum(x) + noise`` (1 target)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


def loader(n: int = 16, batch_size: int = 4, seed: int = 0) -> DataLoader:
    """An unshuffled DataLoader over :func:`dataset`."""
    return DataLoader(dataset(n, seed), batch_size=batch_size)


def quiet_trainer(**kwargs: Any) -> ember.Trainer:
    """A Trainer with no logger, checkpoint, progress bar, summary or sanity check (overridable)."""
    return ember.Trainer(**{**QUIET, **kwargs})


class CoreModel(ember.LightningModule):
    """A 4 -> 1 linear regressor; ``optimizers`` (a function of the module) replaces plain SGD."""

    def __init__(self, lr: float = 0.1, optimizers: Callable[[nn.Module], Any] | None = None) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.lr = lr
        self._optimizers_fn = optimizers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", nn.functional.mse_loss(self(x), y))

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self(batch[0])

    def configure_optimizers(self) -> Any:
        if self._optimizers_fn is not None:
            return self._optimizers_fn(self)
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class ManualCoreModel(CoreModel):
    """``CoreModel`` in manual optimization: each batch zeroes, backpropagates and steps its optimizer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(super().training_step(batch, batch_idx))
        optimizer.step()


def manual_sgd_run(
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    init: dict[str, torch.Tensor],
    lr: float,
    accumulate: int = 1,
    clip: Callable[[list[torch.Tensor]], None] | None = None,
    epochs: int = 1,
) -> dict[str, torch.Tensor]:
    """The hand-written loop the trainer must reproduce: SGD on ``CoreModel``'s layer, with
    optional gradient accumulation (loss divided by ``accumulate``; step at window end or on the
    last batch) and an optional clipping function applied right before each step."""
    layer = nn.Linear(4, 1)
    layer.load_state_dict({k.removeprefix("layer."): v.clone() for k, v in init.items()})
    opt = torch.optim.SGD(layer.parameters(), lr=lr)
    for _ in range(epochs):
        for i, (x, y) in enumerate(batches):
            if i % accumulate == 0:
                opt.zero_grad()
            loss = nn.functional.mse_loss(layer(x), y)
            (loss / accumulate if accumulate != 1 else loss).backward()
            if (i + 1) % accumulate == 0 or i + 1 == len(batches):
                if clip is not None:
                    clip(list(layer.parameters()))
                opt.step()
    return {f"layer.{k}": v for k, v in layer.state_dict().items()}


class RecordingModel(ember.LightningModule):
    """One weight; records the values of each training batch (a tensor, or a tuple holding one) in ``seen``."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.seen: list[list[int]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        values = batch[0] if isinstance(batch, (list, tuple)) else batch
        self.seen.append(values.flatten().int().tolist())
        return self.layer(values).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)
