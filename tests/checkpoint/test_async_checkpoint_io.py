"""``AsyncCheckpointIO``: the step pays for a host copy; a writer thread writes, in order, without losing
anything (errors raised later, evictions after durability, ``fit`` returning once the files are on disk)."""

from __future__ import annotations

import os
import pickle
import re
import threading
import time
from collections import OrderedDict

import pytest
import torch
from tests.helpers.checkpoint_models import QUIET, SequenceModel
from torch import nn

import ember
from ember.callbacks import ModelCheckpoint
from ember.checkpoint import load_checkpoint
from ember.loggers.logger import Logger
from ember.plugins.io import AsyncCheckpointIO, TorchCheckpointIO

pytestmark = pytest.mark.timeout(60)
WAIT = 10.0  # seconds a gated write waits at most: a broken test fails instead of hanging


class RecordingIO(TorchCheckpointIO):
    """Ember's crash-safe write, recording what ran (on the writer thread), optionally held by a gate."""

    def __init__(self, delay: float = 0.0, gated: bool = False, fail_on: str | None = None) -> None:
        self.delay, self.fail_on = delay, fail_on
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.done: list[tuple[str, str]] = []
        self.on_save = None  # called with the path before each write
        self.on_remove = None  # called with the path before each removal

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        assert self.gate.wait(WAIT)
        time.sleep(self.delay)
        if self.on_save is not None:
            self.on_save(path)
        if self.fail_on is not None and os.path.basename(path) == self.fail_on:
            raise OSError(28, "No space left on device")
        super().save_checkpoint(checkpoint, path, storage_options=storage_options)
        self.done.append(("save", os.path.basename(path)))

    def remove_checkpoint(self, path):
        if self.on_remove is not None:
            self.on_remove(path)
        super().remove_checkpoint(path)
        self.done.append(("remove", os.path.basename(path)))


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ember-checkpoint-writer"]


class AdamModel(SequenceModel):
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


