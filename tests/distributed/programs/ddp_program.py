"""A user's training script, run by the distributed tests as a real multi-process job.

    python ddp_program.py MODE OUTDIR

MODE ``fit``: fit (checkpointing), validate, test, predict, then resume the checkpoint for one more
epoch. ``plain``: a shuffled run with dropout (run under torchrun). ``raise``: rank 1 raises in
``training_step``. ``sigkill``: rank 1 is killed by SIGKILL in ``training_step`` (as by the OOM killer).
``stuck``: the same, while rank 0 is busy outside any collective (no error ever reaches it).
``raise_both``: both ranks raise in ``training_step``, rank 1 first. ``raise_both_rank0_first``: both
raise, rank 0 first, rank 1 a moment later. ``raise_rank0``: rank 0 raises alone.
``raise_after_fit``: both ranks raise after ``fit``, outside any run, rank 0 first.
``catch_and_fit_again``: both ranks raise in ``on_train_start`` (rank 0 first) and the program catches
it; a second ``fit`` trains, then rank 1 alone raises (uncaught) in a third ``fit``.
``spawn``: fit with ``ddp_spawn``, then validate, predict and fit one more epoch with ``ddp_fork``.
Each process writes what it saw to ``OUTDIR/<mode>-rank<r>.pt``.
"""

from __future__ import annotations

import copy
import os
import random
import signal
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember as pl
from ember.callbacks import BasePredictionWriter, Callback, ModelCheckpoint
from ember.distributed import failure


def dataset(n: int = 32) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, x.sum(dim=1, keepdim=True))


def wait_for_the_first_failure() -> None:
    while failure.first_failure() is None:
        time.sleep(0.005)


class Model(pl.LightningModule):
    def __init__(self, dropout: float = 0.0, fail_on_train_start: bool = False, fail_alone: bool = False) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.Linear(4, 8), nn.Dropout(dropout), nn.Linear(8, 1))
        self.fail_on_train_start = fail_on_train_start
        self.fail_alone = fail_alone

    def on_train_start(self):
        if self.fail_on_train_start:
            if self.global_rank == 1:  # rank 0 fails first
                wait_for_the_first_failure()
            raise ValueError(f"bad config on rank {self.global_rank}")

    def training_step(self, batch, batch_idx):
        x, y = batch
        if MODE == "raise" and self.global_rank == 1 and batch_idx == 3:
            with open(os.path.join(sys.argv[2], "raised_at"), "w") as f:
                f.write(repr(time.time()))
            raise ValueError("boom on rank 1")
        if MODE == "raise_both" and batch_idx == 3:
            if self.global_rank == 0:  # rank 1 fails first: wait until the job has recorded it
                wait_for_the_first_failure()
            raise ValueError(f"boom on rank {self.global_rank}")
        if MODE == "raise_both_rank0_first" and batch_idx == 3:
            if self.global_rank == 1:  # rank 0 fails first; this rank is a moment behind it
                wait_for_the_first_failure()
                time.sleep(0.5)
                print("rank 1 is about to fail too", flush=True)
            raise ValueError(f"boom on rank {self.global_rank}")
        if MODE == "catch_and_fit_again" and self.fail_alone and self.global_rank == 1:
            raise ValueError("late failure on rank 1")
        if MODE == "raise_rank0" and self.global_rank == 0 and batch_idx == 3:
            with open(os.path.join(sys.argv[2], "raised_at"), "w") as f:
                f.write(repr(time.time()))
            raise ValueError("boom on rank 0")
        if MODE == "stuck" and self.global_rank == 0 and batch_idx == 3:
            time.sleep(600)  # a long host-side stall: only the launcher's watch can end the job
        if MODE in ("sigkill", "stuck") and self.global_rank == 1 and batch_idx == 3:
            with open(os.path.join(sys.argv[2], "killed_at"), "w") as f:
                f.write(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)
        loss = nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        self.log("val_loss", loss, sync_dist=True)
        rank = torch.tensor(float(self.global_rank))
        self.log("rank_synced", rank, sync_dist=True)
        self.log("rank_local", rank)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_sum", nn.functional.mse_loss(self.layer(x), y), sync_dist=True, reduce_fx="sum")

    def predict_step(self, batch, batch_idx):
        return self.layer(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def trainer(out: str, strategy: str = "ddp", **kwargs) -> pl.Trainer:
    options = dict(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
        num_sanity_val_steps=0,
    )
    options.update(kwargs)
    return pl.Trainer(**options)


def save(out: str, name: str, record: dict) -> None:
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))
    torch.save(record, os.path.join(out, f"{name}-rank{rank}.pt"))


