"""Ember: PyTorch Lightning's API without the overhead.

Example::

    import ember as pl

    trainer = pl.Trainer(max_epochs=3)
    trainer.fit(model, train_loader)
"""

import os as _os

from ember._version import __version__
from ember.callbacks.callback import Callback
from ember.core.datamodule import LightningDataModule
from ember.core.module import LightningModule
from ember.trainer.trainer import Trainer
from ember.utilities.seed import seed_everything
from ember.utilities.warnings import _install_lightning_format, disable_possible_user_warnings

__all__ = [
    "Callback",
    "LightningDataModule",
    "LightningModule",
    "Trainer",
    "__version__",
    "disable_possible_user_warnings",
    "install_as_lightning",
    "seed_everything",
]

_SUBMODULES = {
    "accelerators",
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


def install_as_lightning() -> None:
    """Make ``import pytorch_lightning``, ``import lightning.pytorch`` and ``import lightning`` give Ember.

    Call it before anything imports Lightning; unmodified Lightning programs and Lightning-based
    libraries then run on Ember (``ember run script.py`` does the same for a whole script). See
    ``ember.lightning_alias``.

    Example::

        import ember

        ember.install_as_lightning()
        import pytorch_lightning as pl  # Ember's Trainer, LightningModule, callbacks, loggers, ...
    """
    from ember.lightning_alias import install_as_lightning as install

    install()


_install_lightning_format()  # Ember's warnings print on one line, as Lightning's do

if _os.environ.get("POSSIBLE_USER_WARNINGS"):
    from ember.utilities.warnings import _disable_from_environment

    _disable_from_environment()

# the processes a program on `ember run` starts (DDP ranks) set this: Lightning's names are Ember's there too
if _os.environ.get("EMBER_AS_LIGHTNING") == "1":
    from ember.lightning_alias import install_from_environment as _install_from_environment

    _install_from_environment()
