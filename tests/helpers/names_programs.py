"""Programs for the callbacks and utilities Lightning has beyond the core loop; they run unchanged on
Lightning and on Ember.

Every function takes ``pl`` (``pytorch_lightning`` or ``ember``) and ``throughput`` (the module
holding ``Throughput``: ``lightning_fabric.utilities.throughput`` or ``ember.utilities.throughput``)
where needed, uses only the public API, and returns plain JSON data. The reference script
``tests/fixtures/make_lightning_names_reference.py`` stores what Lightning 2.6.6 returns;
``tests/test_lightning_names.py`` runs the same programs on Ember and compares.

Example::

    import ember as pl
    result = finetuning_program(pl)  # learning rates and trainable flags per epoch
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import tempfile
from argparse import Namespace
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

QUIET = {
    "accelerator": "cpu",
    "devices": 1,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "enable_checkpointing": False,
    "logger": False,
}


def _loader(n: int = 16, batch_size: int = 4, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x.sum(dim=1, keepdim=True)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def _sums(module: nn.Module) -> dict[str, float]:
    return {name: float(t.detach().double().sum()) for name, t in module.state_dict().items()}


def _module_class(pl: Any) -> type:
    class Net(pl.LightningModule):
        """A backbone (4 -> 8 with BatchNorm) and a head (8 -> 1); SGD over the trainable parameters."""

        def __init__(self, lr: float = 0.1, spike_at: int = -1) -> None:
            super().__init__()
            self.backbone = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
            self.head = nn.Linear(8, 1)
            self.lr = lr
            self.spike_at = spike_at
            self.seen: list[float] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.backbone(x))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = nn.functional.mse_loss(self(x), y)
            if batch_idx == self.spike_at:
                loss = loss * 1000.0
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            loss = nn.functional.mse_loss(self(x), y)
            self.seen.append(float(self.head.weight.detach().sum()))
            self.log("val_loss", loss)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=self.lr)

    return Net


def finetuning_program(pl: Any) -> dict[str, Any]:
    """BackboneFinetuning: learning rates, trainable flags and stored groups, epoch by epoch."""
    callbacks = importlib.import_module(f"{pl.__name__}.callbacks")
    torch.manual_seed(0)
    model = _module_class(pl)()
    epochs: list[dict[str, Any]] = []

    class Record(callbacks.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            optimizer = trainer.optimizers[0]
            epochs.append(
                {
                    "lrs": [group["lr"] for group in optimizer.param_groups],
                    "group_sizes": [len(group["params"]) for group in optimizer.param_groups],
                    "backbone_trainable": [p.requires_grad for p in pl_module.backbone.parameters()],
                    "bn_tracks": pl_module.backbone[1].track_running_stats,
                }
            )

    finetuning = callbacks.BackboneFinetuning(unfreeze_backbone_at_epoch=1, lambda_func=lambda epoch: 1.5)
    trainer = pl.Trainer(**QUIET, max_epochs=4, limit_val_batches=0, callbacks=[finetuning, Record()])
    trainer.fit(model, _loader())
    state = finetuning.state_dict()
    return {
        "epochs": epochs,
        "previous_backbone_lr": state["previous_backbone_lr"],
        "metadata": {
            str(index): [{**{k: v for k, v in g.items() if k != "params"}, "params": g["params"]} for g in groups]
            for index, groups in state["internal_optimizer_metadata"].items()
        },
        "sums": _sums(model),
    }


def ema_program(pl: Any) -> dict[str, Any]:
    """EMAWeightAveraging: the weights seen by validation, the final weights, the checkpoint layout."""
    callbacks = importlib.import_module(f"{pl.__name__}.callbacks")
    torch.manual_seed(0)
    model = _module_class(pl)()
    ema = callbacks.EMAWeightAveraging(decay=0.5, update_starting_at_step=2)
    trainer = pl.Trainer(**QUIET, max_epochs=2, num_sanity_val_steps=0, callbacks=[ema])
    trainer.fit(model, _loader(), _loader(8, seed=1))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "ema.ckpt")
        trainer.save_checkpoint(path)
        checkpoint = torch.load(path, weights_only=True)
    return {
        "validation_head_sums": model.seen,
        "sums": _sums(model),
        "val_loss": float(trainer.callback_metrics["val_loss"]),
        "checkpoint_keys": sorted(
            k for k in checkpoint if k in ("state_dict", "current_model_state", "averaging_state")
        ),
        "averaging_state": {k: float(v) for k, v in checkpoint.get("averaging_state", {}).items()},
        "checkpoint_state_sums": {k: float(v.double().sum()) for k, v in checkpoint["state_dict"].items()},
        "callback_state": checkpoint["callbacks"].get("EMAWeightAveraging"),
    }


def pruning_program(pl: Any) -> dict[str, Any]:
    """ModelPruning (global L1, lottery ticket): zeros per parameter, the checkpoint's keys, the final keys."""
    callbacks = importlib.import_module(f"{pl.__name__}.callbacks")
    torch.manual_seed(0)
    model = _module_class(pl)()
    pruning = callbacks.ModelPruning("l1_unstructured", amount=0.25, parameter_names=["weight"])
    keys: list[list[str]] = []

    class Record(callbacks.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            keys.append(sorted(pl_module.state_dict()))

    trainer = pl.Trainer(**QUIET, max_epochs=2, limit_val_batches=0, callbacks=[pruning, Record()])
    trainer.fit(model, _loader())
    return {
        "keys_during_training": keys,
        "final_keys": sorted(model.state_dict()),
        "zeros": {name: int((t == 0).sum()) for name, t in model.state_dict().items() if name.endswith("weight")},
        "sums": _sums(model),
    }


def spike_program(pl: Any) -> dict[str, Any]:
    """SpikeDetection: the exception and the batches it asks to skip."""
    callbacks = importlib.import_module(f"{pl.__name__}.callbacks")
    torch.manual_seed(0)
    model = _module_class(pl)(spike_at=5)
    with tempfile.TemporaryDirectory() as folder:
        spike = callbacks.SpikeDetection(window=3, exclude_batches_path=folder)
        trainer = pl.Trainer(**QUIET, max_epochs=3, limit_val_batches=0, callbacks=[spike])
        try:
            trainer.fit(model, _loader(32))
            raised = None
        except Exception as exception:
            raised = {"type": type(exception).__name__, "message": str(exception)}
        with open(os.path.join(folder, "skip_batches.json")) as file:
            skipped = json.load(file)
    return {"raised": raised, "skipped": skipped, "bad_batches": spike.bad_batches}


def throughput_monitor_program(pl: Any, logger: Any) -> dict[str, Any]:
    """ThroughputMonitor: which keys are logged at which steps, with the counts (times vary)."""
    callbacks = importlib.import_module(f"{pl.__name__}.callbacks")
    torch.manual_seed(0)
    model = _module_class(pl)()
    model.flops_per_batch = 1000
    monitor = callbacks.ThroughputMonitor(batch_size_fn=lambda batch: batch[0].shape[0], window_size=2)
    trainer = pl.Trainer(
        **{**QUIET, "logger": logger},
        max_epochs=2,
        log_every_n_steps=2,
        accumulate_grad_batches=1,
        num_sanity_val_steps=1,
        callbacks=[monitor],
    )
    trainer.fit(model, _loader(16), _loader(8, seed=1))
    trainer.validate(model, _loader(12, seed=1), verbose=False)
    calls = []
    for metrics, step in logger.calls:
        keys = sorted(k for k in metrics if k.startswith(("train/", "validate/")))
        if keys:
            counts = {k: metrics[k] for k in keys if k.rsplit("/", 1)[-1] in ("batches", "samples")}
            calls.append({"step": step, "keys": keys, "counts": counts, "epoch": metrics.get("epoch")})
    return {"calls": calls}


def throughput_values(throughput: Any) -> list[dict[str, float]]:
    """``Throughput.compute()`` after each of a fixed series of updates (world size 2, window 3)."""
    meter = throughput.Throughput(available_flops=50.0, world_size=2, window_size=3)
    out = []
    for i in range(1, 6):
        meter.update(time=0.5 * i + 0.1 * i * i, batches=i, samples=4 * i, lengths=10 * i, flops=7 * i)
        out.append(meter.compute())
    single = throughput.Throughput(window_size=2, separator="|")
    single.update(time=1.0, batches=1, samples=2)
    single.update(time=3.0, batches=2, samples=4)
    out.append(single.compute())
    return out


def utilities_program(pl: Any) -> dict[str, Any]:
    """grad_norm, measure_flops, enums, constants, get_init_args and hparams.yaml as the framework gives them."""
    utilities = importlib.import_module(f"{pl.__name__}.utilities")
    parsing = importlib.import_module(f"{pl.__name__}.utilities.parsing")
    saving = importlib.import_module(f"{pl.__name__}.core.saving")
    writer = importlib.import_module(f"{pl.__name__}.callbacks.prediction_writer")
    loggers = importlib.import_module(f"{pl.__name__}.loggers")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2, bias=False))
    net(torch.randn(5, 4)).pow(2).sum().backward()
    net[2].weight.grad = None
    norms = {str(p): {k: float(v) for k, v in utilities.grad_norm(net, norm_type=p).items()} for p in (1, 2.0, "inf")}
    with torch.device("meta"):
        meta_net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))
        x = torch.randn(16, 32)
    flops = {
        "forward": utilities.measure_flops(meta_net, lambda: meta_net(x)),
        "training": utilities.measure_flops(meta_net, lambda: meta_net(x), lambda y: y.sum()),
    }

    class WithArgs:
        def __init__(self, a: int, b: str = "x", *args: Any, c: float = 1.5, **kwargs: Any) -> None:
            super().__init__()  # gives the frame its `__class__`, which marks an `__init__` of a class
            self.frame_args = parsing.get_init_args(inspect.currentframe())

    hparams = {"zeta": 1, "alpha": [1, 2], "mid": {"b": 2, "a": 1}, "flag": True, "name": "run"}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "hparams.yaml")
        saving.save_hparams_to_yaml(path, Namespace(**hparams))
        with open(path) as file:
            saved_text = file.read()
        loaded = saving.load_hparams_from_yaml(path)
        csv_logger = loggers.CSVLogger(folder, name="csv")
        csv_logger.log_hyperparams(hparams)
        csv_logger.save()
        with open(os.path.join(csv_logger.log_dir, "hparams.yaml")) as file:
            csv_text = file.read()
    interval = writer.WriteInterval
    return {
        "grad_norm": norms,
        "flops": flops,
        "grad_clip_types": utilities.GradClipAlgorithmType.supported_types(),
        "grad_clip_norm_eq": [
            utilities.GradClipAlgorithmType.NORM == "NORM",
            utilities.GradClipAlgorithmType("value").name,
        ],
        "write_interval": {m.value: [m.on_batch, m.on_epoch] for m in interval},
        "module_keys": [
            pl.LightningModule.CHECKPOINT_HYPER_PARAMS_KEY,
            pl.LightningModule.CHECKPOINT_HYPER_PARAMS_NAME,
            pl.LightningModule.CHECKPOINT_HYPER_PARAMS_TYPE,
        ],
        "datamodule_keys": [
            pl.LightningDataModule.CHECKPOINT_HYPER_PARAMS_KEY,
            pl.LightningDataModule.CHECKPOINT_HYPER_PARAMS_NAME,
            pl.LightningDataModule.CHECKPOINT_HYPER_PARAMS_TYPE,
        ],
        "init_args": WithArgs(1, "y", 5, 6, c=2.5, extra=3).frame_args,
        "picklable": [utilities.is_picklable(1), utilities.is_picklable(lambda: 1)],
        "hparams_yaml": saved_text,
        "hparams_loaded": dict(loaded),
        "csv_hparams_yaml": csv_text,
    }
