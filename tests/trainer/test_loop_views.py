"""What Lightning's loop objects tell about their batches: ``max_batches``, ``num_dataloaders`` and the
``batch_progress`` of the batch under way, before, during and after each call.

Each expected value was observed on Lightning 2.6.6 with the same program.
"""

from __future__ import annotations

import math

import pytest
from tests.helpers.core_models import CoreModel, loader, quiet_trainer

from ember.callbacks import Callback


def _loops(trainer):
    return {
        "fit_val": trainer.fit_loop.epoch_loop.val_loop,
        "validate": trainer.validate_loop,
        "test": trainer.test_loop,
        "predict": trainer.predict_loop,
    }


def _counts(trainer):
    """``max_batches`` of each loop (and ``fit_loop``'s), and the number of dataloaders of those that know it."""
    known = {}
    for name, loop in _loops(trainer).items():
        try:
            known[name] = loop.num_dataloaders
        except AssertionError:  # Lightning's loop asserts it has dataloaders
            pass
    max_batches = {name: loop.max_batches for name, loop in _loops(trainer).items()}
    return trainer.fit_loop.max_batches, max_batches, known


class Seen(Callback):
    def __init__(self) -> None:
        self.seen: dict[str, tuple] = {}

    def setup(self, trainer, pl_module, stage):
        self.seen.setdefault(f"setup {trainer.state.fn.value}", _counts(trainer))

    def on_validation_batch_end(self, trainer, pl_module, *args):
        key = "sanity" if trainer.sanity_checking else f"validation in {trainer.state.fn.value}"
        self.seen.setdefault(key, _counts(trainer))

    def on_predict_batch_end(self, trainer, pl_module, *args):
        self.seen.setdefault("predict", _counts(trainer))


class TwoValidationLoaders(CoreModel):
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        return super().validation_step(batch, batch_idx)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return super().predict_step(batch, batch_idx)


def test_max_batches_and_num_dataloaders_of_each_loop_before_during_and_after_each_call():
    seen = Seen()
    trainer = quiet_trainer(
        callbacks=[seen], max_epochs=1, limit_train_batches=3, limit_val_batches=2, num_sanity_val_steps=1
    )
    model = TwoValidationLoaders()
    empty = {"fit_val": [], "validate": [], "test": [], "predict": []}
    assert _counts(trainer) == (math.inf, empty, {})

    trainer.validate(model, [loader(n=12, batch_size=2), loader(n=2, batch_size=2)], verbose=False)
    assert seen.seen["validation in validate"] == (math.inf, {**empty, "validate": [2, 1]}, {"validate": 2})
    assert _counts(trainer) == seen.seen["validation in validate"]

    trainer.fit(model, loader(n=16, batch_size=4), loader(n=16, batch_size=4))
    # the sanity check cuts every evaluation loop's counts to `num_sanity_val_steps`, as Lightning's property does
    assert seen.seen["sanity"] == (math.inf, {**empty, "fit_val": [1], "validate": [1, 1]}, {"fit_val": 1})
    assert seen.seen["validation in fit"] == (3, {**empty, "fit_val": [2], "validate": [2, 1]}, {"fit_val": 1})
    assert _counts(trainer) == seen.seen["validation in fit"]

    three = [loader(n=4 * batches, batch_size=4) for batches in (1, 2, 3)]
    trainer.predict(model, three, return_predictions=False)
    after_predict = (3, {"fit_val": [2], "validate": [2, 1], "test": [], "predict": [1, 2, 3]}, {"predict": 3})
    assert seen.seen["predict"] == _counts(trainer) == after_predict

    seen.seen.clear()
    trainer.validate(model, loader(n=8, batch_size=4), verbose=False)
    # in its `setup`, before it loads its loaders, the loop still holds the last validate's counts
    assert seen.seen["setup validate"] == (3, after_predict[1], {})
    assert _counts(trainer) == (3, {**after_predict[1], "validate": [2]}, {"validate": 1})


def test_a_second_calls_setup_reads_the_counts_of_the_call_before_it():
    seen = Seen()
    trainer = quiet_trainer(callbacks=[seen])
    trainer.test(CoreModel(), loader(n=8, batch_size=4), verbose=False)
    seen.seen.clear()
    trainer.test(CoreModel(), loader(n=4, batch_size=4), verbose=False)
    assert seen.seen["setup test"][1]["test"] == [2]
    assert trainer.test_loop.max_batches == trainer.num_test_batches == [1]


