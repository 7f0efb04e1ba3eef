"""ModelCheckpoint: names, top-k, triggers, last.ckpt, state; hook by hook and end to end."""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from datetime import timedelta

import pytest
import torch
from tests.helpers.checkpoint_models import QUIET, FakeLogger, FakeTrainer, SequenceModel
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.checkpoint import load_checkpoint
from ember.demos.boring_classes import BoringModel
from ember.utilities.exceptions import MisconfigurationException

needs_trainer = pytest.mark.skipif(not hasattr(ember, "Trainer"), reason="needs ember.Trainer")


def _names(folder) -> list[str]:
    return sorted(p for p in os.listdir(folder) if not p.startswith("."))


def _setup(tmp_path, **kwargs):
    trainer = FakeTrainer(tmp_path)
    callback = ModelCheckpoint(dirpath=tmp_path, **kwargs)
    trainer.callbacks = [callback]
    callback.setup(trainer, None, "fit")
    callback.on_train_start(trainer, None)
    return trainer, callback


def _epoch(trainer, callback, epoch, steps=4, **metrics):
    """One epoch: ``steps`` optimizer steps, then the end-of-epoch save."""
    trainer.advance(steps=steps, epoch=epoch, metrics=metrics)
    callback.on_train_epoch_end(trainer, None)


# ---- configuration -------------------------------------------------------------------------
def test_defaults_and_constants():
    callback = ModelCheckpoint()
    assert (callback.CHECKPOINT_JOIN_CHAR, callback.CHECKPOINT_EQUALS_CHAR) == ("-", "=")
    assert (callback.CHECKPOINT_NAME_LAST, callback.FILE_EXTENSION, callback.STARTING_VERSION) == ("last", ".ckpt", 1)
    assert callback.every_n_epochs == 1
    assert callback._every_n_train_steps == 0
    assert callback.kth_value == torch.tensor(float("inf"))
    assert ModelCheckpoint(mode="max").kth_value == torch.tensor(float("-inf"))
    assert ModelCheckpoint(every_n_train_steps=5).every_n_epochs == 0
    assert (callback.best_model_path, callback.last_model_path, callback.best_k_models) == ("", "", {})


def test_bad_mode():
    with pytest.raises(MisconfigurationException, match="`mode` can be min, max but got avg"):
        ModelCheckpoint(mode="avg")


def test_top_k_without_monitor():
    with pytest.raises(MisconfigurationException, match="save_top_k=3, monitor=None.*No quantity for top_k"):
        ModelCheckpoint(save_top_k=3)
    for k in (-1, 0, 1):
        ModelCheckpoint(save_top_k=k)


def test_invalid_counts():
    with pytest.raises(MisconfigurationException, match="save_top_k=-2. Must be >= -1"):
        ModelCheckpoint(save_top_k=-2)
    with pytest.raises(MisconfigurationException, match="every_n_train_steps=-1. Must be >= 0"):
        ModelCheckpoint(every_n_train_steps=-1)
    with pytest.raises(MisconfigurationException, match="every_n_epochs=-1. Must be >= 0"):
        ModelCheckpoint(every_n_epochs=-1)


@pytest.mark.parametrize("filename", ["../x", "sub/../../{epoch}", "/abs/{epoch}", "~/ckpts/{step}", ".."])
def test_a_filename_that_leaves_dirpath_fails_at_construction(tmp_path, filename):
    with pytest.raises(MisconfigurationException, match=r"would put checkpoints outside `dirpath`"):
        ModelCheckpoint(dirpath=tmp_path, filename=filename)


def test_filenames_inside_dirpath_are_fine(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="runs/{epoch}-{val/loss:.2f}", monitor="val/loss")
    path = checkpoint.format_checkpoint_name({"epoch": 1, "val/loss": torch.tensor(0.5)})
    assert path == str(tmp_path / "runs" / "epoch=1-val" / "loss=0.50.ckpt")
    ModelCheckpoint(filename="..{epoch}")  # dots in a name are not a parent folder


@pytest.mark.parametrize(
    "kwargs",
    [
        {"every_n_train_steps": 2, "every_n_epochs": 1},
        {"every_n_train_steps": 2, "train_time_interval": timedelta(seconds=1)},
        {"every_n_epochs": 2, "train_time_interval": timedelta(seconds=1)},
    ],
)
def test_triggers_are_mutually_exclusive(kwargs):
    with pytest.raises(MisconfigurationException, match="should be mutually exclusive"):
        ModelCheckpoint(**kwargs)


def test_state_key_distinguishes_instances():
    a = ModelCheckpoint(monitor="val_loss")
    assert a.state_key == (
        "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0,"
        " 'every_n_epochs': 1, 'train_time_interval': None}"
    )
    assert a.state_key != ModelCheckpoint(monitor="val_loss", mode="max").state_key


def test_local_dirpath_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ModelCheckpoint(dirpath="ckpts").dirpath == os.path.realpath(tmp_path / "ckpts")
    assert ModelCheckpoint(dirpath="memory://x/ckpts").dirpath == "memory://x/ckpts"


# ---- names ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("filename", "metrics", "auto", "expected"),
    [
        (None, {"epoch": 1, "step": 8}, True, "epoch=1-step=8.ckpt"),
        ("{epoch}", {"epoch": 0}, True, "epoch=0.ckpt"),
        ("{epoch:03d}", {"epoch": 5}, True, "epoch=005.ckpt"),
        ("{epoch}-{val_loss:.2f}", {"epoch": 2, "val_loss": 0.123456}, True, "epoch=2-val_loss=0.12.ckpt"),
        (
            "{epoch}-{val_loss:.2f}",
            {"epoch": 2, "val_loss": torch.tensor(0.123456)},
            True,
            "epoch=2-val_loss=0.12.ckpt",
        ),
        ("{missing:d}", {}, True, "missing=0.ckpt"),
        (
            "epoch={epoch}-validation_loss={val_loss:.2f}",
            {"epoch": 2, "val_loss": 0.123},
            False,
            "epoch=2-validation_loss=0.12.ckpt",
        ),
        ("{epoch}-{epoch_test}", {"epoch": 1, "epoch_test": 7}, True, "epoch=1-epoch_test=7.ckpt"),
        ("{val.acc:.1f}", {"val.acc": 0.51}, True, "val.acc=0.5.ckpt"),
        ("e{epoch}-{val/acc:.1f}", {"epoch": 3, "val/acc": 0.5}, False, "e3-0.5.ckpt"),
    ],
)
def test_format_checkpoint_name(tmp_path, filename, metrics, auto, expected):
    callback = ModelCheckpoint(dirpath=tmp_path, filename=filename, auto_insert_metric_name=auto)
    assert callback.format_checkpoint_name(dict(metrics)) == os.path.join(str(tmp_path), expected)


def test_format_with_slash_makes_a_folder(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path, filename="{val/acc:.1f}")
    assert callback.format_checkpoint_name({"val/acc": 0.5}) == os.path.join(str(tmp_path), "val/acc=0.5.ckpt")


def test_format_version_and_no_dirpath():
    assert ModelCheckpoint(filename="{step}").format_checkpoint_name({"step": 0}) == "step=0.ckpt"
    assert ModelCheckpoint(filename="{step}").format_checkpoint_name({"step": 0}, ver=2) == "step=0-v2.ckpt"
    assert ModelCheckpoint().format_checkpoint_name({"epoch": 2, "step": 3}, filename="{epoch:d}") == "epoch=2.ckpt"


def test_format_with_a_prefix_puts_it_first():
    callback = ModelCheckpoint(filename="{epoch}")
    assert callback.format_checkpoint_name({"epoch": 3}, prefix="test") == "test-epoch=3.ckpt"
    assert callback.format_checkpoint_name({"epoch": 3}, ver=1, prefix="test") == "test-epoch=3-v1.ckpt"


