"""Timer: duration formats, elapsed/remaining time, stopping a long run, and resuming the budget."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from tests.helpers.callback_models import QUIET, make_regressor, train_loader

import ember as pl
import ember.callbacks.timer as timer_module
from ember.callbacks import Timer
from ember.utilities.exceptions import MisconfigurationException

Regressor = make_regressor(pl)


class FakeClock:
    """``time.monotonic`` that advances ``tick`` seconds each time it is read."""

    def __init__(self, tick: float = 1.0) -> None:
        self.now = 1000.0
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timer_module.time, "monotonic", fake)
    return fake


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        ("00:00:00:05", 5),
        ("01:02:03:04", 93784),
        (timedelta(minutes=2), 120),
        ({"hours": 1, "minutes": 1}, 3660),
        (None, None),
    ],
)
def test_duration_formats(duration, seconds):
    assert Timer(duration=duration).time_remaining() == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "00:00:5", "1:2:3:4"])
def test_bad_duration_string(bad):
    with pytest.raises(MisconfigurationException, match="Expected a string in the format DD:HH:MM:SS"):
        Timer(duration=bad)


def test_bad_interval():
    with pytest.raises(MisconfigurationException, match=r"Timer\(interval=batch\)"):
        Timer(interval="batch")


def test_elapsed_and_remaining_per_stage(clock):
    timer = Timer(duration="00:00:01:00")
    assert timer.start_time() is None and timer.time_elapsed() == 0
    timer.on_train_start(None, None)  # reads 1001
    assert timer.start_time("train") == 1001
    assert timer.time_elapsed("train") == 1  # reads 1002
    timer.on_train_end(None, None)  # 1003
    assert timer.end_time() == 1003
    assert timer.time_elapsed() == 2
    assert timer.time_remaining() == 58
    assert timer.time_elapsed("validate") == 0
    timer.on_validation_start(None, None)
    timer.on_validation_end(None, None)
    assert timer.time_elapsed("validate") == 1
    with pytest.raises(ValueError, match="is not a valid RunningStage"):
        timer.time_elapsed("training")


def test_stops_a_long_run_mid_epoch(clock, caplog):
    timer = Timer(duration="00:00:00:10")
    trainer = pl.Trainer(**QUIET, max_epochs=1000, limit_val_batches=0, callbacks=[timer])
    with caplog.at_level(logging.INFO):
        trainer.fit(Regressor(), train_loader())
    # one clock read per check after the start: the 10-second budget runs out within 10 steps
    assert 0 < trainer.global_step <= 10
    assert trainer.current_epoch < 5
    assert timer.time_elapsed() >= 10


def test_epoch_interval_finishes_the_epoch(clock):
    timer = Timer(duration="00:00:00:02", interval="epoch")
    trainer = pl.Trainer(**QUIET, max_epochs=100, limit_val_batches=0, callbacks=[timer])
    trainer.fit(Regressor(), train_loader())  # 4 batches per epoch
    assert trainer.global_step % 4 == 0
    assert trainer.global_step < 400


def test_state_dict_and_resumed_budget(clock):
    timer = Timer(duration="00:00:01:00")
    timer.on_train_start(None, None)
    timer.on_train_end(None, None)
    state = timer.state_dict()
    assert set(state["time_elapsed"]) == {"train", "sanity_check", "validate", "test", "predict"}
    assert state["time_elapsed"]["train"] == 1

    resumed = Timer(duration="00:00:01:00")
    resumed.load_state_dict({"time_elapsed": {"train": 50}})
    assert resumed.time_elapsed() == 50
    assert resumed.time_remaining() == 10


def test_a_timer_that_never_ran_reports_the_int_zero_as_lightning_does():
    """Lightning's unstarted Timer says ``0`` (an int), in ``time_elapsed`` and in the state a checkpoint keeps."""
    timer = Timer()
    assert repr(timer.time_elapsed()) == "0"
    assert repr(timer.time_elapsed("validate")) == "0"
    assert {repr(value) for value in timer.state_dict()["time_elapsed"].values()} == {"0"}


