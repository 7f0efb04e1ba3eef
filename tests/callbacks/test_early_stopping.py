"""EarlyStopping: each stopping rule, its reason, and the check it stops at."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from tests.helpers.checkpoint_models import QUIET, FakeTrainer, SequenceModel

import ember
from ember.callbacks.early_stopping import EarlyStopping, EarlyStoppingReason
from ember.checkpoint import atomic_save, load_checkpoint
from ember.utilities.exceptions import MisconfigurationException

needs_trainer = pytest.mark.skipif(not hasattr(ember, "Trainer"), reason="needs ember.Trainer")


def _run(values, tmp_path, **kwargs):
    """Feed ``values`` one check at a time; return (callback, the 0-based check it stopped at or None)."""
    trainer = FakeTrainer(tmp_path)
    callback = EarlyStopping("val_loss", **kwargs)
    callback.setup(trainer, None, "fit")
    for epoch, value in enumerate(values):
        trainer.advance(steps=1, epoch=epoch, metrics={"val_loss": value})
        callback.on_train_epoch_end(trainer, None)
        callback.on_validation_end(trainer, None)  # only one of the two hooks checks
        if trainer.should_stop:
            return callback, epoch
    return callback, None


def test_patience_counts_checks(tmp_path):
    callback, stopped = _run([5, 4, 4, 4, 4, 1], tmp_path, patience=3)
    assert stopped == 4
    assert callback.stopped_epoch == 4
    assert callback.wait_count == 3
    assert callback.best_score == torch.tensor(4.0)
    assert callback.stopping_reason is EarlyStoppingReason.PATIENCE_EXHAUSTED
    assert callback.stopping_reason_message == (
        "Monitored metric val_loss did not improve in the last 3 records. Best score: 4.000. Signaling Trainer to stop."
    )


def test_improvement_resets_wait(tmp_path):
    callback, stopped = _run([5, 6, 4, 6, 3, 6, 6], tmp_path, patience=2)
    assert stopped == 6
    assert callback.best_score == torch.tensor(3.0)


def test_min_delta_min_mode(tmp_path):
    # 4.5 and 4.6 are within min_delta=0.5 of the best (5.0): no improvement
    callback, stopped = _run([5.0, 4.5, 4.6, 3.0], tmp_path, patience=2, min_delta=0.5)
    assert stopped == 2
    assert callback.min_delta == -0.5
    callback, stopped = _run([5.0, 4.4, 3.8, 3.2], tmp_path, patience=1, min_delta=0.5)
    assert stopped is None


def test_min_delta_max_mode_and_sign(tmp_path):
    callback, stopped = _run([1.0, 1.05, 1.08], tmp_path, mode="max", patience=2, min_delta=-0.1)
    assert callback.min_delta == 0.1  # stored positive for max whatever sign was given
    assert stopped == 2
    callback, stopped = _run([1.0, 1.2, 1.4, 1.3], tmp_path, mode="max", patience=1)
    assert stopped == 3
    assert callback.best_score == pytest.approx(1.4)


def test_stopping_threshold(tmp_path):
    callback, stopped = _run([1.0, 0.5, 0.09, 0.01], tmp_path, stopping_threshold=0.1, patience=10)
    assert stopped == 2
    assert callback.stopping_reason is EarlyStoppingReason.STOPPING_THRESHOLD
    assert callback.stopping_reason_message.startswith("Stopping threshold reached: val_loss = ")
    assert "< 0.1. Signaling Trainer to stop." in callback.stopping_reason_message
    # equal to the threshold is not beyond it
    _, stopped = _run([1.0, 0.1], tmp_path, stopping_threshold=0.1)
    assert stopped is None


def test_divergence_threshold(tmp_path):
    callback, stopped = _run([1.0, 5.0, 11.0], tmp_path, divergence_threshold=10.0, patience=10)
    assert stopped == 2
    assert callback.stopping_reason is EarlyStoppingReason.DIVERGENCE_THRESHOLD
    assert "Divergence threshold reached: val_loss = " in callback.stopping_reason_message
    assert "> 10.0" in callback.stopping_reason_message
    callback, stopped = _run([0.9, 0.5, 0.05], tmp_path, mode="max", divergence_threshold=0.1)
    assert (stopped, callback.stopping_reason) == (2, EarlyStoppingReason.DIVERGENCE_THRESHOLD)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_metric(tmp_path, bad):
    callback, stopped = _run([1.0, bad], tmp_path, patience=10)
    assert stopped == 1
    assert callback.stopping_reason is EarlyStoppingReason.NON_FINITE_METRIC
    assert (
        "is not finite. Previous best value was 1.000. Signaling Trainer to stop." in callback.stopping_reason_message
    )


def test_check_finite_off(tmp_path):
    _, stopped = _run([1.0, math.nan, 0.5], tmp_path, patience=10, check_finite=False)
    assert stopped is None


def test_rule_order_non_finite_first_then_thresholds(tmp_path):
    # a value both past the stopping threshold and the divergence threshold: stopping threshold wins
    callback, _ = _run([5.0], tmp_path, stopping_threshold=10.0, divergence_threshold=1.0)
    assert callback.stopping_reason is EarlyStoppingReason.STOPPING_THRESHOLD


def test_not_stopped_reason(tmp_path):
    callback, stopped = _run([3, 2, 1], tmp_path)
    assert stopped is None
    assert callback.stopping_reason is EarlyStoppingReason.NOT_STOPPED
    assert callback.stopping_reason_message is None


class WarmUpEarlyStopping(EarlyStopping):
    """A subclass the way libraries write one (scvi-tools' ``LoudEarlyStopping``): Lightning's contract is
    ``_evaluate_stopping_criteria(current) -> (should_stop, message)``, the rule that fires setting
    ``stopping_reason``."""

    def __init__(self, *args, warmup: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.warmup, self.checks, self.seen = warmup, 0, []

    def _evaluate_stopping_criteria(self, current):
        self.checks += 1
        if self.checks <= self.warmup:
            return False, f"no stopping in the first {self.warmup} checks"
        should_stop, message = super()._evaluate_stopping_criteria(current)
        self.seen.append((should_stop, message, self.stopping_reason))
        return should_stop, message


def test_a_subclass_overrides_the_criteria_with_lightnings_contract(tmp_path, caplog):
    trainer = FakeTrainer(tmp_path)
    callback = WarmUpEarlyStopping("val_loss", warmup=2, patience=1, verbose=True)
    callback.setup(trainer, None, "fit")
    with caplog.at_level(logging.INFO):
        for epoch, value in enumerate([1.0, 9.0, 2.0, 3.0, 0.5]):
            trainer.advance(steps=1, epoch=epoch, metrics={"val_loss": value})
            callback.on_train_epoch_end(trainer, None)
            if trainer.should_stop:
                break
    # the first two checks are skipped, the third improves on inf, the fourth stops (patience 1)
    assert callback.stopped_epoch == 3
    assert [entry[0] for entry in callback.seen] == [False, True]
    assert callback.seen[0][2] is EarlyStoppingReason.NOT_STOPPED
    assert callback.stopping_reason is EarlyStoppingReason.PATIENCE_EXHAUSTED
    assert callback.stopping_reason_message == callback.seen[1][1]
    assert "no stopping in the first 2 checks" in caplog.text  # the subclass's message is logged as Lightning does


def test_bad_mode():
    with pytest.raises(MisconfigurationException, match="`mode` can be min, max, got avg"):
        EarlyStopping("x", mode="avg")


def test_negative_patience_fails_at_construction():
    # Lightning accepts it and stops at the first check that does not improve
    with pytest.raises(MisconfigurationException, match=r"`EarlyStopping\(patience=-1\)` must be >= 0"):
        EarlyStopping("val_loss", patience=-1)
    assert EarlyStopping("val_loss", patience=0).patience == 0


def test_missing_metric_strict_lists_available(tmp_path):
    trainer = FakeTrainer(tmp_path)
    trainer.advance(metrics={"train_loss": 1.0, "acc": 0.5})
    callback = EarlyStopping("val_loss")
    callback.setup(trainer, None, "fit")
    with pytest.raises(
        RuntimeError,
        match="Early stopping conditioned on metric `val_loss` which is not available."
        " Pass in or modify your `EarlyStopping` callback to use any of the"
        " following: `train_loss`, `acc`",
    ):
        callback.on_train_epoch_end(trainer, None)


def test_missing_metric_not_strict(tmp_path):
    trainer = FakeTrainer(tmp_path)
    callback = EarlyStopping("val_loss", strict=False)
    callback.setup(trainer, None, "fit")
    callback.on_train_epoch_end(trainer, None)
    assert not trainer.should_stop
    verbose = EarlyStopping("val_loss", strict=False, verbose=True)
    verbose.setup(trainer, None, "fit")
    with pytest.warns(RuntimeWarning, match="not available"):
        verbose.on_train_epoch_end(trainer, None)


def test_check_on_train_epoch_end_resolution(tmp_path):
    callback = EarlyStopping("x")
    callback.setup(FakeTrainer(tmp_path), None, "fit")
    assert callback._check_on_train_epoch_end is True
    for overrides in ({"val_check_interval": 0.5}, {"check_val_every_n_epoch": 2}):
        callback = EarlyStopping("x")
        callback.setup(FakeTrainer(tmp_path, **overrides), None, "fit")
        assert callback._check_on_train_epoch_end is False
    callback = EarlyStopping("x", check_on_train_epoch_end=True)
    callback.setup(FakeTrainer(tmp_path, val_check_interval=0.5), None, "fit")
    assert callback._check_on_train_epoch_end is True


def test_checks_after_validation_when_validation_decides(tmp_path):
    trainer = FakeTrainer(tmp_path, val_check_interval=0.5)
    callback = EarlyStopping("val_loss", patience=1)
    callback.setup(trainer, None, "fit")
    trainer.advance(metrics={"val_loss": 1.0})
    callback.on_validation_end(trainer, None)
    trainer.advance(metrics={"val_loss": 2.0})
    callback.on_train_epoch_end(trainer, None)  # not this hook
    assert not trainer.should_stop
    callback.on_validation_end(trainer, None)
    assert trainer.should_stop


def test_skipped_in_sanity_check_fast_dev_run_and_outside_fit(tmp_path):
    trainer = FakeTrainer(tmp_path)
    callback = EarlyStopping("val_loss", patience=0)
    callback.setup(trainer, None, "fit")
    trainer.advance(metrics={"val_loss": math.nan})
    trainer.sanity_checking = True
    callback.on_train_epoch_end(trainer, None)
    trainer.sanity_checking = False
    trainer.state.fn = "validate"
    callback.on_train_epoch_end(trainer, None)
    trainer.state.fn = "fit"
    trainer.fast_dev_run = 1
    callback.on_train_epoch_end(trainer, None)
    assert not trainer.should_stop
    trainer.fast_dev_run = False
    callback.on_train_epoch_end(trainer, None)
    assert trainer.should_stop


def test_any_rank_stopping_stops_all(tmp_path):
    trainer = FakeTrainer(tmp_path)
    trainer.strategy.reduce_boolean_decision = lambda decision, all=True: (
        trainer.strategy.reduced.append((decision, all)) or True
    )
    callback = EarlyStopping("val_loss")
    callback.setup(trainer, None, "fit")
    trainer.advance(epoch=2, metrics={"val_loss": 1.0})
    callback.on_train_epoch_end(trainer, None)
    assert trainer.strategy.reduced == [(False, False)]  # this rank says go on, asks with all=False
    assert trainer.should_stop and callback.stopped_epoch == 2
    assert callback.stopping_reason_message


def test_does_not_clear_an_existing_stop(tmp_path):
    trainer = FakeTrainer(tmp_path, should_stop=True)
    callback = EarlyStopping("val_loss")
    callback.setup(trainer, None, "fit")
    trainer.advance(metrics={"val_loss": 1.0})
    callback.on_train_epoch_end(trainer, None)
    assert trainer.should_stop


def test_state_key_and_state_round_trip(tmp_path):
    callback, _ = _run([3.0, 4.0, 5.0, 6.0], tmp_path, patience=3)
    assert callback.state_key == "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"
    state = callback.state_dict()
    assert set(state) == {
        "wait_count",
        "stopped_epoch",
        "best_score",
        "patience",
        "stopping_reason",
        "stopping_reason_message",
    }
    # plain data: it survives a safe load
    atomic_save({"callbacks": {callback.state_key: state}}, tmp_path / "es.ckpt")
    loaded = load_checkpoint(tmp_path / "es.ckpt")["callbacks"][callback.state_key]
    fresh = EarlyStopping("val_loss", patience=10)
    fresh.load_state_dict(loaded)
    assert (fresh.wait_count, fresh.stopped_epoch, fresh.patience) == (3, 3, 3)
    assert fresh.best_score == torch.tensor(3.0)
    assert fresh.stopping_reason is EarlyStoppingReason.PATIENCE_EXHAUSTED
    assert fresh.stopping_reason_message == callback.stopping_reason_message


def test_load_state_from_older_or_lightning_checkpoint(tmp_path):
    callback = EarlyStopping("val_loss")
    callback.load_state_dict({"wait_count": 1, "stopped_epoch": 0, "best_score": torch.tensor(2.0), "patience": 3})
    assert callback.stopping_reason is EarlyStoppingReason.NOT_STOPPED
    callback.load_state_dict(
        {
            "wait_count": 1,
            "stopped_epoch": 0,
            "best_score": torch.tensor(2.0),
            "patience": 3,
            "stopping_reason": EarlyStoppingReason.DIVERGENCE_THRESHOLD,
        }
    )
    assert callback.stopping_reason is EarlyStoppingReason.DIVERGENCE_THRESHOLD


def test_verbose_messages(tmp_path, caplog):
    logger = logging.getLogger("ember")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="ember"):
            _run([2.0, 1.5, 1.6], tmp_path, patience=1, verbose=True)
    finally:
        logger.removeHandler(caplog.handler)
    assert "Metric val_loss improved. New best score: 2.000" in caplog.text
    assert "Metric val_loss improved by 0.500 >= min_delta = 0.0. New best score: 1.500" in caplog.text
    assert "did not improve in the last 1 records" in caplog.text


# ---- end to end ----------------------------------------------------------------------------
@needs_trainer
def test_fit_stops_at_the_expected_epoch(tmp_path):
    callback = EarlyStopping("val_loss", patience=2)
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=20, callbacks=[callback], **QUIET)
    trainer.fit(SequenceModel(val_losses=[5.0, 4.0, 4.5, 4.2, 1.0]))
    assert callback.stopped_epoch == 3
    assert trainer.current_epoch == 4  # the stop ends the epoch it was raised in
    assert callback.stopping_reason is EarlyStoppingReason.PATIENCE_EXHAUSTED


@needs_trainer
def test_fit_min_epochs_holds_the_stop(tmp_path):
    callback = EarlyStopping("val_loss", stopping_threshold=10.0)
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=20, min_epochs=3, callbacks=[callback], **QUIET)
    trainer.fit(SequenceModel(val_losses=[1.0]))
    assert trainer.current_epoch == 3
    assert callback.stopping_reason is EarlyStoppingReason.STOPPING_THRESHOLD


@needs_trainer
def test_fit_state_saved_in_checkpoint(tmp_path):
    from ember.callbacks.model_checkpoint import ModelCheckpoint

    callback = EarlyStopping("val_loss", patience=1)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=5, callbacks=[callback, checkpoint], **QUIET)
    trainer.fit(SequenceModel(val_losses=[1.0, 2.0]))
    state = load_checkpoint(tmp_path / "last.ckpt")["callbacks"][callback.state_key]
    assert state["stopping_reason"] == EarlyStoppingReason.PATIENCE_EXHAUSTED.value
    assert state["stopped_epoch"] == 1


def test_state_from_a_lightning_checkpoint():
    """Lightning 2.6.6 wrote this file; the state key and the state both carry over."""
    from pathlib import Path

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "lightning_2.6.6.ckpt"
    callback = EarlyStopping("val_loss", patience=7)
    callback.load_state_dict(load_checkpoint(fixture)["callbacks"][callback.state_key])
    assert callback.patience == 3  # restored, as Lightning does
    assert callback.stopping_reason is EarlyStoppingReason.NOT_STOPPED
    assert torch.isfinite(callback.best_score)


def test_a_stop_another_rank_decided_keeps_this_ranks_own_message_as_lightnings_does(tmp_path, caplog):
    trainer = FakeTrainer(tmp_path)
    trainer.strategy.reduce_boolean_decision = lambda decision, all=True: True  # another rank's metric stops it
    callback = EarlyStopping("val_loss", patience=1, verbose=True)
    callback.setup(trainer, None, "fit")
    trainer.advance(steps=1, epoch=0, metrics={"val_loss": 3.0})
    with caplog.at_level(logging.INFO):
        callback.on_train_epoch_end(trainer, None)
        callback.on_validation_end(trainer, None)  # only one of the two hooks checks
    assert trainer.should_stop and callback.stopped_epoch == 0
    # this rank's metric improved: its message is what it keeps (and what its checkpoint holds), as in Lightning
    assert callback.stopping_reason_message.startswith("Metric val_loss improved")
    assert "Another process" not in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"monitor": ["val_loss"]},
            "`EarlyStopping(monitor=['val_loss'])` must be the name of a logged value, not list.",
        ),
        (
            {"monitor": "val_loss", "min_delta": "0.1"},
            "`EarlyStopping(min_delta='0.1')` must be a number: the smallest",
        ),
        (
            {"monitor": "val_loss", "stopping_threshold": "0.1"},
            "`EarlyStopping(stopping_threshold='0.1')` must be a number",
        ),
        (
            {"monitor": "val_loss", "divergence_threshold": [5]},
            "`EarlyStopping(divergence_threshold=[5])` must be a number",
        ),
    ],
)
def test_an_argument_of_a_type_that_would_fail_at_the_first_check_is_refused_where_it_is_given(kwargs, message):
    with pytest.raises(TypeError) as raised:
        EarlyStopping(**kwargs)
    assert str(raised.value).startswith(message)


def test_a_mode_that_is_no_name_gets_the_message_of_a_wrong_mode():
    # (a list or dict was "unhashable type")
    with pytest.raises(MisconfigurationException, match=r"^`mode` can be min, max, got \['min'\]"):
        EarlyStopping("val_loss", mode=["min"])
