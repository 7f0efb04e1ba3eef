"""The seed document's ``LogModelNorm`` callback, run in a real fit.

It prints the gradient norm at ``on_validation_end``. As in Lightning, the trainer clears the
gradients before each validation (``on_validation_model_zero_grad``), so with a default module the
printed norm is 0; a module that keeps its gradients shows the norm of the last training step.
"""

from __future__ import annotations

import re

from tests.helpers.callback_models import QUIET, make_regressor, train_loader, val_loader

import ember as pl
from ember.callbacks import Callback

Regressor = make_regressor(pl)


class LogModelNorm(Callback):
    """Verbatim from the seed document."""

    def on_validation_end(self, trainer, pl_module):
        total_norm = 0
        for p in pl_module.parameters():
            if p.grad is not None:
                total_norm += p.grad.data.norm(2).item() ** 2
        print(f"Current gradient norm: {total_norm**0.5:.4f}")


class KeepsGradients(Regressor):
    """Keeps the last step's gradients through validation and records their norm, computed by hand."""

    def __init__(self):
        super().__init__()
        self.hand_norms: list[float] = []

    def on_validation_model_zero_grad(self):
        pass

    def on_after_backward(self):
        squares = [float((p.grad.double() ** 2).sum()) for p in self.parameters() if p.grad is not None]
        self.hand_norms.append(sum(squares) ** 0.5)


def _printed_norms(text: str) -> list[str]:
    return re.findall(r"Current gradient norm: (\d+\.\d{4})", text)


def test_prints_after_every_validation_with_gradients_cleared(capsys):
    trainer = pl.Trainer(**QUIET, max_epochs=2, val_check_interval=2, callbacks=[LogModelNorm()])
    trainer.fit(Regressor(), train_loader(), val_loader())
    # the sanity check, then two validations per epoch (4 batches, every 2); all after zero_grad
    assert _printed_norms(capsys.readouterr().out) == ["0.0000"] * 5


def test_printed_norm_matches_hand_computed_norm(capsys):
    model = KeepsGradients()
    trainer = pl.Trainer(
        **QUIET, max_epochs=2, val_check_interval=2, num_sanity_val_steps=0, callbacks=[LogModelNorm()]
    )
    trainer.fit(model, train_loader(), val_loader())
    printed = _printed_norms(capsys.readouterr().out)
    # validation runs after training batches 2 and 4 of each epoch: the norms of those steps' gradients
    expected = [f"{model.hand_norms[i]:.4f}" for i in (1, 3, 5, 7)]
    assert printed == expected
    assert all(float(n) > 0 for n in printed)
