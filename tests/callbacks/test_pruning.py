"""ModelPruning inside a real fit: pruning after validation, then training on."""

from __future__ import annotations

import re

import pytest
import torch
from tests.helpers.callback_models import QUIET, make_regressor, train_loader, val_loader

import ember as pl
from ember.callbacks import Callback, ModelPruning

Regressor = make_regressor(pl)


class GradModes(Callback):
    """Whether inference mode is on in ``on_validation_epoch_end``, per trainer function."""

    def __init__(self):
        self.seen: dict[str, bool] = {}

    def on_validation_epoch_end(self, trainer, pl_module):
        self.seen[trainer.state.fn.value] = torch.is_inference_mode_enabled()


def test_pruning_after_validation_keeps_training_and_fit_validates_under_no_grad():
    # the mask made after a validation epoch is used by the next training step: inside fit, validation runs under
    # no_grad as in Lightning (inference tensors cannot be saved for backward); `validate` alone uses inference mode
    model, modes = Regressor(), GradModes()
    pruning = ModelPruning("l1_unstructured", parameters_to_prune=[(model.head, "weight")], amount=0.25)
    trainer = pl.Trainer(**QUIET, max_epochs=3, num_sanity_val_steps=0, callbacks=[pruning, modes])
    trainer.fit(model, train_loader(), val_loader())
    assert trainer.current_epoch == 3
    assert int((model.head.weight == 0).sum()) >= 2  # made permanent at the end: a plain parameter with zeros
    trainer.validate(model, val_loader(), verbose=False)
    assert modes.seen == {"fit": False, "validate": True}


@pytest.mark.parametrize(
    ("arguments", "error", "says"),
    [
        # text was read a letter at a time ("name: w isn't in ('weight', 'bias')"), a number was "not iterable"
        ({"parameter_names": "weight"}, TypeError, "`ModelPruning(parameter_names='weight')` must be a list of"),
        ({"parameter_names": 2}, TypeError, "e.g. ['weight'] or ['weight', 'bias'], not int"),
        # torch refused these at the first pruning, after an epoch of training; True and NaN failed in Python's words
        ({"amount": -1}, ValueError, "`ModelPruning(amount=-1)`: amount should either be a float in the range"),
        ({"amount": 1.5}, ValueError, "`ModelPruning(amount=1.5)`: amount should either be a float in the range"),
        ({"amount": True}, ValueError, "`ModelPruning(amount=True)`: amount should"),
        ({"amount": float("nan")}, ValueError, "`ModelPruning(amount=nan)`: amount should"),
    ],
)
def test_names_and_amounts_that_would_fail_at_the_first_pruning_are_refused_when_the_callback_is_made(
    arguments, error, says
):
    with pytest.raises(error, match=re.escape(says)):
        ModelPruning("l1_unstructured", **arguments)


def test_the_amounts_and_names_lightning_takes_still_build_the_callback():
    for amount in (0, 3, 0.0, 0.5, 1.0, lambda epoch: 0.1):
        ModelPruning("l1_unstructured", amount=amount)
    for names in (None, [], ("weight",), ["weight", "bias"]):
        ModelPruning("l1_unstructured", parameter_names=names)
