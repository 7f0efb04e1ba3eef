"""``self.log`` cases that run unchanged on Lightning and on Ember.

``run_logging_case(pl, case, tmp_path)`` fits a module that logs synthetic, exactly known values
(derived from epoch, batch and dataloader indices) with many ``self.log`` flag combinations, then
returns ``trainer.callback_metrics`` / ``logged_metrics`` / ``progress_bar_metrics``, the
``validate()`` / ``test()`` results, and every ``log_metrics(metrics, step)`` call a logger got.

Example::

    import ember as pl
    got = run_logging_case(pl, LOGGING_CASES["log_every_n_steps_1"], tmp_path)
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

# Train: 10 samples in batches of 4 -> sizes 4, 4, 2 (unequal last batch, for batch_size weights).
# Val/test: two dataloaders, sizes (4, 2) and (2, 1).
BASE_TRAINER_ARGS = {
    "max_epochs": 2,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "enable_checkpointing": False,
    "num_sanity_val_steps": 0,
}

LOGGING_CASES: dict[str, dict] = {
    "log_every_n_steps_1": {"trainer_args": {"log_every_n_steps": 1}},
    "log_every_n_steps_3": {"trainer_args": {"log_every_n_steps": 3}},
    "accumulate_grad_batches_2": {"trainer_args": {"log_every_n_steps": 1, "accumulate_grad_batches": 2}},
}


def _data(length: int) -> TensorDataset:
    return TensorDataset(torch.linspace(-1.0, 1.0, length * 4).reshape(length, 4))


def make_logging_module(pl: Any) -> type:
    """Return ``LoggingModule``: logs known values under every flag combination."""

    class LoggingModule(pl.LightningModule):
        """Values: training ``batch_idx + 1 + 10 * epoch``; eval adds ``100 * dataloader_idx``."""

        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            (x,) = batch
            v = torch.tensor(batch_idx + 1.0 + 10 * self.current_epoch)
            self.log("t_step", v, prog_bar=True)  # defaults: on_step=True, on_epoch=False
            self.log("t_epoch", v, on_step=False, on_epoch=True)  # mean weighted by 4, 4, 2
            self.log("t_both", v, on_step=True, on_epoch=True, prog_bar=True)
            self.log("t_sum", v, on_step=False, on_epoch=True, reduce_fx="sum")
            self.log("t_max", v, on_step=False, on_epoch=True, reduce_fx="max")
            self.log("t_min", v, on_step=False, on_epoch=True, reduce_fx="min")
            self.log("t_nolog", v, on_step=False, on_epoch=True, logger=False)
            self.log("t_pbar_only", v, prog_bar=True, logger=False)
            self.log("t_bs", v, on_step=False, on_epoch=True, batch_size=batch_idx + 1)
            self.log("t_float", float(batch_idx), on_step=False, on_epoch=True)  # weight 1
            return self.layer(x).pow(2).mean()

        def _eval_step(self, prefix: str, batch, batch_idx, dataloader_idx=0):
            v = torch.tensor(batch_idx + 1.0 + 10 * self.current_epoch + 100 * dataloader_idx)
            self.log(f"{prefix}", v)  # defaults: on_step=False, on_epoch=True
            self.log(f"{prefix}_both", v, on_step=True, on_epoch=True, prog_bar=True)
            self.log(f"{prefix}_noidx_{dataloader_idx}", v, add_dataloader_idx=False)
            self.log(f"{prefix}_sum", v, reduce_fx="sum")
            self.log(f"{prefix}_max", v, reduce_fx="max")
            self.log(f"{prefix}_nolog", v, logger=False)
            self.log(f"{prefix}_pbar", v, prog_bar=True)

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self._eval_step("v", batch, batch_idx, dataloader_idx)

        def test_step(self, batch, batch_idx, dataloader_idx=0):
            self._eval_step("test", batch, batch_idx, dataloader_idx)

        def on_train_epoch_end(self):
            self.log("e_train", float(self.current_epoch) + 0.5, prog_bar=True)

        def on_validation_epoch_end(self):
            self.log("e_val", float(self.current_epoch) + 0.25)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

        def train_dataloader(self):
            return DataLoader(_data(10), batch_size=4)

        def _eval_loaders(self):
            return [DataLoader(_data(6), batch_size=4), DataLoader(_data(3), batch_size=2)]

        def val_dataloader(self):
            return self._eval_loaders()

        def test_dataloader(self):
            return self._eval_loaders()

    return LoggingModule


def _loggers(pl: Any):
    """``pl.loggers``, imported if the package loads it lazily."""
    return importlib.import_module(f"{pl.__name__}.loggers")


def make_memory_logger(pl: Any) -> type:
    """Return ``MemoryLogger``: a ``pl.loggers.Logger`` that keeps every call in memory."""

    class MemoryLogger(_loggers(pl).Logger):
        """Records ``log_metrics`` calls as ``{"step": step, "metrics": {key: float}}``."""

        def __init__(self) -> None:
            super().__init__()
            self.rows: list = []
            self.hyperparams_calls = 0
            self.finalized: list = []

        @property
        def name(self) -> str:
            return "memory"

        @property
        def version(self) -> int:
            return 0

        def log_hyperparams(self, params, *args, **kwargs) -> None:
            self.hyperparams_calls += 1

        def log_metrics(self, metrics, step=None) -> None:
            self.rows.append({"step": step, "metrics": {k: float(v) for k, v in sorted(metrics.items())}})

        def finalize(self, status: str) -> None:
            self.finalized.append(status)

    return MemoryLogger


def _floats(metrics: dict) -> dict:
    # host sync: once, after the run
    return {key: float(value) for key, value in sorted(metrics.items())}


def _read_csv(path: Path) -> dict:
    """The CSV header, and each row as ``{column: text}`` without its empty cells."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    rows = [{k: v for k, v in zip(header, line.split(",")) if v != ""} for line in lines[1:]]
    return {"header": header, "rows": rows}


