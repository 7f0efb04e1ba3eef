"""``validate``/``test``/``predict`` called from a hook of a running ``fit``: the fit goes on and ends as itself.

Lightning's fit fails after such a call made in a module hook (a bare ``AssertionError``) and skips
``on_fit_end`` after one made in a callback hook; Ember gives the fit its run and state back (docs/compat.md).
"""

from __future__ import annotations

import pytest
from tests.helpers.core_models import CoreModel, loader, quiet_trainer

from ember.callbacks import Callback


def _state(trainer):
    state = trainer.state
    return state.fn.value, getattr(state.stage, "value", state.stage), state.status.value


class CallsInside(CoreModel):
    """Calls ``entry`` at the end of the first training epoch, and logs in every training step."""

    def __init__(self, entry: str) -> None:
        super().__init__()
        self.entry = entry
        self.states: dict[str, tuple] = {}

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("train_loss", loss)  # the second epoch logs into the fit's loop again
        return loss

    def on_train_epoch_end(self):
        if self.current_epoch == 0:
            getattr(self.trainer, self.entry)(self, loader(n=8), **({} if self.entry == "predict" else {"verbose": 0}))
            self.states["after the inner call"] = _state(self.trainer)

    def on_train_end(self):
        self.states["on_train_end"] = _state(self.trainer)

    def on_fit_end(self):
        self.states["on_fit_end"] = _state(self.trainer)

    def teardown(self, stage):
        self.states.setdefault(f"teardown {stage.value}", _state(self.trainer))


@pytest.mark.parametrize("entry", ["validate", "test", "predict"])
def test_a_call_in_a_module_hook_inside_fit_gives_the_fit_its_state_back(entry):
    model, trainer = CallsInside(entry), quiet_trainer(max_epochs=2)
    trainer.fit(model, loader(n=8), loader(n=8))
    fitting = ("fit", "train", "running")
    assert model.states == {
        f"teardown {entry}": (entry, entry, "running"),
        "after the inner call": fitting,
        "on_train_end": fitting,
        "on_fit_end": fitting,
        "teardown fit": fitting,
    }
    assert _state(trainer) == ("fit", None, "finished")
    assert trainer.current_epoch == 2 and trainer.global_step == 4
    assert "train_loss" in trainer.callback_metrics


def test_a_call_in_a_callback_hook_inside_fit_keeps_its_results_readable():
    class TestsAfterValidation(Callback):
        def on_validation_end(self, trainer, pl_module):
            trainer.test(pl_module, loader(n=12), verbose=False)
            self.after = (_state(trainer), trainer.callback_metrics["test_loss"].item())

        def on_fit_end(self, trainer, pl_module):
            self.at_fit_end = _state(trainer)

    callback = TestsAfterValidation()
    trainer = quiet_trainer(max_epochs=1, callbacks=[callback])
    trainer.fit(CoreModel(), loader(n=8), loader(n=8))
    (state, test_loss) = callback.after
    assert state == ("fit", "validate", "running")
    assert callback.at_fit_end == ("fit", "train", "running")
    assert trainer.callback_metrics["test_loss"].item() == test_loss  # the inner call's values stay readable
    assert "val_loss" in trainer.callback_metrics  # and so do the fit's
    assert trainer.test_loop.batch_progress.total.completed == 3  # the inner call's loop, as in Lightning
