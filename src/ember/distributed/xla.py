"""Lightning's TPU strategies, ``SingleDeviceXLAStrategy`` and ``XLAStrategy``, by name only: Ember has no
XLA support (see ``ember.accelerators.xla``), so building one is an error.

Example::

    from lightning.pytorch.strategies.single_xla import SingleDeviceXLAStrategy   # imports; cannot be built
"""

from __future__ import annotations

from typing import Any

from ember.distributed.ddp import DDPStrategy
from ember.distributed.strategy import SingleDeviceStrategy
from ember.distributed.strategy_names import XLA
from ember.utilities.exceptions import xla_not_supported
from ember.utilities.signature_utils import lightning_style_annotations


class SingleDeviceXLAStrategy(SingleDeviceStrategy):
    """Lightning's single-TPU strategy: not supported on Ember."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise xla_not_supported("SingleDeviceXLAStrategy")

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        for name in ("single_xla", "single_tpu"):
            strategy_registry.register(name, cls, description=XLA)


class XLAStrategy(DDPStrategy):
    """Lightning's multi-TPU strategy: not supported on Ember."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise xla_not_supported("XLAStrategy")

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        strategy_registry.register("xla_debug", cls, description=XLA, debug=True)
        strategy_registry.register("xla", cls, description=XLA)


lightning_style_annotations(SingleDeviceXLAStrategy, XLAStrategy)  # Lightning's `typing` forms in the signature


class SingleTPUStrategy(SingleDeviceXLAStrategy):
    """Lightning 1.x's name of ``SingleDeviceXLAStrategy``, which Lightning 2.x keeps (deprecated): by name only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise xla_not_supported("SingleTPUStrategy")
