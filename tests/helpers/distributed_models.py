"""Tiny modules for the distributed tests: each rank writes what it observed to ``<folder>/rank<r>.pt``.

Example::

    from tests.helpers.distributed_models import CollectivesModel, read_ranks
    trainer.fit(CollectivesModel(tmp_path), loader())
    rank0, rank1 = read_ranks(tmp_path)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember


def loader(n: int = 16, batch_size: int = 2) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=batch_size)


def read_ranks(folder: Path, world_size: int = 2) -> list[dict[str, Any]]:
    return [torch.load(Path(folder) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


class RecordingModel(ember.LightningModule):
    """A linear regression whose ranks write ``self.record`` at the end of fit."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = str(folder)
        self.layer = nn.Linear(4, 1)
        self.record: dict[str, Any] = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)

    def on_fit_end(self) -> None:
        self.record["weights"] = {k: v.detach().clone() for k, v in self.state_dict().items()}
        torch.save(self.record, os.path.join(self.folder, f"rank{self.global_rank}.pt"))


class CollectivesModel(RecordingModel):
    """Calls the strategy's collectives and ``self.all_gather`` the way users do."""

    def on_train_start(self) -> None:
        strategy, rank = self.trainer.strategy, self.global_rank
        self.record["all_gather"] = self.all_gather(torch.tensor([rank, 10 + rank]))
        self.record["all_gather_dict"] = self.all_gather({"r": torch.tensor(float(rank))})
        self.record["all_gather_numbers"] = self.all_gather({"f": rank + 0.5, "i": rank})  # made tensors first
        self.record["sampler_kwargs"] = self.trainer.distributed_sampler_kwargs
        self.record["broadcast"] = strategy.broadcast({"from": rank}, src=1)
        self.record["reduce_sum"] = strategy.reduce(torch.tensor(rank + 1.0), reduce_op="sum")
        self.record["reduce_mean"] = strategy.reduce(torch.tensor(rank + 1.0))
        self.record["reduce_max"] = strategy.reduce(torch.tensor(rank + 1.0), reduce_op="max")
        self.record["all_true"] = strategy.reduce_boolean_decision(rank == 0, all=True)
        self.record["any_true"] = strategy.reduce_boolean_decision(rank == 0, all=False)
        strategy.barrier("after-collectives")
        self.record["sampler"] = type(self.trainer.train_dataloader.sampler).__name__
        self.record["epoch_set"] = []

    def on_train_epoch_start(self) -> None:
        self.record["epoch_set"].append(self.trainer.train_dataloader.sampler.epoch)


class CountingSyncModel(RecordingModel):
    """Counts DDP gradient all-reduces with a communication hook (one bucket: one call per sync)."""

    def on_train_start(self) -> None:
        self.record["syncs"] = 0

        def count(state, bucket):  # no annotations: DDP checks them against its own types
            self.record["syncs"] += 1
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

            return allreduce_hook(None, bucket)

        self.trainer.strategy._ddp.register_comm_hook(None, count)


class BatchNormModel(RecordingModel):
    def __init__(self, folder: str | Path) -> None:
        super().__init__(folder)
        self.norm = nn.BatchNorm1d(4)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.layer(self.norm(x)), y)

    def on_train_start(self) -> None:
        self.record["norm_type"] = type(self.norm).__name__


