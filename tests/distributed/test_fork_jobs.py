"""2-process jobs forked from the test process (``strategy="ddp_fork"``): cheap enough to check the
collectives, the sampler, gradient accumulation, SyncBatchNorm and collective timeouts one by one."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import timedelta
from typing import Any

import pytest
import torch
from tests.helpers.distributed_models import (
    BatchNormModel,
    CollectivesModel,
    CountingSyncModel,
    DropoutModel,
    EmptyDataModel,
    EpochMeanModel,
    EvalWarningsModel,
    KilledModel,
    ManualModel,
    PreparingModel,
    RaisingModel,
    RecordingModel,
    SigtermAt,
    StallingModel,
    ThreadsModel,
    loader,
    read_ranks,
    sharding_trainer,
    shuffled_loader,
)
from torch import nn
from torch.utils.data import DataLoader

import ember
from ember.callbacks import Callback, ModelCheckpoint, OnExceptionCheckpoint
from ember.distributed import DDPStrategy
from ember.distributed.environments import find_free_network_port
from ember.plugins.io import AsyncCheckpointIO, TorchCheckpointIO
from ember.plugins.layer_sync import LayerSync
from ember.utilities.exceptions import PreemptionExit

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork-based jobs are tested on Linux"),
    pytest.mark.timeout(120),
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)


def fork_trainer(tmp_path, strategy="ddp_fork", **kwargs) -> ember.Trainer:
    """The quiet sharding Trainer with the sanity check kept: two epochs, no checkpoints unless asked."""
    options = dict(num_sanity_val_steps=2, enable_checkpointing=False, max_epochs=2)
    options.update(kwargs)
    return sharding_trainer(tmp_path, strategy, **options)


def test_collectives_and_all_gather_on_every_rank(tmp_path):
    fork_trainer(tmp_path).fit(CollectivesModel(tmp_path), loader())
    for rank, record in enumerate(read_ranks(tmp_path)):
        assert torch.equal(record["all_gather"], torch.tensor([[0, 10], [1, 11]]))
        assert torch.equal(record["all_gather_dict"]["r"], torch.tensor([0.0, 1.0]))
        assert torch.equal(record["all_gather_numbers"]["f"], torch.tensor([0.5, 1.5]))
        assert torch.equal(record["all_gather_numbers"]["i"], torch.tensor([0, 1], dtype=torch.int32))
        assert record["sampler_kwargs"] == {"num_replicas": 2, "rank": rank}
        assert record["broadcast"] == {"from": 1}
        assert record["reduce_sum"].item() == 3.0 and record["reduce_mean"].item() == 1.5
        assert record["reduce_max"].item() == 2.0
        assert record["all_true"] is False and record["any_true"] is True
        assert record["sampler"] == "DistributedSampler" and record["epoch_set"] == [0, 1]


def test_no_gradient_sync_while_accumulating(tmp_path):
    # 16 samples, 2 ranks, batch 2: 4 batches a rank; accumulating 2 syncs on batches 2 and 4 only
    fork_trainer(tmp_path, max_epochs=1, accumulate_grad_batches=2).fit(CountingSyncModel(tmp_path), loader())
    rank0, rank1 = read_ranks(tmp_path)
    assert rank0["syncs"] == rank1["syncs"] == 2
    for key, value in rank0["weights"].items():
        assert torch.equal(value, rank1["weights"][key])  # the accumulated gradients were averaged


class _SavesAfterBatch(Callback):
    """Every rank calls ``trainer.save_checkpoint`` after the first epoch's batch ``batch_idx``."""

    def __init__(self, path, batch_idx: int) -> None:
        self.path, self.batch_idx = path, batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 0 and batch_idx == self.batch_idx:
            all_reduce, calls = torch.distributed.all_reduce, []
            torch.distributed.all_reduce = lambda *args, **kwargs: calls.append(1) or all_reduce(*args, **kwargs)
            try:
                trainer.save_checkpoint(self.path)
            finally:
                torch.distributed.all_reduce = all_reduce
            pl_module.record["all_reduces_in_save"] = len(calls)


def test_a_checkpoint_inside_an_accumulation_window_keeps_the_ranks_averaged_gradients(tmp_path):
    # each rank's window gradients are its own until the all-reduce at the window's end; the checkpoint keeps their
    # average, which every rank resumes with: the step that ends the window averages the same sum
    def fit(folder, callbacks=(), ckpt_path=None):
        folder.mkdir()
        torch.manual_seed(0)
        trainer = fork_trainer(folder, max_epochs=2, accumulate_grad_batches=2, callbacks=list(callbacks))
        trainer.fit(RecordingModel(folder), loader(), ckpt_path=ckpt_path)
        return read_ranks(folder)[0]

    inside = tmp_path / "inside.ckpt"
    record = fit(tmp_path / "whole", [_SavesAfterBatch(inside, batch_idx=2)])  # 4 batches a rank: windows 0-1, 2-3
    whole = record["weights"]
    # one all-reduce agrees which parameters have a gradient, one averages them all (packed together, not one
    # collective per parameter)
    assert record["all_reduces_in_save"] == 2
    gradients = torch.load(inside, weights_only=True)["ember"]["accumulated_gradients"]
    assert set(gradients) == {"layer.weight", "layer.bias"}
    resumed = fit(tmp_path / "resumed", ckpt_path=inside)["weights"]
    checkpoint = torch.load(inside, weights_only=True)
    del checkpoint["ember"]["accumulated_gradients"]
    torch.save(checkpoint, tmp_path / "without.ckpt")
    without = fit(tmp_path / "without", ckpt_path=tmp_path / "without.ckpt")["weights"]
    for key, value in whole.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-6, atol=1e-7)
    assert not all(torch.allclose(without[key], value, rtol=1e-4, atol=1e-5) for key, value in whole.items())


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="SyncBatchNorm needs 2 CUDA devices")
def test_sync_batchnorm_converts_for_fit(tmp_path):
    trainer = fork_trainer(tmp_path, accelerator="cuda", strategy="ddp_spawn", max_epochs=1, sync_batchnorm=True)
    trainer.fit(BatchNormModel(tmp_path), loader())
    rank0, rank1 = read_ranks(tmp_path)
    assert rank0["norm_type"] == rank1["norm_type"] == "SyncBatchNorm"
    # the running statistics come from both ranks' batches: equal everywhere
    assert torch.equal(rank0["weights"]["norm.running_mean"], rank1["weights"]["norm.running_mean"])


def test_a_collective_timeout_names_the_collective(tmp_path):
    strategy = DDPStrategy(start_method="fork", timeout=timedelta(seconds=1))
    with pytest.raises(Exception, match=r"the collective `barrier\('only-rank-0'\)` did not complete"):
        fork_trainer(tmp_path, strategy=strategy, max_epochs=1).fit(StallingModel(tmp_path), loader())


def test_sigterm_mid_epoch_saves_stops_every_rank_and_resumes_exactly(tmp_path):
    def run(folder, callbacks, ckpt_path=None):
        ember.seed_everything(7, verbose=False)
        model = DropoutModel()
        trainer = fork_trainer(
            folder,
            enable_checkpointing=True,
            callbacks=[ModelCheckpoint(dirpath=folder / "ckpts", save_last=True, save_top_k=0), *callbacks],
        )
        trainer.fit(model, shuffled_loader(), ckpt_path=ckpt_path)
        return model, trainer

    plain, _ = run(tmp_path / "plain", [])
    # 48 samples, 2 ranks, batch 3: 8 batches an epoch; the signal arrives after step 10 (epoch 1)
    with pytest.raises(PreemptionExit, match="Received SIGTERM: training stopped at epoch 1, step 10"):
        run(tmp_path / "stopped", [SigtermAt(step=10)])
    assert (tmp_path / "stopped" / "ckpts" / "last.ckpt").is_file()
    resumed, trainer = run(tmp_path / "stopped", [], ckpt_path="last")
    assert trainer.global_step == 16
    for key, value in plain.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


