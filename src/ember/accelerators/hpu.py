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


def _removed(name: str) -> NotImplementedError:
    return NotImplementedError(
        f"The `{name}` class has been removed from Lightning, and Ember has no HPU support: use"
        ' `accelerator="cuda"`, `"cpu"` or `"mps"`, or Lightning with the `lightning-habana` package on Gaudi.'
    )


class HPUAccelerator:
    """Lightning's removed HPU accelerator."""

    def __init__(self, *_: Any, **__: Any) -> None:
        raise _removed("HPUAccelerator")

    @staticmethod
    def is_available() -> bool:
        return False


class HPUParallelStrategy:
    """Lightning's removed multi-HPU strategy."""

    def __init__(self, *_: Any, **__: Any) -> None:
        raise _removed("HPUParallelStrategy")


class SingleHPUStrategy:
    """Lightning's removed one-HPU strategy."""

    def __init__(self, *_: Any, **__: Any) -> None:
        raise _removed("SingleHPUStrategy")


class HPUCheckpointIO:
    """Lightning's removed HPU checkpoint plugin."""

    def __init__(self, *_: Any, **__: Any) -> None:
        raise _removed("HPUCheckpointIO")


class HPUPrecisionPlugin:
    """Lightning's removed HPU precision plugin."""

    def __init__(self, *_: Any, **__: Any) -> None:
        raise _removed("HPUPrecisionPlugin")
