"""SpikeDetection's decisions and state; ThroughputMonitor's clock waits for the device only where it logs."""

from __future__ import annotations

import math
import re

import pytest
import torch
from tests.helpers.callback_models import QUIET, make_recording_logger, make_regressor, train_loader, val_loader

import ember as pl
from ember.callbacks import SpikeDetection, ThroughputMonitor
from ember.callbacks.spike import TrainingSpikeException

Regressor = make_regressor(pl)


class _Trainer:
    """Just what SpikeDetection reads from a trainer."""

    default_root_dir = "."
    global_rank = 0

    def __init__(self, tmp_path):
        self.default_root_dir = str(tmp_path)
        self.strategy = pl.Trainer(**QUIET).strategy


def _feed(spike, trainer, losses):
    for i, loss in enumerate(losses):
        spike.on_train_batch_end(trainer, None, torch.tensor(loss), None, i)


def test_a_loss_far_above_the_running_mean_raises_and_records_the_batches(tmp_path):
    spike = SpikeDetection(window=3, warmup=1)
    _feed(spike, _Trainer(tmp_path), [1.0, 0.9, 1.1, 0.95])
    with pytest.raises(TrainingSpikeException, match="Training spike detected in batch 4"):
        spike.on_train_batch_end(_Trainer(tmp_path), None, {"loss": torch.tensor(50.0)}, None, 4)
    assert spike.bad_batches == [3, 4]
    assert (tmp_path / "skip_batches.json").read_text().split() == ["[", "3,", "4", "]"]


def test_improvements_and_small_rises_are_no_spike(tmp_path):
    spike = SpikeDetection(window=2, atol=0.5, rtol=None)
    _feed(spike, _Trainer(tmp_path), [3.0, 2.0, 2.4, 1.0, 1.3])
    assert spike.bad_batches == []


def test_non_finite_losses(tmp_path):
    with pytest.raises(TrainingSpikeException):
        _feed(SpikeDetection(), _Trainer(tmp_path), [1.0, math.nan])
    lenient = SpikeDetection(finite_only=False)
    _feed(lenient, _Trainer(tmp_path), [1.0, math.nan, 1.0])  # the NaN is neither a spike nor averaged
    assert lenient.state_dict()["window"] == [1.0, 1.0]


def test_state_round_trip_keeps_the_window_in_order(tmp_path):
    spike = SpikeDetection(window=3)
    _feed(spike, _Trainer(tmp_path), [1.0, 1.1, 1.2, 1.3])
    state = spike.state_dict()
    assert state["window"] == pytest.approx([1.1, 1.2, 1.3]) and state["last_val"] == pytest.approx(1.3)
    restored = SpikeDetection()
    restored.load_state_dict(dict(state))
    assert restored.state_dict() == state


def test_a_one_element_loss_of_any_shape_is_checked_like_a_number(tmp_path):
    spike = SpikeDetection(window=3, warmup=1)
    trainer = _Trainer(tmp_path)
    for i, loss in enumerate([1.0, 0.9, 1.1, 0.95]):
        spike.on_train_batch_end(trainer, None, torch.tensor(loss).view(1, 1), None, i)
    with pytest.raises(TrainingSpikeException, match="batch 4"):
        spike.on_train_batch_end(trainer, None, torch.tensor([[50.0]]), None, 4)


def test_outputs_must_be_a_loss_or_a_mapping(tmp_path):
    with pytest.raises(TypeError, match="outputs have to be of type torch.Tensor or Mapping, got list"):
        SpikeDetection().on_train_batch_end(_Trainer(tmp_path), None, [1.0], None, 0)


def test_throughput_waits_for_the_device_only_at_log_points(monkeypatch):
    waits = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: waits.append(1))

    class OnCuda(ThroughputMonitor):
        def setup(self, trainer, pl_module, stage):
            super().setup(trainer, pl_module, stage)
            self._cuda = True  # the clock would need the device: count the waits

    logger = make_recording_logger(pl)()
    trainer = pl.Trainer(
        **{**QUIET, "logger": logger},
        max_epochs=1,
        log_every_n_steps=3,
        num_sanity_val_steps=0,
        callbacks=[OnCuda(batch_size_fn=lambda b: b[0].shape[0], window_size=2)],
    )
    trainer.fit(Regressor(), train_loader(n=36), val_loader(n=12))  # 9 training and 3 validation batches
    logged = [step for metrics, step in logger.calls if "train/samples" in metrics or "validate/samples" in metrics]
    assert len(waits) == len(logged) == 3 + 1


