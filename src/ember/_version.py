"""Ember's version: one place, read by the package metadata, checkpoints and the ``ember`` command."""

__version__ = "0.1.0"