class ThreadsModel(BatchNormModel):
    """Records the intra-op threads each rank runs; validates a BatchNorm layer on a batch large enough
    for a parallel kernel."""

    def on_fit_start(self) -> None:
        self.record["threads"] = (torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"))

    def validation_step(self, batch, batch_idx):
        x, y = batch
        wide = self.norm(x.repeat(50_000, 1))  # 200,000 rows: BatchNorm's CPU kernel runs in parallel
        return nn.functional.mse_loss(self.layer(wide[: len(x)]), y)


class StallingModel(RecordingModel):
    """Rank 0 waits at a barrier that rank 1 never reaches."""

    def on_train_start(self) -> None:
        if self.global_rank == 0:
            self.trainer.strategy.barrier("only-rank-0")
        else:
            time.sleep(4)
            os._exit(0)


class DropoutModel(ember.LightningModule):
    """Dropout with a different RNG on each rank: an exact resume needs every rank's own RNG state."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Linear(8, 1))

    def on_fit_start(self) -> None:
        # runs before a checkpoint's RNG states are restored, so a resumed run continues from those
        torch.manual_seed(100 + self.global_rank)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class SigtermAt(ember.Callback):
    """Rank 0 receives SIGTERM after optimizer step ``step``, as a cluster would send it."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        import signal

        if trainer.global_rank == 0 and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def shuffled_loader() -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(48, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=3, shuffle=True)


class PreparingModel(RecordingModel):
    """``prepare_data`` writes a file slowly; every rank's ``setup`` must already see it."""

    def prepare_data(self) -> None:
        with open(os.path.join(self.folder, f"prepared-by-{os.getpid()}"), "w") as f:
            time.sleep(0.5)
            f.write("done")

    def setup(self, stage: str) -> None:
        self.record["prepared"] = sorted(n for n in os.listdir(self.folder) if n.startswith("prepared-by-"))


class ManualModel(RecordingModel):
    """Manual optimization: ``manual_backward`` must still average gradients across ranks."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__(folder)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()


class KilledModel(RecordingModel):
    """Rank 1 is killed by SIGKILL in its third training step, as the out-of-memory killer does."""

    def training_step(self, batch, batch_idx):
        if self.global_rank == 1 and batch_idx == 2:
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        return super().training_step(batch, batch_idx)


class EmptyDataModel(RecordingModel):
    """Training data with no batches on every rank (``uneven``: on rank 1 only, without a distributed sampler)."""

    def __init__(self, folder: str | Path, uneven: bool = False) -> None:
        super().__init__(folder)
        self.uneven = uneven

    def train_dataloader(self):
        return loader(n=8 if self.uneven and self.global_rank == 0 else 0)

    def on_fit_end(self) -> None:
        self.record["num_training_batches"] = self.trainer.num_training_batches
        self.record["global_step"] = self.trainer.global_step
        super().on_fit_end()


class RaisingModel(RecordingModel):
    """Rank 1 raises in its third training step."""

    def training_step(self, batch, batch_idx):
        if self.global_rank == 1 and batch_idx == 2:
            raise ValueError("boom on rank 1")
        return super().training_step(batch, batch_idx)


class TwoLayers(ember.LightningModule):
    """4 -> 8 -> 1 with a ReLU: small enough for sharding tests, deep enough to have layers to shard."""

    def __init__(self, momentum: float = 0.0) -> None:
        super().__init__()
        self.first = nn.Linear(4, 8)
        self.second = nn.Linear(8, 1)
        self.momentum = momentum

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.second(torch.relu(self.first(x))), y)
        self.log("loss", loss, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.second(torch.relu(self.first(x))), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=self.momentum)


class NormedLayers(TwoLayers):
    """``TwoLayers`` with a batch norm and a float buffer (``scale``) between the layers, what mixed-precision
    tests watch: FSDP casts the linear layers, may keep the batch norm in float32, and casts buffers.
    ``self.seen`` collects what a test records; ``on_train_end`` writes it for ``read_records``."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(8)
        self.register_buffer("scale", torch.full((8,), 0.5))
        self.seen: dict[str, Any] = {}

    def on_train_end(self) -> None:
        write_record(self, self.seen)


def write_record(module: ember.LightningModule, record: dict[str, Any]) -> None:
    """Rank ``module.global_rank``'s record of a run, as JSON in the trainer's root folder."""
    Path(module.trainer.default_root_dir, f"record{module.global_rank}.json").write_text(json.dumps(record))


def read_records(folder: Path, world_size: int = 2) -> list[dict[str, Any]]:
    """What ``write_record`` wrote on each rank."""
    return [json.loads((Path(folder) / f"record{rank}.json").read_text()) for rank in range(world_size)]


def train_in_one_process(reference: TwoLayers) -> None:
    """What a 2-rank sharded fit's epoch does to ``reference`` in one process: batch 2 on each of 2 ranks is
    batch 4 in one."""
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05)
    for x, y in loader(16, batch_size=4):
        optimizer.zero_grad()
        nn.functional.mse_loss(reference.second(torch.relu(reference.first(x))), y).backward()
        optimizer.step()


def sharding_trainer(
    folder: Any, strategy: Any, devices: int = 2, accelerator: str = "cpu", **kwargs: Any
) -> ember.Trainer:
    """A quiet Trainer for the sharding strategies' tests (no logger, bar, summary or sanity check)."""
    options: dict[str, Any] = dict(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=folder,
        num_sanity_val_steps=0,
    )
    options.update(kwargs)
    return ember.Trainer(**options)


class EpochMeanModel(RecordingModel):
    """Logs ``value = rank + batch_idx`` with batch size ``rank + 1``, synced, with and without a step value."""

    def training_step(self, batch, batch_idx):
        value = torch.tensor(float(self.global_rank + batch_idx))
        size = self.global_rank + 1
        self.log("both", value, batch_size=size, sync_dist=True, on_step=True, on_epoch=True)
        self.log("epoch_only", value, batch_size=size, sync_dist=True, on_step=False, on_epoch=True)
        return super().training_step(batch, batch_idx)

    def on_train_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        self.record["both_epoch"] = float(metrics["both_epoch"])
        self.record["epoch_only"] = float(metrics["epoch_only"])
        self.record["batches"] = self.trainer.num_training_batches


class EvalWarningsModel(RecordingModel):
    """Records the warnings every rank sees from ``setup`` to ``teardown`` of a ``validate``/``test`` call."""

    def setup(self, stage: str) -> None:
        import warnings

        self._catching = warnings.catch_warnings(record=True)
        self._caught = self._catching.__enter__()
        warnings.simplefilter("always")

    def validation_step(self, batch, batch_idx):
        self.log("val", self.layer(batch[0]).mean())

    test_step = validation_step

    def teardown(self, stage: str) -> None:
        self._catching.__exit__(None, None, None)
        self.record["warnings"] = [str(w.message) for w in self._caught]
        torch.save(self.record, os.path.join(self.folder, f"rank{self.global_rank}.pt"))
