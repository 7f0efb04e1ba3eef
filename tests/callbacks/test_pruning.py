"""ModelPruning inside a real fit: pruning after validation, then training on."""

from __future__ import annotations

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