class _RankNoisyStream(torch.utils.data.IterableDataset):
    """12 samples of unknown number, with noise from torch's RNG; rank r draws r + 1 numbers a sample, so the
    ranks' RNG states part."""

    def __iter__(self):
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        for row in torch.randn(12, 4, generator=torch.Generator().manual_seed(0)):
            yield row + 0.1 * torch.randn(rank + 1, 4).sum(0)


class _SeesNoisyBatches(RecordingModel):
    def training_step(self, batch, batch_idx):
        self.record.setdefault("seen", []).append((batch.sum().item(), torch.rand(()).item()))
        return self.layer(batch).pow(2).mean()


def test_each_rank_resumes_data_read_ahead_with_its_own_states(tmp_path):
    def run(folder, ckpt_path=None):
        ember.seed_everything(7, verbose=False)
        saves = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{step}", every_n_train_steps=1, save_top_k=-1)
        trainer = fork_trainer(folder, enable_checkpointing=True, callbacks=[saves] if ckpt_path is None else [])
        trainer.fit(_SeesNoisyBatches(folder), DataLoader(_RankNoisyStream(), batch_size=4), ckpt_path=ckpt_path)
        return [record["seen"] for record in read_ranks(folder)]

    (tmp_path / "whole").mkdir()
    (tmp_path / "resumed").mkdir()
    whole = run(tmp_path / "whole")
    # 3 batches an epoch; after step 4 the loop holds batch 2 of epoch 1, which each rank read with its own draws
    resumed = run(tmp_path / "resumed", ckpt_path=tmp_path / "ckpts" / "step=4.ckpt")
    assert resumed == [seen[4:] for seen in whole]
    assert whole[0] != whole[1]


