"""``CPUAccelerator``: ``Trainer(accelerator="cpu")``; ``devices`` counts processes."""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from ember.accelerators.accelerator import Accelerator, _AcceleratorRegistry
from ember.utilities.exceptions import MisconfigurationException


class CPUAccelerator(Accelerator):
    """The CPU. Always available; ``devices=n`` runs ``n`` processes.

    Example::

        CPUAccelerator.parse_devices("2")            # 2
        CPUAccelerator.get_parallel_devices(2)       # [device('cpu'), device('cpu')]
    """

    def setup_device(self, device: torch.device) -> None:
        if device.type != "cpu":
            raise MisconfigurationException(f"Device should be CPU, got {device} instead.")

    def teardown(self) -> None:
        pass

    def get_device_stats(self, device: Any) -> dict[str, Any]:
        """Memory, CPU and swap use in percent (needs ``psutil``)."""
        return _psutil_stats("cpu", "Fetching CPU device stats")

    @staticmethod
    def parse_devices(devices: int | str) -> int:
        if isinstance(devices, str) and devices.strip().isdigit():
            devices = int(devices)
        if not isinstance(devices, int) or isinstance(devices, bool) or devices <= 0:
            raise TypeError("`devices` selected with `CPUAccelerator` should be an int > 0.")
        return devices

    @staticmethod
    def get_parallel_devices(devices: int | str) -> list[torch.device]:
        return [torch.device("cpu")] * CPUAccelerator.parse_devices(devices)

    @staticmethod
    def auto_device_count() -> int:
        return 1

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def name() -> str:
        return "cpu"

    @classmethod
    def register_accelerators(cls, accelerator_registry: _AcceleratorRegistry) -> None:
        accelerator_registry.register(cls.name(), cls, description=cls.__name__)


def _psutil_stats(prefix: str, what: str) -> dict[str, float]:
    """Memory, CPU and swap use in percent, under Lightning's keys (``cpu_vm_percent``, ...)."""
    if importlib.util.find_spec("psutil") is None:
        raise ModuleNotFoundError(f"{what} requires `psutil` to be installed: `pip install psutil`.")
    import psutil

    return {
        f"{prefix}_vm_percent": psutil.virtual_memory().percent,
        f"{prefix}_percent": psutil.cpu_percent(),
        f"{prefix}_swap_percent": psutil.swap_memory().percent,
    }
