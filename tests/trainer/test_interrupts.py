"""Failures inside a run: hooks, teardown, status, and what the user gets back."""

import logging
import os
import signal

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.trainer.states import TrainerStatus

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)


class Failing(ember.LightningModule):
    def __init__(self, error):
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.error = error

    def training_step(self, batch, batch_idx):
        if batch_idx == 2:
            raise self.error
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Recorder(ember.Callback):
    def __init__(self):
        self.events = []

    def on_exception(self, trainer, pl_module, exception):
        self.events.append(("on_exception", type(exception).__name__))

    def teardown(self, trainer, pl_module, stage):
        self.events.append(("teardown", stage))


class _HeardData(ember.LightningDataModule):
    """Data for every stage; records the exceptions its `on_exception` hears in ``heard``."""

    def __init__(self, heard):
        super().__init__()
        self.heard = heard

    def train_dataloader(self):
        return _loader()

    def test_dataloader(self):
        return _loader()

    def on_exception(self, exception):
        self.heard.append(("datamodule", type(exception).__name__))


def _loader():
    return DataLoader(TensorDataset(torch.randn(32, 4)), batch_size=4)


def test_an_error_calls_on_exception_then_reraises(tmp_path):
    recorder = Recorder()
    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[recorder], **QUIET)
    with pytest.raises(ValueError, match="bad batch"):
        trainer.fit(Failing(ValueError("bad batch")), _loader())
    assert recorder.events == [("on_exception", "ValueError")]  # no teardown hooks, as in Lightning
    assert trainer.interrupted and trainer.state.status == TrainerStatus.INTERRUPTED


def test_a_call_that_fails_before_its_first_hook_still_tells_the_callbacks_and_the_datamodule(tmp_path):
    # `ckpt_path="best"` without a best checkpoint fails before `setup`; Lightning calls `on_exception` anyway
    heard = []
    data = _HeardData(heard)

    class Tested(Failing):
        def test_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

    recorder = Recorder()
    trainer = ember.Trainer(default_root_dir=tmp_path, callbacks=[recorder], **QUIET)
    with pytest.raises(ValueError, match="best"):
        trainer.test(Tested(None), datamodule=data, ckpt_path="best")
    assert recorder.events == [("on_exception", "ValueError")]  # no setup ran, so no teardown either
    assert heard == [("datamodule", "ValueError")]


def test_keyboard_interrupt_shuts_down_gracefully_and_restores_sigint(tmp_path):
    recorder = Recorder()
    before = signal.getsignal(signal.SIGINT)
    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[recorder], **QUIET)
    with pytest.raises(SystemExit) as exit_info:
        trainer.fit(Failing(KeyboardInterrupt()), _loader())
    assert exit_info.value.code == 1
    assert recorder.events == [("on_exception", "KeyboardInterrupt")]
    assert trainer.interrupted
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl+C works again afterwards


