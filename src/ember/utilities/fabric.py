"""Lightning Fabric's own plugin classes, which a Lightning program may hand to the Trainer.

In Lightning, ``lightning.pytorch.plugins.environments.SLURMEnvironment`` and the default
``TorchCheckpointIO`` *are* Fabric's classes, so a program may import them from ``lightning.fabric``
and a config Lightning printed names them there. Ember puts its own class of the same name in their
place (see ``own_environment`` and ``own_checkpoint_io``); a subclass a program wrote stays as it is.
"""

from __future__ import annotations

_FABRIC_PACKAGES = ("lightning_fabric.", "lightning.fabric.")


def is_fabrics_own(cls: type, name: str) -> bool:
    """Whether ``cls`` is Lightning Fabric's class ``name`` itself (from ``lightning_fabric`` or
    ``lightning.fabric``), not a subclass a program wrote.

    Example::

        is_fabrics_own(type(plugin), "TorchCheckpointIO")
    """
    return cls.__name__ == name and cls.__module__.startswith(_FABRIC_PACKAGES)
