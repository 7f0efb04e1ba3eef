"""``CUDAAccelerator``: ``Trainer(accelerator="cuda")`` (or ``"gpu"`` on an NVIDIA machine)."""

from __future__ import annotations

from typing import Any

import torch

from ember.accelerators.accelerator import Accelerator, _AcceleratorRegistry, _parse_gpu_ids
from ember.utilities.exceptions import MisconfigurationException


def num_cuda_devices() -> int:
    """The number of CUDA GPUs this process sees (0 without CUDA); what ``devices="auto"`` counts."""
    return torch.cuda.device_count()


class CUDAAccelerator(Accelerator):
    """NVIDIA GPUs through CUDA; ``devices`` selects GPU indices.

    Example::

        CUDAAccelerator.parse_devices("0,1")          # [0, 1] (on a machine with 2 GPUs)
        trainer.accelerator.get_device_stats(0)       # torch.cuda.memory_stats of GPU 0
    """

    def setup_device(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise MisconfigurationException(f"Device should be GPU, got {device} instead")
        torch.cuda.set_device(device)

    def teardown(self) -> None:
        pass  # the strategy moves the model back and empties the cache

    def get_device_stats(self, device: Any) -> dict[str, Any]:
        """``torch.cuda.memory_stats(device)``."""
        return torch.cuda.memory_stats(device)

    @staticmethod
    def parse_devices(devices: int | str | list[int]) -> list[int] | None:
        return _parse_gpu_ids(devices, list(range(num_cuda_devices())))

    @staticmethod
    def get_parallel_devices(devices: list[int]) -> list[torch.device]:
        return [torch.device("cuda", index) for index in devices]

    @staticmethod
    def auto_device_count() -> int:
        return num_cuda_devices()

    @staticmethod
    def is_available() -> bool:
        return num_cuda_devices() > 0

    @staticmethod
    def name() -> str:
        return "cuda"

    @classmethod
    def register_accelerators(cls, accelerator_registry: _AcceleratorRegistry) -> None:
        accelerator_registry.register(cls.name(), cls, description=cls.__name__)