def test_should_stop_ends_training_after_min_epochs(tmp_path, caplog):
    class StopAtOnce(ember.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            trainer.should_stop = True

    model = Failing(RuntimeError("never raised"))
    model.training_step = lambda batch, batch_idx: model.layer(batch[0]).sum()
    trainer = ember.Trainer(max_epochs=5, min_epochs=2, default_root_dir=tmp_path, callbacks=[StopAtOnce()], **QUIET)
    with caplog.at_level(logging.DEBUG, logger="ember"):
        trainer.fit(model, _loader())
    assert trainer.current_epoch == 2  # the stop is held until min_epochs are done
    # Lightning's debug line for the stop, once, when it happens
    said = [r.getMessage() for r in caplog.records if "should_stop" in r.getMessage() and "stopped" in r.getMessage()]
    assert said == ["`Trainer.fit` stopped: `trainer.should_stop` was set."]


@pytest.mark.parametrize("takes_iterator", [False, True])
def test_loggers_save_after_each_batch_that_ends_with_should_stop_set(tmp_path, takes_iterator):
    """As in Lightning: a batch that ends with `should_stop` set saves every logger, also while min_epochs
    keeps training going after the stop."""

    class Recording(ember.loggers.Logger):
        name, version = "rec", 0

        def __init__(self):
            super().__init__()
            self.events = []

        def log_metrics(self, metrics, step=None):
            self.events.append(f"log@{step}")

        def log_hyperparams(self, *args, **kwargs):
            pass

        def save(self):
            self.events.append("save")

    class StopAtStep2(ember.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 2:
                trainer.should_stop = True

    class Model(Failing):
        def training_step(self, batch, batch_idx):
            loss = self.layer(batch[0]).sum()
            self.log("loss", loss, batch_size=2)
            return loss

    class IteratorModel(Model):
        def training_step(self, dataloader_iter):
            batch, batch_idx, _ = next(dataloader_iter)
            return super().training_step(batch, batch_idx)

    logger = Recording()
    options = {**QUIET, "logger": logger, "log_every_n_steps": 1}
    trainer = ember.Trainer(max_epochs=3, min_epochs=2, default_root_dir=tmp_path, callbacks=[StopAtStep2()], **options)
    model = (IteratorModel if takes_iterator else Model)(None)
    trainer.fit(model, DataLoader(TensorDataset(torch.randn(6, 4)), batch_size=2))
    # a save as the run starts, one after each log, one more after each batch from the stop (at step 2) on,
    # and the one of `finalize`
    stopped = [event for step in range(1, 6) for event in (f"log@{step}", "save", "save")]
    assert logger.events == ["save", "log@0", "save", *stopped, "save"]


def test_optimizer_step_override_that_skips_the_closure_is_an_error(tmp_path):
    from ember.utilities.exceptions import MisconfigurationException

    class Forgetful(Failing):
        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            pass  # neither calls the closure nor steps

    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    with pytest.raises(MisconfigurationException, match="closure hasn't been executed"):
        trainer.fit(Forgetful(None), _loader())


def test_an_optimizer_whose_step_ignores_the_closure_is_an_error(tmp_path):
    from ember.utilities.exceptions import MisconfigurationException

    class BrokenSGD(torch.optim.SGD):
        def step(self, closure=None):
            return super().step()

    class Model(Failing):
        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return BrokenSGD(self.parameters(), lr=0.1)

    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    with pytest.raises(MisconfigurationException, match="closure hasn't been executed"):
        trainer.fit(Model(None), _loader())


def test_the_closure_runs_with_grad_inside_a_no_grad_optimizer_step(tmp_path):
    grad_enabled = []

    class NoGradAdamW(torch.optim.AdamW):
        @torch.no_grad()
        def step(self, closure=None):
            if closure is not None:
                closure()
            return super().step()

    class Model(Failing):
        def training_step(self, batch, batch_idx):
            grad_enabled.append(torch.is_grad_enabled())
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return NoGradAdamW(self.parameters(), lr=0.1)

    ember.Trainer(max_steps=2, default_root_dir=tmp_path, **QUIET).fit(Model(None), _loader())
    assert grad_enabled == [True, True]


def test_sigterm_is_a_failure_the_callbacks_datamodule_and_loggers_hear_of(tmp_path):
    """As in Lightning: after the preemption checkpoint, `on_exception` runs (callbacks, datamodule) with the
    `SIGTERMException` and the loggers finish as "failed"."""
    import os

    from ember.utilities.exceptions import SIGTERMException

    heard = []

    class Logger(ember.loggers.CSVLogger):
        def finalize(self, status):
            heard.append(("logger", status))
            super().finalize(status)

    class Terminated(Failing):
        def training_step(self, batch, batch_idx):
            if batch_idx == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            return self.layer(batch[0]).sum()

    recorder = Recorder()
    options = {**QUIET, "logger": Logger(tmp_path)}
    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[recorder], **options)
    with pytest.raises(SIGTERMException):
        trainer.fit(Terminated(None), datamodule=_HeardData(heard))
    name = recorder.events[0][1]
    assert recorder.events == [("on_exception", name)] and heard == [("datamodule", name), ("logger", "failed")]
    assert trainer.interrupted


class _StopsEarly(ember.LightningModule):
    """Raises ``StopIteration`` from the hook named ``where`` at its second batch; records the hooks in ``seen``."""

    def __init__(self, where):
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.where = where
        self.seen = []

    def _maybe_stop(self, where, batch_idx, dataloader_idx=0):
        if where == self.where and batch_idx == 1 and dataloader_idx == 0 and self.current_epoch == 0:
            raise StopIteration

    def training_step(self, batch, batch_idx):
        self._maybe_stop("training_step", batch_idx)
        return self.layer(batch[0]).sum()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.seen.append(("train", batch_idx))
        self._maybe_stop("on_train_batch_end", batch_idx)

    def on_train_epoch_end(self):
        self.seen.append("train_epoch_end")

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.seen.append(("val", dataloader_idx, batch_idx))
        self._maybe_stop("validation_step", batch_idx, dataloader_idx)
        self.log("v", self.layer(batch[0]).mean())

    def on_validation_epoch_end(self):
        self.seen.append("val_epoch_end")

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        self._maybe_stop("predict_step", batch_idx, dataloader_idx)
        return batch_idx

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=2)

    def val_dataloader(self):
        return [DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=2)] * 2

    def predict_dataloader(self):
        return self.val_dataloader()


