"""The bench workloads: each case as a hand-written PyTorch loop and as a Lightning-style program.

Run in a fresh process by ``bench/run.py``::

    python bench/workloads.py CASE IMPL --result out.json [--quick] [--accelerator cpu] [--t0 T]

``IMPL`` is ``raw`` (plain PyTorch), ``ember`` (``import ember as pl``) or ``lightning``
(``import pytorch_lightning as pl``, from the peers venv). The framework programs are written once,
against the ``pl`` module they are given, so Ember and Lightning run the very same code.

Every pair does the same math: the model is built right after ``torch.manual_seed(0)``, the data
comes from a fixed generator, the loaders shuffle from the global RNG in the same order, and the
optimizer, steps, validation passes and checkpoint writes match. The result file carries a
checksum of the final weights so ``run.py`` can confirm it.

Only torch is imported at module level: the framework is imported inside the timed program so
that ``first_step`` sees its real cost.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

BATCH = 64
TINY_FEATURES, TINY_HIDDEN, TINY_CLASSES = 32, 64, 10


# =====================================================================================
# sizes: the full workloads, or a few steps for the smoke test
# =====================================================================================
def sizes(quick: bool) -> dict[str, int]:
    """Steps per epoch, epochs and validation batches for each case; the ``async_ckpt`` model's size."""
    if quick:
        return {
            "tiny_batches": 10,
            "tiny_epochs": 2,
            "val_batches": 2,
            "digits_epochs": 2,
            "warmup": 2,
            "ckpt_width": 64,
            "ckpt_layers": 2,
        }
    # 1000 batches x 3 epochs = 3000 steps; 20 validation batches per epoch in tiny_defaults;
    # tiny_compiled times the steps after the first `warmup` ones (compilation and warm-up);
    # async_ckpt: 6 layers of 1024x1024, 6.3M parameters: with Adam's two states a 76 MB checkpoint
    return {
        "tiny_batches": 1000,
        "tiny_epochs": 3,
        "val_batches": 20,
        "digits_epochs": 10,
        "warmup": 50,
        "ckpt_width": 1024,
        "ckpt_layers": 6,
    }


def import_dynamo() -> None:
    """The first optimizer step imports torch._dynamo (about a second, more on a busy machine), the same for
    every implementation: loaded before the clock starts, the figures measure the loop, not a lazy import
    inside torch."""
    import importlib

    importlib.import_module("torch._dynamo")


def one_thread_process() -> None:
    """The set-up of the scripts that measure single steps in one process (``step_time.py``, ``calls.py``,
    ``instructions.py``): one torch thread, and torch._dynamo loaded, as in ``make bench``."""
    torch.set_num_threads(1)
    import_dynamo()


# =====================================================================================
# data and models
# =====================================================================================
def tiny_data(batches: int, val_batches: int) -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(1234)
    n, n_val = batches * BATCH, val_batches * BATCH
    x = torch.randn(n + n_val, TINY_FEATURES, generator=g)
    y = torch.randint(0, TINY_CLASSES, (n + n_val,), generator=g)
    return TensorDataset(x[:n], y[:n]), TensorDataset(x[n:], y[n:])


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Linear(TINY_FEATURES, TINY_HIDDEN), nn.ReLU(), nn.Linear(TINY_HIDDEN, TINY_CLASSES))


