"""``CUDAAccelerator``: ``Trainer(accelerator="cuda")`` (or ``"gpu"`` on an NVIDIA machine)."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from ember.accelerators.accelerator import Accelerator, _AcceleratorRegistry, _parse_gpu_ids
from ember.utilities.exceptions import MisconfigurationException

log = logging.getLogger(__name__)


def num_cuda_devices() -> int:
    """The number of CUDA GPUs this process sees (0 without CUDA); what ``devices="auto"`` counts."""
    return torch.cuda.device_count()


def find_usable_cuda_devices(num_devices: int = -1) -> list[int]:
    """The indices of ``num_devices`` CUDA GPUs that take a tensor (all of them for -1), tried in order.

    A GPU in exclusive mode that another process holds refuses the tensor and is skipped. Two processes
    that search at the same time may both pick the same free GPU.

    Example::

        Trainer(accelerator="cuda", devices=find_usable_cuda_devices(2))
    """
    if num_devices == 0:
        return []
    visible = list(range(num_cuda_devices()))
    if not visible:
        raise ValueError(
            f"You requested to find {num_devices} devices but there are no visible CUDA devices on this machine."
        )
    if num_devices > len(visible):
        raise ValueError(f"You requested to find {num_devices} devices but this machine only has {len(visible)} GPUs.")
    usable: list[int] = []
    occupied: list[int] = []
    for index in visible:
        try:
            torch.tensor(0, device=torch.device("cuda", index))
        except RuntimeError:
            occupied.append(index)
            continue
        usable.append(index)
        if len(usable) == num_devices:
            break
    if num_devices != -1 and len(usable) != num_devices:
        raise RuntimeError(
            f"You requested to find {num_devices} devices but only {len(usable)} are currently available."
            f" The devices {occupied} are occupied by other processes and can't be used at the moment."
        )
    return usable


# what `get_nvidia_gpu_stats` asks nvidia-smi for, and the unit each comes in
_NVIDIA_SMI_FIELDS = (
    ("utilization.gpu", "%"),
    ("memory.used", "MB"),
    ("memory.free", "MB"),
    ("utilization.memory", "%"),
    ("fan.speed", "%"),
    ("temperature.gpu", "°C"),
    ("temperature.memory", "°C"),
)


def get_nvidia_gpu_stats(device: Any) -> dict[str, float]:
    """Utilization, memory, fan speed and temperatures of a GPU as ``nvidia-smi`` reports them, keyed
    ``"<field> (<unit>)"`` (``"memory.used (MB)"``); a field the GPU does not report is 0.0.

    ``device`` is this process's index of the GPU (an int, ``"cuda:1"``, ``torch.device``), mapped through
    ``CUDA_VISIBLE_DEVICES`` to the index nvidia-smi knows. Raises ``FileNotFoundError`` without nvidia-smi.
    """
    import os
    import shutil
    import subprocess

    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        raise FileNotFoundError("nvidia-smi: command not found")
    index = device if isinstance(device, int) else torch.device(device).index
    if index is None:
        index = torch.cuda.current_device() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpu = visible.split(",")[index].strip() if visible else str(index)
    query = ",".join(field for field, _ in _NVIDIA_SMI_FIELDS)
    result = subprocess.run(
        [nvidia_smi, f"--query-gpu={query}", "--format=csv,nounits,noheader", f"--id={gpu}"],
        encoding="utf-8",
        capture_output=True,
        check=True,
    )
    values = [_number(text) for text in result.stdout.strip().split(",")]
    return {f"{field} ({unit})": value for (field, unit), value in zip(_NVIDIA_SMI_FIELDS, values)}


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return 0.0


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

    def setup(self, trainer: Any) -> None:
        """When a call starts on this rank: the GPUs it sees, in nvidia-smi's order (``set_nvidia_flags``)."""
        self.set_nvidia_flags(trainer.local_rank)

    @staticmethod
    def set_nvidia_flags(local_rank: int) -> None:
        """Number the GPUs of processes started from here as nvidia-smi does (``CUDA_DEVICE_ORDER=PCI_BUS_ID``)
        and say which this rank sees: ``LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0,1]``, as Lightning says it."""
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        every = ",".join(str(index) for index in range(num_cuda_devices()))
        log.info(f"LOCAL_RANK: {local_rank} - CUDA_VISIBLE_DEVICES: [{os.environ.get('CUDA_VISIBLE_DEVICES', every)}]")

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
