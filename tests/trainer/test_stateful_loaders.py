"""Stateful training loaders (``state_dict``/``load_state_dict``, e.g. torchdata's ``StatefulDataLoader``):
their positions are saved in the checkpoint where Lightning keeps them, and a resumed fit continues from
there, even from a checkpoint that holds no RNG states to replay the epoch with (one Lightning wrote)."""

from __future__ import annotations

import pytest
import torch
from tests.helpers.core_models import quiet_trainer
from tests.helpers.loader_models import Indexed, Recorder, SaveAt
from torch.utils.data import DataLoader, IterableDataset

import ember
from ember.callbacks import Callback

stateful_dataloader = pytest.importorskip("torchdata.stateful_dataloader")
StatefulDataLoader = stateful_dataloader.StatefulDataLoader

SAMPLES, BATCH, EPOCHS = 24, 4, 2  # 6 batches an epoch
SAVE_AT = 8  # the checkpoint: 2 batches into the second epoch


class Stream(IterableDataset):
    """Data of unknown length: the loader has no ``len``, so the loop reads one batch ahead."""

    def __iter__(self):
        return (torch.tensor([float(index)]) for index in range(SAMPLES))


def _loader(kind: str):
    if kind == "shuffled":
        return StatefulDataLoader(Indexed(SAMPLES), batch_size=BATCH, shuffle=True)
    return StatefulDataLoader(Stream(), batch_size=BATCH)


def _fit(tmp_path, kind: str, ckpt_path=None, callbacks=()):
    ember.seed_everything(0)
    model = Recorder()
    trainer = quiet_trainer(default_root_dir=tmp_path, max_epochs=EPOCHS, callbacks=list(callbacks))
    trainer.fit(model, _loader(kind), ckpt_path=ckpt_path)
    return model.seen


@pytest.mark.parametrize("kind", ["shuffled", "unknown_length"])
@pytest.mark.parametrize("rng_states", [True, False], ids=["ember_checkpoint", "without_rng_states"])
@pytest.mark.parametrize("save_at", [SAVE_AT, 2], ids=["second_epoch", "first_epoch"])
def test_a_resumed_fit_continues_where_the_loader_stopped(tmp_path, kind, rng_states, save_at):
    # in the first epoch, data of unknown length had its first batch read as fit started (as Lightning reads it)
    path = tmp_path / "mid.ckpt"
    full = _fit(tmp_path / "full", kind, callbacks=[SaveAt(path, save_at)])
    assert len(full) == EPOCHS * SAMPLES // BATCH

    checkpoint = torch.load(path, weights_only=True)
    states = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]  # Lightning's place for them
    assert len(states) == 1 and isinstance(states[0], dict)
    if not rng_states:
        # a checkpoint as Lightning writes it: no RNG states, so the epoch cannot be replayed; the
        # loader's saved position (its shuffle's generator too) is all there is
        del checkpoint["ember"]
        path = tmp_path / "lightning_like.ckpt"
        torch.save(checkpoint, path)

    # another seed: the order must come from the checkpoint
    ember.seed_everything(123)
    resumed = _fit(tmp_path / "resumed", kind, ckpt_path=path)
    # the batches not trained on before the save, and no other: none skipped (the batch read ahead
    # for data of unknown length included), none repeated
    assert resumed == full[save_at:]


@pytest.mark.parametrize(
    ("hook", "resumed_from"), [("on_train_epoch_start", 0), ("on_train_epoch_end", SAMPLES // BATCH)]
)
def test_a_checkpoint_from_the_first_epochs_start_or_end_resumes_with_the_right_batch(tmp_path, hook, resumed_from):
    # at the start: data of unknown length had its first batch read as fit started, before the hook (as in
    # Lightning); the position saved there is the one before that read, so the resumed run trains on it.
    # At the end: the next epoch runs in full.
    path = tmp_path / "epoch_0.ckpt"

    def save(trainer, pl_module):
        if trainer.current_epoch == 0:
            trainer.save_checkpoint(path)

    saving = Callback()
    setattr(saving, hook, save)
    full = _fit(tmp_path / "full", "unknown_length", callbacks=[saving])
    resumed = _fit(tmp_path / "resumed", "unknown_length", ckpt_path=path)
    assert resumed == full[resumed_from:]


def test_a_checkpoint_of_plain_loaders_holds_no_loader_states(tmp_path):
    path = tmp_path / "plain.ckpt"
    ember.seed_everything(0)
    trainer = quiet_trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[SaveAt(path, SAVE_AT)])
    trainer.fit(Recorder(), DataLoader(Indexed(SAMPLES), batch_size=BATCH))
    trainer.save_checkpoint(path)
    assert "combined_loader" not in torch.load(path, weights_only=True)["loops"]["fit_loop"]["state_dict"]


def test_a_checkpoint_with_loader_states_needs_as_many_stateful_loaders(tmp_path):
    path = tmp_path / "mid.ckpt"
    _fit(tmp_path / "full", "shuffled", callbacks=[SaveAt(path, SAVE_AT)])
    trainer = quiet_trainer(default_root_dir=tmp_path / "resumed", max_epochs=EPOCHS)
    with pytest.raises(RuntimeError, match="has 0 stateful loaders, but found 1 states in the checkpoint"):
        trainer.fit(Recorder(), DataLoader(Indexed(SAMPLES), batch_size=BATCH), ckpt_path=path)


def test_reading_the_loops_progress_does_not_ask_the_loaders_for_their_state():
    # `trainer.fit_loop`'s counters are what a checkpoint written then holds, less the loaders' positions:
    # a callback that reads them at every batch costs no loader `state_dict()` (a checkpoint still asks)
    class Counting(StatefulDataLoader):
        asked = 0

        def state_dict(self):
            Counting.asked += 1
            return super().state_dict()

    class Reads(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loop = trainer.fit_loop.epoch_loop
            assert loop.scheduler_progress.total.completed == 0
            assert loop.automatic_optimization.optim_progress.optimizer.zero_grad.current.completed == batch_idx + 1
            assert loop.batch_progress.state_dict()["current"]["processed"] == batch_idx + 1

    trainer = quiet_trainer(max_epochs=1, callbacks=[Reads()])
    trainer.fit(Recorder(), Counting(Indexed(SAMPLES), batch_size=BATCH))
    assert Counting.asked == 0