@pytest.mark.parametrize(
    ("where", "global_step"), [("training_step", 5), ("on_train_batch_end", 6), ("validation_step", 8)]
)
def test_stop_iteration_from_a_step_or_batch_hook_ends_that_epoch_quietly_as_in_lightning(tmp_path, where, global_step):
    model = _StopsEarly(where)
    trainer = ember.Trainer(max_epochs=2, num_sanity_val_steps=0, default_root_dir=tmp_path, **QUIET)
    trainer.fit(model)
    assert trainer.global_step == global_step and trainer.state.status == TrainerStatus.FINISHED
    if where == "on_train_batch_end":  # the epoch ends after that batch, without its validation
        assert model.seen[:3] == [("train", 0), ("train", 1), "train_epoch_end"]
    if where == "validation_step":  # the whole validation ends: the second dataloader gets no batch
        assert model.seen[4:7] == [("val", 0, 0), ("val", 0, 1), "val_epoch_end"]


def test_stop_iteration_ends_validate_and_predict_for_every_remaining_dataloader_as_in_lightning(tmp_path):
    trainer = ember.Trainer(default_root_dir=tmp_path, **QUIET)
    model = _StopsEarly("validation_step")
    results = trainer.validate(model, verbose=False)
    assert model.seen == [("val", 0, 0), ("val", 0, 1), "val_epoch_end"]
    assert [list(r) for r in results] == [["v/dataloader_idx_0"]]
    assert trainer.predict(_StopsEarly("predict_step")) == [[0], []]


class _TerminatedOnce(Failing):
    sent = False

    def training_step(self, batch, batch_idx):
        if not _TerminatedOnce.sent and self.global_step == 1:
            _TerminatedOnce.sent = True
            os.kill(os.getpid(), signal.SIGTERM)
        return self.layer(batch[0]).pow(2).mean()


@pytest.mark.parametrize("next_fit", ["same_trainer", "new_trainer_from_last"])
def test_the_fit_after_a_sigterm_stop_keeps_writing_last_ckpt_the_preemption_saved(tmp_path, next_fit, monkeypatch):
    from ember.callbacks import ModelCheckpoint
    from ember.checkpoint import load_checkpoint
    from ember.utilities.exceptions import SIGTERMException

    monkeypatch.setattr(_TerminatedOnce, "sent", False)
    folder = tmp_path / "ck"

    def trainer():
        checkpoints = ModelCheckpoint(dirpath=folder, save_last=True)
        options = {**QUIET, "enable_checkpointing": True}
        return ember.Trainer(max_epochs=2, default_root_dir=tmp_path, callbacks=[checkpoints], **options)

    first = trainer()
    with pytest.raises(SIGTERMException):
        first.fit(_TerminatedOnce(None), _loader())
    assert os.listdir(folder) == ["last.ckpt"]
    if next_fit == "same_trainer":
        first.fit(first.lightning_module, _loader())  # its steps go on from where the stop left them, as in Lightning
        steps = 2 + 16
    else:
        trainer().fit(_TerminatedOnce(None), _loader(), ckpt_path="last")
        steps = 16
    assert sorted(os.listdir(folder)) == [f"epoch=1-step={steps}.ckpt", "last.ckpt"]  # no last-v1.ckpt
    assert load_checkpoint(folder / "last.ckpt")["global_step"] == steps


