"""Package attributes imported on first use (PEP 562's module ``__getattr__``), so that importing a package
loads none of the modules behind its names until one is asked for.

Example::

    _LAZY = {"TensorBoardLogger": "ember.loggers.tensorboard"}


    def __getattr__(name: str) -> Any:
        return lazy_attribute(globals(), _LAZY, name)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def lazy_attribute(package: dict[str, Any], homes: Mapping[str, str], name: str) -> Any:
    """The attribute ``name`` of the package whose ``globals()`` is ``package``: imported from its module in
    ``homes`` and kept in the package, so the next lookup finds it without a call."""
    home = homes.get(name)
    if home is None:
        raise AttributeError(f"module {package['__name__']!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    package[name] = value
    return value
