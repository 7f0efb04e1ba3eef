"""The ``LightningOptimizer`` that ``self.optimizers()`` returns behaves as the optimizer it wraps: its
``zero_grad`` is the optimizer's own, called with the arguments given, and Lightning's private helpers that
libraries call (``_to_lightning_optimizer``, ``_strategy``) work."""

from __future__ import annotations

from typing import Any

import torch
from tests.helpers.core_models import loader, quiet_trainer
from torch import nn

import ember


class NoArgumentZeroGrad(torch.optim.SGD):
    """An optimizer whose ``zero_grad`` takes no argument."""

    def zero_grad(self) -> None:  # type: ignore[override]
        super().zero_grad()


class KeepsGradsByDefault(torch.optim.SGD):
    """An optimizer whose ``zero_grad`` fills the gradients with zeros unless told otherwise (Lookahead-style)."""

    def zero_grad(self, set_to_none: bool = False) -> None:
        super().zero_grad(set_to_none=set_to_none)


class ZeroGradOnce(ember.LightningModule):
    """Manual optimization: one step, then ``zero_grad()`` with no argument; records the bias gradient after it."""

    def __init__(self, optimizer_class: type[torch.optim.Optimizer]) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.optimizer_class = optimizer_class
        self.layer = nn.Linear(4, 1)
        self.grad_after_zero_grad: Any = "not run"

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(nn.functional.mse_loss(self.layer(x), y))
        optimizer.step()
        optimizer.zero_grad()
        self.grad_after_zero_grad = self.layer.bias.grad

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_class(self.parameters(), lr=0.1)


def test_zero_grad_of_an_optimizer_that_takes_no_argument_runs():
    model = ZeroGradOnce(NoArgumentZeroGrad)
    quiet_trainer(max_steps=1).fit(model, loader())
    assert model.grad_after_zero_grad is None


def test_zero_grad_keeps_the_optimizers_own_default():
    model = ZeroGradOnce(KeepsGradsByDefault)
    quiet_trainer(max_steps=1).fit(model, loader())
    assert torch.equal(model.grad_after_zero_grad, torch.zeros(1))