class _TerminatedEveryTime(Failing):
    def training_step(self, batch, batch_idx):
        if batch_idx == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.layer(batch[0]).sum()


def test_a_sigterm_stop_resets_the_stage_as_in_lightning_and_exits_with_the_message(tmp_path):
    from ember.utilities.exceptions import SIGTERMException

    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    with pytest.raises(SIGTERMException) as raised:
        trainer.fit(_TerminatedEveryTime(None), _loader())
    assert (trainer.state.fn, trainer.state.stage, trainer.state.status) == ("fit", None, TrainerStatus.INTERRUPTED)
    # unlike Lightning's `SIGTERMException()` (exit status 0), the exit carries the message: a process that does
    # not catch it prints it and ends with status 1, telling the scheduler that the run has not finished
    assert isinstance(raised.value.code, str) and "Received SIGTERM" in raised.value.code


def test_a_logger_that_cannot_finalize_a_failed_run_is_warned_of_and_the_runs_error_goes_on(tmp_path):
    class Uploads(ember.loggers.CSVLogger):
        def finalize(self, status):
            raise OSError(f"could not upload logs ({status})")

    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, **{**QUIET, "logger": Uploads(tmp_path)})
    with (
        pytest.warns(
            UserWarning, match=r"Uploads.finalize\('failed'\) raised OSError: could not upload logs \(failed\)"
        ),
        pytest.raises(ValueError, match="bad batch"),
    ):
        trainer.fit(Failing(ValueError("bad batch")), _loader())


@pytest.mark.parametrize("sigterm", [False, True])
def test_a_one_process_run_tells_its_strategy_of_a_failure_where_lightning_does(tmp_path, sigterm):
    from ember.strategies import SingleDeviceStrategy
    from ember.utilities.exceptions import SIGTERMException

    heard = []

    class Strategy(SingleDeviceStrategy):
        def on_exception(self, exception):
            heard.append("strategy")
            super().on_exception(exception)

    class Heard(ember.Callback):
        def on_exception(self, trainer, pl_module, exception):
            heard.append("callback")

    class Logger(ember.loggers.CSVLogger):
        def finalize(self, status):
            heard.append(f"logger {status}")

    options = {**QUIET, "logger": Logger(tmp_path)}
    trainer = ember.Trainer(
        max_epochs=1, strategy=Strategy(), callbacks=[Heard()], default_root_dir=tmp_path, **options
    )
    model, error = (_TerminatedEveryTime(None), SIGTERMException) if sigterm else (Failing(ValueError()), ValueError)
    with pytest.raises(error):
        trainer.fit(model, datamodule=_HeardData(heard))
    name = "SIGTERMPreemptionExit" if sigterm else "ValueError"
    assert heard == ["callback", ("datamodule", name), "strategy", "logger failed"]


class _TerminatedInEvaluation(ember.LightningModule):
    """Sends SIGTERM to itself in the step of batch ``at``; records the batches each step saw in ``seen``."""

    def __init__(self, at):
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.at = at
        self.seen = []

    def _step(self, batch, batch_idx):
        self.seen.append(batch_idx)
        if batch_idx == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("v", self._step(batch, batch_idx))

    def test_step(self, batch, batch_idx):
        self.log("t", self._step(batch, batch_idx))

    def predict_step(self, batch, batch_idx):
        return self._step(batch, batch_idx)


