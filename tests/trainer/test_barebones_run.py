"""What a ``Trainer(barebones=True)`` run says as it starts."""

from __future__ import annotations

from tests.helpers.core_models import CoreModel, loader, quiet_trainer

import ember

_STARTED = (
    "`Trainer(barebones=True)` started running. The progress bar is disabled so you might want to manually print"
    " the progress in your model."
)


def test_every_barebones_call_says_it_started_running_without_a_progress_bar(caplog):
    # Lightning's `Trainer._run` logs it in fit, validate, test and predict alike
    trainer = ember.Trainer(barebones=True, max_steps=1)
    model = CoreModel()
    with caplog.at_level("INFO"):
        trainer.fit(model, loader(n=4))
        trainer.validate(model, loader(n=4))
        trainer.test(model, loader(n=4))
        trainer.predict(model, loader(n=4))
    assert [r.getMessage() for r in caplog.records if "started running" in r.getMessage()] == [_STARTED] * 4
    caplog.clear()
    with caplog.at_level("INFO"):
        quiet_trainer(max_steps=1).fit(model, loader(n=4))
    assert not [r for r in caplog.records if "started running" in r.getMessage()]
