"""Lightning's HPU (Intel Gaudi) classes, by name only: Lightning moved HPU support to the separate
``lightning-habana`` package and keeps these names so that old imports work, building any of them an error.
They are the accelerator, both strategies, the checkpoint plugin and the precision plugin, at Lightning's paths
(``accelerators.hpu``, ``strategies.single_hpu``, ``strategies.hpu_parallel``, ``plugins.io.hpu_plugin``,
``plugins.precision.hpu``), all kept here as Lightning keeps them in one place.

Example::

    from lightning.pytorch.accelerators import HPUAccelerator   # imports; cannot be built
"""

from __future__ import annotations

from typing import Any


def _removed(name: str, what: str, **extra: Any) -> type:
    """Lightning's removed ``name`` (its ``what``): a class whose construction raises ``NotImplementedError``,
    as Lightning's does, saying what to use instead; ``extra`` are class attributes (``is_available``)."""

    def __init__(self: Any, *_: Any, **__: Any) -> None:
        raise NotImplementedError(
            f"The `{name}` class has been removed from Lightning, and Ember has no HPU support: use"
            ' `accelerator="cuda"`, `"cpu"` or `"mps"`, or Lightning with the `lightning-habana` package on Gaudi.'
        )

    namespace = {"__init__": __init__, "__doc__": f"Lightning's removed HPU {what}.", "__module__": __name__}
    return type(name, (), {**namespace, **extra})


HPUAccelerator = _removed("HPUAccelerator", "accelerator", is_available=staticmethod(lambda: False))
HPUParallelStrategy = _removed("HPUParallelStrategy", "multi-device strategy")
SingleHPUStrategy = _removed("SingleHPUStrategy", "one-device strategy")
HPUCheckpointIO = _removed("HPUCheckpointIO", "checkpoint plugin")
HPUPrecisionPlugin = _removed("HPUPrecisionPlugin", "precision plugin")