def digits_data(path: str | None) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's digits, 80/20 split. ``path`` is a tensor file the runner wrote, so the
    peers venv needs no scikit-learn."""
    if path:
        images, labels = torch.load(path, weights_only=True)
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        images = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.tensor(d.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(order))
    return TensorDataset(images[order[:cut]], labels[order[:cut]]), TensorDataset(
        images[order[cut:]], labels[order[cut:]]
    )


def digits_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 16, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


# async_ckpt: every phase trains PHASE_STEPS steps on the same batches and saves after the steps in
# SAVE_AFTER (0-based), leaving the last write time to land before the phase ends
CKPT_BATCH, PHASE_STEPS, SAVE_AFTER, WARMUP_STEPS = 16, 12, (0, 5, 10), 3


def ckpt_data(width: int) -> TensorDataset:
    g = torch.Generator().manual_seed(99)
    x = torch.randn(PHASE_STEPS * CKPT_BATCH, width, generator=g)
    return TensorDataset(x, torch.randn(PHASE_STEPS * CKPT_BATCH, width, generator=g))


def ckpt_net(width: int, layers: int) -> nn.Module:
    return nn.Sequential(*[m for _ in range(layers) for m in (nn.Linear(width, width), nn.Tanh())])


def checksum(model: nn.Module) -> float:
    return float(sum(p.detach().double().sum().cpu() for p in model.parameters()))


# =====================================================================================
# the hand-written loops
# =====================================================================================
def _raw_validation(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    model.eval()
    total, count = torch.zeros((), device=device), 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            total += F.cross_entropy(model(x), y) * len(y)
            count += len(y)
    model.train()
    return float(total / count)  # host sync: once per validation pass, as a user's loop does


def raw_tiny(
    s: dict[str, int],
    device: torch.device,
    defaults: bool,
    workdir: str,
    first: Callable[[], None],
    data: tuple[TensorDataset, TensorDataset] | None = None,
) -> tuple[nn.Module, int, float]:
    """``tiny`` (lean) and ``tiny_defaults`` (plus validation and a checkpoint per epoch), on ``tiny_data``
    or the given ``data``."""
    train, val = data if data is not None else tiny_data(s["tiny_batches"], s["val_batches"])
    torch.manual_seed(0)
    model = tiny_net().to(device)
    train_loader = DataLoader(train, batch_size=BATCH, shuffle=True)
    val_loader = DataLoader(val, batch_size=BATCH)
    start = time.perf_counter()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = 0
    for epoch in range(s["tiny_epochs"]):
        for x, y in train_loader:
            if steps == 0:
                first()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
        if defaults:
            _raw_validation(model, val_loader, device)
            torch.save(
                {"epoch": epoch, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()},
                os.path.join(workdir, "last.pt"),
            )
    return model, steps, time.perf_counter() - start


def tiny_epoch(impl: str, defaults: bool, steps: int, val_batches: int, train: TensorDataset | None = None) -> None:
    """One epoch of ``steps`` batches of ``tiny`` (``defaults``: ``tiny_defaults``) by ``impl``, on the CPU,
    in a scratch folder: the measured program of ``bench/instructions.py`` and ``bench/step_time.py``.
    ``train`` replaces the training set (one of ``steps`` batches)."""
    s = {**sizes(False), "tiny_batches": steps, "tiny_epochs": 1, "val_batches": val_batches}
    data = None
    if train is not None:
        data = (train, tiny_data(steps, val_batches)[1])
    workdir = tempfile.mkdtemp(prefix=f"bench-tiny-{impl}-")
    try:
        if impl == "raw":
            raw_tiny(s, torch.device("cpu"), defaults, workdir, lambda: None, data=data)
        else:
            framework_tiny(impl, s, torch.device("cpu"), defaults, workdir, lambda: None, data=data)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def raw_tiny_compiled(
    s: dict[str, int], device: torch.device, workdir: str, first: Callable[[], None]
) -> tuple[nn.Module, int, float]:
    """``tiny_compiled``: the lean ``tiny`` loop with ``torch.compile(model)``; timed after the warm-up."""
    train, _ = tiny_data(s["tiny_batches"], s["val_batches"])
    torch.manual_seed(0)
    model = tiny_net().to(device)
    # the same computation the framework compiles from training_step: the forward and the loss
    compiled_loss = torch.compile(lambda x, y: F.cross_entropy(model(x), y))
    train_loader = DataLoader(train, batch_size=BATCH, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps, start = 0, 0.0
    for _ in range(s["tiny_epochs"]):
        for x, y in train_loader:
            if steps == 0:
                first()
            if steps == s["warmup"]:
                start = time.perf_counter()  # compiled and warm: from here the steady state
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = compiled_loss(x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
    return model, steps, time.perf_counter() - start


def raw_digits(
    s: dict[str, int], device: torch.device, data_path: str | None, workdir: str, first: Callable[[], None]
) -> tuple[nn.Module, int, float]:
    """Ten epochs with validation, keep the best checkpoint on val loss, stop after 3 epochs without improvement."""
    train, val = digits_data(data_path)
    torch.manual_seed(0)
    model = digits_net().to(device)
    train_loader = DataLoader(train, batch_size=BATCH, shuffle=True)
    val_loader = DataLoader(val, batch_size=BATCH)
    start = time.perf_counter()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    best, wait, steps, best_path = math.inf, 0, 0, None
    for epoch in range(s["digits_epochs"]):
        for x, y in train_loader:
            if steps == 0:
                first()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
        val_loss = _raw_validation(model, val_loader, device)
        if val_loss < best:
            path = os.path.join(workdir, f"best-epoch={epoch}.pt")
            torch.save({"epoch": epoch, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
            if best_path:
                os.remove(best_path)
            best, wait, best_path = val_loss, 0, path
        else:
            wait += 1
            if wait >= 3:
                break
    return model, steps, time.perf_counter() - start


def raw_async_ckpt(s: dict[str, int], device: torch.device, workdir: str) -> tuple[nn.Module, int, dict[str, Any]]:
    """The hand-written loop saves synchronously (``torch.save``, fsync, rename) in both saving phases."""
    data = ckpt_data(s["ckpt_width"])
    torch.manual_seed(0)
    model = ckpt_net(s["ckpt_width"], s["ckpt_layers"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loader = DataLoader(data, batch_size=CKPT_BATCH)
    path = os.path.join(workdir, "raw.ckpt")
    stalls: list[float] = []
    phases: dict[str, float] = {}
    steps = 0
    for phase, count in (("warmup", WARMUP_STEPS), ("sync", PHASE_STEPS), ("async", PHASE_STEPS)):
        start = time.perf_counter()
        for index, (x, y) in enumerate(loader):
            if index == count:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            if phase in ("sync", "async") and index in SAVE_AFTER:
                begin = time.perf_counter()
                with open(path + ".tmp", "wb") as file:
                    torch.save({"state_dict": model.state_dict(), "optimizer": optimizer.state_dict()}, file)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(path + ".tmp", path)
                stalls.append(time.perf_counter() - begin)
        phases[phase] = time.perf_counter() - start
    return model, steps, {"stalls": {"sync": stalls}, "phases": phases, "bytes": os.path.getsize(path)}


# =====================================================================================
# the framework programs (the same source for Ember and Lightning)
# =====================================================================================
def _framework(impl: str) -> Any:
    if impl == "ember":
        import ember as pl
    elif impl == "lightning":
        import pytorch_lightning as pl
    else:
        raise ValueError(f"unknown framework {impl!r}")
    return pl


def _module_class(pl: Any, net: Callable[[], nn.Module], first: Callable[[], None]) -> type:
    class BenchModule(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net()
            self._first = first

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if self._first is not None:
                self._first()
                self._first = None
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("loss", loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", F.cross_entropy(self(x), y))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return BenchModule


def _accelerator_args(device: torch.device) -> dict[str, Any]:
    return {"accelerator": "cpu"} if device.type == "cpu" else {"accelerator": "gpu", "devices": 1}


def framework_tiny(
    impl: str,
    s: dict[str, int],
    device: torch.device,
    defaults: bool,
    workdir: str,
    first: Callable[[], None],
    data: tuple[TensorDataset, TensorDataset] | None = None,
) -> tuple[nn.Module, int, float]:
    pl = _framework(impl)
    train, val = data if data is not None else tiny_data(s["tiny_batches"], s["val_batches"])
    torch.manual_seed(0)
    model = _module_class(pl, tiny_net, first)()
    train_loader = DataLoader(train, batch_size=BATCH, shuffle=True)
    val_loader = DataLoader(val, batch_size=BATCH)
    start = time.perf_counter()
    if defaults:
        trainer = pl.Trainer(max_epochs=s["tiny_epochs"], default_root_dir=workdir, **_accelerator_args(device))
        trainer.fit(model, train_loader, val_loader)
    else:
        trainer = pl.Trainer(
            max_epochs=s["tiny_epochs"],
            default_root_dir=workdir,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            logger=False,
            num_sanity_val_steps=0,
            **_accelerator_args(device),
        )
        trainer.fit(model, train_loader)
    return model, trainer.global_step, time.perf_counter() - start


def framework_tiny_compiled(
    impl: str, s: dict[str, int], device: torch.device, workdir: str, first: Callable[[], None]
) -> tuple[nn.Module, int, float]:
    """``trainer.fit(torch.compile(module))`` on the lean ``tiny`` work; timed after the warm-up."""
    pl = _framework(impl)
    train, _ = tiny_data(s["tiny_batches"], s["val_batches"])
    torch.manual_seed(0)
    started: list[float] = []

    class Timed(_module_class(pl, tiny_net, first)):  # type: ignore[misc]
        def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
            if self.global_step == s["warmup"] and not started:
                started.append(time.perf_counter())

    model = Timed()
    trainer = pl.Trainer(
        max_epochs=s["tiny_epochs"],
        default_root_dir=workdir,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
        num_sanity_val_steps=0,
        **_accelerator_args(device),
    )
    trainer.fit(torch.compile(model), DataLoader(train, batch_size=BATCH, shuffle=True))
    return model, trainer.global_step, time.perf_counter() - started[0]


def framework_digits(
    impl: str, s: dict[str, int], device: torch.device, data_path: str | None, workdir: str, first: Callable[[], None]
) -> tuple[nn.Module, int, float]:
    pl = _framework(impl)
    from importlib import import_module

    callbacks = import_module(f"{pl.__name__}.callbacks")
    train, val = digits_data(data_path)
    torch.manual_seed(0)
    model = _module_class(pl, digits_net, first)()
    train_loader = DataLoader(train, batch_size=BATCH, shuffle=True)
    val_loader = DataLoader(val, batch_size=BATCH)
    start = time.perf_counter()
    trainer = pl.Trainer(
        max_epochs=s["digits_epochs"],
        default_root_dir=workdir,
        callbacks=[
            callbacks.ModelCheckpoint(monitor="val_loss"),
            callbacks.EarlyStopping(monitor="val_loss", patience=3),
        ],
        **_accelerator_args(device),
    )
    trainer.fit(model, train_loader, val_loader)
    return model, trainer.global_step, time.perf_counter() - start


def framework_async_ckpt(
    impl: str, s: dict[str, int], device: torch.device, workdir: str
) -> tuple[nn.Module, int, dict[str, Any]]:
    """Fits of the same model and optimizer: a warm-up, synchronous saves, then ``AsyncCheckpointIO`` saves.

    The stall of a save is the time ``trainer.save_checkpoint`` keeps the training loop waiting.
    """
    pl = _framework(impl)
    from importlib import import_module

    plugins = import_module(f"{pl.__name__}.plugins")
    data = ckpt_data(s["ckpt_width"])
    torch.manual_seed(0)
    net = ckpt_net(s["ckpt_width"], s["ckpt_layers"])
    stalls: dict[str, list[float]] = {"sync": [], "async": []}
    phases: dict[str, float] = {}
    path = os.path.join(workdir, f"{impl}.ckpt")

    class Saver(pl.Callback):
        def __init__(self, phase: str) -> None:
            self.phase = phase
            self.started = 0.0

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.started = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.phase in stalls and batch_idx in SAVE_AFTER:
                begin = time.perf_counter()
                trainer.save_checkpoint(path)
                stalls[self.phase].append(time.perf_counter() - begin)

    class CkptModule(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-4)  # its state carries over

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.mse_loss(self.net(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return self.optimizer

    model = CkptModule()
    loader = DataLoader(data, batch_size=CKPT_BATCH)
    steps = 0
    for phase, count in (("warmup", WARMUP_STEPS), ("sync", PHASE_STEPS), ("async", PHASE_STEPS)):
        saver = Saver(phase)
        trainer = pl.Trainer(
            max_steps=count,
            default_root_dir=workdir,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            logger=False,
            callbacks=[saver],
            plugins=[plugins.AsyncCheckpointIO()] if phase == "async" else None,
            **_accelerator_args(device),
        )
        trainer.fit(model, loader)
        phases[phase] = time.perf_counter() - saver.started  # to the return of fit: the writes are on disk
        steps += trainer.global_step
    return net, steps, {"stalls": stalls, "phases": phases, "bytes": os.path.getsize(path)}


# =====================================================================================
# entry point
# =====================================================================================
def _run_program(
    case: str,
    impl: str,
    s: dict[str, int],
    device: torch.device,
    data_path: str | None,
    workdir: str,
    first: Callable[[], None],
) -> tuple[nn.Module, int, float, dict[str, Any]]:
    """The case's program for ``impl``: the model, the steps it counts, the seconds it reports, extras."""
    extra: dict[str, Any] = {}
    if case in ("tiny", "tiny_defaults", "first_step"):
        defaults = case != "tiny"
        if case == "first_step":  # only the way to the first step matters
            s = {**s, "tiny_batches": 2, "tiny_epochs": 1}
        if impl == "raw":
            model, steps, seconds = raw_tiny(s, device, defaults, workdir, first)
        else:
            model, steps, seconds = framework_tiny(impl, s, device, defaults, workdir, first)
    elif case == "tiny_compiled":
        if impl == "raw":
            model, steps, seconds = raw_tiny_compiled(s, device, workdir, first)
        else:
            model, steps, seconds = framework_tiny_compiled(impl, s, device, workdir, first)
        steps -= s["warmup"]  # the timed steps
    elif case == "digits":
        if impl == "raw":
            model, steps, seconds = raw_digits(s, device, data_path, workdir, first)
        else:
            model, steps, seconds = framework_digits(impl, s, device, data_path, workdir, first)
    elif case == "async_ckpt":
        if impl == "raw":
            model, steps, extra = raw_async_ckpt(s, device, workdir)
        else:
            model, steps, extra = framework_async_ckpt(impl, s, device, workdir)
        # the figure: a save's stall in the last phase (the raw loop saves synchronously there too)
        seconds = statistics.median(extra["stalls"]["async" if impl != "raw" else "sync"][-len(SAVE_AFTER) :])
    else:
        raise ValueError(
            f"unknown case {case!r}; pick one of tiny, tiny_defaults, tiny_compiled, digits, first_step, async_ckpt"
        )
    return model, steps, seconds, extra