# ---- top-k ---------------------------------------------------------------------------------
def test_top_k_keeps_best_and_evicts(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss", save_top_k=2, filename="{epoch}-{val_loss:.1f}")
    for epoch, loss in enumerate([3.0, 2.0, 4.0, 1.0, 1.5]):
        _epoch(trainer, callback, epoch, val_loss=loss)
    assert _names(tmp_path) == ["epoch=3-val_loss=1.0.ckpt", "epoch=4-val_loss=1.5.ckpt"]
    assert callback.best_model_path == str(tmp_path / "epoch=3-val_loss=1.0.ckpt")
    assert callback.best_model_score == torch.tensor(1.0)
    assert callback.kth_best_model_path == str(tmp_path / "epoch=4-val_loss=1.5.ckpt")
    assert callback.kth_value == torch.tensor(1.5)
    assert {os.path.basename(p): float(v) for p, v in callback.best_k_models.items()} == {
        "epoch=3-val_loss=1.0.ckpt": 1.0,
        "epoch=4-val_loss=1.5.ckpt": 1.5,
    }
    assert callback.current_score == torch.tensor(1.5)
    # epoch 2 (4.0) did not enter the top 2 and was never written
    assert [os.path.basename(p) for p, _ in trainer.saved] == [
        "epoch=0-val_loss=3.0.ckpt",
        "epoch=1-val_loss=2.0.ckpt",
        "epoch=3-val_loss=1.0.ckpt",
        "epoch=4-val_loss=1.5.ckpt",
    ]


def test_max_mode(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="acc", mode="max", filename="{epoch}")
    for epoch, acc in enumerate([0.1, 0.5, 0.3]):
        _epoch(trainer, callback, epoch, acc=acc)
    assert _names(tmp_path) == ["epoch=1.ckpt"]
    assert callback.best_model_score == torch.tensor(0.5)


def test_equal_score_does_not_replace(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss", filename="{epoch}")
    _epoch(trainer, callback, 0, val_loss=1.0)
    _epoch(trainer, callback, 1, val_loss=1.0)
    assert _names(tmp_path) == ["epoch=0.ckpt"]


def test_save_top_k_all_and_zero(tmp_path):
    trainer, callback = _setup(tmp_path / "all", monitor="val_loss", save_top_k=-1, filename="{epoch}")
    for epoch, loss in enumerate([3.0, 4.0, 5.0]):
        _epoch(trainer, callback, epoch, val_loss=loss)
    assert _names(tmp_path / "all") == ["epoch=0.ckpt", "epoch=1.ckpt", "epoch=2.ckpt"]
    assert callback.best_model_path.endswith("epoch=0.ckpt")

    trainer, callback = _setup(tmp_path / "none", monitor="val_loss", save_top_k=0)
    _epoch(trainer, callback, 0, val_loss=1.0)
    assert not (tmp_path / "none").exists() or _names(tmp_path / "none") == []


def test_no_monitor_keeps_latest(tmp_path):
    trainer, callback = _setup(tmp_path)
    for epoch in range(3):
        _epoch(trainer, callback, epoch)
    assert _names(tmp_path) == ["epoch=2-step=12.ckpt"]
    assert callback.best_model_path == str(tmp_path / "epoch=2-step=12.ckpt")


def test_no_monitor_save_all(tmp_path):
    trainer, callback = _setup(tmp_path, save_top_k=-1)
    for epoch in range(3):
        _epoch(trainer, callback, epoch)
    assert _names(tmp_path) == ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt", "epoch=2-step=12.ckpt"]


def test_nan_score_is_stored_as_worst(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss", save_top_k=2, filename="{epoch}")
    _epoch(trainer, callback, 0, val_loss=float("nan"))
    assert callback.best_k_models[str(tmp_path / "epoch=0.ckpt")] == torch.tensor(float("inf"))
    _epoch(trainer, callback, 1, val_loss=2.0)
    _epoch(trainer, callback, 2, val_loss=3.0)
    assert _names(tmp_path) == ["epoch=1.ckpt", "epoch=2.ckpt"]


def test_version_counter(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss", save_top_k=-1, filename="constant")
    _epoch(trainer, callback, 0, val_loss=1.0)
    _epoch(trainer, callback, 1, val_loss=2.0)
    _epoch(trainer, callback, 2, val_loss=3.0)
    assert _names(tmp_path) == ["constant-v1.ckpt", "constant-v2.ckpt", "constant.ckpt"]


def test_version_counter_disabled_overwrites(tmp_path):
    trainer, callback = _setup(
        tmp_path, monitor="val_loss", save_top_k=-1, filename="constant", enable_version_counter=False
    )
    _epoch(trainer, callback, 0, val_loss=1.0)
    _epoch(trainer, callback, 1, val_loss=2.0)
    assert _names(tmp_path) == ["constant.ckpt"]
    assert load_checkpoint(tmp_path / "constant.ckpt")["epoch"] == 1


def test_same_name_top1_is_replaced_not_versioned(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss", filename="best")
    _epoch(trainer, callback, 0, val_loss=2.0)
    _epoch(trainer, callback, 1, val_loss=1.0)
    assert _names(tmp_path) == ["best.ckpt"]
    assert load_checkpoint(tmp_path / "best.ckpt")["epoch"] == 1


def test_resumed_file_and_foreign_files_are_never_deleted(tmp_path):
    trainer, callback = _setup(tmp_path / "ckpts", monitor="val_loss", filename="{epoch}")
    _epoch(trainer, callback, 0, val_loss=2.0)
    trainer.ckpt_path = str(tmp_path / "ckpts" / "epoch=0.ckpt")
    _epoch(trainer, callback, 1, val_loss=1.0)
    assert _names(tmp_path / "ckpts") == ["epoch=0.ckpt", "epoch=1.ckpt"]
    outside = tmp_path / "outside.ckpt"
    outside.write_bytes(b"x")
    callback.best_k_models = {str(outside): torch.tensor(0.5)}
    callback.kth_best_model_path = str(outside)
    trainer.ckpt_path = None
    _epoch(trainer, callback, 2, val_loss=0.1)
    assert outside.exists()


# ---- missing monitor -----------------------------------------------------------------------
def test_missing_monitor_warns_before_validation(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss")
    with pytest.warns(
        UserWarning, match=r"could not find the monitored key in the returned metrics: \['epoch', 'step'\]"
    ):
        _epoch(trainer, callback, 0)
    assert _names(tmp_path) == []


def test_missing_monitor_raises_after_validation(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss")
    trainer._run.evaluation_batches_run = True
    with pytest.raises(MisconfigurationException) as info:
        _epoch(trainer, callback, 0, other=1.0)
    message = str(info.value)
    assert "`ModelCheckpoint(monitor='val_loss')` could not find the monitored key" in message
    assert "['other', 'epoch', 'step']" in message
    assert "HINT: Did you call `log('val_loss', value)` in the `LightningModule`?" in message


# ---- triggers ------------------------------------------------------------------------------
def test_every_n_train_steps_counts_optimizer_steps(tmp_path):
    trainer, callback = _setup(tmp_path, every_n_train_steps=3, save_top_k=-1, filename="{step}")
    for _ in range(7):  # one batch at a time; global_step only moves on optimizer steps
        trainer.advance(steps=1)
        callback.on_train_batch_end(trainer, None, None, None, 0)
        callback.on_train_batch_end(trainer, None, None, None, 0)  # an accumulation batch: same step
    callback.on_train_epoch_end(trainer, None)
    assert _names(tmp_path) == ["step=3.ckpt", "step=6.ckpt"]


def test_every_n_epochs(tmp_path):
    trainer, callback = _setup(tmp_path, every_n_epochs=2, save_top_k=-1, filename="{epoch}")
    for epoch in range(5):
        _epoch(trainer, callback, epoch)
    assert _names(tmp_path) == ["epoch=1.ckpt", "epoch=3.ckpt"]


def test_train_time_interval(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    trainer, callback = _setup(tmp_path, train_time_interval=timedelta(seconds=10), save_top_k=-1, filename="{step}")
    for _ in range(6):
        clock[0] += 4.0
        trainer.advance(steps=1)
        callback.on_train_batch_end(trainer, None, None, None, 0)
    # 104, 108, 112 (>=10 s: save), 116, 120, 124 (>=10 s since 112: save)
    assert _names(tmp_path) == ["step=3.ckpt", "step=6.ckpt"]
    assert trainer.strategy.broadcasts >= 6  # rank 0's decision is broadcast


def test_a_time_trigger_on_a_batch_without_an_optimizer_step_is_used_up_as_in_lightning(tmp_path, monkeypatch):
    # With gradient accumulation, the interval can run out on a batch that ends no optimizer step (the step
    # was already saved). Lightning reads the clock there and restarts it without saving; so does Ember.
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    trainer, callback = _setup(tmp_path, train_time_interval=timedelta(seconds=10), save_top_k=-1, filename="{step}")
    callback.on_train_start(trainer, None)
    # each window: a batch without an optimizer step (`first` seconds), then the stepping batch (`then` seconds)
    for first, then in ((1.0, 10.0), (11.0, 1.0), (1.0, 1.0), (1.0, 8.0)):
        clock[0] += first
        callback.on_train_batch_end(trainer, None, None, None, 0)
        clock[0] += then
        trainer.advance(steps=1)
        callback.on_train_batch_end(trainer, None, None, None, 0)
    # step 1 saves at 111 s. At 122 s the interval runs out on a batch after it: the step is saved, so the clock
    # restarts without a save, and the next file is step 4's at 134 s (Ember used to carry the trigger to step 2)
    assert _names(tmp_path) == ["step=1.ckpt", "step=4.ckpt"]


def test_no_save_during_sanity_check_fast_dev_run_or_outside_fit(tmp_path):
    trainer, callback = _setup(tmp_path)
    trainer.advance(steps=1)
    trainer.sanity_checking = True
    callback.on_validation_end(trainer, None)
    trainer.sanity_checking = False
    trainer.state.fn = "validate"
    callback.on_validation_end(trainer, None)
    trainer.state.fn = "fit"
    trainer.fast_dev_run = 1
    callback.on_train_epoch_end(trainer, None)
    assert trainer.saved == []
    trainer.fast_dev_run = False
    callback.on_train_epoch_end(trainer, None)
    callback.on_train_epoch_end(trainer, None)  # same global step: already saved
    assert len(trainer.saved) == 1


def test_save_on_train_epoch_end_rule(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path)
    assert callback._should_save_on_train_epoch_end(FakeTrainer(tmp_path))
    assert not callback._should_save_on_train_epoch_end(FakeTrainer(tmp_path, val_check_interval=0.5))
    assert not callback._should_save_on_train_epoch_end(FakeTrainer(tmp_path, check_val_every_n_epoch=2))
    assert callback._should_save_on_train_epoch_end(FakeTrainer(tmp_path, val_check_interval=0.5, num_val_batches=[0]))
    assert not callback._should_save_on_train_epoch_end(FakeTrainer(tmp_path, val_check_interval=timedelta(1)))
    assert not ModelCheckpoint(save_on_train_epoch_end=False)._should_save_on_train_epoch_end(FakeTrainer(tmp_path))


def test_validation_end_saves_when_validation_decides(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss", filename="{epoch}-{step}", save_top_k=-1)
    trainer.val_check_interval = 0.5
    trainer.advance(steps=2, metrics={"val_loss": 2.0})
    callback.on_validation_end(trainer, None)
    trainer.advance(steps=2, metrics={"val_loss": 1.0})
    callback.on_validation_end(trainer, None)
    callback.on_train_epoch_end(trainer, None)  # not the saving hook here
    assert _names(tmp_path) == ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt"]


def test_step_trigger_defers_until_validation_metric_exists(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss", every_n_train_steps=2, filename="{step}-{val_loss:.1f}")
    trainer.val_check_interval = 0.5
    trainer.advance(steps=2)
    callback.on_train_batch_end(trainer, None, None, None, 1)
    assert trainer.saved == []  # val_loss not logged yet: wait for validation
    trainer.advance(metrics={"val_loss": 0.5})
    callback.on_validation_end(trainer, None)
    assert _names(tmp_path) == ["step=2-val_loss=0.5.ckpt"]


def test_a_step_save_waiting_for_the_first_validation_is_made_when_it_ends_with_epoch_end_saving(tmp_path):
    # the default schedule (validation once per epoch, at its end) makes the callback save at training epoch
    # ends; the save due at step 3, before any val_loss exists, is made when the first validation ends
    callback = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", every_n_train_steps=3, save_top_k=-1)
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=2, callbacks=[callback], **QUIET)
    trainer.fit(SequenceModel(val_losses=[0.5, 0.25], train_batches=4, val_batches=1))
    assert _names(tmp_path) == ["epoch=0-step=4.ckpt", "epoch=1-step=6.ckpt"]
    assert callback.best_k_models[str(tmp_path / "epoch=0-step=4.ckpt")] == pytest.approx(0.5)


class _EpochEndKey(ember.LightningModule):
    """Logs `val_loss` in validation and `weight_sum` (the key a callback monitors) only at training epoch ends."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1]))

    def on_train_epoch_end(self):
        self.log("weight_sum", self.layer.weight.sum())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit_epoch_end_key(tmp_path, monitor, max_epochs=2, validate=True, checkpoint_options=None, **trainer_options):
    data = DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 1)), batch_size=4)
    callback = ModelCheckpoint(dirpath=tmp_path, monitor=monitor, every_n_train_steps=1, **(checkpoint_options or {}))
    trainer = ember.Trainer(
        default_root_dir=tmp_path, max_epochs=max_epochs, callbacks=[callback], **QUIET, **trainer_options
    )
    trainer.fit(_EpochEndKey(), data, data if validate else None)
    return trainer


@pytest.mark.parametrize("val_check_interval", [1.0, 0.5])
def test_step_saves_wait_for_a_key_logged_at_training_epoch_ends(tmp_path, val_check_interval):
    # the key first exists after epoch 0's validation: its saves are skipped, as in Lightning, instead of
    # failing the fit with "could not find the monitored key" (Lightning fails with mid-epoch validation);
    # from epoch 1 on the triggers save
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _fit_epoch_end_key(tmp_path, "weight_sum", val_check_interval=val_check_interval)
    assert [load_checkpoint(tmp_path / name)["epoch"] for name in _names(tmp_path)] == [1]


def test_saves_at_validation_ends_wait_for_a_key_logged_at_training_epoch_ends(tmp_path):
    # with `save_on_train_epoch_end=False` the epoch's save comes at its validation's end, before the
    # epoch-end hook logs the key: Lightning fails the fit there; Ember skips epoch 0's saves and saves after
    torch.manual_seed(0)
    _fit_epoch_end_key(tmp_path, "weight_sum", max_epochs=3, checkpoint_options={"save_on_train_epoch_end": False})
    assert [load_checkpoint(tmp_path / name)["epoch"] for name in _names(tmp_path)] == [2]


def test_step_saves_skip_a_key_not_logged_yet_silently_without_validation(tmp_path):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*could not find the monitored key")
        _fit_epoch_end_key(tmp_path, "weight_sum", max_epochs=1, validate=False)
    assert _names(tmp_path) == []


def test_step_saves_report_a_key_still_missing_once_a_whole_epoch_has_passed(tmp_path):
    with pytest.raises(MisconfigurationException, match="monitor='typo'.*could not find the monitored key") as info:
        _fit_epoch_end_key(tmp_path, "typo")
    assert "'weight_sum'" in str(info.value)  # the epoch-end key was there by then
    assert _names(tmp_path) == []


def test_time_trigger_waits_for_a_validation_epochs_away(tmp_path):
    # validation every 2 epochs: its data is loaded only then, yet the epoch-0 saves must wait for its metric
    callback = ModelCheckpoint(
        dirpath=tmp_path, monitor="val_loss", train_time_interval=timedelta(seconds=0), save_on_train_epoch_end=False
    )
    trainer = ember.Trainer(
        default_root_dir=tmp_path, max_epochs=2, check_val_every_n_epoch=2, callbacks=[callback], **QUIET
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "could not find the monitored key"
        warnings.filterwarnings("ignore", message=".*does not have many workers")  # on a machine with CPUs to spare
        trainer.fit(SequenceModel(val_losses=[0.25], train_batches=2, val_batches=1))
    assert callback.best_model_score == pytest.approx(0.25)
    assert _names(tmp_path) == ["epoch=1-step=4.ckpt"]


def test_step_trigger_with_train_metric_saves_at_once(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="train_metric", every_n_train_steps=2, filename="{step}")
    trainer.advance(steps=2, metrics={"train_metric": 1.0})
    callback.on_train_batch_end(trainer, None, None, None, 1)
    assert _names(tmp_path) == ["step=2.ckpt"]


# ---- last.ckpt -----------------------------------------------------------------------------
def test_last_is_the_latest_state_when_metric_worsens(tmp_path):
    """Deliberate difference 1: Lightning 2.6 leaves last.ckpt at the best epoch here."""
    trainer, callback = _setup(tmp_path, monitor="val_loss", save_last=True, filename="{epoch}")
    for epoch, loss in enumerate([1.0, 2.0, 3.0]):
        _epoch(trainer, callback, epoch, val_loss=loss)
    assert _names(tmp_path) == ["epoch=0.ckpt", "last.ckpt"]
    assert load_checkpoint(tmp_path / "last.ckpt")["epoch"] == 2
    assert load_checkpoint(tmp_path / "epoch=0.ckpt")["epoch"] == 0
    assert callback.last_model_path == str(tmp_path / "last.ckpt")


def test_last_written_at_every_trigger_even_if_topk_not_due(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss", save_last=True, every_n_epochs=2, filename="{epoch}")
    _epoch(trainer, callback, 0, val_loss=1.0)
    assert _names(tmp_path) == ["last.ckpt"]
    assert load_checkpoint(tmp_path / "last.ckpt")["global_step"] == 4


@pytest.mark.parametrize(
    ("arguments", "saved_at_steps"),
    # at step 4 the top-k file and `last`; at the end of training `last` again (it stopped between triggers)
    [({"every_n_epochs": 0}, [6]), ({"every_n_train_steps": 4}, [4, 4, 6])],
    ids=["every_n_epochs_0", "every_n_train_steps"],
)
def test_last_follows_the_triggers_asked_for_and_no_epoch_end_when_epochs_are_not_one(
    tmp_path, arguments, saved_at_steps
):
    # with epochs not a trigger, an epoch's end writes nothing, as in Lightning: `last` was written at every
    # epoch end too, a full checkpoint per epoch for a run that asked for one every 1000 steps
    steps: list[int] = []

    class Saves(ember.Callback):
        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            steps.append(trainer.global_step)

    callbacks = [ModelCheckpoint(dirpath=tmp_path, save_last=True, **arguments), Saves()]
    trainer = ember.Trainer(
        max_epochs=3, limit_train_batches=2, limit_val_batches=2, default_root_dir=tmp_path, callbacks=callbacks,
        logger=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(BoringModel())
    assert steps == saved_at_steps  # and the end of training, where `last` holds the final state
    assert load_checkpoint(tmp_path / "last.ckpt")["global_step"] == 6


def test_last_with_save_top_k_zero(tmp_path):
    trainer, callback = _setup(tmp_path, save_top_k=0, save_last=True)
    _epoch(trainer, callback, 0)
    _epoch(trainer, callback, 1)
    assert _names(tmp_path) == ["last.ckpt"]
    assert load_checkpoint(tmp_path / "last.ckpt")["epoch"] == 1


def test_last_link_points_to_new_topk_file_else_copies(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss", save_last="link", filename="{epoch}")
    _epoch(trainer, callback, 0, val_loss=1.0)
    last = tmp_path / "last.ckpt"
    assert last.is_symlink() and os.readlink(last) == "epoch=0.ckpt"
    _epoch(trainer, callback, 1, val_loss=5.0)  # not a top-k save: last must still be the latest
    assert not last.is_symlink()
    assert load_checkpoint(last)["epoch"] == 1
    assert load_checkpoint(tmp_path / "epoch=0.ckpt")["epoch"] == 0  # the link was replaced, not written through
    _epoch(trainer, callback, 2, val_loss=0.5)
    assert last.is_symlink() and os.readlink(last) == "epoch=2.ckpt"
    assert _names(tmp_path) == ["epoch=2.ckpt", "last.ckpt"]


def test_last_link_needs_local_dirpath():
    trainer = FakeTrainer("memory://root")
    callback = ModelCheckpoint(dirpath="memory://root/ckpts", save_last="link")
    with pytest.raises(ValueError, match="save_last='link'.*only supported for local file paths"):
        callback.setup(trainer, None, "fit")


def test_last_version_counter_and_template(tmp_path):
    (tmp_path / "last.ckpt").write_bytes(b"from an older run")
    trainer, callback = _setup(tmp_path, save_last=True, save_top_k=0)
    _epoch(trainer, callback, 0)
    _epoch(trainer, callback, 1)
    assert _names(tmp_path) == ["last-v1.ckpt", "last.ckpt"]
    assert (tmp_path / "last.ckpt").read_bytes() == b"from an older run"

    trainer, callback = _setup(tmp_path / "t", save_last=True, save_top_k=0)
    callback.CHECKPOINT_NAME_LAST = "{epoch}-last"
    _epoch(trainer, callback, 0)
    _epoch(trainer, callback, 1)
    assert _names(tmp_path / "t") == ["epoch=1-last.ckpt"]  # the previous last is removed


def test_on_train_end_writes_last_if_training_stopped_between_triggers(tmp_path):
    trainer, callback = _setup(tmp_path, save_last=True, every_n_epochs=5)
    _epoch(trainer, callback, 0)
    trainer.advance(steps=2)  # e.g. max_steps reached mid-epoch
    callback.on_train_end(trainer, None)
    assert load_checkpoint(tmp_path / "last.ckpt")["global_step"] == 6


def test_eviction_happens_after_new_file_and_last(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss", save_last=True, filename="{epoch}")
    order = []
    real_save = trainer.save_checkpoint

    def recording_save(filepath, weights_only=False, storage_options=None):
        order.append(("save", os.path.basename(filepath), sorted(_names(tmp_path))))
        real_save(filepath, weights_only)

    trainer.save_checkpoint = recording_save
    _epoch(trainer, callback, 0, val_loss=2.0)
    _epoch(trainer, callback, 1, val_loss=1.0)
    # when last.ckpt of epoch 1 is written, epoch=0.ckpt is still there
    assert order[-1] == ("save", "last.ckpt", ["epoch=0.ckpt", "epoch=1.ckpt", "last.ckpt"])
    assert _names(tmp_path) == ["epoch=1.ckpt", "last.ckpt"]


# ---- weights only, exception, loggers, state -----------------------------------------------
def test_save_weights_only_is_passed(tmp_path):
    trainer, callback = _setup(tmp_path, save_weights_only=True, save_last=True)
    _epoch(trainer, callback, 0)
    assert trainer.saved and all(weights_only for _, weights_only in trainer.saved)


def test_save_on_exception(tmp_path):
    trainer, callback = _setup(tmp_path, save_on_exception=True, filename="{step}")
    trainer.advance(steps=3)
    callback.on_exception(trainer, None, RuntimeError("boom"))
    assert _names(tmp_path) == ["step=3.ckpt"]
    callback.on_exception(trainer, None, RuntimeError("again"))  # nothing new since
    assert len(trainer.saved) == 1
    trainer2, off = _setup(tmp_path / "off")
    trainer2.advance(steps=3)
    off.on_exception(trainer2, None, RuntimeError("boom"))
    assert trainer2.saved == []


def test_loggers_are_told_after_each_save(tmp_path):
    trainer, callback = _setup(tmp_path, save_last=True)
    logger = FakeLogger(tmp_path)
    trainer.loggers = [logger]
    _epoch(trainer, callback, 0)
    assert len(logger.saved) == 2  # the top-k file and last.ckpt


def test_dirpath_resolution(tmp_path):
    callback = ModelCheckpoint()
    trainer = FakeTrainer(tmp_path)
    callback.setup(trainer, None, "fit")
    assert callback.dirpath == os.path.join(str(tmp_path), "checkpoints")

    callback = ModelCheckpoint()
    trainer.loggers = [FakeLogger(save_dir=str(tmp_path / "logs"), name="exp", version=3)]
    callback.setup(trainer, None, "fit")
    assert callback.dirpath == os.path.join(str(tmp_path), "logs", "exp", "version_3", "checkpoints")

    callback = ModelCheckpoint()
    trainer.loggers = [FakeLogger(save_dir=None, name="exp", version="run-a")]
    callback.setup(trainer, None, "fit")
    assert callback.dirpath == os.path.join(str(tmp_path), "exp", "run-a", "checkpoints")


def test_the_folder_is_read_off_the_logger_as_lightning_reads_it(tmp_path):
    # a logger may compute its properties (a run started on first read): save_dir, name, version, each once
    # (save_dir twice where it is set), in Lightning's order
    reads = []

    class Reading(FakeLogger):
        def __getattribute__(self, attribute):
            if attribute in ("save_dir", "name", "version"):
                reads.append(attribute)
            return super().__getattribute__(attribute)

    callback = ModelCheckpoint()
    trainer = FakeTrainer(tmp_path)
    trainer.loggers = [Reading(save_dir=str(tmp_path / "logs"), name="exp", version=3)]
    callback.setup(trainer, None, "fit")
    assert callback.dirpath == os.path.join(str(tmp_path), "logs", "exp", "version_3", "checkpoints")
    assert reads == ["save_dir", "save_dir", "name", "version"]


def test_warns_when_dirpath_not_empty(tmp_path):
    (tmp_path / "old.ckpt").write_bytes(b"x")
    with pytest.warns(UserWarning, match="exists and is not empty"):
        _setup(tmp_path)


def test_state_dict_round_trip(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss", save_top_k=2, save_last=True)
    for epoch, loss in enumerate([3.0, 1.0, 2.0]):
        _epoch(trainer, callback, epoch, val_loss=loss)
    state = callback.state_dict()
    assert set(state) == {
        "monitor",
        "best_model_score",
        "best_model_path",
        "current_score",
        "dirpath",
        "best_k_models",
        "kth_best_model_path",
        "kth_value",
        "last_model_path",
    }
    restored = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_top_k=2)
    restored.load_state_dict(state)
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        assert getattr(restored, key) == getattr(callback, key)
    assert restored.best_k_models == callback.best_k_models
    assert restored.best_model_score == callback.best_model_score
    # and the checkpoint file itself carries the state, loadable safely
    saved = load_checkpoint(tmp_path / "last.ckpt")["callbacks"][callback.state_key]
    assert saved["best_model_path"] == callback.best_model_path


def test_load_state_dict_with_changed_dirpath_warns(tmp_path):
    trainer, callback = _setup(tmp_path / "a", monitor="val_loss")
    _epoch(trainer, callback, 0, val_loss=1.0)
    moved = ModelCheckpoint(dirpath=tmp_path / "b", monitor="val_loss")
    with pytest.warns(UserWarning, match="The dirpath has changed from .* Only `best_model_path` will be reloaded"):
        moved.load_state_dict(callback.state_dict())
    assert moved.best_model_path == callback.best_model_path
    assert moved.best_k_models == {}


def test_to_yaml(tmp_path):
    import yaml

    trainer, callback = _setup(tmp_path, monitor="val_loss", save_top_k=2, filename="{epoch}")
    _epoch(trainer, callback, 0, val_loss=1.5)
    _epoch(trainer, callback, 1, val_loss=0.5)
    callback.to_yaml()
    data = yaml.safe_load((tmp_path / "best_k_models.yaml").read_text())
    assert data == {str(tmp_path / "epoch=0.ckpt"): 1.5, str(tmp_path / "epoch=1.ckpt"): 0.5}


def test_verbose_messages(tmp_path, caplog):
    import logging

    trainer, callback = _setup(tmp_path, monitor="val_loss", verbose=True, filename="{epoch}")
    with caplog.at_level(logging.INFO):
        logging.getLogger("ember").addHandler(caplog.handler)
        try:
            _epoch(trainer, callback, 0, val_loss=1.0)
            _epoch(trainer, callback, 1, val_loss=2.0)
        finally:
            logging.getLogger("ember").removeHandler(caplog.handler)
    text = caplog.text
    assert "Epoch 0, global step 4: 'val_loss' reached 1.00000 (best 1.00000), saving model to" in text
    assert "as top 1" in text
    assert "Epoch 1, global step 8: 'val_loss' was not in top 1" in text


def test_top_k_decision_is_reduced_across_ranks(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss")
    _epoch(trainer, callback, 0, val_loss=1.0)
    _epoch(trainer, callback, 1, val_loss=0.5)
    # the top-k decision (all ranks), between the name checks of the two saves (any rank), as Lightning asks them
    assert trainer.strategy.reduced == [(False, False), (True, True), (False, False)]


def test_files_only_written_on_rank_zero(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss", save_last="link")
    trainer.is_global_zero = False
    _epoch(trainer, callback, 0, val_loss=1.0)
    assert _names(tmp_path) == []
    assert callback.best_model_path  # the bookkeeping still follows rank 0's


# ---- end to end ----------------------------------------------------------------------------
@needs_trainer
def test_fit_topk_names_and_last(tmp_path):
    callback = ModelCheckpoint(
        dirpath=tmp_path, monitor="val_loss", save_top_k=2, save_last=True, filename="{epoch}-{val_loss:.2f}"
    )
    model = SequenceModel(val_losses=[3.0, 1.0, 2.0, 4.0])
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=4, callbacks=[callback], **QUIET)
    trainer.fit(model)
    assert _names(tmp_path) == ["epoch=1-val_loss=1.00.ckpt", "epoch=2-val_loss=2.00.ckpt", "last.ckpt"]
    assert callback.best_model_score == torch.tensor(1.0)
    last = load_checkpoint(tmp_path / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (3, 16)
    assert trainer.checkpoint_callback is callback


@needs_trainer
def test_fit_default_dirpath_and_name(tmp_path):
    model = SequenceModel(val_losses=[1.0])
    args = dict(QUIET, logger=False)
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=2, **args)
    trainer.fit(model)
    assert _names(tmp_path / "checkpoints") == ["epoch=1-step=8.ckpt"]


@needs_trainer
def test_fit_every_n_train_steps_with_accumulation(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, filename="{step}")
    model = SequenceModel(val_losses=[1.0], train_batches=8)
    trainer = ember.Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        accumulate_grad_batches=2,
        limit_val_batches=0,
        callbacks=[callback],
        **QUIET,
    )
    trainer.fit(model)
    assert trainer.global_step == 4
    assert _names(tmp_path) == ["step=2.ckpt", "step=4.ckpt"]


@needs_trainer
def test_fit_save_weights_only_contents(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path, save_weights_only=True, filename="w")
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[callback], **QUIET)
    trainer.fit(SequenceModel(val_losses=[1.0]))
    checkpoint = load_checkpoint(tmp_path / "w.ckpt")
    assert "state_dict" in checkpoint
    assert "optimizer_states" not in checkpoint and "callbacks" not in checkpoint and "lr_schedulers" not in checkpoint

    full = ModelCheckpoint(dirpath=tmp_path / "full", filename="f")
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[full], **QUIET)
    trainer.fit(SequenceModel(val_losses=[1.0]))
    checkpoint = load_checkpoint(tmp_path / "full" / "f.ckpt")
    assert "optimizer_states" in checkpoint and full.state_key in checkpoint["callbacks"]

    # validating with the weights-only file: the callbacks have no state in it, so (as in Lightning) none
    # hears of the load; the full file is announced to them
    class Listening(ember.Callback):
        loaded: list[str] = []

        def on_load_checkpoint(self, trainer, pl_module, checkpoint):
            self.loaded.append(sorted(checkpoint["state_dict"])[0])

    tester = ember.Trainer(default_root_dir=tmp_path, callbacks=[Listening()], **QUIET)
    tester.validate(SequenceModel(val_losses=[1.0]), ckpt_path=tmp_path / "w.ckpt", verbose=False)
    assert Listening.loaded == []
    tester.validate(SequenceModel(val_losses=[1.0]), ckpt_path=tmp_path / "full" / "f.ckpt", verbose=False)
    assert len(Listening.loaded) == 1


@needs_trainer
def test_fit_last_is_latest_and_resumes(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_last=True, filename="{epoch}")
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=3, callbacks=[callback], **QUIET)
    trainer.fit(SequenceModel(val_losses=[1.0, 2.0, 3.0]))
    assert load_checkpoint(tmp_path / "last.ckpt")["epoch"] == 2
    assert _names(tmp_path) == ["epoch=0.ckpt", "last.ckpt"]

    resumed = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_last=True, filename="{epoch}")
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=4, callbacks=[resumed], **QUIET)
    with pytest.warns(UserWarning, match="exists and is not empty"):
        trainer.fit(SequenceModel(val_losses=[5.0]), ckpt_path="last")
    assert trainer.current_epoch == 4
    assert resumed.best_model_path == str(tmp_path / "epoch=0.ckpt")  # state came back
    # the resumed run wrote no top-k file (5.0 is worse), but the run it goes on with did (epoch 0): `last` is the
    # one written at the last epoch's end, as in the uninterrupted run. (Lightning's resumed run forgets that
    # top-k file and writes `last` again as training ends, with the epoch counted.)
    assert load_checkpoint(tmp_path / "last.ckpt")["epoch"] == 3
    uninterrupted = ModelCheckpoint(dirpath=tmp_path / "whole", monitor="val_loss", save_last=True, filename="{epoch}")
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=4, callbacks=[uninterrupted], **QUIET)
    trainer.fit(SequenceModel(val_losses=[1.0, 2.0, 3.0, 5.0]))
    assert load_checkpoint(tmp_path / "whole" / "last.ckpt")["epoch"] == 3
    # the score of the last top-k save, as in the uninterrupted run (Lightning's resumed callback has None)
    assert resumed.current_score == uninterrupted.current_score == 1.0


class PlateauModel(SequenceModel):
    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


@pytest.mark.parametrize("options", [{"every_n_epochs": 10, "save_top_k": -1}, {"save_top_k": 0}])
def test_with_no_topk_file_in_the_run_last_holds_the_state_at_the_end_of_training(tmp_path, options):
    # Lightning writes `last` only with a top-k file or as training ends; with none due (careamics saves
    # every 10 epochs) its `last.ckpt` holds the end of training: the last epoch counted and its scheduler
    # step taken. Ember's epoch-end `last` came before them, and was kept.
    callback = ModelCheckpoint(dirpath=tmp_path, save_last=True, **options)
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=2, callbacks=[callback], **QUIET)
    trainer.fit(PlateauModel(val_losses=[1.0, 1.0]))
    assert _names(tmp_path) == ["last.ckpt"]
    saved = load_checkpoint(tmp_path / "last.ckpt")
    assert saved["epoch"] == trainer.current_epoch == 2
    assert saved["lr_schedulers"][0]["last_epoch"] == 2
    assert saved["lr_schedulers"][0]["_last_lr"] == [0.025]


@needs_trainer
def test_fit_missing_monitor_raises_after_validation(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path, monitor="nope")
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[callback], **QUIET)
    with pytest.raises(MisconfigurationException, match="could not find the monitored key.*'val_loss'"):
        trainer.fit(SequenceModel(val_losses=[1.0]))


def test_find_last_checkpoints(tmp_path):
    for name in ("last.ckpt", "last-v1.ckpt", "epoch=0.ckpt", "last.txt"):
        (tmp_path / name).write_bytes(b"x")
    callback = ModelCheckpoint(dirpath=tmp_path)
    found = {os.path.basename(p) for p in callback._find_last_checkpoints(FakeTrainer(tmp_path))}
    assert found == {"last.ckpt", "last-v1.ckpt"}
    assert ModelCheckpoint(dirpath=tmp_path / "missing")._find_last_checkpoints(FakeTrainer(tmp_path)) == set()


def test_exception_save_never_overwrites_a_topk_file(tmp_path):
    trainer, callback = _setup(tmp_path, monitor="val_loss", filename="best", save_on_exception=True)
    _epoch(trainer, callback, 0, val_loss=1.0)
    trainer.advance(steps=2)
    callback.on_exception(trainer, None, RuntimeError("boom"))
    assert _names(tmp_path) == ["best-v1.ckpt", "best.ckpt"]
    assert load_checkpoint(tmp_path / "best.ckpt")["global_step"] == 4
    assert load_checkpoint(tmp_path / "best-v1.ckpt")["global_step"] == 6


def test_step_trigger_waits_for_a_validation_about_to_refresh_the_metric(tmp_path):
    trainer, callback = _setup(
        tmp_path, monitor="val_loss", every_n_train_steps=2, save_top_k=-1, filename="{step}-{val_loss:.1f}"
    )
    trainer.val_check_batch = 2  # validation after every 2nd batch
    trainer.advance(steps=2, metrics={"val_loss": 9.0})  # stale value from an earlier validation
    callback.on_train_batch_end(trainer, None, None, None, 1)
    assert trainer.saved == []
    trainer.advance(metrics={"val_loss": 3.0})
    callback.on_validation_end(trainer, None)
    assert _names(tmp_path) == ["step=2-val_loss=3.0.ckpt"]
    trainer.val_check_batch = 3  # validation will not follow batch 3 (index 3 -> 4 % 3 != 0)
    trainer.advance(steps=2)
    callback.on_train_batch_end(trainer, None, None, None, 3)
    assert _names(tmp_path) == ["step=2-val_loss=3.0.ckpt", "step=4-val_loss=3.0.ckpt"]


@needs_trainer
@pytest.mark.parametrize(
    ("val_check_interval", "expected"),
    [
        # Lightning 2.6 names step=6 after the stale 4.0 here; Ember waits for the fresh 3.0.
        (
            2,
            [
                "step=2-val_loss=5.0.ckpt",
                "step=4-val_loss=4.0.ckpt",
                "step=6-val_loss=3.0.ckpt",
                "step=8-val_loss=2.0.ckpt",
            ],
        ),
        # One validation per epoch: the step-2 save waits for it and lands at step 4.
        (1.0, ["step=4-val_loss=5.0.ckpt", "step=6-val_loss=5.0.ckpt", "step=8-val_loss=4.0.ckpt"]),
    ],
)
def test_fit_step_trigger_with_validation_metric(tmp_path, val_check_interval, expected):
    callback = ModelCheckpoint(
        dirpath=tmp_path, every_n_train_steps=2, monitor="val_loss", save_top_k=-1, filename="{step}-{val_loss:.1f}"
    )
    trainer = ember.Trainer(
        default_root_dir=tmp_path, max_epochs=2, val_check_interval=val_check_interval, callbacks=[callback], **QUIET
    )
    trainer.fit(SequenceModel(val_losses=[5.0, 4.0, 3.0, 2.0, 1.0]))
    assert _names(tmp_path) == expected


@needs_trainer
@pytest.mark.parametrize("monitor", ["step", "epoch"])
@pytest.mark.parametrize("limit_val_batches", [1, 0])
def test_a_step_trigger_monitoring_the_step_or_epoch_saves_at_every_trigger_as_in_lightning(
    tmp_path, monitor, limit_val_batches
):
    # "step" and "epoch" are in every save's candidates, never in callback_metrics: nothing to wait for
    callback = ModelCheckpoint(
        dirpath=tmp_path, monitor=monitor, mode="max", every_n_train_steps=1, save_top_k=-1, filename="{step}"
    )
    trainer = ember.Trainer(
        default_root_dir=tmp_path, max_epochs=2, limit_val_batches=limit_val_batches, callbacks=[callback], **QUIET
    )
    trainer.fit(SequenceModel(val_losses=[5.0, 4.0]))
    assert _names(tmp_path) == [f"step={step}.ckpt" for step in range(1, 9)]


@needs_trainer
def test_fit_train_time_interval_zero_saves_every_batch(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path, train_time_interval=timedelta(0), save_top_k=-1, filename="{step}")
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[callback], **QUIET)
    trainer.fit(SequenceModel())
    assert _names(tmp_path) == ["step=1.ckpt", "step=2.ckpt", "step=3.ckpt", "step=4.ckpt"]


@needs_trainer
@pytest.mark.parametrize("options", [{"val_check_interval": 0.5}, {"save_on_train_epoch_end": False}])
def test_a_monitor_nobody_logs_fails_at_the_first_validations_end_as_in_lightning(tmp_path, options):
    # Lightning's validation loop counts as run once a batch of it ran: the end of the first validation already
    # raises (Ember warned there and raised a validation later, or never within one epoch)
    checkpoint_options = {k: v for k, v in options.items() if k == "save_on_train_epoch_end"}
    callback = ModelCheckpoint(dirpath=tmp_path, monitor="val_los", **checkpoint_options)
    trainer_options = {k: v for k, v in options.items() if k != "save_on_train_epoch_end"}
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[callback], **QUIET, **trainer_options)
    with pytest.raises(MisconfigurationException, match=r"`ModelCheckpoint\(monitor='val_los'\)` could not find"):
        trainer.fit(SequenceModel(val_losses=[3.0, 2.0]))
    assert trainer.global_step == (2 if "val_check_interval" in options else 4)
    assert _names(tmp_path) == []


@needs_trainer
def test_fit_save_on_exception(tmp_path):
    from tests.callbacks.test_on_exception_checkpoint import _Crash

    callback = ModelCheckpoint(dirpath=tmp_path, save_on_exception=True, filename="{step}")
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=2, callbacks=[callback], **QUIET)
    with pytest.raises(RuntimeError, match="simulated failure"):
        trainer.fit(_Crash(crash_at_step=6))
    assert _names(tmp_path) == ["step=4.ckpt", "step=6.ckpt"]
    assert load_checkpoint(tmp_path / "step=6.ckpt")["global_step"] == 6


def test_state_from_a_lightning_checkpoint(tmp_path):
    """Lightning 2.6.6 wrote this file; the state key and the state both carry over."""
    from pathlib import Path

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "lightning_2.6.6.ckpt"
    states = load_checkpoint(fixture)["callbacks"]
    same_dir = ModelCheckpoint(dirpath="/tmp/ember_lightning_fixture/checkpoints", monitor="val_loss", save_last=True)
    same_dir.load_state_dict(states[same_dir.state_key])
    assert same_dir.best_model_path.endswith("epoch=1-step=6.ckpt")
    assert same_dir.last_model_path.endswith("last.ckpt")
    assert len(same_dir.best_k_models) == 1 and same_dir.kth_value == same_dir.best_model_score
    moved = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss")
    with pytest.warns(UserWarning, match="The dirpath has changed"):
        moved.load_state_dict(states[moved.state_key])
    assert moved.best_model_path == same_dir.best_model_path and moved.best_k_models == {}


@needs_trainer
def test_fit_default_dirpath_follows_the_logger(tmp_path):
    args = {key: value for key, value in QUIET.items() if key != "logger"}
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, **args)
    trainer.fit(SequenceModel(val_losses=[1.0]))
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    assert trainer.checkpoint_callback.dirpath == str(folder)
    assert _names(folder) == ["epoch=0-step=4.ckpt"]


def test_remote_dirpath_saves_and_evicts():
    from ember.checkpoint import get_filesystem

    folder = "memory://ember-model-checkpoint/run"
    trainer = FakeTrainer("memory://ember-model-checkpoint")
    callback = ModelCheckpoint(dirpath=folder, monitor="val_loss", save_last=True, filename="{epoch}")
    trainer.callbacks = [callback]
    callback.setup(trainer, None, "fit")
    _epoch(trainer, callback, 0, val_loss=2.0)
    _epoch(trainer, callback, 1, val_loss=1.0)
    fs = get_filesystem(folder)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False))
    assert names == ["epoch=1.ckpt", "last.ckpt"]
    assert load_checkpoint(f"{folder}/last.ckpt")["epoch"] == 1
    fs.rm(folder, recursive=True)


# ---- the folder, checked and swept when fit starts ---------------------------------------------------
class _CountingModel(SequenceModel):
    def __init__(self) -> None:
        super().__init__(val_losses=[1.0])
        self.steps_trained = 0

    def training_step(self, batch, batch_idx):
        self.steps_trained += 1
        return super().training_step(batch, batch_idx)


@needs_trainer
def test_a_checkpoint_folder_that_is_a_file_fails_before_any_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for dirpath in (blocker, blocker / "sub"):
        model = _CountingModel()
        trainer = ember.Trainer(max_epochs=1, callbacks=[ModelCheckpoint(dirpath=dirpath)], **QUIET)
        message = rf"ModelCheckpoint cannot save checkpoints to '{dirpath}': '{blocker}' is a file, not a folder"
        with pytest.raises(NotADirectoryError, match=message + r".*Set `ModelCheckpoint\(dirpath=...\)` to a folder"):
            trainer.fit(model)
        assert model.steps_trained == 0  # found at the start, not after an epoch of work

    model = _CountingModel()
    trainer = ember.Trainer(max_epochs=1, default_root_dir=blocker, **QUIET)  # logger=False: the callback decides
    with pytest.raises(
        NotADirectoryError,
        match=r"checkpoints': .* Set `Trainer\(default_root_dir=...\)` \(or the logger's `save_dir`\) to a folder",
    ):
        trainer.fit(model)
    assert model.steps_trained == 0


@needs_trainer
@pytest.mark.timeout(120)
def test_a_read_only_checkpoint_folder_fails_before_any_training_even_for_root(tmp_path):
    from tests.helpers.small_disks import run_on_small_disk

    # a read-only mount refuses root too (chmod does not)
    script = """
import json, os
import ember
from ember.callbacks.model_checkpoint import ModelCheckpoint
from tests.helpers.checkpoint_models import QUIET, SequenceModel

steps = []
class Model(SequenceModel):
    def training_step(self, batch, batch_idx):
        steps.append(batch_idx)
        return super().training_step(batch, batch_idx)

trainer = ember.Trainer(max_epochs=1, callbacks=[ModelCheckpoint(dirpath=os.path.join(os.getcwd(), "ckpts"))], **QUIET)
try:
    trainer.fit(Model(val_losses=[1.0]))
except PermissionError as error:
    print(json.dumps({"error": str(error), "steps": len(steps), "cwd": os.getcwd()}))
"""
    proc = run_on_small_disk(script, size_kib=64, tmp_path=tmp_path, read_only=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["steps"] == 0
    assert (
        f"cannot save checkpoints to '{report['cwd']}/ckpts': the folder '{report['cwd']}' is not writable"
        in (report["error"])
    )


def _age(path, seconds=3600.0):
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


@needs_trainer
def test_fit_sweeps_what_killed_saves_left_but_never_a_live_save(tmp_path, caplog):
    import fcntl

    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / "epoch=0-step=4.ckpt").write_bytes(b"a checkpoint")
    stale = folder / ".epoch=1-step=8.ckpt.tmp-0123456789abcdef"  # a save killed an hour ago
    stale.write_bytes(b"PK half a checkpoint")
    old_style = folder / ".last.ckpt.tmp-a1b2c3d4"  # older Ember versions' temp names
    old_style.write_bytes(b"PK")
    fresh = folder / ".epoch=2-step=12.ckpt.tmp-fedcba9876543210"  # another trainer writing right now
    fresh.write_bytes(b"PK")
    live = folder / ".epoch=3-step=16.ckpt.tmp-00112233445566aa"  # a slow save, still locked by its writer
    live.write_bytes(b"PK")
    orphan = folder / ".sharded.ckpt.old-0011223344556677"  # the only copy: its replacement never arrived
    orphan.mkdir()
    (orphan / "meta.pt").write_bytes(b"x")
    deleting = folder / ".evicted.ckpt.del-8899aabbccddeeff"  # a folder being deleted when the kill came
    deleting.mkdir()
    (deleting / "__0_0.distcp").write_bytes(b"x")
    mine = folder / ".notes.tmp-1"  # hidden, but not Ember's naming
    mine.write_bytes(b"keep me")
    for path in (stale, old_style, live, orphan / "meta.pt", orphan, deleting / "__0_0.distcp", deleting, mine):
        _age(path)
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as the writing process holds it
    try:
        with caplog.at_level("INFO", logger="ember"), pytest.warns(UserWarning, match="exists and is not empty"):
            trainer = ember.Trainer(max_epochs=1, callbacks=[ModelCheckpoint(dirpath=folder)], **QUIET)
            trainer.fit(SequenceModel(val_losses=[1.0]))
    finally:
        os.close(holder)
    left = sorted(os.listdir(folder))
    assert stale.name not in left and old_style.name not in left and deleting.name not in left
    assert {fresh.name, live.name, orphan.name, mine.name, "epoch=0-step=4.ckpt"} <= set(left)
    assert "Removed what interrupted checkpoint saves left in" in caplog.text and stale.name in caplog.text

    # a folder that held nothing but what killed saves left is not "not empty" once swept
    only_leftovers = tmp_path / "only_leftovers"
    only_leftovers.mkdir()
    leftover = only_leftovers / ".last.ckpt.tmp-0123456789abcdef"
    leftover.write_bytes(b"PK")
    _age(leftover)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*does not have many workers")  # on a machine with CPUs to spare
        trainer = ember.Trainer(max_epochs=1, callbacks=[ModelCheckpoint(dirpath=only_leftovers)], **QUIET)
        trainer.fit(SequenceModel(val_losses=[1.0]))
    assert not leftover.exists()


# ---- manual optimization: the pre-step weights recipe of Lightning 2.6 ----------------------------


class _ManualSteps(ember.LightningModule):
    """Manual optimization with one scripted loss per batch.

    ``keep_pre_step``: None keeps nothing, "layer" follows Lightning 2.6's recipe (``self.layer``'s
    state dict), "module" keeps the whole module's state dict.
    """

    def __init__(self, keep_pre_step: str | None):
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.automatic_optimization = False
        self.keep_pre_step = keep_pre_step
        self.saved_models: dict[int, dict[str, torch.Tensor]] = {}
        self.before_step: dict[int, dict[str, torch.Tensor]] = {}  # the test's own record
        self.scores = [1.0, 1.0, 0.0, 1.0]

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).square().mean()
        self.log("score", torch.tensor(self.scores[batch_idx]), on_step=True, on_epoch=True)
        self.before_step[batch_idx] = {k: v.detach().clone() for k, v in self.layer.state_dict().items()}
        if self.keep_pre_step == "layer":
            self.saved_models[batch_idx] = self.before_step[batch_idx]
        elif self.keep_pre_step == "module":
            self.saved_models = {batch_idx: {k: v.detach().clone() for k, v in self.state_dict().items()}}
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _fit_manual(tmp_path, keep_pre_step: str | None, model=None, **trainer_kwargs):
    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 3)), batch_size=1)
    model = model or _ManualSteps(keep_pre_step)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="score", every_n_train_steps=1, save_weights_only=True)
    trainer = ember.Trainer(max_epochs=1, callbacks=[checkpoint], **QUIET, **trainer_kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, data)
    return model, checkpoint, [str(w.message) for w in caught]


@pytest.mark.parametrize("keep", ["layer", "module"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_manual_optimization_saves_the_pre_step_weights_the_module_kept(tmp_path, asynchronous, keep):
    plugins = [ember.plugins.AsyncCheckpointIO()] if asynchronous else []
    model, checkpoint, messages = _fit_manual(tmp_path, keep_pre_step=keep, plugins=plugins)
    best = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    assert best.keys() == {"layer.weight", "layer.bias"}
    for name, value in model.before_step[2].items():  # the best score came from batch 2, before its step
        torch.testing.assert_close(best[f"layer.{name}"], value, rtol=0, atol=0)
    # the live weights are the trained ones again, not the last snapshot
    assert not torch.equal(model.layer.weight, model.before_step[3]["weight"])
    assert not any("manual optimization and every_n_train_steps" in m for m in messages)


class _ManualNet(_ManualSteps):
    """The whole-module recipe on a module whose weights are not under ``layer``."""

    def __init__(self):
        super().__init__(keep_pre_step="module")
        self.net = self.layer
        del self.layer

    @property
    def layer(self):  # the test's record reads `self.layer`; the callback must not find a `layer` module
        return self.net

    @layer.setter
    def layer(self, value):
        self.net = value


def test_manual_optimization_whole_module_recipe_needs_no_layer_attribute(tmp_path):
    model = _ManualNet()
    _, checkpoint, messages = _fit_manual(tmp_path, keep_pre_step="module", model=model)
    best = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    assert best.keys() == {"net.weight", "net.bias"}
    for name, value in model.before_step[2].items():
        torch.testing.assert_close(best[f"net.{name}"], value, rtol=0, atol=0)
    assert not any("manual optimization and every_n_train_steps" in m for m in messages)


def test_manual_optimization_without_a_pre_step_state_warns_once_saying_why_and_how(tmp_path):
    model, checkpoint, messages = _fit_manual(tmp_path, keep_pre_step=None)
    warned = [m for m in messages if "Using ModelCheckpoint with manual optimization and every_n_train_steps" in m]
    assert len(warned) == 1
    # Lightning's own test matches this sentence
    assert "The checkpoint will contain the model state AFTER optimization" in warned[0]
    assert "saves after `_ManualSteps.training_step` has returned" in warned[0]
    assert "include every `optimizer.step()` it took" in warned[0]
    assert "(`monitor='score'`)" in warned[0]
    assert (
        "self.saved_models = {batch_idx: {k: v.detach().clone() for k, v in self.state_dict().items()}}" in (warned[0])
    )
    # the recipe runs as written: it takes the optimizer it steps from the module
    assert "def training_step(self, batch, batch_idx):\n    optimizer = self.optimizers()\n" in warned[0]
    best = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    for name, value in model.before_step[3].items():  # batch 2's weights after its step, as in Lightning
        torch.testing.assert_close(best[f"layer.{name}"], value, rtol=0, atol=0)


def test_manual_optimization_pre_step_state_with_wrong_keys_names_them(tmp_path):
    class WrongKeys(_ManualSteps):
        def training_step(self, batch, batch_idx):
            self.saved_models = {batch_idx: {"encoder.weight": torch.zeros(1, 3)}}
            super().training_step(batch, batch_idx)

    with pytest.raises(ValueError) as raised:
        _fit_manual(tmp_path, keep_pre_step=None, model=WrongKeys(keep_pre_step=None))
    message = str(raised.value)
    assert "`WrongKeys.saved_models[0]` has the keys ['encoder.weight']" in message
    assert "`WrongKeys.state_dict()` (['layer.bias', 'layer.weight']) nor of `self.layer.state_dict()`" in message
    assert "self.saved_models = {batch_idx:" in message


def test_automatic_optimization_step_saves_do_not_warn(tmp_path):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 3)), batch_size=1)

    class Automatic(_ManualSteps):
        def __init__(self):
            super().__init__(keep_pre_step=None)
            self.automatic_optimization = True

        def training_step(self, batch, batch_idx):
            self.log("score", torch.tensor(self.scores[batch_idx]))
            return self.layer(batch[0]).square().mean()

    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="score", every_n_train_steps=1)
    trainer = ember.Trainer(max_epochs=1, callbacks=[checkpoint], **QUIET)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(Automatic(), data)
    assert checkpoint.best_model_path.endswith("step=3.ckpt")
    assert not any("manual optimization" in str(w.message) for w in caught)


def test_manual_optimization_saves_on_a_time_trigger_too(tmp_path):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 3)), batch_size=1)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, train_time_interval=timedelta(0), save_top_k=-1)
    trainer = ember.Trainer(max_epochs=1, callbacks=[checkpoint], **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_ManualSteps(keep_pre_step="layer"), data)
    assert _names(tmp_path) == [f"epoch=0-step={step}.ckpt" for step in (1, 2, 3, 4)]


def test_manual_optimization_without_a_pre_step_state_names_the_time_trigger_the_callback_has(tmp_path):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(2, 3)), batch_size=1)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, train_time_interval=timedelta(0), save_top_k=-1)
    trainer = ember.Trainer(max_epochs=1, callbacks=[checkpoint], **QUIET)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(_ManualSteps(keep_pre_step=None), data)
    warned = [str(w.message) for w in caught if "pre-optimization state" in str(w.message)]
    assert len(warned) == 1
    assert warned[0].startswith("Using ModelCheckpoint with manual optimization and train_time_interval, but no")
    assert "every_n_train_steps" not in warned[0]  # the callback has no step trigger


def test_the_save_steps_subclasses_override_have_lightnings_signatures():
    # libraries override and call these private steps by keyword (autogluon's AutoMMModelCheckpoint)
    expected = {
        "_save_checkpoint": ["self", "trainer", "filepath"],
        "_save_topk_checkpoint": ["self", "trainer", "monitor_candidates"],
        "_save_monitor_checkpoint": ["self", "trainer", "monitor_candidates"],
        "_save_none_monitor_checkpoint": ["self", "trainer", "monitor_candidates"],
        "_save_last_checkpoint": ["self", "trainer", "monitor_candidates"],
        "_update_best_and_save": ["self", "current", "trainer", "monitor_candidates"],
        "_get_metric_interpolated_filepath_name": ["self", "monitor_candidates", "trainer", "del_filepath"],
        "_format_checkpoint_name": ["self", "filename", "metrics", "prefix", "auto_insert_metric_name"],
        "_remove_checkpoint": ["self", "trainer", "filepath"],
        "_should_remove_checkpoint": ["self", "trainer", "previous", "current"],
        "_monitor_candidates": ["self", "trainer"],
    }
    import inspect

    for name, parameters in expected.items():
        assert list(inspect.signature(getattr(ModelCheckpoint, name)).parameters) == parameters, name
    assert inspect.signature(ModelCheckpoint._format_checkpoint_name).parameters["prefix"].default is None


class _OwnWrites(ModelCheckpoint):
    """autogluon's pattern: its own ``_save_checkpoint`` (no super call) and a keyword call of the ranking step."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.written: list[str] = []

    def _save_checkpoint(self, trainer, filepath):
        trainer.save_checkpoint(filepath, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self.written.append(os.path.basename(filepath))

    def _update_best_and_save(self, current, trainer, monitor_candidates):
        super()._update_best_and_save(current=current, trainer=trainer, monitor_candidates=monitor_candidates)
        self.to_yaml()


def test_a_subclass_with_its_own_save_step_ranks_and_writes_as_in_lightning(tmp_path):
    callback = _OwnWrites(dirpath=tmp_path, monitor="val_loss", save_top_k=2, save_last=True)
    trainer = ember.Trainer(max_epochs=3, callbacks=[callback], default_root_dir=tmp_path, **QUIET)
    trainer.fit(SequenceModel(val_losses=[0.5, 0.2, 0.4], train_batches=2))
    ranked = ["epoch=0-step=2.ckpt", "epoch=1-step=4.ckpt", "epoch=2-step=6.ckpt"]
    # as Lightning: top-k, then last, at each epoch end; and `last` again at the end, since the subclass's
    # writes never marked one as saved
    assert callback.written == [ranked[0], "last.ckpt", ranked[1], "last.ckpt", ranked[2], "last.ckpt", "last.ckpt"]
    assert _names(tmp_path) == sorted(["best_k_models.yaml", "last.ckpt", *ranked[1:]])
    assert callback.best_model_path == str(tmp_path / ranked[1])


def test_step_triggers_wait_for_a_validation_counted_across_epochs(tmp_path):
    """Validation every 2 batches counted across epochs (`check_val_every_n_epoch=None`) runs right after each
    `every_n_train_steps=2` trigger: each file is named and ranked by that validation, not the one before."""
    from torch.utils.data import DataLoader, TensorDataset

    scores = iter([0.9, 0.8, 0.7, 0.6])

    class Scored(ember.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).pow(2).mean()

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self.score)

        def on_validation_epoch_start(self):
            self.score = next(scores)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", every_n_train_steps=2, save_top_k=-1)
    options = {**QUIET, "num_sanity_val_steps": 0, "val_check_interval": 2, "check_val_every_n_epoch": None}
    trainer = ember.Trainer(max_epochs=2, callbacks=[checkpoint], **options)
    trainer.fit(
        Scored(),
        DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=1),
        DataLoader(TensorDataset(torch.randn(1, 2))),
    )
    ranked = {path.split("step=")[1]: round(score.item(), 4) for path, score in checkpoint.best_k_models.items()}
    assert ranked == {"2.ckpt": 0.9, "4.ckpt": 0.8, "6.ckpt": 0.7, "8.ckpt": 0.6}


def test_an_accumulating_batch_before_the_first_step_is_no_step_trigger(tmp_path):
    """With `accumulate_grad_batches=2` the first batch ends at global step 0, which every `every_n_train_steps`
    divides. It is no trigger: Lightning takes it for one, finds the monitored key missing, defers that save, and
    writes `step=6.ckpt` at the first validation's end, a step the callback was not asked to save at."""

    class EpochEndKey(BoringModel):
        def on_train_epoch_end(self):
            self.log("train_metric", float(self.current_epoch))

    checkpoint = ModelCheckpoint(
        dirpath=tmp_path,
        monitor="train_metric",
        mode="max",
        every_n_train_steps=5,
        save_top_k=-1,
        filename="{step}",
        save_on_train_epoch_end=False,
    )
    # 3 steps an epoch; validation only at epoch 1's end (step 6); the key exists from epoch 0's end (step 3)
    options = {"limit_train_batches": 6, "limit_val_batches": 2, "check_val_every_n_epoch": 2}
    trainer = ember.Trainer(max_epochs=2, accumulate_grad_batches=2, callbacks=[checkpoint], **options, **QUIET)
    trainer.fit(EpochEndKey())
    assert _names(tmp_path) == ["step=5.ckpt"]


def test_a_filename_metric_not_logged_when_a_checkpoint_is_saved_is_named_once(tmp_path):
    # `BoringModel` logs no `val_acc`: the names hold 0 for it, as Lightning writes them, and a warning says why
    callback = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}-{val_acc:.2f}", every_n_train_steps=2, save_top_k=-1)
    trainer = ember.Trainer(max_steps=4, callbacks=[callback], limit_val_batches=0, **QUIET)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(BoringModel())
    said = [str(w.message) for w in caught if "names `val_acc`" in str(w.message)]
    assert said == [
        "`ModelCheckpoint(filename='{epoch}-{val_acc:.2f}')` names `val_acc`, which has not been logged when this"
        " checkpoint is saved (epoch 0, step 2), so the name holds 0 for it. Log `val_acc` before this save, or save"
        " when it exists (e.g. `monitor='val_acc'` saves after the validation that logs it)."
    ]
    assert os.listdir(tmp_path) == ["epoch=0-val_acc=0.00.ckpt"]  # the step-4 save wrote over the step-2 one


def _batch_end_calls(tmp_path, checkpoint):
    """How many times ``ModelCheckpoint``'s own batch-end code ran during a four-batch fit."""
    import sys

    from tests.helpers.callback_models import make_regressor, train_loader

    code, ran = ModelCheckpoint.on_train_batch_end.__code__, []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code is code:
            ran.append(1)

    trainer = ember.Trainer(
        **{**QUIET, "enable_checkpointing": True}, max_epochs=1, default_root_dir=tmp_path, callbacks=[checkpoint]
    )
    sys.setprofile(profile)
    try:
        trainer.fit(make_regressor(ember)(), train_loader(n=16, batch_size=4))
    finally:
        sys.setprofile(None)
    return len(ran)


def test_the_batch_end_hook_is_called_only_where_it_may_save(tmp_path):
    """Without a step or time interval the batch-end hook has nothing to do and the trainer leaves it out (a call
    on every batch of nearly every fit); with one, and for a subclass's own hook, it is called at each batch."""
    assert _batch_end_calls(tmp_path / "a", ModelCheckpoint()) == 0
    assert _batch_end_calls(tmp_path / "b", ModelCheckpoint(every_n_train_steps=3)) == 4
    assert _batch_end_calls(tmp_path / "c", ModelCheckpoint(train_time_interval=timedelta(hours=1))) == 4

    seen = []

    class Counting(ModelCheckpoint):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(batch_idx)
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    assert _batch_end_calls(tmp_path / "d", Counting()) == 4
    assert seen == [0, 1, 2, 3]


def test_a_batch_end_hook_patched_on_the_class_or_the_instance_is_called(tmp_path, monkeypatch):
    seen = []
    patched = ModelCheckpoint()
    patched.on_train_batch_end = lambda trainer, module, outputs, batch, batch_idx: seen.append(("instance", batch_idx))
    _batch_end_calls(tmp_path / "a", patched)
    monkeypatch.setattr(
        ModelCheckpoint,
        "on_train_batch_end",
        lambda self, trainer, module, outputs, batch, i: seen.append(("class", i)),
    )
    _batch_end_calls(tmp_path / "b", ModelCheckpoint())
    assert seen == [("instance", i) for i in range(4)] + [("class", i) for i in range(4)]


def test_a_profiled_fit_records_the_idle_batch_end_hook_as_lightnings_does(tmp_path):
    from tests.helpers.callback_models import make_regressor, train_loader

    from ember.profilers import SimpleProfiler

    profiler = SimpleProfiler()
    trainer = ember.Trainer(
        **{**QUIET, "enable_checkpointing": True}, max_epochs=1, default_root_dir=tmp_path, profiler=profiler
    )
    trainer.fit(make_regressor(ember)(), train_loader(n=16, batch_size=4))
    recorded = [a for a in profiler.recorded_durations if a.startswith("[Callback]ModelCheckpoint")]
    batch_end = [a for a in recorded if a.endswith(".on_train_batch_end")]
    assert len(batch_end) == 1 and len(profiler.recorded_durations[batch_end[0]]) == 4, recorded


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"monitor": ["val_loss"]},
            "`ModelCheckpoint(monitor=['val_loss'])` must be the name of a logged value, or None, not list.",
        ),
        ({"monitor": 1}, "`ModelCheckpoint(monitor=1)` must be the name of a logged value, or None, not int."),
        ({"save_top_k": None}, "`ModelCheckpoint(save_top_k=None)` must be an int: how many best checkpoints to keep"),
        ({"save_top_k": 0.5}, "`ModelCheckpoint(save_top_k=0.5)` must be an int: how many best checkpoints to keep"),
        ({"every_n_epochs": "2"}, "`ModelCheckpoint(every_n_epochs='2')` must be an int: the interval between saves"),
        ({"filename": 3}, "`ModelCheckpoint(filename=3)` must be a str, e.g. '{epoch}-{val_loss:.2f}', not int."),
        ({"dirpath": 0}, "`ModelCheckpoint(dirpath=0)` must be a folder path (a str or a `pathlib.Path`), not int."),
        (
            {"train_time_interval": 60},
            "`ModelCheckpoint(train_time_interval=60)` must be a `datetime.timedelta`, not int.",
        ),
    ],
)
def test_an_argument_of_a_type_that_would_fail_in_the_loop_is_refused_where_it_is_given(kwargs, message):
    # (Lightning takes them and fails in `fit`: "unhashable type: 'list'", a KeyError '' for a float
    # save_top_k, "'int' object has no attribute 'total_seconds'")
    with pytest.raises(TypeError) as raised:
        ModelCheckpoint(**kwargs)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("filename", ["{", "epoch}", "{epoch}-{val_loss"])
def test_a_file_name_with_an_unbalanced_brace_is_refused_before_training(filename):
    # it failed at the first save, an epoch of training later: "Single '{' encountered in format string"
    with pytest.raises(ValueError, match=re.escape(f"`ModelCheckpoint(filename={filename!r})` is not a name template")):
        ModelCheckpoint(filename=filename)
    ModelCheckpoint(filename="{{literal}}-{epoch}")  # doubled braces are text, as in `str.format`


def test_a_format_a_logged_value_cannot_take_names_the_template(tmp_path):
    # logged values are floats: `:d` failed at the save with Python's "Unknown format code 'd' for object of type
    # 'float'" alone
    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="{n:d}")
    with pytest.raises(ValueError, match=r"template '\{n:d\}' could not be filled in .*Unknown format code 'd'.*:\.0f"):
        checkpoint.format_checkpoint_name({"n": torch.tensor(3.0)})
    assert ModelCheckpoint(dirpath=tmp_path, filename="{n:.0f}").format_checkpoint_name(
        {"n": torch.tensor(3.0)}
    ) == os.path.join(str(tmp_path), "n=3.ckpt")


@pytest.mark.parametrize(
    "kwargs", [{"every_n_epochs": 0}, {"every_n_train_steps": ""}, {"filename": ""}, {"dirpath": ""}]
)
def test_false_intervals_and_names_still_mean_not_set_as_in_lightning(kwargs):
    ModelCheckpoint(**kwargs)