class _LogsItsOwnEpochValues(RecordingModel):
    """Each rank logs an epoch mean of its own shard (unsynced) and a torchmetrics mean (synced when computed)."""

    def __init__(self, folder) -> None:
        super().__init__(folder)
        import torchmetrics

        self.mean_loss = torchmetrics.MeanMetric()

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("own_mean", batch[0].sum(), on_step=False, on_epoch=True)
        self.mean_loss(loss.detach())
        self.log("mean_loss", self.mean_loss, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        values = self.trainer.callback_metrics
        self.record.setdefault("epochs", []).append((values["own_mean"].item(), values["mean_loss"].item()))


def test_each_rank_resumes_the_values_it_had_logged_for_the_epoch(tmp_path):
    # the checkpoint held rank 0's running totals alone, which every rank resumed with: another rank's epoch value
    # mixed rank 0's batches before the checkpoint with its own after it, and a torchmetrics mean counted rank 0's
    # part twice
    pytest.importorskip("torchmetrics")

    def run(folder, ckpt_path=None):
        ember.seed_everything(7, verbose=False)
        saves = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{step}", every_n_train_steps=1, save_top_k=-1)
        trainer = fork_trainer(folder, enable_checkpointing=True, callbacks=[saves] if ckpt_path is None else [])
        trainer.fit(_LogsItsOwnEpochValues(folder), shuffled_loader(), ckpt_path=ckpt_path)
        return [record["epochs"] for record in read_ranks(folder)]

    (tmp_path / "whole").mkdir()
    (tmp_path / "resumed").mkdir()
    whole = run(tmp_path / "whole")
    resumed = run(tmp_path / "resumed", ckpt_path=tmp_path / "ckpts" / "step=11.ckpt")  # 8 batches an epoch
    assert resumed == [epochs[1:] for epochs in whole]
    assert whole[0][1][0] != whole[1][1][0]  # the ranks' own means differ


class _ValidatesItsOwnShard(RecordingModel):
    def validation_step(self, batch, batch_idx):
        self.log("own_val", batch[0].sum())  # unsynced: each rank's mean over its own shard

    def on_fit_end(self) -> None:
        self.record["own_val"] = self.trainer.callback_metrics["own_val"].item()
        super().on_fit_end()


def test_each_rank_resumes_with_its_own_callback_metrics(tmp_path):
    # the checkpoint held rank 0's `callback_metrics`, which every rank resumed with: resumed after the last
    # validation, another rank ended (and its callbacks read) rank 0's unsynced values
    def run(folder, ckpt_path=None):
        ember.seed_everything(7, verbose=False)
        saves = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{step}", every_n_train_steps=1, save_top_k=-1)
        trainer = fork_trainer(
            folder,
            max_epochs=3,
            check_val_every_n_epoch=2,  # one validation, at the end of epoch 1
            enable_checkpointing=True,
            callbacks=[saves] if ckpt_path is None else [],
        )
        trainer.fit(_ValidatesItsOwnShard(folder), shuffled_loader(), loader(), ckpt_path=ckpt_path)
        return [record["own_val"] for record in read_ranks(folder)]

    (tmp_path / "whole").mkdir()
    (tmp_path / "resumed").mkdir()
    whole = run(tmp_path / "whole")
    assert whole[0] != whole[1]
    assert run(tmp_path / "resumed", ckpt_path=tmp_path / "ckpts" / "step=19.ckpt") == whole  # in epoch 2


def test_prepare_data_runs_once_per_node_and_the_other_ranks_wait(tmp_path):
    fork_trainer(tmp_path, max_epochs=1).fit(PreparingModel(tmp_path), loader())
    rank0, rank1 = read_ranks(tmp_path)
    assert len(rank0["prepared"]) == 1 and rank1["prepared"] == rank0["prepared"]


def test_manual_optimization_averages_gradients(tmp_path):
    before = ManualModel(tmp_path).state_dict()
    fork_trainer(tmp_path, max_epochs=1).fit(ManualModel(tmp_path), loader())
    rank0, rank1 = read_ranks(tmp_path)
    for key, value in rank0["weights"].items():
        assert torch.equal(value, rank1["weights"][key])  # different data on each rank, the same update
    assert not torch.equal(rank0["weights"]["layer.weight"], before["layer.weight"])


class _CountingDDP(DDPStrategy):
    calls = 0

    def backward(self, closure_loss, optimizer, *args, **kwargs):
        type(self).calls += 1
        return super().backward(closure_loss, optimizer, *args, **kwargs)


class _CountedModel(RecordingModel):
    def on_fit_end(self):
        self.record["backward_calls"] = type(self.trainer.strategy).calls
        super().on_fit_end()


def test_a_ddp_strategy_that_overrides_backward_runs_each_backward_and_averages_gradients(tmp_path):
    # the backward goes through the strategy after DDP's forward readied the reducer: it must not be readied twice
    plain_folder, counted_folder = tmp_path / "plain", tmp_path / "counted"
    plain_folder.mkdir(), counted_folder.mkdir()
    torch.manual_seed(0)
    fork_trainer(plain_folder, max_epochs=1).fit(RecordingModel(plain_folder), loader())
    torch.manual_seed(0)
    strategy = _CountingDDP(start_method="fork")
    fork_trainer(counted_folder, strategy=strategy, max_epochs=1).fit(_CountedModel(counted_folder), loader())
    plain, counted = read_ranks(plain_folder), read_ranks(counted_folder)
    assert [r["backward_calls"] for r in counted] == [4, 4]  # 16 samples, 2 ranks, batches of 2
    for rank in (0, 1):
        for key, value in plain[rank]["weights"].items():
            assert torch.equal(value, counted[rank]["weights"][key])


def test_the_launching_process_keeps_the_module_when_its_workers_fail(tmp_path):
    # as Lightning: `trainer.lightning_module` is the module passed to `fit`, crash or not
    model = RaisingModel(tmp_path)
    trainer = fork_trainer(tmp_path, max_epochs=1)
    with pytest.raises(Exception, match="boom on rank 1"):
        trainer.fit(model, loader())
    assert trainer.lightning_module is model


def test_a_checkpoint_on_exception_does_not_wait_for_the_failed_rank(tmp_path):
    callback = OnExceptionCheckpoint(dirpath=tmp_path)
    start = time.monotonic()
    with pytest.raises(Exception, match="boom on rank 1"):
        trainer = fork_trainer(tmp_path, callbacks=[callback], max_epochs=1, enable_checkpointing=None)
        trainer.fit(RaisingModel(tmp_path), loader())
    assert time.monotonic() - start < 30
    assert (tmp_path / "on_exception.ckpt").is_file()  # rank 0 saved what it had


class _OrderFile:
    """Appends what each rank heard, in order, to ``order<rank>.txt`` in ``folder``."""

    def __init__(self, folder) -> None:
        self.folder = folder

    def note(self, rank: int, what: str) -> None:
        with open(os.path.join(self.folder, f"order{rank}.txt"), "a") as f:
            f.write(what + "\n")


class _HearingDDP(DDPStrategy):
    def __init__(self, order: _OrderFile) -> None:
        super().__init__(start_method="fork")
        self.order = order

    def on_exception(self, exception):
        self.order.note(self.global_rank, "strategy")
        super().on_exception(exception)


class _HearingCallback(Callback):
    def __init__(self, order: _OrderFile) -> None:
        self.order = order

    def on_exception(self, trainer, pl_module, exception):
        self.order.note(trainer.global_rank, "callback")


def test_in_a_run_of_several_processes_the_strategy_hears_of_a_failure_before_the_callbacks(tmp_path):
    # Lightning tells the strategy last; here it first stops the peers and makes the collectives local, so that
    # what the callbacks save then cannot wait for a rank that failed
    order = _OrderFile(tmp_path)
    trainer = fork_trainer(tmp_path, strategy=_HearingDDP(order), callbacks=[_HearingCallback(order)], max_epochs=1)
    with pytest.raises(Exception, match="boom on rank 1"):
        trainer.fit(RaisingModel(tmp_path), loader())
    assert (tmp_path / "order1.txt").read_text().split() == ["strategy", "callback"]


def test_a_worker_killed_by_sigkill_is_named_as_the_cause(tmp_path):
    from torch.multiprocessing import ProcessExitedException

    start = time.monotonic()
    message = r"Rank 1 \(pid \d+\) was killed by signal SIGKILL \(9\).*The other ranks were stopped because of it"
    with pytest.raises(ProcessExitedException, match=message) as info:
        fork_trainer(tmp_path, max_epochs=1).fit(KilledModel(tmp_path), loader())
    assert time.monotonic() - start < 30
    assert info.value.error_index == 1 and info.value.exit_code == -9 and info.value.signal_name == "SIGKILL"


def test_loader_lengths_are_added_across_ranks(tmp_path):
    # every rank empty: every rank skips training (rank 0 warns), none waits for another
    fork_trainer(tmp_path, max_epochs=1).fit(EmptyDataModel(tmp_path))
    for record in read_ranks(tmp_path):
        assert record["num_training_batches"] == 0 and record["global_step"] == 0
    # one rank empty while the other has batches: that rank says so, instead of a hang in DDP
    with pytest.raises(Exception, match="`DataLoader` within local rank has zero length"):
        fork_trainer(tmp_path, max_epochs=1, use_distributed_sampler=False).fit(EmptyDataModel(tmp_path, uneven=True))


def test_each_rank_writes_its_own_profiler_report(tmp_path):
    from ember.profilers import SimpleProfiler

    fork_trainer(tmp_path, profiler=SimpleProfiler(filename="perf")).fit(CollectivesModel(tmp_path), loader())
    for rank in (0, 1):
        report = (tmp_path / f"fit-perf-{rank}.txt").read_text()
        assert report.startswith("FIT Profiler Report") and "run_training_batch" in report


class _SlowWrites(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        time.sleep(0.3)
        super().save_checkpoint(checkpoint, path, storage_options=storage_options)


class _ReadsLastAtFitEnd(RecordingModel):
    def on_fit_end(self) -> None:
        last = os.path.join(self.folder, "ckpts", "last.ckpt")
        self.record["last_step"] = torch.load(last, weights_only=True)["global_step"] if os.path.exists(last) else None
        super().on_fit_end()


def test_async_checkpoints_are_written_by_rank_0_and_on_disk_when_any_rank_returns(tmp_path):
    # 16 samples, 2 ranks, batch 2: 4 steps, a save (and last.ckpt) at steps 2 and 4, 0.3 s per write
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=2, save_last=True)
    trainer = fork_trainer(
        tmp_path,
        max_epochs=1,
        enable_checkpointing=True,
        callbacks=[callback],
        strategy=DDPStrategy(start_method="fork", checkpoint_io=AsyncCheckpointIO(_SlowWrites())),
    )
    trainer.fit(_ReadsLastAtFitEnd(tmp_path), loader())
    rank0, rank1 = read_ranks(tmp_path)
    assert rank0["last_step"] == rank1["last_step"] == 4
    assert sorted(os.listdir(tmp_path / "ckpts")) == ["epoch=0-step=4.ckpt", "last.ckpt"]


class _CountsTorchSave(RecordingModel):
    """Counts the ``torch.save`` calls each rank makes while it trains."""

    def on_train_start(self):
        original = torch.save
        self.record["saves"] = 0

        def counting(*args, **kwargs):
            self.record["saves"] += 1
            return original(*args, **kwargs)

        self._original_save, torch.save = original, counting

    def on_fit_end(self):
        torch.save = self._original_save
        super().on_fit_end()


def test_only_rank_0_saves_and_only_the_checkpoint_files(tmp_path):
    # every rank's RNG states are gathered into each checkpoint: they must not travel as pickled tensors, which
    # torch pickles with one `torch.save` per tensor on every rank
    callback = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=-1)
    trainer = fork_trainer(tmp_path, enable_checkpointing=True, callbacks=[callback])
    trainer.fit(_CountsTorchSave(tmp_path), loader())
    rank0, rank1 = read_ranks(tmp_path)
    assert (rank0["saves"], rank1["saves"]) == (2, 0)  # one file per epoch, written by rank 0
    checkpoint = torch.load(tmp_path / "ckpts" / "epoch=1-step=8.ckpt", weights_only=True)
    rank_rng = checkpoint["ember"]["rank_rng"]
    assert len(rank_rng) == 2 and all(isinstance(states["torch"], torch.Tensor) for states, _ in rank_rng)


class SkippingModel(RecordingModel):
    """Every rank skips its second training step by returning None."""

    def training_step(self, batch, batch_idx):
        if batch_idx == 1:
            return None
        return super().training_step(batch, batch_idx)


def test_skipping_a_training_step_is_an_error_in_distributed_training(tmp_path):
    # one rank skipping would leave the others waiting in the gradient all-reduce: Lightning refuses it
    # (Lightning's two sentences, word for word: a program may match them; Ember's fix follows)
    with pytest.raises(
        Exception,
        match=r"Skipping the `training_step` by returning None in distributed training is not supported. It is"
        r" recommended that you rewrite your training logic to avoid having to skip the step in the first place. ",
    ):
        fork_trainer(tmp_path, max_epochs=1).fit(SkippingModel(tmp_path), loader())


class CountingExceptions(Callback):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_exception(self, trainer, pl_module, exception):
        self.seen.append(type(pl_module).__name__)


