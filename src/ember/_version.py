"""Ember's version: one place, read by the package metadata, checkpoints and the ``ember`` command."""

__version__ = "0.1.0"

# The PyTorch Lightning release whose API and checkpoint format Ember follows. Lightning programs run
# on Ember (``ember.install_as_lightning()``) see it as ``pytorch_lightning.__version__``.
LIGHTNING_VERSION = "2.6.6"