class _CrashAt(SequenceModel):
    def __init__(self, step: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.step = step

    def training_step(self, batch, batch_idx):
        if self.global_step == self.step:
            raise RuntimeError("simulated failure")
        return super().training_step(batch, batch_idx)


def _trainer(tmp_path, io, top_k=1, save_last=True, **kwargs) -> ember.Trainer:
    callback = ModelCheckpoint(
        dirpath=tmp_path / "ckpts", filename="{step}", every_n_train_steps=1, save_top_k=top_k, save_last=save_last
    )
    plugins = [AsyncCheckpointIO(io)] if io is not None else None
    return ember.Trainer(
        max_epochs=1, limit_val_batches=0, callbacks=[callback], plugins=plugins, default_root_dir=tmp_path, **QUIET
    )


# ---- the files ---------------------------------------------------------------------------------------
def test_async_files_equal_the_synchronous_ones(tmp_path):
    for kind, io in (("sync", None), ("async", RecordingIO())):
        torch.manual_seed(0)
        _trainer(tmp_path / kind, io, top_k=-1).fit(AdamModel(train_batches=4))
    names = sorted(os.listdir(tmp_path / "sync" / "ckpts"))
    assert (
        names
        == sorted(os.listdir(tmp_path / "async" / "ckpts"))
        == [
            "last.ckpt",
            "step=1.ckpt",
            "step=2.ckpt",
            "step=3.ckpt",
            "step=4.ckpt",
        ]
    )
    for name in names:
        sync = load_checkpoint(tmp_path / "sync" / "ckpts" / name)
        written = load_checkpoint(tmp_path / "async" / "ckpts" / name)
        assert written["global_step"] == sync["global_step"] and written["epoch"] == sync["epoch"]
        assert written["loops"] == sync["loops"] and written["lr_schedulers"] == sync["lr_schedulers"]
        assert (
            type(written["state_dict"]) is OrderedDict
            and written["state_dict"]._metadata == sync["state_dict"]._metadata
        )
        for key, value in sync["state_dict"].items():
            assert torch.equal(written["state_dict"][key], value), (name, key)
        for state, expected in zip(
            written["optimizer_states"][0]["state"].values(), sync["optimizer_states"][0]["state"].values()
        ):
            assert all(torch.equal(state[k], v) for k, v in expected.items()), name
        assert written["optimizer_states"][0]["param_groups"] == sync["optimizer_states"][0]["param_groups"]


def test_the_file_holds_the_state_at_the_time_of_the_save(tmp_path):
    io = RecordingIO(gated=True)
    async_io = AsyncCheckpointIO(io)
    weights = torch.zeros(4)
    state = OrderedDict(w=weights)
    state._metadata = {"": {"version": 1}}
    param = nn.Parameter(torch.ones(2))
    checkpoint = {"state_dict": state, "view": weights[1:3], "param": param, "meta": {"step": 1}, "steps": [1]}
    async_io.save_checkpoint(checkpoint, tmp_path / "a.ckpt")
    # training goes on while the write waits: in place, as an optimizer step does
    weights.add_(5.0)
    with torch.no_grad():
        param.mul_(9.0)
    checkpoint["meta"]["step"] = 2
    checkpoint["steps"].append(2)
    assert io.done == []  # returned before the write
    io.gate.set()
    async_io.teardown()
    loaded = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert loaded["state_dict"]["w"].tolist() == [0.0] * 4 and loaded["state_dict"]._metadata == {"": {"version": 1}}
    assert loaded["view"].tolist() == [0.0, 0.0]
    # a view and its base still share one storage, as torch.save writes them
    assert loaded["view"].untyped_storage().data_ptr() == loaded["state_dict"]["w"].untyped_storage().data_ptr()
    assert isinstance(loaded["param"], nn.Parameter) and loaded["param"].tolist() == [1.0, 1.0]
    assert loaded["meta"] == {"step": 1} and loaded["steps"] == [1]


def test_writes_and_removals_run_in_the_order_asked(tmp_path):
    io = RecordingIO(gated=True)
    async_io = AsyncCheckpointIO(io)
    async_io.save_checkpoint({"value": torch.tensor(1)}, tmp_path / "x.ckpt")
    async_io.save_checkpoint({"value": torch.tensor(2)}, tmp_path / "x.ckpt")
    async_io.remove_checkpoint(tmp_path / "old.ckpt")
    assert async_io.is_pending(tmp_path / "x.ckpt") and io.done == []
    io.gate.set()
    async_io.save_checkpoint({"value": torch.tensor(3)}, tmp_path / "y.ckpt")
    async_io.teardown()
    assert io.done == [("save", "x.ckpt"), ("save", "x.ckpt"), ("remove", "old.ckpt"), ("save", "y.ckpt")]
    assert torch.load(tmp_path / "x.ckpt", weights_only=True)["value"].item() == 2  # the later save landed last
    assert not async_io.is_pending(tmp_path / "x.ckpt") and _writer_threads() == []


def test_at_most_two_snapshots_wait_then_a_save_waits_for_the_oldest_write(tmp_path):
    io = RecordingIO(gated=True)
    async_io = AsyncCheckpointIO(io)
    async_io.save_checkpoint({"value": torch.zeros(8)}, tmp_path / "1.ckpt")
    async_io.save_checkpoint({"value": torch.zeros(8)}, tmp_path / "2.ckpt")
    third = threading.Thread(target=async_io.save_checkpoint, args=({"value": torch.ones(8)}, tmp_path / "3.ckpt"))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # both buffer sets are taken: the third save waits
    io.gate.set()
    third.join(WAIT)
    assert not third.is_alive()
    async_io.teardown()
    assert [name for _, name in io.done] == ["1.ckpt", "2.ckpt", "3.ckpt"]
    assert torch.load(tmp_path / "3.ckpt", weights_only=True)["value"].tolist() == [1.0] * 8


def test_the_writer_allocates_the_next_saves_buffers_before_that_save(tmp_path):
    io = RecordingIO(gated=True)
    async_io = AsyncCheckpointIO(io)
    value = torch.arange(64.0)
    async_io.save_checkpoint({"value": value, "step": 1}, tmp_path / "1.ckpt")
    deadline = time.monotonic() + WAIT
    while not async_io._free and time.monotonic() < deadline:
        time.sleep(0.01)
    # while the first write is held, the writer has made a second set of the first one's sizes
    assert len(async_io._free) == 1
    ready = async_io._free[0]
    assert ready.nbytes == value.numel() * value.element_size()
    value.add_(1)
    async_io.save_checkpoint({"value": value, "step": 2}, tmp_path / "2.ckpt")
    assert async_io._jobs[-1].buffers is ready  # the second save copied into it: nothing allocated in the step
    io.gate.set()
    async_io.teardown()
    second = torch.load(tmp_path / "2.ckpt", weights_only=True)
    assert second["step"] == 2 and torch.equal(second["value"], torch.arange(64.0) + 1)
    assert torch.equal(torch.load(tmp_path / "1.ckpt", weights_only=True)["value"], torch.arange(64.0))


def test_one_pending_snapshot_holds_one_set_of_buffers(tmp_path):
    io = RecordingIO(gated=True)
    async_io = AsyncCheckpointIO(io)
    async_io.max_pending = 1
    async_io.save_checkpoint({"value": torch.zeros(8)}, tmp_path / "1.ckpt")
    time.sleep(0.2)
    assert async_io._free == [] and async_io._buffer_sets == 1
    io.gate.set()
    async_io.teardown()


def test_buffers_are_reused_unless_the_plugin_kept_the_tensors(tmp_path):
    class KeepingIO(TorchCheckpointIO):
        kept: list = []

        def save_checkpoint(self, checkpoint, path, storage_options=None):
            self.kept.append(checkpoint)

    async_io = AsyncCheckpointIO(KeepingIO())
    async_io.max_pending = 1
    value = torch.zeros(16)
    for step in range(3):
        value.fill_(step)
        async_io.save_checkpoint({"value": value}, tmp_path / f"{step}.ckpt")
        async_io.wait()
    # each snapshot kept by the plugin still holds its own values: kept buffers are not overwritten
    assert [c["value"][0].item() for c in KeepingIO.kept] == [0.0, 1.0, 2.0]
    async_io.teardown()

    # a plugin that writes the tensors out and lets go of them: the same host memory every time
    async_io = AsyncCheckpointIO(TorchCheckpointIO())
    async_io.max_pending = 1
    addresses = set()
    for _ in range(3):
        async_io.save_checkpoint({"value": value}, tmp_path / "reused.ckpt")
        async_io.wait()
        addresses.add(async_io._free[0]._buffers[0][0].data_ptr())
    assert len(addresses) == 1
    async_io.teardown()


# ---- errors --------------------------------------------------------------------------------------------
def test_a_failed_write_is_raised_at_the_next_save_and_what_was_queued_after_it_is_skipped(tmp_path):
    io = RecordingIO(gated=True, fail_on="bad.ckpt")
    async_io = AsyncCheckpointIO(io)
    torch.save({"old": 1}, tmp_path / "old.ckpt")
    async_io.save_checkpoint({"v": torch.tensor(1)}, tmp_path / "bad.ckpt")
    async_io.remove_checkpoint(tmp_path / "old.ckpt")  # an eviction that depends on bad.ckpt
    io.gate.set()
    async_io.wait(raise_error=False)
    assert (tmp_path / "old.ckpt").exists() and not (tmp_path / "bad.ckpt").exists()
    with pytest.raises(OSError, match="No space left on device") as raised:
        async_io.save_checkpoint({"v": torch.tensor(2)}, tmp_path / "next.ckpt")
    if hasattr(raised.value, "__notes__"):
        assert "bad.ckpt" in raised.value.__notes__[-1]
    assert not (tmp_path / "next.ckpt").exists()  # the save that raised wrote nothing
    async_io.save_checkpoint({"v": torch.tensor(3)}, tmp_path / "next.ckpt")  # raised once: saving goes on
    async_io.teardown()
    assert torch.load(tmp_path / "next.ckpt", weights_only=True)["v"].item() == 3


def test_a_write_that_fails_at_the_end_fails_fit_and_keeps_the_previous_files(tmp_path):
    io = RecordingIO(fail_on="step=3.ckpt")
    trainer = _trainer(tmp_path, io)
    with pytest.raises(OSError, match="No space left on device"):
        trainer.fit(SequenceModel(train_batches=3))  # no save follows the failing one: teardown raises it
    assert trainer.state.status == "interrupted"
    assert sorted(os.listdir(tmp_path / "ckpts")) == ["last.ckpt", "step=2.ckpt"]
    assert load_checkpoint(tmp_path / "ckpts" / "last.ckpt")["global_step"] == 2
    assert _writer_threads() == []


def test_a_failing_run_finishes_the_pending_writes_and_raises_its_own_error(tmp_path):
    io = RecordingIO(delay=0.2)
    with pytest.raises(RuntimeError, match="simulated failure"):
        _trainer(tmp_path, io).fit(_CrashAt(3, train_batches=5))
    assert ("save", "last.ckpt") in io.done and load_checkpoint(tmp_path / "ckpts" / "last.ckpt")["global_step"] == 3


def test_a_write_error_during_a_failing_run_is_reported_without_masking_it(tmp_path):
    io = RecordingIO(delay=0.2, fail_on="last.ckpt")
    with pytest.warns(UserWarning, match="A checkpoint could not be written while the run was stopping"):
        with pytest.raises(RuntimeError, match="simulated failure") as raised:
            _trainer(tmp_path, io).fit(_CrashAt(1, train_batches=5))
    if hasattr(raised.value, "__notes__"):
        assert any("No space left on device" in note for note in raised.value.__notes__)


# ---- fit ----------------------------------------------------------------------------------------------
def test_fit_returns_once_every_queued_write_is_on_disk(tmp_path):
    io = RecordingIO(delay=0.05)
    trainer = _trainer(tmp_path, io)
    trainer.fit(SequenceModel(train_batches=3))
    assert len([op for op, _ in io.done if op == "save"]) == 6  # step=N and last, three times
    assert sorted(os.listdir(tmp_path / "ckpts")) == ["last.ckpt", "step=3.ckpt"]
    assert load_checkpoint(tmp_path / "ckpts" / "last.ckpt")["global_step"] == 3
    assert _writer_threads() == []
    # a later call loads what the fit wrote
    trainer.validate(ckpt_path="last", dataloaders=SequenceModel().val_dataloader(), verbose=False)


def test_a_save_after_fit_is_on_disk_when_it_returns_and_its_error_is_raised_there(tmp_path):
    io = RecordingIO(delay=0.2)
    trainer = _trainer(tmp_path, io)
    trainer.fit(SequenceModel(train_batches=1))
    trainer.save_checkpoint(tmp_path / "after.ckpt")  # no teardown follows: the write is waited for
    assert ("save", "after.ckpt") in io.done and load_checkpoint(tmp_path / "after.ckpt")["global_step"] == 1
    io.fail_on = "broken.ckpt"
    with pytest.raises(OSError, match="No space left on device"):
        trainer.save_checkpoint(tmp_path / "broken.ckpt")


def test_evictions_and_the_last_link_wait_until_their_file_is_on_disk(tmp_path):
    io = RecordingIO(delay=0.05)
    folder = tmp_path / "ckpts"
    problems: list[str] = []
    last = folder / "last.ckpt"

    def before_save(path):
        if os.path.lexists(last) and not os.path.exists(last):
            problems.append(f"last.ckpt dangles while {os.path.basename(path)} is written")

    def before_remove(path):
        step = int(os.path.basename(path)[len("step=") : -len(".ckpt")])
        if not (folder / f"step={step + 1}.ckpt").exists():
            problems.append(f"{os.path.basename(path)} evicted before its replacement was on disk")

    io.on_save, io.on_remove = before_save, before_remove
    _trainer(tmp_path, io, save_last="link").fit(SequenceModel(train_batches=4))
    assert problems == []
    assert [name for op, name in io.done if op == "remove"] == ["step=1.ckpt", "step=2.ckpt", "step=3.ckpt"]
    assert os.readlink(last) == "step=4.ckpt" and load_checkpoint(last)["global_step"] == 4


def test_a_file_being_written_counts_for_the_version_suffix(tmp_path):
    # one fixed name: every new top-k file gets the next -vN, whether or not the previous one has landed
    callback = ModelCheckpoint(
        dirpath=tmp_path / "ckpts", filename="model", monitor="train_metric", save_top_k=-1, every_n_train_steps=1
    )
    trainer = ember.Trainer(
        max_epochs=1,
        limit_val_batches=0,
        callbacks=[callback],
        plugins=[AsyncCheckpointIO(RecordingIO(delay=0.2))],
        default_root_dir=tmp_path,
        **QUIET,
    )
    trainer.fit(SequenceModel(train_metrics=[3.0, 2.0, 1.0, 0.5], train_batches=3))
    assert sorted(os.listdir(tmp_path / "ckpts")) == ["model-v1.ckpt", "model-v2.ckpt", "model.ckpt"]
    assert [
        load_checkpoint(tmp_path / "ckpts" / n)["global_step"] for n in ("model.ckpt", "model-v1.ckpt", "model-v2.ckpt")
    ] == [1, 2, 3]


def test_loggers_hear_again_of_the_files_once_they_are_on_disk(tmp_path):
    class FileLogger(Logger):
        name, version = "files", 0

        def __init__(self):
            self.seen: list[bool] = []

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params, *args, **kwargs):
            pass

        def after_save_checkpoint(self, checkpoint_callback):
            self.seen.append(os.path.exists(checkpoint_callback.last_model_path))

    logger = FileLogger()
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=1, save_last=True)
    trainer = ember.Trainer(
        max_epochs=1,
        limit_val_batches=0,
        callbacks=[callback],
        logger=logger,
        plugins=[AsyncCheckpointIO(RecordingIO(delay=0.2))],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(SequenceModel(train_batches=1))
    assert logger.seen[-1] is True and len(logger.seen) >= 2  # told again after teardown, the file there


def test_the_plugin_pickles_for_spawned_processes(tmp_path):
    async_io = AsyncCheckpointIO(TorchCheckpointIO())
    async_io.save_checkpoint({"v": torch.tensor(1)}, tmp_path / "a.ckpt")
    copy = pickle.loads(pickle.dumps(async_io))
    assert isinstance(copy.checkpoint_io, TorchCheckpointIO) and not copy.is_pending(tmp_path / "a.ckpt")
    copy.save_checkpoint({"v": torch.tensor(2)}, tmp_path / "b.ckpt")
    copy.teardown()
    async_io.teardown()
    assert torch.load(tmp_path / "b.ckpt", weights_only=True)["v"].item() == 2


@pytest.mark.parametrize("wrapped", [5, "torch", TorchCheckpointIO])
def test_a_wrapped_plugin_that_is_no_checkpoint_io_is_named_when_made(wrapped):
    # it failed when the first trainer call ended: "'int' object has no attribute 'teardown'"
    with pytest.raises(TypeError, match=re.escape(f"`AsyncCheckpointIO(checkpoint_io={wrapped!r})` takes the")):
        AsyncCheckpointIO(checkpoint_io=wrapped)
    assert AsyncCheckpointIO(checkpoint_io=TorchCheckpointIO()).checkpoint_io is not None