def test_spent_budget_stops_before_training(clock):
    timer = Timer(duration="00:00:00:30")
    timer.load_state_dict({"time_elapsed": {"train": 40}})
    trainer = pl.Trainer(**QUIET, max_epochs=10, limit_val_batches=0, callbacks=[timer])
    trainer.fit(Regressor(), train_loader())
    assert trainer.global_step == 0


def test_timer_state_is_saved_in_checkpoints(tmp_path, clock):
    timer = Timer(duration="00:01:00:00")
    trainer = pl.Trainer(**QUIET, max_epochs=1, limit_val_batches=0, callbacks=[timer], default_root_dir=tmp_path)
    trainer.fit(Regressor(), train_loader())
    path = tmp_path / "t.ckpt"
    trainer.save_checkpoint(path)
    import torch

    ckpt = torch.load(path, weights_only=True)
    assert ckpt["callbacks"]["Timer"]["time_elapsed"]["train"] == pytest.approx(timer.time_elapsed(), abs=2)


def test_trainer_max_time_adds_a_timer(clock):
    trainer = pl.Trainer(**QUIET, max_epochs=1000, limit_val_batches=0, max_time={"seconds": 10})
    trainer.fit(Regressor(), train_loader())
    timers = [c for c in trainer.callbacks if isinstance(c, Timer)]
    assert len(timers) == 1 and timers[0].time_remaining() <= 0
    assert 0 < trainer.global_step <= 10


def test_resumed_fit_continues_the_budget(tmp_path, clock):
    first = Timer(duration="00:00:00:20")
    trainer = pl.Trainer(**QUIET, max_epochs=1, limit_val_batches=0, callbacks=[first], default_root_dir=tmp_path)
    trainer.fit(Regressor(), train_loader())
    spent = first.time_elapsed()
    assert 0 < spent < 20
    trainer.save_checkpoint(tmp_path / "one_epoch.ckpt")

    fresh = pl.Trainer(**QUIET, max_epochs=1000, limit_val_batches=0, callbacks=[Timer(duration="00:00:00:20")])
    fresh.fit(Regressor(), train_loader(), ckpt_path=tmp_path / "one_epoch.ckpt")
    resumed = [c for c in fresh.callbacks if isinstance(c, Timer)][0]
    assert resumed.time_elapsed() >= 20
    # only what was left of the 20 seconds was trained: far fewer steps than a fresh budget allows
    steps_after_resume = fresh.global_step - trainer.global_step
    assert 0 < steps_after_resume <= 20 - int(spent)


@pytest.mark.parametrize("verbose", [True, False])
def test_stop_message(clock, verbose):
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect()
    logger = logging.getLogger("ember")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        trainer = pl.Trainer(
            **QUIET, max_epochs=1000, limit_val_batches=0, callbacks=[Timer(duration="00:00:00:10", verbose=verbose)]
        )
        trainer.fit(Regressor(), train_loader())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    stops = [m for m in messages if m.startswith("Time limit reached.")]
    if verbose:
        assert len(stops) == 1
        assert re.fullmatch(r"Time limit reached\. Elapsed time is 0:00:1\d\. Signaling Trainer to stop\.", stops[0])
    else:
        assert stops == []


def test_a_timer_given_to_a_second_trainer_counts_from_that_fits_start(clock):
    """Lightning keeps the first fit's end time, so the second fit's elapsed time is negative while it trains
    (and its duration cannot stop it)."""
    timer, seen = Timer(), []

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(timer.time_elapsed())

    for _ in range(2):
        trainer = pl.Trainer(**QUIET, max_epochs=1, limit_val_batches=0, callbacks=[timer, Probe()])
        trainer.fit(Regressor(), train_loader())
    assert seen and all(elapsed > 0 for elapsed in seen)


def test_a_number_of_seconds_is_refused_with_the_forms_it_takes():
    # Lightning fails with an AttributeError on the int
    with pytest.raises(
        MisconfigurationException, match=r"`Timer\(duration=5\)` is not supported: pass a 'DD:HH:MM:SS'"
    ):
        Timer(duration=5)