class ProgressInBatch(Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []

    def _record(self, progress):
        self.seen.append((progress.current.ready, progress.current.completed, progress.total.completed))

    def on_validation_batch_end(self, trainer, pl_module, *args):
        self._record(trainer.validate_loop.batch_progress)

    def on_test_batch_start(self, trainer, pl_module, *args):
        self._record(trainer.test_loop.batch_progress)


@pytest.mark.parametrize("entry", ["validate", "test"])
def test_an_evaluation_batch_under_way_counts_as_ready_but_not_completed(entry):
    callback = ProgressInBatch()
    trainer = quiet_trainer(callbacks=[callback])
    getattr(trainer, entry)(CoreModel(), loader(n=12, batch_size=4), verbose=False)
    assert callback.seen == [(1, 0, 0), (2, 1, 1), (3, 2, 2)]
    progress = getattr(trainer, f"{entry}_loop").batch_progress
    assert (progress.current.ready, progress.current.completed) == (3, 3)


# what `repr` gives on Lightning 2.6.6 after 2 epochs of 3 batches with 2 validation batches each
LIGHTNING_PROGRESS_REPRS = [
    "_Progress(total=_ProcessedTracker(ready=2, completed=2, started=2, processed=2),"
    " current=_ProcessedTracker(ready=2, completed=2, started=2, processed=2))",
    "_BatchProgress(total=_ProcessedTracker(ready=6, completed=6, started=6, processed=6),"
    " current=_ProcessedTracker(ready=3, completed=3, started=3, processed=3), is_last_batch=True)",
    "_ProcessedTracker(ready=6, completed=6, started=6, processed=6)",
    "_OptimizationProgress(optimizer=_OptimizerProgress(step=_Progress(total=_ReadyCompletedTracker(ready=6,"
    " completed=6), current=_ReadyCompletedTracker(ready=3, completed=3)), zero_grad=_Progress("
    "total=_StartedTracker(ready=6, completed=6, started=6), current=_StartedTracker(ready=3, completed=3,"
    " started=3))))",
    "_ReadyCompletedTracker(ready=6, completed=6)",
    "_Progress(total=_ReadyCompletedTracker(ready=0, completed=0), current=_ReadyCompletedTracker(ready=0,"
    " completed=0))",
    "_BatchProgress(total=_ProcessedTracker(ready=2, completed=2, started=2, processed=2),"
    " current=_ProcessedTracker(ready=2, completed=2, started=2, processed=2), is_last_batch=True)",
]


def test_the_progress_objects_print_as_lightnings_dataclasses():
    printed: list[str] = []

    class PrintProgress(Callback):
        def on_train_end(self, trainer, pl_module):
            loop = trainer.fit_loop.epoch_loop
            printed.extend(
                repr(progress)
                for progress in (
                    trainer.fit_loop.epoch_progress,
                    loop.batch_progress,
                    loop.batch_progress.total,
                    loop.automatic_optimization.optim_progress,
                    loop.automatic_optimization.optim_progress.optimizer.step.total,
                    loop.manual_optimization.optim_step_progress,
                    loop.val_loop.batch_progress,
                )
            )

    trainer = quiet_trainer(
        callbacks=[PrintProgress()], max_epochs=2, limit_train_batches=3, limit_val_batches=2, num_sanity_val_steps=0
    )
    trainer.fit(CoreModel(), loader(32), loader(8))
    assert printed == LIGHTNING_PROGRESS_REPRS


@pytest.mark.parametrize(
    ("max_epochs", "max_steps", "done"),
    [(5, -1, False), (-1, 10, False), (0, -1, True), (-1, 0, True), (None, 0, True)],
)
def test_fit_loop_done_before_a_fit_says_whether_the_limits_leave_anything_to_train(max_epochs, max_steps, done):
    # Lightning's own cases (`test_trainer_max_steps_and_epochs_fit_loop_done`)
    assert quiet_trainer(max_epochs=max_epochs, max_steps=max_steps).fit_loop.done is done


def test_fit_loop_done_after_a_fit_that_finished_stopped_or_failed():
    finished = quiet_trainer(max_epochs=2)
    finished.fit(CoreModel(), loader(n=8))
    assert finished.fit_loop.done

    class Stops(CoreModel):
        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.trainer.should_stop = True

    stopped = quiet_trainer(max_epochs=5)
    stopped.fit(Stops(), loader(n=8))
    assert stopped.current_epoch == 1 and stopped.fit_loop.done

    class Fails(CoreModel):
        def training_step(self, batch, batch_idx):
            if self.global_step == 3:
                raise ValueError("the step failed")
            return super().training_step(batch, batch_idx)

    failed = quiet_trainer(max_epochs=5)
    with pytest.raises(ValueError, match="the step failed"):
        failed.fit(Fails(), loader(n=8))
    assert not failed.fit_loop.done  # (how a program tells a fit that ended early from one that completed)

    # no training batches: done; training turned off (`limit_train_batches=0`) loads none, and is not, as in Lightning
    empty = quiet_trainer(max_epochs=5)
    empty.fit(CoreModel(), loader(n=0))
    assert empty.fit_loop.done
    off = quiet_trainer(max_epochs=5, limit_train_batches=0)
    off.fit(CoreModel(), loader(n=8))
    assert not off.fit_loop.done
