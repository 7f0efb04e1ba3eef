"""``is_overridden``: whether a module, datamodule or callback replaces one of its base class's hooks.

Example::

    is_overridden("training_step", model)            # True for a module that defines it
    is_overridden("on_fit_start", callback)          # compared with Callback
"""

from __future__ import annotations

from typing import Any

from ember.core.hooks import runs_other_code


def is_overridden(method_name: str, instance: object | None = None, parent: type | None = None) -> bool:
    """Whether ``instance`` overrides ``parent.<method_name>``. ``parent`` defaults to ``LightningModule``,
    ``LightningDataModule`` or ``Callback``, whichever ``instance`` is; ``None`` is never overriding.
    An attribute that only wraps the inherited method (``functools.wraps``, ``functools.partial``,
    ``Mock(wraps=...)``) does not override it, as in Lightning.

    Raises:
        ValueError: ``instance`` is none of those and no ``parent`` is given ("Expected a parent").
    """
    if instance is None:
        return False
    if parent is None:
        parent = _parent_of(instance)
        if parent is None:
            raise ValueError("Expected a parent")
    return runs_other_code(instance, parent, method_name)


def _parent_of(instance: object) -> Any:
    from ember.callbacks.callback import Callback
    from ember.core.datamodule import LightningDataModule
    from ember.core.module import LightningModule

    for base in (LightningModule, LightningDataModule, Callback):
        if isinstance(instance, base):
            return base
    return None


def get_torchvision_model(model_name: str, **kwargs: Any) -> Any:
    """``torchvision.models.get_model(model_name, **kwargs)``, as Lightning's helper.

    Raises:
        ModuleNotFoundError: torchvision is not installed (the message gives the pip command).

    Example::

        backbone = get_torchvision_model("resnet18", weights=None)
    """
    from ember.utilities.imports import _TORCHVISION_AVAILABLE

    if not _TORCHVISION_AVAILABLE:
        raise ModuleNotFoundError(str(_TORCHVISION_AVAILABLE))
    from torchvision import models

    return models.get_model(model_name, **kwargs)
