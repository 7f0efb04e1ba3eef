"""Training loaders in two processes: a DataLoader subclass gets its DistributedSampler through its own
``__init__`` (a ``StatefulDataLoader`` keeps tracking its position and its ``shuffle=True``, a user's
subclass keeps what its ``__init__`` sets), and a resumed run goes on where each rank stopped, with the
interrupted run's sampler seed."""

from __future__ import annotations

import sys

import pytest
import torch
from tests.helpers.loader_models import Indexed, Recorder, SaveAt
from torch.utils.data import DataLoader

import ember

stateful_dataloader = pytest.importorskip("torchdata.stateful_dataloader")

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork-based jobs are tested on Linux"),
    pytest.mark.timeout(120),
]

SAMPLES, BATCH, SAVE_AT = 32, 4, 3  # 4 batches per rank and epoch; the checkpoint 3 batches in


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)


class TaggedLoader(DataLoader):
    """A subclass with arguments of its own, kept as attributes (``shuffle`` too, which DataLoader does not keep)."""

    def __init__(self, dataset, tag: str, shuffle: bool = False, **kwargs) -> None:
        super().__init__(dataset, shuffle=shuffle, **kwargs)
        self.tag, self.shuffle = tag, shuffle


def _fit(tmp_path, name, data, ckpt_path=None, callbacks=(), seed=0):
    ember.seed_everything(seed)
    trainer = ember.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_fork", max_epochs=2, default_root_dir=tmp_path,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=list(callbacks),
    )  # fmt: skip
    trainer.fit(Recorder(tmp_path, name), data, ckpt_path=ckpt_path)
    return [torch.load(tmp_path / f"{name}-rank{rank}.pt", weights_only=False) for rank in range(2)]


def test_a_shuffled_stateful_loader_is_split_between_the_ranks_and_resumes_where_each_stopped(tmp_path):
    def data():
        return stateful_dataloader.StatefulDataLoader(Indexed(SAMPLES), batch_size=BATCH, shuffle=True)

    path = tmp_path / "mid.ckpt"
    full = _fit(tmp_path, "full", data(), callbacks=[SaveAt(path, SAVE_AT)])
    for record in full:
        assert record["loader"] == "StatefulDataLoader"
        assert record["sampler"] == ("DistributedSampler", True)  # its `shuffle=True` is kept
    # each epoch, every sample once between the ranks, in a shuffled order
    epoch = [sample for record in full for batch in record["seen"][:4] for sample in batch]
    assert sorted(epoch) == list(range(SAMPLES)) and epoch != sorted(epoch)

    resumed = _fit(tmp_path, "resumed", data(), ckpt_path=path)
    for before, after in zip(full, resumed):
        assert after["seen"] == before["seen"][SAVE_AT:]  # each rank goes on with its own next batch


def test_a_loader_subclass_keeps_what_its_init_sets(tmp_path):
    records = _fit(tmp_path, "tagged", TaggedLoader(Indexed(SAMPLES), tag="kept", shuffle=True, batch_size=BATCH))
    for record in records:
        assert (record["loader"], record["tag"]) == ("TaggedLoader", "kept")
        assert record["sampler"] == ("DistributedSampler", True)
    seen = sorted(sample for record in records for batch in record["seen"][:4] for sample in batch)
    assert seen == list(range(SAMPLES))


def test_a_resumed_run_shards_with_the_interrupted_runs_sampler_seed(tmp_path):
    def data():
        return DataLoader(Indexed(SAMPLES), batch_size=BATCH, shuffle=True)

    path = tmp_path / "mid.ckpt"
    full = _fit(tmp_path, "full", data(), callbacks=[SaveAt(path, SAVE_AT)])
    assert torch.load(path, weights_only=True)["ember"]["sampler_seed"] == 0
    # another global seed (a `seed_everything()` that draws one, say): the DistributedSampler's order
    # is still the interrupted run's, so each rank goes on with its own next batch
    resumed = _fit(tmp_path, "resumed", data(), ckpt_path=path, seed=5)
    for before, after in zip(full, resumed):
        assert after["seen"] == before["seen"][SAVE_AT:]