def run_logging_case(pl: Any, case: dict, tmp_path: Path) -> dict:
    """Fit, validate and test a ``LoggingModule`` under ``case``; return everything observed."""
    tmp_path = Path(tmp_path)
    memory = make_memory_logger(pl)()
    csv = _loggers(pl).CSVLogger(str(tmp_path), name="csv", version=0)
    model = make_logging_module(pl)()
    trainer = pl.Trainer(
        default_root_dir=str(tmp_path), logger=[memory, csv], **{**BASE_TRAINER_ARGS, **case["trainer_args"]}
    )
    trainer.fit(model)
    after_fit = {
        "callback_metrics": _floats(trainer.callback_metrics),
        "logged_metrics": _floats(trainer.logged_metrics),
        "progress_bar_metrics": _floats(trainer.progress_bar_metrics),
        "global_step": int(trainer.global_step),
    }
    fit_rows = list(memory.rows)
    csv_fit = _read_csv(Path(csv.log_dir) / "metrics.csv")
    validate_result = trainer.validate(model)
    validate_rows = memory.rows[len(fit_rows) :]
    after_validate = _floats(trainer.callback_metrics)
    test_result = trainer.test(model)
    test_rows = memory.rows[len(fit_rows) + len(validate_rows) :]
    return {
        "after_fit": after_fit,
        "fit_logger_rows": fit_rows,
        "fit_csv": csv_fit,
        "validate_result": [_floats(d) for d in validate_result],
        "validate_logger_rows": validate_rows,
        "after_validate_callback_metrics": after_validate,
        "test_result": [_floats(d) for d in test_result],
        "test_logger_rows": test_rows,
        "after_test_callback_metrics": _floats(trainer.callback_metrics),
        "log_hyperparams_calls": memory.hyperparams_calls,
        "finalize_calls": memory.finalized,
    }
