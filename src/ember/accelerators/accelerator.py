"""``Accelerator``: one kind of hardware (``trainer.accelerator``), and the registry of them by name.

Example::

    from ember.accelerators import AcceleratorRegistry, CUDAAccelerator

    CUDAAccelerator.is_available(), CUDAAccelerator.auto_device_count()
    AcceleratorRegistry.get("cpu")      # a new CPUAccelerator
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch

from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.registry import _Registry


class Accelerator(ABC):
    """The hardware a run uses: ``"cpu"``, ``"cuda"`` or ``"mps"`` in Ember.

    The Trainer calls ``setup_device(root_device)`` and ``setup(trainer)`` when a call starts and
    ``teardown()`` when it ends; a subclass of a built-in accelerator may override them.

    Example::

        class LoggingCUDAAccelerator(CUDAAccelerator):
            def setup(self, trainer):
                print("running on", trainer.strategy.root_device)

        Trainer(accelerator=LoggingCUDAAccelerator(), devices=1)
    """

    @abstractmethod
    def setup_device(self, device: torch.device) -> None:
        """Prepare ``device`` for this process."""

    def setup(self, trainer: Any) -> None:
        """Called when a ``fit``/``validate``/``test``/``predict`` call starts, before the model moves to the device."""

    @abstractmethod
    def teardown(self) -> None:
        """Release what the accelerator holds; called when a call ends."""

    def get_device_stats(self, device: Any) -> dict[str, Any]:
        """Statistics of ``device`` (memory, utilisation), as a flat dict."""
        raise NotImplementedError

    @staticmethod
    @abstractmethod
    def parse_devices(devices: Any) -> Any:
        """The devices the ``devices`` argument selects (a count for CPUs, indices for GPUs)."""

    @staticmethod
    @abstractmethod
    def get_parallel_devices(devices: Any) -> Any:
        """The ``torch.device`` of each process, for parsed ``devices``."""

    @staticmethod
    @abstractmethod
    def auto_device_count() -> int:
        """How many devices ``devices="auto"`` uses."""

    @staticmethod
    @abstractmethod
    def is_available() -> bool:
        """Whether this machine has the hardware."""

    @staticmethod
    @abstractmethod
    def name() -> str:
        """The registry name: ``"cpu"``, ``"cuda"``, ``"mps"``."""

    @classmethod
    def register_accelerators(cls, accelerator_registry: _AcceleratorRegistry) -> None:
        """Add this accelerator to ``accelerator_registry`` (the built-ins register under their name)."""


class _AcceleratorRegistry(_Registry):
    """Accelerators by name, as ``Trainer(accelerator="<name>")`` finds them.

    Example::

        AcceleratorRegistry.register("cuda_logged", LoggingCUDAAccelerator, description="CUDA, with a log line")
        Trainer(accelerator="cuda_logged")
    """

    kind = "accelerator"
    plural = "Accelerators"

    def register(
        self,
        name: str,
        accelerator: Callable | None = None,
        description: str = "",
        override: bool = False,
        **init_params: Any,
    ) -> Callable:
        """Register ``accelerator`` (a class or factory) under ``name``; usable as a decorator without it."""
        return self._register(name, accelerator, description, override, init_params)

    def available_accelerators(self) -> set[str]:
        """The registered names."""
        return set(self.keys())


def _parse_gpu_ids(devices: Any, available: list[int]) -> list[int] | None:
    """GPU indices for ``devices`` (an int, ``-1`` for all, ``"0,1"``, a list), checked against ``available``."""
    message = "Device IDs (GPU/TPU) must be an int, a string, a sequence of ints, but you passed"
    if isinstance(devices, (list, tuple)):
        for index in devices:
            if type(index) is not int:  # `bool` is an int too
                raise TypeError(f"{message} a sequence of {type(index).__name__}.")
    elif type(devices) not in (int, str):
        raise TypeError(f"{message} {devices!r}.")
    if str(devices).strip() in ("0", "[]"):
        return None  # no GPU requested
    if isinstance(devices, str):
        text = devices.strip()
        if text == "-1":
            devices = -1
        elif "," in text:
            devices = [int(x) for x in text.split(",") if x.strip()]
        else:
            devices = int(text)
    if isinstance(devices, (list, tuple)):
        ids = list(devices)
    else:
        ids = list(available) if devices == -1 else list(range(devices))
    if not ids:
        raise MisconfigurationException("GPUs requested but none are available.")
    if len(ids) != len(set(ids)):
        raise MisconfigurationException("Device ID's (GPU) must be unique.")
    if any(index not in available for index in ids):
        raise MisconfigurationException(f"You requested gpu: {ids}\n But your machine only has: {available}")
    return ids