def test_the_launching_process_callbacks_hear_of_a_failure_in_the_processes(tmp_path):
    # as Lightning: a call that failed in the forked processes runs `on_exception` where it was made too
    counter = CountingExceptions()
    trainer = fork_trainer(tmp_path, devices=1, max_epochs=1, callbacks=[counter])
    with pytest.raises(Exception, match="boom on rank 0"):
        trainer.fit(RaisingOnRankZero(tmp_path), loader())
    assert counter.seen == ["RaisingOnRankZero"]


class RaisingOnRankZero(RecordingModel):
    def training_step(self, batch, batch_idx):
        raise ValueError("boom on rank 0")


class OrderRecordingModel(RecordingModel):
    """Records each rank's sampler and the samples of its first epoch, in order."""

    def on_train_start(self) -> None:
        sampler = self.trainer.train_dataloader.sampler
        self.record["sampler"] = (type(sampler).__name__, sampler.shuffle)
        self.record["samples"] = []

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.record["samples"].append(batch[0])


@pytest.mark.parametrize("shuffle", [False, True])
def test_the_distributed_sampler_keeps_the_training_loaders_order_or_shuffling(tmp_path, shuffle):
    # Lightning shuffles every training loader in DDP, a sequential one too (its issues #10170, #21131)
    data = loader(n=8)
    fork_trainer(tmp_path, max_epochs=1).fit(
        OrderRecordingModel(tmp_path), DataLoader(data.dataset, 2, shuffle=shuffle)
    )
    inputs = data.dataset.tensors[0]
    ranks = read_ranks(tmp_path)
    for rank, record in enumerate(ranks):
        assert record["sampler"] == ("DistributedSampler", shuffle)
        if not shuffle:  # every other sample, in the loader's order
            assert torch.equal(torch.cat(record["samples"]), inputs[rank::2])
    if shuffle:  # between them, every sample once, in another order
        seen = torch.cat([torch.cat(record["samples"]) for record in ranks])
        assert sorted(seen[:, 0].tolist()) == sorted(inputs[:, 0].tolist())
        assert not torch.equal(seen, torch.cat([inputs[0::2], inputs[1::2]]))


class EvalSamplerRecordingModel(OrderRecordingModel):
    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_start(self) -> None:
        sampler = self.trainer.val_dataloaders.sampler
        self.record["val_sampler"] = (type(sampler).__name__, sampler.shuffle)


@pytest.mark.parametrize("shuffle", [False, True])
def test_the_distributed_sampler_of_a_validation_loader_keeps_its_shuffling(tmp_path, shuffle):
    # as Lightning (with its warning that shuffling is on): the sampler put in follows the loader's choice
    data = loader(n=8)
    fork_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=0).fit(
        EvalSamplerRecordingModel(tmp_path), data, DataLoader(data.dataset, 2, shuffle=shuffle)
    )
    for record in read_ranks(tmp_path):
        assert record["val_sampler"] == ("DistributedSampler", shuffle)


class ReversedSampler(torch.utils.data.Sampler):
    """A custom order: the last sample first."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        return iter(range(self.n - 1, -1, -1))

    def __len__(self) -> int:
        return self.n


def test_a_custom_sampler_keeps_its_order_shared_among_the_ranks(tmp_path):
    # it was replaced by a DistributedSampler over the dataset, in the dataset's order (a
    # WeightedRandomSampler lost its weights); Lightning shards what the sampler draws, as here
    data = loader(n=8)
    fork_trainer(tmp_path, max_epochs=1).fit(
        OrderRecordingModel(tmp_path), DataLoader(data.dataset, 2, sampler=ReversedSampler(8))
    )
    inputs = data.dataset.tensors[0]
    for rank, record in enumerate(read_ranks(tmp_path)):
        assert record["sampler"] == ("DistributedSamplerWrapper", False)
        assert torch.equal(torch.cat(record["samples"]), inputs.flip(0)[rank::2])


class EpochBatchesRecordingModel(RecordingModel):
    """Records, per epoch, each batch's first input column as a list."""

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.record.setdefault(self.current_epoch, []).append(batch[0][:, 0].tolist())


class RandomBatches(torch.utils.data.BatchSampler):
    """A BatchSampler subclass with an argument of its own."""

    def __init__(self, sampler, tag: str, batch_size: int = 2, drop_last: bool = False) -> None:
        self.tag = tag
        super().__init__(sampler, batch_size, drop_last)


@pytest.mark.parametrize("kind", ["BatchSampler", "subclass"])
def test_a_batch_sampler_drawing_in_random_order_shuffles_each_epoch_shared_among_the_ranks(tmp_path, kind):
    # its RandomSampler's order was lost (each epoch trained in the dataset's order); Lightning shuffles, and
    # gives a plain BatchSampler's samples one at a time, where Ember keeps the batch size
    data = loader(n=8).dataset
    sampler = torch.utils.data.RandomSampler(data)
    batches = (
        torch.utils.data.BatchSampler(sampler, 2, False) if kind == "BatchSampler" else RandomBatches(sampler, "x")
    )
    fork_trainer(tmp_path, max_epochs=2).fit(
        EpochBatchesRecordingModel(tmp_path), DataLoader(data, batch_sampler=batches)
    )
    ranks = read_ranks(tmp_path)
    inputs = sorted(data.tensors[0][:, 0].tolist())
    for epoch in (0, 1):
        assert all(len(batch) == 2 for record in ranks for batch in record[epoch])  # the batch size kept
        seen = [value for record in ranks for batch in record[epoch] for value in batch]
        assert sorted(seen) == inputs  # between the ranks, every sample once
    orders = [[value for batch in ranks[0][epoch] for value in batch] for epoch in (0, 1)]
    assert orders[0] != orders[1]  # the epochs are shuffled apart (seed 0: these differ)
    assert orders[0] != sorted(orders[0])


class IndexLists:
    """A batch sampler that is no torch BatchSampler and has no sampler to replace."""

    def __iter__(self):
        return iter([[0, 1], [2, 3], [4, 5], [6, 7]])

    def __len__(self) -> int:
        return 4


def test_a_batch_sampler_the_ranks_cannot_share_is_refused_in_lightnings_words(tmp_path):
    # it trained every rank on every sample without a word
    data = loader(n=8).dataset
    trainer = fork_trainer(tmp_path, max_epochs=1)
    # (a TypeError in each process, as in Lightning, which the launcher reports)
    with pytest.raises(Exception, match=r"TypeError: .*can't inject a \(distributed\) sampler into your batch"):
        trainer.fit(EpochBatchesRecordingModel(tmp_path), DataLoader(data, batch_sampler=IndexLists()))


class PredictionRecordingModel(RecordingModel):
    def predict_step(self, batch, batch_idx):
        self.record.setdefault("predicted", []).append(batch[0])
        return batch[0]

    def on_predict_end(self) -> None:
        torch.save(self.record, os.path.join(self.folder, f"rank{self.global_rank}.pt"))


def test_predict_gives_each_sample_to_one_rank_once(tmp_path):
    # 5 samples on 2 ranks: rank 1 predicts 2 of them, where a padding sampler repeated sample 0 there
    data = loader(n=5)
    fork_trainer(tmp_path).predict(PredictionRecordingModel(tmp_path), data, return_predictions=False)
    inputs = data.dataset.tensors[0]
    ranks = read_ranks(tmp_path)
    assert torch.equal(torch.cat(ranks[0]["predicted"]), inputs[0::2])
    assert torch.equal(torch.cat(ranks[1]["predicted"]), inputs[1::2])


class ExitingModel(RecordingModel):
    def on_train_start(self) -> None:
        sys.exit(0)


