"""OnExceptionCheckpoint: a crash leaves a loadable checkpoint that ``ckpt_path="last"`` can use."""

from __future__ import annotations

import os

import pytest
from tests.helpers.checkpoint_models import QUIET, FakeTrainer, SequenceModel

import ember
from ember.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from ember.checkpoint import load_checkpoint

needs_trainer = pytest.mark.skipif(not hasattr(ember, "Trainer"), reason="needs ember.Trainer")


def test_ckpt_path_and_defaults(tmp_path):
    callback = OnExceptionCheckpoint(tmp_path)
    assert callback.ckpt_path == os.path.join(tmp_path, "on_exception.ckpt")
    assert OnExceptionCheckpoint(tmp_path, filename="crash").ckpt_path == os.path.join(tmp_path, "crash.ckpt")
    assert callback.FILE_EXTENSION == ".ckpt"


@pytest.mark.parametrize("filename", ["", None])
def test_empty_filename_is_an_error(tmp_path, filename):
    with pytest.raises(ValueError, match="filename cannot be empty"):
        OnExceptionCheckpoint(tmp_path, filename=filename)


def test_saves_on_exception_and_overwrites(tmp_path):
    trainer = FakeTrainer(tmp_path)
    callback = OnExceptionCheckpoint(tmp_path / "crash")
    trainer.advance(steps=3)
    callback.on_exception(trainer, None, RuntimeError("boom"))
    assert load_checkpoint(callback.ckpt_path)["global_step"] == 3
    trainer.advance(steps=2)
    callback.on_exception(trainer, None, KeyboardInterrupt())
    assert load_checkpoint(callback.ckpt_path)["global_step"] == 5
    assert os.listdir(tmp_path / "crash") == ["on_exception.ckpt"]


def test_teardown_keeps_this_runs_file_and_removes_a_stale_one(tmp_path):
    trainer = FakeTrainer(tmp_path)
    callback = OnExceptionCheckpoint(tmp_path)
    callback.on_exception(trainer, None, RuntimeError("boom"))
    callback.teardown(trainer, None, "fit")
    assert os.path.exists(callback.ckpt_path)  # written by this run: kept for the resume
    callback.teardown(trainer, None, "test")
    assert os.path.exists(callback.ckpt_path)  # evaluation never makes it stale
    callback.teardown(trainer, None, "fit")  # a later fit that finished normally
    assert not os.path.exists(callback.ckpt_path)
    callback.teardown(trainer, None, "fit")  # nothing to remove: fine


class _Crash(SequenceModel):
    def __init__(self, crash_at_step: int) -> None:
        super().__init__(val_losses=[1.0])
        self.crash_at_step = crash_at_step

    def training_step(self, batch, batch_idx):
        if self.global_step == self.crash_at_step:
            raise RuntimeError("simulated failure")
        return super().training_step(batch, batch_idx)


@needs_trainer
@pytest.mark.filterwarnings("ignore:.*there is no last checkpoint available")
def test_fit_crash_saves_and_resumes_from_last(tmp_path):
    callback = OnExceptionCheckpoint(tmp_path)
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=2, callbacks=[callback], **QUIET)
    with pytest.raises(RuntimeError, match="simulated failure"):
        trainer.fit(_Crash(crash_at_step=5))
    checkpoint = load_checkpoint(callback.ckpt_path)
    assert checkpoint["global_step"] == 5
    assert "optimizer_states" in checkpoint

    model = _Counting(val_losses=[1.0])
    trainer = ember.Trainer(
        default_root_dir=tmp_path, max_epochs=2, callbacks=[OnExceptionCheckpoint(tmp_path)], **QUIET
    )
    trainer.fit(model, ckpt_path="last")
    assert trainer.global_step == 8
    assert model.steps_run == 3  # resumed at step 5 of 8
    assert not os.path.exists(callback.ckpt_path)  # a finished fit makes the crash file stale


class _Counting(SequenceModel):
    steps_run = 0

    def training_step(self, batch, batch_idx):
        self.steps_run += 1
        return super().training_step(batch, batch_idx)


class _CrashOnce(SequenceModel):
    def __init__(self) -> None:
        super().__init__(val_losses=[1.0])
        self.crashed = False

    def training_step(self, batch, batch_idx):
        if not self.crashed and self.global_step == 2:
            self.crashed = True
            raise RuntimeError("simulated failure")
        return super().training_step(batch, batch_idx)


@needs_trainer
@pytest.mark.filterwarnings("ignore:.*there is no last checkpoint available")
def test_a_finished_fit_after_a_crash_on_the_same_trainer_removes_the_crash_file(tmp_path):
    callback = OnExceptionCheckpoint(tmp_path / "oec")
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[callback], **QUIET)
    model = _CrashOnce()
    with pytest.raises(RuntimeError, match="simulated failure"):
        trainer.fit(model)
    assert os.path.exists(callback.ckpt_path)
    trainer.fit(model)  # resumes from the crash file and finishes
    assert trainer.global_step == 4
    assert not os.path.exists(callback.ckpt_path)


@pytest.mark.parametrize(
    ("kwargs", "start"),
    [
        ({"dirpath": None}, "`OnExceptionCheckpoint(dirpath=None)` must be a folder path (a str or a `pathlib.Path`)"),
        (
            {"dirpath": ".", "filename": 5},
            "`OnExceptionCheckpoint(filename=5)` must be a file name without the `.ckpt`",
        ),
    ],
)
def test_a_folder_or_name_of_the_wrong_type_is_refused_where_it_is_given(kwargs, start):
    # (Lightning fails when it saves: "expected str, bytes or os.PathLike object, not NoneType")
    with pytest.raises(TypeError) as raised:
        OnExceptionCheckpoint(**kwargs)
    assert str(raised.value).startswith(start)
