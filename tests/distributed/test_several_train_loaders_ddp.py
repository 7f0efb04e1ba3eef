"""Two training dataloaders in a 2-process DDP job (forked, gloo): each gets its own DistributedSampler,
its epoch set every epoch, and the ranks split both loaders between them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork-based jobs are tested on Linux"),
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available"),
    pytest.mark.timeout(120),
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)


class TwoLoaderModel(ember.LightningModule):
    """Records the samples each rank trains on, per loader, and what its samplers were."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = str(folder)
        self.layer = nn.Linear(1, 1)
        self.record: dict = {"long": [], "short": [], "samplers": []}

    def training_step(self, batch, batch_idx):
        (long,), (short,) = batch["long"], batch["short"]
        self.record["long"].append(long.view(-1).tolist())
        self.record["short"].append(short.view(-1).tolist())
        return nn.functional.mse_loss(self.layer(long), long) + nn.functional.mse_loss(self.layer(short), short)

    def on_train_epoch_start(self) -> None:
        loaders = self.trainer.train_dataloader
        self.record["samplers"].append({k: [type(v.sampler).__name__, v.sampler.epoch] for k, v in loaders.items()})

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def on_fit_end(self) -> None:
        self.record["steps"] = [self.trainer.num_training_batches, self.trainer.global_step]
        self.record["weights"] = {k: v.detach().clone() for k, v in self.state_dict().items()}
        torch.save(self.record, os.path.join(self.folder, f"rank{self.global_rank}.pt"))


def _values(start: int, n: int) -> TensorDataset:
    return TensorDataset(torch.arange(start, start + n, dtype=torch.float32).view(-1, 1))


def test_two_train_loaders_are_split_between_the_ranks(tmp_path):
    loaders = {
        "long": DataLoader(_values(0, 16), batch_size=2),  # 8 samples a rank: 4 batches
        "short": DataLoader(_values(100, 8), batch_size=2, shuffle=True),  # 4 samples a rank: 2 batches, cycled
    }
    trainer = ember.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_fork",
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(TwoLoaderModel(tmp_path), loaders)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for record in ranks:
        assert record["steps"] == [4, 8]
        assert record["samplers"] == [
            {"long": ["DistributedSampler", 0], "short": ["DistributedSampler", 0]},
            {"long": ["DistributedSampler", 1], "short": ["DistributedSampler", 1]},
        ]
    for epoch in (0, 1):
        batches = slice(4 * epoch, 4 * epoch + 4)
        long = [[x for batch in r["long"][batches] for x in batch] for r in ranks]
        assert sorted(long[0] + long[1]) == [float(i) for i in range(16)]  # each sample on one rank
        # the short loader runs twice an epoch; its first pass covers its 8 samples across the ranks
        short = [[x for batch in r["short"][4 * epoch : 4 * epoch + 2] for x in batch] for r in ranks]
        assert sorted(short[0] + short[1]) == [float(i) for i in range(100, 108)]
    # set_epoch reshuffled the short loader for the second epoch
    assert ranks[0]["short"][0:2] != ranks[0]["short"][4:6]
    for key, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][key])
