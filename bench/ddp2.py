"""The ``ddp2`` bench case: a hand-written DDP loop against Ember on two CPU processes (gloo).

Both train the same MLP (32 -> 64 -> 10, batch 64 per rank, Adam, ``torch.manual_seed(0)``) on the
same data through a ``DistributedSampler``, and time the same optimizer steps on rank 0, after
the same warm-up, from inside the job (process start and rendezvous are not part of the figure).
Ember runs the way users run it: ``Trainer(devices=2, strategy="ddp")`` re-launching this script.
Lightning runs the same program when ``.venv-peers`` has it.

    python bench/ddp2.py                 # medians of 3, printed
    python bench/ddp2.py raw OUT.json    # one job (what run() starts)

``run(repeats)`` is what ``bench/run.py`` calls: it returns the timed seconds of each repeat for
``raw`` and ``ember`` (and ``lightning``), plus ``raw_us_per_step``, ``ember_us_per_step`` and
``ratio`` (medians).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BATCH, FEATURES, HIDDEN, CLASSES = 64, 32, 64, 10
WARMUP, STEPS = 50, 1000


def data(world_size: int = 2) -> TensorDataset:
    g = torch.Generator().manual_seed(1234)
    n = (WARMUP + STEPS) * BATCH * world_size
    return TensorDataset(torch.randn(n, FEATURES, generator=g), torch.randint(0, CLASSES, (n,), generator=g))


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))


def _write(path: str, seconds: float, weights: nn.Module) -> None:
    checksum = sum(p.double().sum().item() for p in weights.parameters())
    with open(path, "w") as f:
        json.dump({"seconds": seconds, "steps": STEPS, "checksum": checksum}, f)


# =====================================================================================
# the hand-written loop (torch.multiprocessing workers, as a user without a framework writes it)
# =====================================================================================
def _raw_worker(rank: int, out: str, port: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data.distributed import DistributedSampler

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    model = mlp()
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    dataset = data()
    sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
    sampler.set_epoch(0)
    start = 0.0
    for step, (x, y) in enumerate(DataLoader(dataset, batch_size=BATCH, sampler=sampler)):
        if step == WARMUP:
            start = time.perf_counter()
        loss = F.cross_entropy(ddp(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    if rank == 0:
        _write(out, seconds, model)
    dist.destroy_process_group()


def run_raw(out: str) -> None:
    import torch.multiprocessing as mp

    from ember.distributed.environments import find_free_network_port

    mp.start_processes(_raw_worker, args=(out, str(find_free_network_port())), nprocs=2, start_method="fork")


# =====================================================================================
# the framework program: the same work as a LightningModule (run with Ember or Lightning)
# =====================================================================================
def run_framework(pl: Any, out: str) -> None:
    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class StepClock(pl.Callback):
        """Rank 0's clock at the end of the warm-up and of the last step."""

        def __init__(self) -> None:
            self.start = 0.0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == WARMUP:
                self.start = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            if trainer.global_rank == 0:
                _write(out, time.perf_counter() - self.start, pl_module.net)

    model = Classifier()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        callbacks=[StepClock()],
    )
    loader = DataLoader(data(), batch_size=BATCH, shuffle=True)
    trainer.fit(model, loader)


# =====================================================================================
# repeats and medians
# =====================================================================================
def _env(impl: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT", "MASTER_ADDR", "PYTHONPATH")
    }
    if impl != "lightning":
        env["PYTHONPATH"] = str(REPO / "src")
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"  # thread noise on a small CPU dwarfs the overhead
    env["PYTHONWARNINGS"] = "ignore"
    return env


# What a process prints when a gloo worker thread is still finishing a collective as the
# interpreter shuts down (Ember waits for it, see ``distributed/parallel.py``; the others may not).
_EXIT_ABORT = "terminate called without an active exception"


def _one(impl: str, python: str) -> tuple[dict[str, Any], bool]:
    """One job; its result and whether it aborted at exit after writing that result."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "result.json")
        proc = subprocess.run(
            [python, __file__, impl, out],
            env=_env(impl),
            cwd=folder,
            timeout=600,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        aborted_at_exit = proc.returncode != 0 and _EXIT_ABORT in proc.stderr and os.path.exists(out)
        if proc.returncode != 0 and not aborted_at_exit:
            raise RuntimeError(
                f"{impl} ddp2 job failed (exit {proc.returncode}); its output ends with:\n{proc.stderr[-3000:]}"
            )
        # rank 0 writes the result after the last step: an abort at exit does not touch the figure
        with open(out) as f:
            return json.load(f), aborted_at_exit


def run(repeats: int = 3) -> dict[str, Any]:
    """Each implementation ``repeats`` times (alternating order); timed seconds and per-step medians."""
    impls = {"raw": sys.executable, "ember": sys.executable}
    peers = REPO / ".venv-peers" / "bin" / "python"
    if peers.exists():
        impls["lightning"] = str(peers)
    seconds: dict[str, list[float]] = {impl: [] for impl in impls}
    checksums: dict[str, float] = {}
    exit_aborts: dict[str, int] = {impl: 0 for impl in impls}
    for repeat in range(repeats):
        order = list(impls) if repeat % 2 == 0 else list(reversed(impls))
        for impl in order:
            result, aborted = _one(impl, impls[impl])
            seconds[impl].append(result["seconds"])
            checksums[impl] = result["checksum"]
            exit_aborts[impl] += aborted
    per_step = {impl: statistics.median(values) * 1e6 / STEPS for impl, values in seconds.items()}
    same = abs(checksums["raw"] - checksums["ember"]) < 1e-3
    result: dict[str, Any] = {
        "case": "ddp2",
        **seconds,
        "unit": "s",
        "raw_us_per_step": per_step["raw"],
        "ember_us_per_step": per_step["ember"],
        "ratio": per_step["ember"] / per_step["raw"],
        "note": f"{STEPS} steps after {WARMUP} warm-up, 2 CPU processes on gloo, rank 0's clock;"
        f" final weights {'match' if same else 'DIFFER'} between raw and Ember",
    }
    aborts = [f"{impl} {count} of {repeats}" for impl, count in exit_aborts.items() if count]
    if aborts:
        result["note"] += "; jobs that aborted at exit after their last step (gloo): " + ", ".join(aborts)
    if "lightning" in per_step:
        result["lightning_us_per_step"] = per_step["lightning"]
        result["lightning_ratio"] = per_step["lightning"] / per_step["raw"]
    return result


if __name__ == "__main__":
    if len(sys.argv) >= 3:
        impl, out_path = sys.argv[1], sys.argv[2]
        if impl == "raw":
            run_raw(out_path)
        elif impl == "ember":
            import ember

            run_framework(ember, out_path)
        elif impl == "lightning":
            import pytorch_lightning

            run_framework(pytorch_lightning, out_path)
        else:
            raise SystemExit(f"unknown implementation {impl!r}: use raw, ember or lightning")
    else:
        print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 3), indent=2))