def test_processes_that_exit_cleanly_before_the_job_ends_are_an_error_not_a_hang(tmp_path):
    # every worker ends with status 0 and rank 0 sends nothing: the launching process used to wait forever
    with pytest.raises(RuntimeError, match=r"all exited with status 0, and rank 0 sent no result.*sys\.exit\(0\)"):
        fork_trainer(tmp_path, max_epochs=1).fit(ExitingModel(tmp_path), loader())


def test_a_failed_job_leaves_nothing_in_the_temporary_folder(tmp_path, monkeypatch):
    # torch's workers write their tracebacks to files there, one per failed rank, and never remove them
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(Exception, match="boom on rank 0"):
        fork_trainer(tmp_path / "run", max_epochs=1).fit(RaisingOnRankZero(tmp_path), loader())
    left = sorted(p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor_"))  # torch's cache
    assert left == []


class TaggedLinear(nn.Linear):
    pass


class TagTheLayer(LayerSync):
    """A layer sync of one's own: replaces ``model.layer`` with a subclass keeping its weights."""

    def apply(self, model):
        tagged = TaggedLinear(model.layer.in_features, model.layer.out_features)
        tagged.load_state_dict(model.layer.state_dict())
        model.layer = tagged
        return model

    def revert(self, model):
        plain = nn.Linear(model.layer.in_features, model.layer.out_features)
        plain.load_state_dict(model.layer.state_dict())
        model.layer = plain
        return model


class LayerTypeModel(RecordingModel):
    def on_train_start(self) -> None:
        self.record["layer_type"] = type(self.layer).__name__

    def on_fit_end(self) -> None:
        self.record["layer_type_at_fit_end"] = type(self.layer).__name__
        super().on_fit_end()


def test_a_layer_sync_plugin_is_applied_to_the_module_fit_wraps_and_reverted_when_fit_ends(tmp_path):
    # (no BatchNorm here: CPU BatchNorm in a forked child hangs once the parent ran one, a torch/OpenMP limit)
    fork_trainer(tmp_path, max_epochs=1, plugins=[TagTheLayer()]).fit(LayerTypeModel(tmp_path), loader())
    rank0, rank1 = read_ranks(tmp_path)
    assert rank0["layer_type"] == rank1["layer_type"] == "TaggedLinear"
    # as Lightning: the strategy's teardown reverts it, before `on_fit_end` (SyncBatchNorm back to BatchNorm)
    assert rank0["layer_type_at_fit_end"] == rank1["layer_type_at_fit_end"] == "Linear"


class _OwnDDP(DDPStrategy):
    """A DDP strategy of the program's own, Lightning's way: its `configure_ddp` and `_setup_model`."""

    def configure_ddp(self):
        self.configured = type(self.model).__name__
        super().configure_ddp()

    def _setup_model(self, model):
        self._ddp_kwargs["broadcast_buffers"] = False
        return super()._setup_model(model)


class WrapperRecordingModel(RecordingModel):
    def configure_optimizers(self):
        self.record["model_in_configure_optimizers"] = type(self.trainer.model).__name__
        return super().configure_optimizers()

    def on_train_start(self) -> None:
        wrapper = self.trainer.model
        self.record["configured"] = getattr(self.trainer.strategy, "configured", None)
        self.record["wrapper"] = (type(wrapper).__name__, wrapper.module is self, wrapper.broadcast_buffers)

    def training_step(self, batch, batch_idx):
        assert "forward" not in self.__dict__  # `self(x)` in a step is the real forward
        return super().training_step(batch, batch_idx)

    def on_fit_end(self) -> None:
        self.record["forward_left_on_the_instance"] = "forward" in self.__dict__
        super().on_fit_end()


@pytest.mark.parametrize("strategy", ["ddp_fork", "own"])
def test_ddp_wraps_the_lightning_module_itself_through_configure_ddp(tmp_path, strategy):
    # as Lightning: `trainer.model.module` is the LightningModule, the steps reach it through DDP's forward, and a
    # strategy's `configure_ddp`/`_setup_model` build the wrapper; the weights are plain DDP's either way
    plain_folder, folder = tmp_path / "plain", tmp_path / "checked"
    plain_folder.mkdir(), folder.mkdir()
    torch.manual_seed(0)
    fork_trainer(plain_folder, max_epochs=1).fit(RecordingModel(plain_folder), loader())
    torch.manual_seed(0)
    chosen = _OwnDDP(start_method="fork") if strategy == "own" else strategy
    fork_trainer(folder, strategy=chosen, max_epochs=1).fit(WrapperRecordingModel(folder), loader())
    plain, checked = read_ranks(plain_folder), read_ranks(folder)
    for rank in (0, 1):
        own = strategy == "own"
        assert checked[rank]["configured"] == ("WrapperRecordingModel" if own else None)
        assert checked[rank]["wrapper"] == ("DistributedDataParallel", True, not own)
        # `configure_optimizers` runs once the module is wrapped, as in Lightning
        assert checked[rank]["model_in_configure_optimizers"] == "DistributedDataParallel"
        assert checked[rank]["forward_left_on_the_instance"] is False
        for key, value in plain[rank]["weights"].items():
            assert torch.equal(value, checked[rank]["weights"][key])


class PortRecordingModel(CollectivesModel):
    def on_train_start(self) -> None:
        super().on_train_start()
        self.record["port"] = os.environ["MASTER_PORT"]


def test_a_fork_job_after_a_one_process_run_in_the_same_process_gets_its_own_world(tmp_path, in_test_process):
    # the one-process run keeps its process group until the interpreter exits (a notebook: a quick
    # `devices=1` run, then `ddp_notebook` on 2); the forked ranks must not inherit it as their world
    fork_trainer(tmp_path / "one", devices=1, strategy="ddp", max_epochs=1).fit(RecordingModel(tmp_path), loader())
    assert torch.distributed.is_initialized()
    kept_port = os.environ["MASTER_PORT"]  # this process still serves the kept group's store there
    fork_trainer(tmp_path, max_epochs=1).fit(PortRecordingModel(tmp_path), loader())
    for record in read_ranks(tmp_path):
        assert torch.equal(record["all_gather"], torch.tensor([[0, 10], [1, 11]]))  # two ranks, together
        # nor meet at the kept group's store, where a rank could read that world's stale rank-0 address
        # (when it asks before the new rank 0 writes its own) and wait forever
        assert record["port"] != kept_port


@pytest.mark.timeout(60)
def test_a_fork_job_after_the_program_used_a_process_group_of_its_own_does_not_hang(tmp_path, in_test_process):
    # a notebook that set up a gloo group by hand and ran a collective: the group's worker threads wait
    # in this process, and a forked rank that destroyed its copy of the group waited for them forever
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(find_free_network_port()))
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    torch.distributed.all_reduce(torch.ones(2))
    for attempt in range(3):  # the wait came most times, not always
        folder = tmp_path / str(attempt)
        folder.mkdir()
        fork_trainer(folder, max_epochs=1).fit(CollectivesModel(folder), loader())
        for record in read_ranks(folder):
            assert torch.equal(record["all_gather"], torch.tensor([[0, 10], [1, 11]]))
    assert torch.distributed.get_world_size() == 1  # this process keeps its own group


class CollectsAtSetup(CollectivesModel):
    def setup(self, stage: str) -> None:
        gc.collect()  # as a program that frees memory between stages does


@pytest.mark.timeout(60)
def test_a_fork_job_does_not_hang_on_garbage_holding_a_process_group(tmp_path):
    # the DDP reducer of an earlier run, left in a reference cycle, holds a gloo group whose threads wait in
    # this process; a forked rank's collector destroyed it and waited for those threads forever
    group = torch.distributed.ProcessGroupGloo(torch.distributed.HashStore(), 0, 1, timedelta(seconds=30))
    group.allreduce([torch.ones(2)]).wait()
    garbage: dict[str, Any] = {"group": group}
    garbage["itself"] = garbage
    del group, garbage
    gc.disable()  # the garbage stays until the fork, as it may when no collection comes in between
    try:
        fork_trainer(tmp_path, max_epochs=1).fit(CollectsAtSetup(tmp_path), loader())
    finally:
        gc.enable()
    for record in read_ranks(tmp_path):
        assert torch.equal(record["all_gather"], torch.tensor([[0, 10], [1, 11]]))


