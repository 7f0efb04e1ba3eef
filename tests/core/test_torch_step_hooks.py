"""torch's optimizer step hooks and grad mode see a step as with ``optimizer.step(closure)``: a pre-hook runs
before the closure (so before ``training_step`` and ``on_before_optimizer_step``), and a closure stepped under
``torch.no_grad()`` still computes gradients, as torch's ``step`` runs it under ``enable_grad``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from tests.helpers.core_models import loader, quiet_trainer
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

import ember


class RecordsStepEvents(ember.LightningModule):
    """Records the closure, the hooks and torch's step hooks; ``mode`` chooses how the step runs:
    ``"automatic"``, ``"closure"`` (``opt.step(closure=...)``), ``"plain"`` (backward, then ``opt.step()``) or
    ``"closure_under_no_grad"``. ``hook_from_batch`` registers the torch hooks in ``on_train_batch_start`` of
    that batch instead of in ``configure_optimizers``; None registers none."""

    def __init__(self, mode: str, hook_from_batch: int | None = -1) -> None:
        super().__init__()
        self.automatic_optimization = mode == "automatic"
        self.mode = mode
        self.hook_from_batch = hook_from_batch
        torch.manual_seed(0)
        self.layer = nn.Linear(4, 1)
        self.events: list[str] = []

    def register_torch_hooks(self, optimizer: torch.optim.Optimizer) -> None:
        def pre_hook(*_: Any) -> None:
            grad = self.layer.bias.grad
            self.events.append("torch_pre" if grad is None or not grad.any() else "torch_pre(has grad)")

        optimizer.register_step_pre_hook(pre_hook)
        optimizer.register_step_post_hook(lambda *_: self.events.append("torch_post"))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        if self.hook_from_batch == -1:
            self.register_torch_hooks(optimizer)
        return optimizer

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.hook_from_batch:
            self.register_torch_hooks(self.trainer.optimizers[0])
        self.events.append(f"batch {batch_idx}")

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        self.events.append("on_before_optimizer_step")

    def loss(self, batch: Any) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.automatic_optimization:
            self.events.append("training_step")
            return self.loss(batch)
        optimizer = self.optimizers()

        def closure() -> torch.Tensor:
            self.events.append("closure")
            optimizer.zero_grad()
            loss = self.loss(batch)
            self.manual_backward(loss)
            return loss

        if self.mode == "plain":
            closure()
            optimizer.step()
        elif self.mode == "closure_under_no_grad":
            with torch.no_grad():
                optimizer.step(closure=closure)
        else:
            optimizer.step(closure=closure)
        return None


def fit(model: RecordsStepEvents, batches: int = 1) -> list[str]:
    quiet_trainer(max_steps=batches).fit(model, loader(n=4 * batches))
    return model.events


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("automatic", ["torch_pre", "training_step", "on_before_optimizer_step", "torch_post"]),
        ("closure", ["torch_pre", "closure", "on_before_optimizer_step", "torch_post"]),
        ("plain", ["closure", "torch_pre(has grad)", "on_before_optimizer_step", "torch_post"]),
    ],
)
def test_a_torch_step_pre_hook_runs_before_the_closure_as_in_torch(mode: str, expected: list[str]):
    assert fit(RecordsStepEvents(mode)) == ["batch 0", *expected]


def test_a_torch_step_hook_registered_during_the_run_counts_from_the_next_step():
    events = fit(RecordsStepEvents("automatic", hook_from_batch=1), batches=2)
    assert events == [
        "batch 0",
        "training_step",
        "on_before_optimizer_step",
        "batch 1",
        "torch_pre(has grad)",  # the first batch's gradients: automatic optimization zeroes them in the closure
        "training_step",
        "on_before_optimizer_step",
        "torch_post",
    ]


@pytest.fixture
def global_step_hooks() -> Iterator[list[str]]:
    calls: list[str] = []
    handles = [
        register_optimizer_step_pre_hook(lambda *_: calls.append("global_pre")),
        register_optimizer_step_post_hook(lambda *_: calls.append("global_post")),
    ]
    yield calls
    for handle in handles:
        handle.remove()


def test_a_global_torch_step_pre_hook_runs_before_the_closure(global_step_hooks: list[str]):
    model = RecordsStepEvents("automatic", hook_from_batch=None)
    original_training_step = model.training_step

    def training_step(batch: Any, batch_idx: int) -> Any:
        global_step_hooks.append("training_step")
        return original_training_step(batch, batch_idx)

    model.training_step = training_step  # type: ignore[method-assign]
    fit(model)
    assert global_step_hooks == ["global_pre", "training_step", "global_post"]


def test_a_closure_stepped_under_no_grad_trains():
    model = RecordsStepEvents("closure_under_no_grad", hook_from_batch=None)
    before = model.layer.weight.detach().clone()
    events = fit(model)
    assert events == ["batch 0", "closure", "on_before_optimizer_step"]
    assert not torch.equal(model.layer.weight, before)
