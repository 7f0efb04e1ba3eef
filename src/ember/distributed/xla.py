"""Lightning's ``SingleDeviceXLAStrategy``, by name only: Ember has no XLA support (see
``ember.accelerators.xla``), so building one is an error.

Example::

    from lightning.pytorch.strategies.single_xla import SingleDeviceXLAStrategy   # imports; cannot be built
"""

from __future__ import annotations

from typing import Any

from ember.distributed.strategy import SingleDeviceStrategy
from ember.utilities.exceptions import MisconfigurationException


class SingleDeviceXLAStrategy(SingleDeviceStrategy):
    """Lightning's single-TPU strategy: not supported on Ember."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise MisconfigurationException(
            "SingleDeviceXLAStrategy: Ember runs on CPUs, CUDA and MPS only; XLA devices (TPUs) are not supported. Use"
            ' `accelerator="cuda"`, `"cpu"` or `"mps"`, or Lightning itself on TPUs.'
        )