class DrawsAtSetup(RecordingModel):
    """Records the first random number each rank draws once its process group is set up."""

    def setup(self, stage: str) -> None:
        self.record["first_draw"] = torch.rand(3)


def test_every_rank_starts_from_the_seed_whatever_the_program_drew_before_fit(tmp_path, monkeypatch):
    # as Lightning's multi-process strategies do: joining the process group seeds again from
    # `PL_GLOBAL_SEED`, so the draws before `fit` (here: beyond model init) do not shift training's
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # restored after the test; seed_everything sets both
    monkeypatch.setenv("PL_SEED_WORKERS", "0")
    ember.seed_everything(7)
    expected = torch.rand(3)
    ember.seed_everything(7)
    model = DrawsAtSetup(tmp_path)
    torch.rand(10)
    fork_trainer(tmp_path, max_epochs=1).fit(model, loader())
    for record in read_ranks(tmp_path):
        assert torch.equal(record["first_draw"], expected)


class RecordsRunningMeanAtValidation(BatchNormModel):
    """Records BatchNorm's running mean at each validation's start and inside its first step."""

    def on_train_start(self) -> None:
        self.record["at_start"], self.record["in_step"] = [], []

    def on_validation_epoch_start(self) -> None:
        if not self.trainer.sanity_checking:
            self.record["at_start"].append(self.norm.running_mean.clone())

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0 and not self.trainer.sanity_checking:
            self.record["in_step"].append(self.norm.running_mean.clone())
        x, y = batch
        return nn.functional.mse_loss(self.layer(self.norm(x)), y)


def test_the_validation_of_a_fit_runs_through_ddp_and_uses_rank_0s_buffers(tmp_path):
    # Lightning calls validation_step through the DDP wrapper during fit: its first forward after training
    # broadcasts rank 0's buffers, so every rank validates with rank 0's BatchNorm statistics
    data = loader(n=16)
    fork_trainer(tmp_path, max_epochs=2).fit(RecordsRunningMeanAtValidation(tmp_path), data, loader(n=8))
    rank0, rank1 = read_ranks(tmp_path)
    for epoch in range(2):
        # each rank trained on its own half: their statistics differ until the validation's first forward
        assert not torch.equal(rank0["at_start"][epoch], rank1["at_start"][epoch])
        assert torch.equal(rank0["in_step"][epoch], rank0["at_start"][epoch])
        assert torch.equal(rank1["in_step"][epoch], rank0["at_start"][epoch])


class ManualBatchNormModel(ManualModel):
    """Manual optimization with BatchNorm: records the running mean each training step starts from and
    the one the first validation step uses."""

    def __init__(self, folder) -> None:
        super().__init__(folder)
        self.norm = nn.BatchNorm1d(4)
        self.record["at_step"], self.record["in_validation"] = [], []

    def training_step(self, batch, batch_idx):
        self.record["at_step"].append(self.norm.running_mean.clone())
        optimizer = self.optimizers()
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(self.norm(x)), y)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.record["in_validation"].append(self.norm.running_mean.clone())
        x, y = batch
        return nn.functional.mse_loss(self.layer(self.norm(x)), y)


def test_in_manual_optimization_every_rank_keeps_its_own_buffers_in_training_and_validation(tmp_path):
    # Lightning runs a manual-optimization step inside DDP's forward but ends it as a forward without
    # gradient reduction, so no later forward broadcasts rank 0's buffers: neither the next step nor
    # the validation (checked on Lightning 2.6.6 with scvi-tools' TOTALVI in two processes)
    fork_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=0).fit(
        ManualBatchNormModel(tmp_path), loader(n=16), loader(n=8)
    )
    rank0, rank1 = read_ranks(tmp_path)
    assert len(rank0["at_step"]) == len(rank1["at_step"]) == 4
    assert torch.equal(rank0["at_step"][0], rank1["at_step"][0])  # DDP's construction broadcast them
    for step in range(1, 4):  # each rank trained on its own batches
        assert not torch.equal(rank0["at_step"][step], rank1["at_step"][step])
    for record in (rank0, rank1):  # and validates with its own statistics
        assert torch.equal(record["in_validation"][0], record["weights"]["norm.running_mean"])
    assert not torch.equal(rank0["in_validation"][0], rank1["in_validation"][0])


def set_omp_num_threads(monkeypatch, value: str | None) -> None:
    """``OMP_NUM_THREADS`` as the user left it for the test: unset (None) or ``value``."""
    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)


@pytest.mark.parametrize("given", [None, "2"])
def test_a_fork_job_after_the_program_used_cpu_threads_does_not_hang(tmp_path, monkeypatch, given):
    # GNU OpenMP's pool does not survive fork: once this process has used it (as a notebook does before
    # `fit`), a forked rank that opens a parallel region of 2+ threads waits forever; forked ranks run
    # one, whatever OMP_NUM_THREADS says
    set_omp_num_threads(monkeypatch, given)
    torch.randn(2_000_000).exp().sum()  # a parallel kernel: this process starts its thread pool
    nn.functional.batch_norm(torch.randn(200_000, 4), torch.zeros(4), torch.ones(4))
    fork_trainer(tmp_path, max_epochs=1).fit(ThreadsModel(tmp_path), loader(), loader(n=8))
    assert [record["threads"] for record in read_ranks(tmp_path)] == [(1, "1"), (1, "1")]


