"""The ``LightningOptimizer`` that ``self.optimizers()`` returns behaves as the optimizer it wraps: its
``zero_grad`` is the optimizer's own, called with the arguments given, and Lightning's private helpers that
libraries call (``_to_lightning_optimizer``, ``_strategy``) work."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tests.helpers.core_models import loader, quiet_trainer
from torch import nn

import ember
from ember.core.optimizer import LightningOptimizer


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


class WrapsTheOptimizerItself(ember.LightningModule):
    """Steps through ``LightningOptimizer._to_lightning_optimizer(...)`` of the optimizer (``raw``: the torch one
    inside ``self.optimizers()``), in manual optimization or in an ``optimizer_step`` override."""

    def __init__(self, automatic: bool, raw: bool) -> None:
        super().__init__()
        self.automatic_optimization = automatic
        self.raw = raw
        torch.manual_seed(0)
        self.layer = nn.Linear(4, 1)
        self.seen: list[tuple[bool, bool]] = []  # (the wrapper given, its `_strategy` is the trainer's)
        self.hooks_before_step = 0

    def wrap(self, optimizer: Any) -> Any:
        given = optimizer.optimizer if self.raw else optimizer
        wrapper = LightningOptimizer._to_lightning_optimizer(given, self.trainer.strategy)
        self.seen.append((wrapper is optimizer, wrapper._strategy is self.trainer.strategy))
        assert isinstance(wrapper, LightningOptimizer) and isinstance(wrapper, torch.optim.SGD)
        return wrapper

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y) * 100
        if self.automatic_optimization:
            return loss
        optimizer = self.wrap(self.optimizers())
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        return None

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        self.wrap(optimizer).step(closure=optimizer_closure)

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        self.hooks_before_step += 1

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def clipped_weights_of_a_default_run() -> torch.Tensor:
    model = WrapsTheOptimizerItself(automatic=True, raw=False)
    model.optimizer_step = ember.LightningModule.optimizer_step.__get__(model)  # type: ignore[method-assign]
    quiet_trainer(max_steps=2, gradient_clip_val=0.01).fit(model, loader(n=8))
    return model.layer.weight.detach()


@pytest.mark.parametrize("raw", [False, True], ids=["wrapper", "torch optimizer"])
def test_to_lightning_optimizer_in_an_optimizer_step_override_steps_with_the_hooks_and_clipping(raw: bool):
    model = WrapsTheOptimizerItself(automatic=True, raw=raw)
    quiet_trainer(max_steps=2, gradient_clip_val=0.01).fit(model, loader(n=8))
    assert model.seen == [(True, True), (True, True)]
    assert model.hooks_before_step == 2
    assert torch.equal(model.layer.weight, clipped_weights_of_a_default_run())


def test_to_lightning_optimizer_in_manual_optimization():
    model = WrapsTheOptimizerItself(automatic=False, raw=False)
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, loader(n=8))
    assert model.seen == [(True, True), (True, True)]
    assert trainer.global_step == 2

    # the torch optimizer gets a new wrapper, as in Lightning: it steps through the trainer, with the hooks,
    # and (as Lightning's) its steps are not counted, as the loop counts only the steps of its own wrappers
    model = WrapsTheOptimizerItself(automatic=False, raw=True)
    before = model.layer.weight.detach().clone()
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, loader(n=8))
    assert model.seen == [(False, True), (False, True)]
    assert model.hooks_before_step == 2
    assert not torch.equal(model.layer.weight, before)
    assert trainer.global_step == 0


def test_a_wrapper_without_a_trainer_has_no_strategy():
    assert LightningOptimizer(torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1))._strategy is None


def test_stepping_a_wrapper_no_trainer_runs_says_where_to_step_instead():
    # Lightning: a bare AssertionError; the parameters are left untouched on both
    layer = nn.Linear(1, 1)
    before = layer.weight.detach().clone()
    layer(torch.ones(1, 1)).sum().backward()
    wrapper = LightningOptimizer(torch.optim.SGD(layer.parameters(), lr=0.1))
    with pytest.raises(ember.utilities.exceptions.MisconfigurationException, match="that no Trainer runs: call it on"):
        wrapper.step()
    assert torch.equal(layer.weight, before)
