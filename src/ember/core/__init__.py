"""The user's objects, at Lightning's import path: ``from ember.core import LightningModule``.

Example::

    from ember.core import LightningDataModule, LightningModule
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LightningModule": "ember.core.module",
    "LightningDataModule": "ember.core.datamodule",
}

__all__ = ["LightningDataModule", "LightningModule"]


def __getattr__(name: str) -> Any:
    # `ember.core.module` imports this package first: the classes load when asked for, not here
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ember.core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