def run_case(
    case: str,
    impl: str,
    quick: bool = False,
    accelerator: str = "cpu",
    data_path: str | None = None,
    t0: float | None = None,
) -> dict[str, Any]:
    """Run one case with one implementation in this process and return its measurements.

    ``first_step`` runs the ``tiny_defaults`` program and reports the time from ``t0`` (the
    runner's clock just before it started this process) to the first training step.
    """
    device = torch.device("cuda" if accelerator in ("cuda", "gpu") else "cpu")
    s = sizes(quick)
    first_at: list[float] = []

    def first() -> None:
        if not first_at:
            first_at.append(time.time())

    if case != "first_step":
        import_dynamo()
    if device.type == "cuda":
        # cuDNN's default convolution kernels may add in any order, so two runs of the same program
        # end with different weights: pin deterministic ones so the three loops' weights can be compared.
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    workdir = tempfile.mkdtemp(prefix=f"bench-{case}-{impl}-")
    try:
        model, steps, seconds, extra = _run_program(case, impl, s, device, data_path, workdir, first)
        if device.type == "cuda":
            torch.cuda.synchronize()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "case": case,
        "impl": impl,
        "seconds": seconds,
        "steps": steps,
        "checksum": checksum(model),
        "device": str(device),
    }
    result.update(extra)
    if device.type == "cuda":
        result["device_name"] = torch.cuda.get_device_name(0)
    if case == "first_step":
        result["seconds"] = first_at[0] - t0 if (first_at and t0 is not None) else float("nan")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case")
    parser.add_argument("impl", choices=["raw", "ember", "lightning"])
    parser.add_argument("--result", required=True, help="JSON file to write the measurements to")
    parser.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--data", default=None, help="digits tensors written by run.py")
    parser.add_argument("--t0", type=float, default=None, help="wall clock at process start (first_step)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_case(args.case, args.impl, args.quick, args.accelerator, args.data, args.t0)
    with open(args.result, "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main(sys.argv[1:])