def weights(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run_fit(out: str) -> None:
    torch.manual_seed(0)
    model = Model()
    data = dataset()
    ckpt = ModelCheckpoint(dirpath=os.path.join(out, "ckpts"))
    t = trainer(out, max_epochs=2, callbacks=[ckpt])
    t.fit(model, DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    record = {
        "world_size": t.world_size,
        "global_rank": t.global_rank,
        "global_step": t.global_step,
        "weights": weights(model),
        "callback_metrics": {k: v.clone() for k, v in t.callback_metrics.items()},
        "ckpt_files": sorted(os.listdir(os.path.join(out, "ckpts"))),
        "best": ckpt.best_model_path,
        "pid": os.getpid(),
    }
    record["validate"] = t.validate(model, DataLoader(data, batch_size=4), verbose=False)
    record["test"] = t.test(model, DataLoader(data, batch_size=4), verbose=False)
    record["predict"] = t.predict(model, DataLoader(data, batch_size=4))
    resumed = Model()
    # a Trainer made after the job's processes started, copied as some libraries copy theirs (rectools)
    t2 = copy.deepcopy(trainer(out, max_epochs=3, enable_checkpointing=False))
    t2.fit(resumed, DataLoader(data, batch_size=4), ckpt_path=ckpt.best_model_path)
    record["resumed_step"] = t2.global_step
    record["resumed_weights"] = weights(resumed)
    save(out, "fit", record)


def run_plain(out: str) -> None:
    pl.seed_everything(7, verbose=False)
    model = Model(dropout=0.3)
    t = trainer(out, max_epochs=2, limit_val_batches=0, enable_checkpointing=False)
    t.fit(model, DataLoader(dataset(48), batch_size=3, shuffle=True))
    save(out, "plain", {"weights": weights(model), "global_step": t.global_step, "world_size": t.world_size})


def run_raise(out: str) -> None:
    save(out, MODE, {"pid": os.getpid()})
    t = trainer(out, max_epochs=1, enable_checkpointing=False)
    t.fit(Model(), DataLoader(dataset(64), batch_size=2))


def run_raise_after_fit(out: str) -> None:
    t = trainer(out, max_epochs=1, enable_checkpointing=False)
    t.fit(Model(), DataLoader(dataset(16), batch_size=2))
    if t.global_rank == 1:
        time.sleep(0.5)  # rank 0 fails first
        print("rank 1 is about to fail too", flush=True)
    raise ValueError(f"evaluation failed on rank {t.global_rank}")


def run_catch_and_fit_again(out: str) -> None:
    """A failure on every rank that the program catches, then another fit (a retry, a sweep in one script)."""
    data = DataLoader(dataset(16), batch_size=2)
    try:
        trainer(out, max_epochs=1, enable_checkpointing=False).fit(Model(fail_on_train_start=True), data)
        caught = None
    except ValueError as error:
        caught = str(error)
    torch.manual_seed(0)
    model = Model()
    t = trainer(out, max_epochs=1, enable_checkpointing=False)
    t.fit(model, data)
    save(out, MODE, {"caught": caught, "global_step": t.global_step, "weights": weights(model), "pid": os.getpid()})
    # a later failure is its own call's: rank 1 fails first there, and rank 0 says so
    trainer(out, max_epochs=1, enable_checkpointing=False).fit(Model(fail_alone=True), data)


class GlobalStateAtSetup(Callback):
    """What each rank's process starts the run with: draws of every global RNG, the deterministic flag."""

    def __init__(self, out: str) -> None:
        self.out = out

    def setup(self, trainer, pl_module, stage):
        save(self.out, "spawn-start", {"draws": draws(), "deterministic": torch.are_deterministic_algorithms_enabled()})


class CountsBatches(Callback):
    """A callback with a state of its own: the training batches its rank ran."""

    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1

    def state_dict(self):
        return {"batches": self.batches}

    def load_state_dict(self, state_dict):
        self.batches = state_dict["batches"]


def draws() -> tuple:
    return torch.rand(3), random.random(), float(np.random.rand())


def run_spawn(out: str) -> None:
    torch.manual_seed(0)
    random.seed(1)
    np.random.seed(2)
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = Model()
    before = weights(model)
    ckpt = ModelCheckpoint(dirpath=os.path.join(out, "ckpts"))
    counter = CountsBatches()
    t = trainer(out, strategy="ddp_spawn", max_epochs=1, callbacks=[ckpt, counter, GlobalStateAtSetup(out)])
    data = dataset()
    t.fit(model, DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    torch.use_deterministic_algorithms(False)
    record = {
        "parent_draws": draws(),  # this process drew nothing since the launch: what a forked rank would draw
        "before": before,
        "weights": weights(model),
        "global_step": t.global_step,
        "callback_metrics": dict(t.callback_metrics),
        "state": t.state.status.value,
        "best": ckpt.best_model_path,
        # beyond what Lightning brings back (docs/compat.md): the logged metrics, every callback's state
        "logged_metrics": dict(t.logged_metrics),
        "batches_counted": counter.batches,
    }
    try:  # worked out in the spawned processes, from the data they set up: this one set none up
        record["estimated_stepping_batches"] = t.estimated_stepping_batches
    except RuntimeError as error:
        record["estimated_stepping_batches"] = str(error)
    # fork workers start at once (no new interpreter): the cheap way to check validate/predict here
    forked = trainer(out, strategy="ddp_fork", enable_checkpointing=False)
    record["validate"] = forked.validate(model, DataLoader(data, batch_size=4), verbose=False)
    # forked workers keep their predictions (as in Lightning): a writer saves each rank's
    forked = trainer(out, strategy="ddp_fork", enable_checkpointing=False, callbacks=[RankWriter(out)])
    record["predict"] = forked.predict(model, DataLoader(data, batch_size=4))
    # one more epoch, forked, of the model the spawn job handed through shared memory
    trainer(out, strategy="ddp_fork", max_epochs=1, enable_checkpointing=False).fit(
        model, DataLoader(data, batch_size=4)
    )
    record["weights_after_forked_fit"] = weights(model)
    save(out, "spawn", record)


class RankWriter(BasePredictionWriter):
    def __init__(self, out: str) -> None:
        super().__init__(write_interval="epoch")
        self.out = out

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        torch.save(predictions, os.path.join(self.out, f"predictions-rank{trainer.global_rank}.pt"))


class ThreadsSeen(pl.Callback):
    """Each rank's intra-op threads and exported ``OMP_NUM_THREADS`` once training starts."""

    def on_train_start(self, trainer, pl_module):
        save(
            trainer.default_root_dir,
            "threads",
            {"threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")},
        )


def run_threads(out: str) -> None:
    trainer(out, max_epochs=1, enable_checkpointing=False, callbacks=[ThreadsSeen()]).fit(
        Model(), DataLoader(dataset(), batch_size=4)
    )


def run_startup(out: str) -> None:
    pl.seed_everything(3)
    trainer(out, max_steps=1, enable_checkpointing=False).fit(Model(), DataLoader(dataset(), batch_size=4))


MODE = sys.argv[1] if len(sys.argv) > 1 else "fit"

if __name__ == "__main__":
    out_dir = sys.argv[2]
    if MODE == "fit":
        run_fit(out_dir)
    elif MODE == "plain":
        run_plain(out_dir)
    elif MODE in ("raise", "raise_both", "raise_both_rank0_first", "raise_rank0", "sigkill", "stuck"):
        run_raise(out_dir)
    elif MODE == "raise_after_fit":
        run_raise_after_fit(out_dir)
    elif MODE == "catch_and_fit_again":
        run_catch_and_fit_again(out_dir)
    elif MODE == "spawn":
        run_spawn(out_dir)
    elif MODE == "threads":
        run_threads(out_dir)
    elif MODE == "startup":
        run_startup(out_dir)
    else:
        raise SystemExit(f"unknown mode {MODE!r}")
