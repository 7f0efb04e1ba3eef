"""Ember: PyTorch Lightning's API without the overhead.

Example::

    import ember as pl

    trainer = pl.Trainer(max_epochs=3)
    trainer.fit(model, train_loader)
"""

from ember._version import __version__
from ember.callbacks.callback import Callback
from ember.core.datamodule import LightningDataModule
from ember.core.module import LightningModule
from ember.trainer.trainer import Trainer
from ember.utilities.seed import seed_everything

__all__ = ["Callback", "LightningDataModule", "LightningModule", "Trainer", "__version__", "seed_everything"]

_SUBMODULES = {
    "callbacks",
    "checkpoint",
    "cli",
    "core",
    "demos",
    "loggers",
    "plot",
    "plugins",
    "strategies",
    "tuner",
    "utilities",
}


def __getattr__(name: str):
    # `pl.loggers.CSVLogger` works as in Lightning, without importing every submodule up front
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"ember.{name}")
    raise AttributeError(f"module 'ember' has no attribute {name!r}")