@pytest.mark.parametrize("method", ["validate", "test"])
def test_sigterm_in_validate_or_test_stops_the_call_at_the_next_batch_as_in_lightning(tmp_path, method):
    from ember.utilities.exceptions import SIGTERMException

    heard = []

    class Logger(ember.loggers.CSVLogger):
        def finalize(self, status):
            heard.append(status)

    before = signal.getsignal(signal.SIGTERM)
    recorder = Recorder()
    options = {**QUIET, "logger": Logger(tmp_path)}
    trainer = ember.Trainer(default_root_dir=tmp_path, callbacks=[recorder], **options)
    model = _TerminatedInEvaluation(at=1)
    with pytest.raises(SIGTERMException):
        getattr(trainer, method)(model, _loader(), verbose=False)
    assert model.seen == [0, 1]  # the process lives on: the call stops before the next batch
    assert recorder.events == [("on_exception", "SIGTERMException")] and heard == ["failed"]
    assert trainer.received_sigterm and trainer.state.status == TrainerStatus.INTERRUPTED
    assert trainer.state.stage is None
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_in_predict_or_in_the_last_evaluation_batch_lets_the_call_finish_as_in_lightning(tmp_path):
    trainer = ember.Trainer(default_root_dir=tmp_path, **QUIET)
    predictions = trainer.predict(_TerminatedInEvaluation(at=1), _loader())
    assert len(predictions) == 8 and trainer.received_sigterm
    model = _TerminatedInEvaluation(at=7)  # the last of 8 batches
    assert list(trainer.validate(model, _loader(), verbose=False)[0]) == ["v"]
    assert model.seen == list(range(8)) and trainer.received_sigterm


class _StopsThenPreempted(ember.LightningModule):
    """Decides to stop (`trainer.should_stop = True`) at ``where``; with ``preempt``, SIGTERM arrives right then."""

    def __init__(self, where, preempt):
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(4, 1)
        self.where, self.preempt = where, preempt

    def training_step(self, batch, batch_idx):
        if self.where == "step" and self.global_step == 2:
            self._stop()
        return self.layer(batch[0]).pow(2).mean()

    def on_train_epoch_end(self):
        if self.where == "epoch_end" and self.current_epoch == 0:
            self._stop()

    def _stop(self):
        self.trainer.should_stop = True
        if self.preempt:
            os.kill(os.getpid(), signal.SIGTERM)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("where", ["step", "epoch_end"])
def test_a_run_preempted_after_it_decided_to_stop_resumes_into_that_stop(tmp_path, where, caplog):
    # the preemption's checkpoint came after EarlyStopping (or the program) had set `should_stop`: the resumed
    # run ends where the uninterrupted one ended, instead of training on (as a run resumed by Lightning does)
    from ember.callbacks import ModelCheckpoint
    from ember.utilities.exceptions import SIGTERMException

    def trainer(folder):
        checkpoints = ModelCheckpoint(dirpath=folder, save_last=True)
        options = {**QUIET, "enable_checkpointing": True}
        return ember.Trainer(max_epochs=3, default_root_dir=folder, callbacks=[checkpoints], **options)

    uninterrupted = trainer(tmp_path / "u")
    uninterrupted.fit(_StopsThenPreempted(where, preempt=False), _loader())
    with pytest.raises(SIGTERMException):
        trainer(tmp_path / "r").fit(_StopsThenPreempted(where, preempt=True), _loader())
    resumed, module = trainer(tmp_path / "r"), _StopsThenPreempted(where, preempt=False)
    with caplog.at_level(logging.INFO, logger="ember"):
        resumed.fit(module, _loader(), ckpt_path="last")
    assert "saved by a preemption that came after the run had decided to stop" in caplog.text  # and how to go on
    assert "To train further, resume from a checkpoint saved before that decision." in caplog.text
    assert uninterrupted.global_step == (3 if where == "step" else 8)
    assert (resumed.global_step, resumed.current_epoch) == (uninterrupted.global_step, uninterrupted.current_epoch)
    assert torch.equal(module.layer.weight, uninterrupted.lightning_module.layer.weight)


def test_a_run_resumed_from_an_early_stopped_runs_last_checkpoint_trains_on_as_in_lightning(tmp_path):
    # only a preemption's checkpoint carries the stop: from a regular one, the run goes on (a longer run, a new
    # patience), as it does on Lightning
    from ember.callbacks import ModelCheckpoint

    options = {**QUIET, "enable_checkpointing": True}
    first = ember.Trainer(max_epochs=3, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)], **options)
    first.fit(_StopsThenPreempted("step", preempt=False), _loader())
    assert first.global_step == 3
    again = ember.Trainer(max_epochs=3, **options)
    again.fit(_StopsThenPreempted("none", preempt=False), _loader(), ckpt_path=str(tmp_path / "last.ckpt"))
    assert again.global_step == 3 + 16  # the stopped epoch ended there; the two others train
