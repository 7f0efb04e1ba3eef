"""FSDP2 (``fully_shard``) on 2 forked CPU ranks over gloo, and the CUDA paths for GPU machines."""
from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import ember
from ember.callbacks import ModelCheckpoint
from ember.distributed import FSDPStrategy
from tests.helpers.distributed_models import loader

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork-based jobs are tested on Linux"),
    pytest.mark.timeout(120),
]


class TwoLayers(ember.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 8)
        self.second = nn.Linear(8, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.second(torch.relu(self.first(x))), y)
        self.log("loss", loss, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.second(torch.relu(self.first(x))), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)


def fsdp_trainer(tmp_path, accelerator="cpu", devices=2, **kwargs) -> ember.Trainer:
    strategy = FSDPStrategy(auto_wrap_policy={nn.Linear}, start_method="fork" if accelerator == "cpu" else "popen")
    options = dict(accelerator=accelerator, devices=devices, strategy=strategy, logger=False,
                   enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                   num_sanity_val_steps=0)
    options.update(kwargs)
    return ember.Trainer(**options)


def test_fsdp_trains_like_one_process_and_writes_a_full_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = TwoLayers()
    reference = TwoLayers()
    reference.load_state_dict(model.state_dict())
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts")
    trainer = fsdp_trainer(tmp_path, max_epochs=1, callbacks=[checkpoint])
    trainer.fit(model, loader(16, batch_size=2), loader(16, batch_size=2))

    # batch 2 on each of 2 ranks == batch 4 in one process
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05)
    for x, y in loader(16, batch_size=4):
        optimizer.zero_grad()
        nn.functional.mse_loss(reference.second(torch.relu(reference.first(x))), y).backward()
        optimizer.step()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=1e-6, rtol=1e-5)

    saved = torch.load(checkpoint.best_model_path, weights_only=True)
    assert {k: tuple(v.shape) for k, v in saved["state_dict"].items()} == {
        "first.weight": (8, 4), "first.bias": (8,), "second.weight": (1, 8), "second.bias": (1,)}
    resumed = TwoLayers()
    again = fsdp_trainer(tmp_path / "again", max_epochs=2, enable_checkpointing=False)
    again.fit(resumed, loader(16, batch_size=2), ckpt_path=checkpoint.best_model_path)
    assert again.global_step == 8


class RecordsWrapping(TwoLayers):
    def on_train_start(self) -> None:
        import os

        with open(os.path.join(self.trainer.default_root_dir, f"rank{self.global_rank}.txt"), "w") as f:
            f.write(type(self.first).__name__)


def test_fsdp_activation_checkpointing_recomputes_and_trains_the_same(tmp_path):
    torch.manual_seed(0)
    plain, checkpointed = TwoLayers(), RecordsWrapping()
    checkpointed.load_state_dict(plain.state_dict())
    fsdp_trainer(tmp_path / "plain", max_epochs=1, enable_checkpointing=False).fit(plain, loader(16, batch_size=2))
    strategy = FSDPStrategy(auto_wrap_policy={nn.Linear}, activation_checkpointing_policy={nn.Linear},
                            sharding_strategy="SHARD_GRAD_OP", start_method="fork")
    trainer = fsdp_trainer(tmp_path, max_epochs=1, enable_checkpointing=False, strategy=strategy)
    trainer.fit(checkpointed, loader(16, batch_size=2))
    assert (tmp_path / "rank0.txt").read_text() == (tmp_path / "rank1.txt").read_text() == "CheckpointWrapper"
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(checkpointed.state_dict()[key], value)


def test_fsdp_rejects_sharded_checkpoints_and_unknown_sharding():
    with pytest.raises(ValueError, match="state_dict_type='full'"):
        FSDPStrategy(state_dict_type="sharded")
    with pytest.raises(ValueError, match="FULL_SHARD"):
        FSDPStrategy(sharding_strategy="HYBRID")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fsdp_bf16_on_cuda(tmp_path):
    trainer = fsdp_trainer(tmp_path, accelerator="cuda", devices=1, precision="bf16-mixed", max_epochs=1,
                           enable_checkpointing=False, strategy=FSDPStrategy(start_method="spawn"))
    trainer.fit(TwoLayers(), loader(16, batch_size=2))
    assert trainer.global_step == 8 and trainer.strategy.process_group_backend == "nccl"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ddp_on_cuda_uses_nccl(tmp_path):
    trainer = ember.Trainer(accelerator="cuda", devices=1, strategy="ddp_spawn", logger=False, max_epochs=1,
                            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    model = TwoLayers()
    trainer.fit(model, loader(16, batch_size=2))
    assert trainer.global_step == 8 and trainer.strategy.process_group_backend == "nccl"
