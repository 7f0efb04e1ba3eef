"""Lightning's ``XLAAccelerator`` (TPUs), by name only: Ember runs on CPUs, CUDA and MPS, so it is never
available and cannot be built. Libraries import it for ``isinstance`` checks and ``is_available()``
(nequip's XPU support reads it when ``nequip-train`` starts).

Example::

    from ember.accelerators import XLAAccelerator

    XLAAccelerator.is_available()   # False
"""

from __future__ import annotations

from typing import Any

from ember.accelerators.accelerator import Accelerator
from ember.utilities.exceptions import xla_not_supported


class XLAAccelerator(Accelerator):
    """Lightning's TPU accelerator: never available on Ember."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise xla_not_supported("XLAAccelerator")

    def setup_device(self, device: Any) -> None:  # never reached: the class cannot be built
        raise NotImplementedError

    def teardown(self) -> None:
        raise NotImplementedError

    @staticmethod
    def is_available() -> bool:
        return False

    @staticmethod
    def auto_device_count() -> int:
        return 0

    @staticmethod
    def parse_devices(devices: Any) -> Any:
        return devices

    @staticmethod
    def get_parallel_devices(devices: Any) -> list:
        return []

    @staticmethod
    def name() -> str:
        return "tpu"

    @classmethod
    def register_accelerators(cls, accelerator_registry: Any) -> None:
        # Lightning's "tpu" entry: listed as in Lightning; building it says that Ember does not run on TPUs
        accelerator_registry.register(cls.name(), cls, description=cls.__name__)


class TPUAccelerator(XLAAccelerator):
    """Lightning 1.x's name of ``XLAAccelerator``, which Lightning 2.x keeps (deprecated): by name only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise xla_not_supported("TPUAccelerator")