def test_throughput_steps_of_an_evaluation_count_on_across_calls():
    logger = make_recording_logger(pl)()
    monitor = ThroughputMonitor(batch_size_fn=lambda batch: batch[0].shape[0], window_size=2)
    trainer = pl.Trainer(**{**QUIET, "logger": logger}, log_every_n_steps=2, callbacks=[monitor])
    model = Regressor()
    trainer.validate(model, val_loader(), verbose=False)
    trainer.validate(model, val_loader(), verbose=False)
    steps = [step for metrics, step in logger.calls if "validate/batches" in metrics]
    batches = [metrics["validate/batches"] for metrics, step in logger.calls if "validate/batches" in metrics]
    assert steps == list(range(2, 2 * len(steps) + 1, 2)) and batches == steps  # as Lightning's loop totals


def test_throughput_logs_an_evaluation_by_the_runs_batches_at_the_loops_step():
    # as Lightning: `log_every_n_steps` counts the batches of the current run; the step is the loop's total
    logger = make_recording_logger(pl)()
    monitor = ThroughputMonitor(batch_size_fn=lambda batch: batch[0].shape[0])
    trainer = pl.Trainer(**{**QUIET, "logger": logger}, log_every_n_steps=2, callbacks=[monitor])
    model = Regressor()
    for _ in range(2):
        trainer.validate(model, val_loader(n=12), verbose=False)  # 3 batches a run
    assert [step for metrics, step in logger.calls if "validate/batches" in metrics] == [2, 5]

    logger = make_recording_logger(pl)()
    trainer = pl.Trainer(
        **{**QUIET, "logger": logger},
        log_every_n_steps=2,
        max_steps=3,
        val_check_interval=1,
        callbacks=[ThroughputMonitor(batch_size_fn=lambda batch: batch[0].shape[0])],
    )
    trainer.fit(Regressor(), train_loader(), val_loader(n=12))
    assert [step for metrics, step in logger.calls if "validate/batches" in metrics] == [2, 5, 8]


def test_throughput_window_and_world_size_below_their_least_value_are_named():
    # Lightning stops at the same point (`fit`'s setup) with a bare AssertionError
    from ember.utilities.throughput import Throughput

    monitor = ThroughputMonitor(batch_size_fn=lambda batch: batch[0].shape[0], window_size=1)
    trainer = pl.Trainer(**{**QUIET, "logger": make_recording_logger(pl)()}, max_steps=1, callbacks=[monitor])
    with pytest.raises(
        ValueError, match=r"`window_size` must be an int of at least 2 \(rates need two updates\), got 1"
    ):
        trainer.fit(Regressor(), train_loader())
    with pytest.raises(ValueError, match="`world_size` must be at least 1, got 0"):
        Throughput(world_size=0)


@pytest.mark.parametrize("window_size", [float("nan"), 10.0, "10", True])
def test_a_throughput_window_that_is_no_int_is_named(window_size):
    # a float failed in the window's deque with "an integer is required", text with "'<' not supported"
    from ember.utilities.throughput import Throughput

    with pytest.raises(
        ValueError,
        match=re.escape(f"`window_size` must be an int of at least 2 (rates need two updates), got {window_size!r}."),
    ):
        Throughput(window_size=window_size)


@pytest.mark.parametrize("window", [0, 0.5, float("nan"), None, "3"])
def test_a_spike_window_that_is_no_positive_int_gets_lightnings_message(window):
    # Lightning's words (its `window` is torchmetrics' `Running`); Ember's own check failed on types with
    # "'<' not supported" and let a NaN through to "zeros(): argument 'size' must be tuple of ints"
    with pytest.raises(
        ValueError, match=re.escape(f"Expected argument `window` to be a positive integer but got {window}")
    ):
        SpikeDetection(window=window)
    assert SpikeDetection(window=True).window == 1  # (an int to Python, and to Lightning)


@pytest.mark.parametrize("validates", [True, False])
def test_throughput_keeps_a_validation_meter_only_where_fit_validates(validates):
    # as Lightning's `setup`: fit's validation gets its own `Throughput` where the fit validates
    monitor = ThroughputMonitor(batch_size_fn=lambda batch: batch[0].shape[0])
    trainer = pl.Trainer(**{**QUIET, "logger": make_recording_logger(pl)()}, max_epochs=1, callbacks=[monitor])
    trainer.fit(make_regressor(pl)(), train_loader(n=16), val_loader(n=8) if validates else None)
    assert sorted(monitor._throughputs) == (["train", "validate"] if validates else ["train"])
