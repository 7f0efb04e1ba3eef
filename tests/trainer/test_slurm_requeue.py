"""SLURM auto-requeue: the requeue signal saves ``hpc_ckpt_<n>.ckpt``, calls ``scontrol requeue``, and the
requeued job's ``fit`` resumes from that checkpoint by itself."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import sys
import time
from pathlib import Path

import pytest
import torch
from tests.helpers.environments import ForeignEnvironment
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.callbacks import ModelCheckpoint
from ember.distributed.environments import SLURMEnvironment
from ember.plugins.io import AsyncCheckpointIO, TorchCheckpointIO
from ember.utilities.exceptions import PreemptionExit

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SLURM and SIGUSR1 are POSIX only")


class Model(ember.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.drop = nn.Dropout(0.3)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.layer(self.drop(x)), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


class SignalAt(ember.Callback):
    """The scheduler's warning arrives after optimizer step ``step``."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class CountSteps(ember.Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_end(self, *args) -> None:
        self.steps += 1


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4, shuffle=True)


@pytest.fixture
def slurm_job(tmp_path, monkeypatch):
    """One SLURM task (job 4242) with a fake ``scontrol`` that records how it was called."""
    for key in list(os.environ):
        if key.startswith("SLURM_") or key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    monkeypatch.setenv("SLURM_NODEID", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol-calls.txt"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def fit(root, callbacks=(), ckpt_path=None, epochs=3, plugins=None):
    ember.seed_everything(11, verbose=False)
    model = Model()
    trainer = ember.Trainer(
        max_epochs=epochs,
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        plugins=plugins,
    )
    trainer.fit(model, loader(), ckpt_path=ckpt_path)
    return model, trainer


def test_requeue_signal_saves_an_hpc_checkpoint_requeues_and_the_next_job_resumes_exactly(tmp_path, slurm_job):
    plain, _ = fit(tmp_path / "plain")
    root = tmp_path / "job"
    with pytest.raises(
        PreemptionExit, match=r"Received SIGUSR1: .* step 13, .*hpc_ckpt_1\.ckpt.*SLURM job 4242 was requeued"
    ):
        fit(root, [SignalAt(13, signal.SIGUSR1)])
    assert (root / "hpc_ckpt_1.ckpt").is_file()
    assert slurm_job.read_text().split() == ["requeue", "4242"]

    # the requeued job runs the same script: fit() without ckpt_path picks the HPC checkpoint up
    counter = CountSteps()
    resumed, trainer = fit(root, [counter])
    assert trainer.global_step == 30 and counter.steps == 30 - 13
    for key, value in plain.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


class _SlowWrites(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        time.sleep(0.3)
        super().save_checkpoint(checkpoint, path, storage_options=storage_options)


def test_with_async_checkpoints_the_job_is_requeued_once_its_checkpoint_is_on_disk(tmp_path, slurm_job):
    root = tmp_path / "job"
    # the fake scontrol also notes whether the checkpoint the requeued job resumes from is there
    scontrol = Path(shutil.which("scontrol"))
    scontrol.write_text(scontrol.read_text() + f'test -f "{root}/hpc_ckpt_1.ckpt" && echo on-disk >> "{slurm_job}"\n')
    with pytest.raises(PreemptionExit, match=r"hpc_ckpt_1\.ckpt.*was requeued"):
        fit(root, [SignalAt(5, signal.SIGUSR1)], plugins=[AsyncCheckpointIO(_SlowWrites())])
    assert slurm_job.read_text().split() == ["requeue", "4242", "on-disk"]


def test_a_second_requeue_writes_the_next_number_and_resume_takes_the_newest(tmp_path, slurm_job):
    root = tmp_path / "job"
    with pytest.raises(PreemptionExit):
        fit(root, [SignalAt(5, signal.SIGUSR1)])
    with pytest.raises(PreemptionExit, match=r"hpc_ckpt_2\.ckpt"):
        fit(root, [SignalAt(17, signal.SIGUSR1)])
    assert sorted(p.name for p in root.glob("hpc_ckpt_*.ckpt")) == ["hpc_ckpt_1.ckpt", "hpc_ckpt_2.ckpt"]
    assert torch.load(root / "hpc_ckpt_2.ckpt", weights_only=True)["global_step"] == 17
    counter = CountSteps()
    _, trainer = fit(root, [counter], ckpt_path="hpc")
    assert trainer.global_step == 30 and counter.steps == 30 - 17


def test_an_array_task_is_requeued_by_its_array_id(tmp_path, slurm_job, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "900")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    with pytest.raises(PreemptionExit, match="SLURM job 900_7 was requeued"):
        fit(tmp_path, [SignalAt(2, signal.SIGUSR1)])
    assert slurm_job.read_text().split() == ["requeue", "900_7"]


def test_sigterm_under_slurm_saves_last_and_does_not_requeue(tmp_path, slurm_job):
    with pytest.raises(PreemptionExit, match="Received SIGTERM"):
        fit(tmp_path, [ModelCheckpoint(dirpath=tmp_path / "ckpts"), SignalAt(4, signal.SIGTERM)])
    assert (tmp_path / "ckpts" / "last.ckpt").is_file()
    assert not list(tmp_path.glob("hpc_ckpt_*.ckpt"))
    assert not slurm_job.exists()


def test_auto_requeue_off_keeps_the_plain_preemption_exit(tmp_path, slurm_job):
    ember.seed_everything(11, verbose=False)
    trainer = ember.Trainer(
        max_epochs=3,
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[SignalAt(4, signal.SIGUSR1)],
        plugins=[SLURMEnvironment(auto_requeue=False)],
    )
    with pytest.raises(PreemptionExit, match="Resume with"):
        trainer.fit(Model(), loader())
    assert not slurm_job.exists() and not list(tmp_path.glob("hpc_ckpt_*.ckpt"))


class FabricStyleSLURM(ForeignEnvironment):
    """A program's SLURM environment written against Lightning Fabric's classes (not Ember's): the interface,
    ``auto_requeue`` and ``requeue_signal``, here SIGUSR2."""

    def __init__(self) -> None:
        super().__init__()
        self.auto_requeue, self.requeue_signal = True, signal.SIGUSR2


def test_a_slurm_environment_written_against_fabrics_classes_requeues_on_its_signal(tmp_path, slurm_job):
    with pytest.raises(PreemptionExit, match=r"Received SIGUSR2: .*hpc_ckpt_1\.ckpt.*SLURM job 4242 was requeued"):
        fit(tmp_path, [SignalAt(3, signal.SIGUSR2)], plugins=[FabricStyleSLURM()])
    assert slurm_job.read_text().split() == ["requeue", "4242"]


def test_ckpt_path_hpc_without_a_checkpoint_says_what_is_missing(tmp_path, slurm_job):
    with pytest.raises(ValueError, match=r'ckpt_path="hpc"\)` is set but no HPC checkpoint'):
        fit(tmp_path, ckpt_path="hpc")


def test_outside_slurm_an_hpc_checkpoint_is_not_picked_up(tmp_path, slurm_job, monkeypatch):
    with pytest.raises(PreemptionExit):
        fit(tmp_path, [SignalAt(5, signal.SIGUSR1)])
    monkeypatch.delenv("SLURM_NTASKS")
    _, trainer = fit(tmp_path, epochs=1)
    assert trainer.global_step == 10  # a fresh run: the HPC checkpoint is only for the requeued job
