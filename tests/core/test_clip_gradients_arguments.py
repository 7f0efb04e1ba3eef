"""``self.clip_gradients(...)`` checks its arguments as Lightning does, and refuses a NaN limit."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tests.helpers.core_models import loader, quiet_trainer
from torch import nn

import ember
from ember.utilities import MisconfigurationException


class ClipsInTrainingStep(ember.LightningModule):
    """Manual optimization that calls ``self.clip_gradients(optimizer, **clip_arguments)`` after backward."""

    def __init__(self, **clip_arguments: Any) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.clip_arguments = clip_arguments
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(nn.functional.mse_loss(self.layer(x), y))
        self.clip_gradients(optimizer, **self.clip_arguments)
        optimizer.step()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_bad_algorithm_is_refused_even_without_a_value():
    model = ClipsInTrainingStep(gradient_clip_algorithm="bogus")
    message = r"`gradient_clip_algorithm` bogus is invalid. Allowed algorithms: \['value', 'norm'\]."
    with pytest.raises(MisconfigurationException, match=message):
        quiet_trainer(max_steps=1).fit(model, loader())


def test_a_nan_value_is_refused_as_in_the_trainer():
    model = ClipsInTrainingStep(gradient_clip_val=float("nan"))
    with pytest.raises(MisconfigurationException, match=r"`clip_gradients\(gradient_clip_val=nan\)` must be >= 0"):
        quiet_trainer(max_steps=1).fit(model, loader())
