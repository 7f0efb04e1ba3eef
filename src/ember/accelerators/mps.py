"""``MPSAccelerator``: ``Trainer(accelerator="mps")`` (or ``"gpu"``) on Apple silicon."""

from __future__ import annotations

from typing import Any

import torch

from ember.accelerators.accelerator import Accelerator, _AcceleratorRegistry, _parse_gpu_ids
from ember.accelerators.cpu import _psutil_stats
from ember.utilities.exceptions import MisconfigurationException


class MPSAccelerator(Accelerator):
    """The GPU of an Apple silicon Mac (one device).

    Example::

        Trainer(accelerator="mps", devices=1)
    """

    def setup_device(self, device: torch.device) -> None:
        if device.type != "mps":
            raise MisconfigurationException(f"Device should be MPS, got {device} instead.")

    def teardown(self) -> None:
        pass

    def get_device_stats(self, device: Any) -> dict[str, Any]:
        """Memory, CPU and swap use in percent (needs ``psutil``): the GPU shares the machine's memory."""
        return _psutil_stats("M1", "Fetching MPS device stats")

    @staticmethod
    def parse_devices(devices: int | str | list[int]) -> list[int] | None:
        return _parse_gpu_ids(devices, [0] if MPSAccelerator.is_available() else [])

    @staticmethod
    def get_parallel_devices(devices: int | str | list[int]) -> list[torch.device]:
        parsed = MPSAccelerator.parse_devices(devices) or []
        return [torch.device("mps", index) for index in range(len(parsed))]

    @staticmethod
    def auto_device_count() -> int:
        return 1

    @staticmethod
    def is_available() -> bool:
        mps = getattr(torch.backends, "mps", None)
        return mps is not None and mps.is_available()

    @staticmethod
    def name() -> str:
        return "mps"

    @classmethod
    def register_accelerators(cls, accelerator_registry: _AcceleratorRegistry) -> None:
        accelerator_registry.register(cls.name(), cls, description=cls.__name__)
