"""Experiment loggers. Each lives in its own module, imported on first use so that
``import ember`` never pays for tensorboard, mlflow, wandb or comet_ml.

Example::

    from ember.loggers import CSVLogger, TensorBoardLogger

    trainer = Trainer(logger=[CSVLogger("logs"), TensorBoardLogger("logs")])
"""

from __future__ import annotations

from typing import Any

from ember.utilities.lazy import lazy_attribute

_LAZY = {
    "Logger": "ember.loggers.logger",
    "DummyLogger": "ember.loggers.logger",
    "CSVLogger": "ember.loggers.csv_logs",
    "TensorBoardLogger": "ember.loggers.tensorboard",
    "MLFlowLogger": "ember.loggers.mlflow",
    "WandbLogger": "ember.loggers.wandb",
    "CometLogger": "ember.loggers.comet",
    "LitLogger": "ember.loggers.litlogger",  # by name only
}

__all__ = ["CSVLogger", "CometLogger", "LitLogger", "Logger", "MLFlowLogger", "TensorBoardLogger", "WandbLogger"]


def __getattr__(name: str) -> Any:
    return lazy_attribute(globals(), _LAZY, name)


def __dir__() -> list[str]:
    return sorted(__all__)