@pytest.mark.parametrize("given", [None, "3"])
def test_spawned_ranks_share_the_cpus_unless_omp_num_threads_says_otherwise(tmp_path, monkeypatch, given):
    # as Lightning's launchers: cpus // ranks threads each (at least one), exported for what they start
    set_omp_num_threads(monkeypatch, given)
    cpus = len(os.sched_getaffinity(0))
    fork_trainer(tmp_path, strategy="ddp_spawn", max_epochs=1).fit(ThreadsModel(tmp_path), loader(), loader(n=8))
    threads = [record["threads"] for record in read_ranks(tmp_path)]
    if given is None:
        assert threads == [(max(1, cpus // 2), str(max(1, cpus // 2)))] * 2
    else:  # the user's setting is kept (torch takes its thread count from it)
        assert [exported for _, exported in threads] == ["3", "3"]


def test_a_value_logged_for_the_step_and_the_epoch_is_synced_once_in_its_epoch_mean(tmp_path):
    fork_trainer(tmp_path, max_epochs=1, log_every_n_steps=1).fit(EpochMeanModel(tmp_path), loader())
    records = read_ranks(tmp_path)
    batches = records[0]["batches"]
    # the sample-weighted mean over both ranks: rank r logs r + i with batch size r + 1
    total = sum((r + i) * (r + 1) for r in range(2) for i in range(batches))
    expected = total / sum(r + 1 for r in range(2) for _ in range(batches))
    for record in records:
        assert record["epoch_only"] == pytest.approx(expected, rel=1e-6)
        assert record["both_epoch"] == pytest.approx(expected, rel=1e-6)  # not the step-synced values again


@pytest.mark.parametrize(("call", "batches"), [("validate", "batch_size"), ("test", "batch_sampler")])
def test_evaluating_on_several_processes_warns_that_the_sampler_repeats_samples(tmp_path, call, batches):
    data = loader()
    if batches == "batch_sampler":  # its DistributedSampler goes into the batch sampler (no warning was given)
        from torch.utils.data import BatchSampler, SequentialSampler

        sampler = BatchSampler(SequentialSampler(data.dataset), batch_size=2, drop_last=False)
        data = DataLoader(data.dataset, batch_sampler=sampler)
    getattr(fork_trainer(tmp_path), call)(EvalWarningsModel(tmp_path), data)
    rank0, rank1 = (record["warnings"] for record in read_ranks(tmp_path))
    expected = f"Using `DistributedSampler` with the dataloaders. During `trainer.{call}()`, it is recommended"
    assert [m for m in rank0 if m.startswith(expected)] != []  # Lightning's warning, on rank 0 only
    assert not [m for m in rank1 if m.startswith("Using `DistributedSampler`")]


def test_the_default_checkpoint_callback_comes_back_from_the_workers_whole_and_without_a_warning(tmp_path):
    # its folder is resolved in the workers; this process's copy, never set up, takes it with the state
    trainer = fork_trainer(tmp_path, enable_checkpointing=True, max_epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "The dirpath has changed from ... to None" was given here
        warnings.filterwarnings("ignore", message=".*does not have many workers")  # on a machine with CPUs to spare
        trainer.fit(RecordingModel(tmp_path), loader())
    callback = trainer.checkpoint_callback
    assert callback.dirpath == os.path.join(str(tmp_path), "checkpoints")
    assert os.path.basename(callback.best_model_path) == "epoch=0-step=4.ckpt"


def test_the_sync_dist_advice_is_given_once_on_rank_0_as_lightning_does(tmp_path):
    fork_trainer(tmp_path).validate(EvalWarningsModel(tmp_path), loader())
    rank0, rank1 = (record["warnings"] for record in read_ranks(tmp_path))
    advice = "It is recommended to use `self.log('val', ..., sync_dist=True)` when logging on epoch level"
    assert [m for m in rank0 if m.startswith(advice)] == [m for m in rank0 if "sync_dist" in m]
    assert len([m for m in rank0 if m.startswith(advice)]) == 1
    assert not [m for m in rank1 if "sync_dist" in m]  # each rank printed it before


class DumpsOnRankZero(Callback):
    """Writes a checkpoint on rank 0 alone through Lightning's private connector, as mlflow's autologging does."""

    def __init__(self, folder) -> None:
        self.folder = folder

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0:
            checkpoint = trainer._checkpoint_connector.dump_checkpoint(False)
            trainer.strategy.save_checkpoint(checkpoint, os.path.join(self.folder, "dumped.ckpt"))


def test_a_checkpoint_dumped_on_rank_0_alone_does_not_wait_for_the_other_ranks(tmp_path):
    # it gathered every rank's RNG states, a collective the other ranks never joined: the job hung
    fork_trainer(tmp_path, max_epochs=1, callbacks=[DumpsOnRankZero(str(tmp_path))]).fit(
        RecordingModel(tmp_path), loader()
    )
    checkpoint = torch.load(tmp_path / "dumped.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4 and "optimizer_states" in checkpoint


class UnusedLayerModel(RecordingModel):
    """A layer that no loss uses: DDP cannot average its gradient."""

    def __init__(self, folder) -> None:
        super().__init__(folder)
        self.unused = nn.Linear(4, 1)


def test_a_parameter_without_gradient_under_ddp_says_which_strategy_to_pass(tmp_path):
    # as Lightning: the first sentence is Lightning's, and the strategy string to pass is named
    with pytest.raises(
        Exception,
        match=r"(?s)parameters that were not used in producing the loss.*"
        r"strategy='ddp_find_unused_parameters_true'.*Expected to have finished reduction",
    ) as info:
        fork_trainer(tmp_path, max_epochs=1).fit(UnusedLayerModel(tmp_path), loader())
    assert str(info.value).count("It looks like your LightningModule") == 1  # said once, however it travelled
    # and the named setting lets the same model train
    fork_trainer(tmp_path, strategy="ddp_fork_find_unused_parameters_true", max_epochs=1).fit(
        UnusedLayerModel(tmp_path), loader()
    )


class SharedFilesystemModel(RecordingModel):
    """Asks ``is_shared_filesystem`` about a folder both ranks see, and about one folder per rank."""

    def on_train_start(self) -> None:
        from ember.utilities import is_shared_filesystem

        strategy = self.trainer.strategy
        own = os.path.join(self.folder, f"only-rank{self.global_rank}")
        os.makedirs(own, exist_ok=True)
        self.record["shared"] = is_shared_filesystem(strategy, self.folder)
        self.record["per_rank"] = is_shared_filesystem(strategy, own)
        self.record["remote"] = is_shared_filesystem(strategy, "s3://bucket/checkpoints")
        self.record["leftovers"] = [name for name in os.listdir(self.folder) if name.startswith(".")]


def test_is_shared_filesystem_asks_every_rank(tmp_path):
    fork_trainer(tmp_path, max_epochs=1).fit(SharedFilesystemModel(tmp_path), loader())
    for record in read_ranks(tmp_path):
        assert record["shared"] is True  # both ranks found rank 0's file in the same folder
        assert record["per_rank"] is False  # the paths differ from rank to rank
        assert record["remote"] is True
        assert record["leftovers"] == []  # the check's file is removed


class RankOwnWeightsModel(RecordingModel):
    """Each rank makes its own weights and buffer at set-up, as a program that does not seed its ranks does."""

    def __init__(self, folder) -> None:
        super().__init__(folder)
        self.register_buffer("offset", torch.zeros(1))

    def setup(self, stage: str) -> None:
        with torch.no_grad():
            self.layer.weight.add_(self.global_rank + 1.0)
            self.offset.add_(self.global_rank + 1.0)

    def test_step(self, batch, batch_idx):
        self.record["seen"] = {k: v.detach().clone() for k, v in self.state_dict().items()}

    def on_test_end(self) -> None:
        torch.save(self.record, os.path.join(self.folder, f"rank{self.global_rank}.pt"))


def test_evaluating_without_fit_takes_rank_0s_parameters_and_buffers_on_every_rank(tmp_path):
    # as Lightning: without the DDP wrapper (validate, test, predict), the module's states are broadcast from rank 0
    fork_trainer(tmp_path).test(RankOwnWeightsModel(tmp_path), loader())
    rank0, rank1 = read_ranks(tmp_path)
    assert rank0["seen"]["offset"].item() == rank1["seen"]["offset"].item() == 1.0
    for key, value in rank0["seen"].items():
        assert torch.equal(value, rank1["seen"][key]), key


class ReducingModel(RecordingModel):
    """Calls ``trainer.strategy.reduce`` as Lightning documents it (in place), and logs a synced value."""

    def on_train_start(self) -> None:
        strategy, rank = self.trainer.strategy, self.global_rank
        mean, integer, total = torch.tensor(rank + 1.0), torch.tensor(rank + 3), torch.tensor(rank + 1.0)
        self.record["mean_returned"] = strategy.reduce(mean)
        self.record["mean_after"] = mean
        self.record["int_returned"] = strategy.reduce(integer)
        self.record["int_after"] = integer
        strategy.reduce(total, reduce_op="sum")
        self.record["sum_after"] = total
        self.record["avg"] = strategy.reduce(torch.tensor(rank + 1.0), reduce_op="avg")
        with pytest.raises(AttributeError, match="'MEAN'"):
            strategy.reduce(torch.tensor(1.0), reduce_op="MEAN")  # as Lightning: only "mean" in lower case

    def training_step(self, batch, batch_idx):
        logged = torch.tensor(float(self.global_rank))
        self.log("logged", logged, sync_dist=True, on_step=True, on_epoch=True)
        self.record.setdefault("logged_after", []).append(logged.item())
        return super().training_step(batch, batch_idx)


def test_reduce_works_in_place_and_keeps_an_integer_dtype_as_lightnings_does(tmp_path):
    fork_trainer(tmp_path, max_epochs=1, limit_train_batches=2).fit(ReducingModel(tmp_path), loader())
    for rank, record in enumerate(read_ranks(tmp_path)):
        assert record["mean_returned"].item() == record["mean_after"].item() == 1.5
        # the mean of 3 and 4 in the int tensor itself: truncated
        assert record["int_returned"].dtype == record["int_after"].dtype == torch.int64
        assert record["int_returned"].item() == record["int_after"].item() == 3
        assert record["sum_after"].item() == 3.0 and record["avg"].item() == 1.5
        assert record["logged_after"] == [float(rank)] * 2  # the value a step logs is left as it was


class HookedModel(RecordingModel):
    def on_train_end(self) -> None:
        self.record["hook_calls"] = _ZERO_HOOK_CALLS[0]


_ZERO_HOOK_CALLS = [0]


def _zero_gradients_hook(state, bucket):  # no annotations: DDP checks them against its own types
    _ZERO_HOOK_CALLS[0] += 1
    future = torch.futures.Future()
    future.set_result(torch.zeros_like(bucket.buffer()))
    return future


def test_a_ddp_comm_hook_is_registered_on_cuda_only_as_in_lightning(tmp_path):
    strategy = DDPStrategy(start_method="fork", ddp_comm_hook=_zero_gradients_hook)
    ember.seed_everything(3, verbose=False)
    fork_trainer(tmp_path, strategy=strategy, max_epochs=1, limit_train_batches=2).fit(HookedModel(tmp_path), loader())
    plain = tmp_path / "plain"
    plain.mkdir()
    ember.seed_everything(3, verbose=False)
    fork_trainer(plain, max_epochs=1, limit_train_batches=2).fit(RecordingModel(plain), loader())
    for hooked, record in zip(read_ranks(tmp_path), read_ranks(plain), strict=True):
        assert hooked["hook_calls"] == 0  # CPU processes (gloo): Lightning leaves the hook out
        for key, value in record["weights"].items():
            assert torch.equal(hooked["weights"][key], value), key


class DivergingRanks(RecordingModel):
    """Before each batch every rank moves its weights by its own amount; after each step it records them."""

    def on_train_batch_start(self, batch, batch_idx):
        with torch.no_grad():
            self.layer.weight.add_(0.01 * (self.global_rank + 1))

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.record.setdefault("after_step", []).append(self.layer.weight.detach().clone())


class DivergingManualRanks(DivergingRanks, ManualModel):
    """The same, stepping by hand (``optimizer.step()`` in ``training_step``)."""


def _post_local_sgd(**kwargs) -> DDPStrategy:
    from torch.distributed.algorithms.ddp_comm_hooks.post_localSGD_hook import PostLocalSGDState

    state = PostLocalSGDState(process_group=None, subgroup=None, start_localSGD_iter=2)
    return DDPStrategy(start_method="fork", ddp_comm_state=state, **kwargs)


@pytest.mark.parametrize("model_class", [DivergingRanks, DivergingManualRanks])
def test_post_local_sgd_averages_the_ranks_parameters_every_period_after_its_warm_up(tmp_path, model_class):
    strategy = _post_local_sgd(model_averaging_period=3)
    fork_trainer(tmp_path, strategy=strategy).fit(model_class(tmp_path), loader())
    first, second = read_ranks(tmp_path)
    same = [torch.equal(a, b) for a, b in zip(first["after_step"], second["after_step"], strict=True)]
    # 8 steps (16 samples, batches of 2 on 2 ranks, 2 epochs); torch's averager counts the steps from 0 and
    # averages at the end of the warm-up (`start_localSGD_iter`) and every period after it: steps 2 and 5
    assert same == [False, False, True, False, False, True, False, False]


class ZeroModel(RecordingModel):
    def configure_optimizers(self):
        from torch.distributed.optim import ZeroRedundancyOptimizer

        return ZeroRedundancyOptimizer(self.parameters(), optimizer_class=torch.optim.SGD, lr=0.05)


def test_post_local_sgd_needs_an_averaging_period_and_an_optimizer_of_one_process(tmp_path):
    with pytest.raises(Exception, match="Post-localSGD algorithm is used, but model averaging period is not provided"):
        fork_trainer(tmp_path, strategy=_post_local_sgd()).fit(RecordingModel(tmp_path), loader())
    message = "Currently model averaging cannot work with a distributed optimizer of type ZeroRedundancyOptimizer"
    with pytest.raises(Exception, match=message):
        fork_trainer(tmp_path, strategy=_post_local_sgd(model_averaging_period=2)).fit(ZeroModel(tmp_path), loader())


class BackendModel(RecordingModel):
    def on_train_start(self) -> None:
        self.record["backend"] = self.trainer.strategy.process_group_backend


def test_the_process_group_backend_is_known_once_the_group_is_set_up(tmp_path):
    trainer = fork_trainer(tmp_path, max_epochs=1, limit_train_batches=1)
    assert trainer.strategy.process_group_backend is None  # as Lightning: chosen in `setup_distributed`
    trainer.fit(BackendModel(tmp_path), loader())
    assert [record["backend"] for record in read_ranks(tmp_path)] == ["gloo", "gloo"]
    given = DDPStrategy(start_method="fork", process_group_backend="gloo")
    assert fork_trainer(tmp_path, strategy=given).strategy.process_group_backend == "gloo"


def test_a_second_fit_with_ddp_spawn_trains_on_from_where_the_first_ended(tmp_path):
    # Lightning refuses it ("Calling `trainer.fit()` twice ... spawn-based strategy is not supported"); Ember's
    # spawn brings the state back to this process, so the second call goes on from there (docs/compat.md)
    trainer = fork_trainer(tmp_path, strategy="ddp_spawn", max_epochs=1, num_sanity_val_steps=0)
    model = RecordingModel(tmp_path)
    trainer.fit(model, loader())
    first = {k: v.clone() for k, v in model.state_dict().items()}
    steps = trainer.global_step
    assert steps > 0 and trainer.current_epoch == 1
    trainer.fit_loop.max_epochs = 2
    trainer.fit(model, loader())
    assert trainer.global_step == 2 * steps and trainer.current_epoch == 2
    assert any(not torch.equal(first[k], v) for k, v in model.state_dict().items())


FORK_JOB_IN_A_FRESH_PROCESS = r"""
import os
import sys
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import ember

class Probe(ember.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(1, 1)

    def setup(self, stage):  # on each rank, before DDP wraps the module
        line = f"rank {self.global_rank} has torch._dynamo: {'torch._dynamo' in sys.modules}\n"
        os.write(1, line.encode())  # one write: the ranks' lines do not interleave

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

assert "torch._dynamo" not in sys.modules
trainer = ember.Trainer(
    accelerator="cpu", devices=2, strategy="ddp_fork", max_steps=1, logger=False, enable_checkpointing=False,
    enable_progress_bar=False, enable_model_summary=False,
)
trainer.fit(Probe(), DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=2))
"""


def test_forked_ranks_inherit_the_import_ddp_makes_instead_of_each_making_it():
    # DistributedDataParallel imports torch._dynamo (about a second); the launching process imports it
    # once before forking, so no rank of this job or the next spends that second again
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    done = subprocess.run(
        [sys.executable, "-c", FORK_JOB_IN_A_FRESH_PROCESS], capture_output=True, text=True, timeout=100, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = sorted(line for line in done.stdout.splitlines() if line.startswith("rank "))
    assert lines == ["rank 0 has torch._dynamo: True", "rank 1 has torch._dynamo: True"]
