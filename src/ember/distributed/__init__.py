"""Where the model runs: one device, or many processes with torch.distributed."""

from __future__ import annotations

from typing import Any

import torch

from ember.distributed.strategy import SingleDeviceStrategy, Strategy
from ember.utilities.exceptions import MisconfigurationException

__all__ = [
    "DDPStrategy",
    "FSDPStrategy",
    "ParallelStrategy",
    "SingleDeviceStrategy",
    "Strategy",
    "create_strategy",
    "resolve_accelerator",
]


def __getattr__(name: str) -> Any:
    # the multi-process strategies load on first use: `import ember` stays light
    if name in ("DDPStrategy", "DDPSpawnStrategy"):
        from ember.distributed import ddp

        return getattr(ddp, name)
    if name == "FSDPStrategy":
        from ember.distributed.fsdp import FSDPStrategy

        return FSDPStrategy
    if name == "ParallelStrategy":
        from ember.distributed.parallel import ParallelStrategy

        return ParallelStrategy
    raise AttributeError(f"module 'ember.distributed' has no attribute {name!r}")


def resolve_accelerator(accelerator: Any) -> str:
    """``"cpu"``, ``"cuda"`` or ``"mps"`` for the Trainer's ``accelerator`` argument."""
    if not isinstance(accelerator, str):
        raise MisconfigurationException(
            f"`accelerator={accelerator!r}` is not supported: pass 'auto', 'cpu', 'cuda', 'gpu' or 'mps'."
        )
    name = accelerator.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if name == "gpu":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        raise MisconfigurationException(
            "`Trainer(accelerator='gpu')` but no GPU is available on this machine: use `accelerator='cpu'` or 'auto'."
        )
    if name == "cuda":
        if not torch.cuda.is_available():
            raise MisconfigurationException(
                "`Trainer(accelerator='cuda')` but CUDA is not available on this machine (torch was built without"
                " CUDA or no GPU is visible): use `accelerator='cpu'` or 'auto'."
            )
        return "cuda"
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise MisconfigurationException("`Trainer(accelerator='mps')` but MPS is not available on this machine.")
        return "mps"
    if name == "cpu":
        return "cpu"
    raise MisconfigurationException(
        f"You selected an invalid accelerator name: `accelerator={accelerator!r}`."
        " Available names are: auto, cpu, cuda, gpu, mps."
    )


def parse_devices(devices: Any, accelerator: str) -> list[int]:
    """Device indices (for cpu: one entry per process) from the ``devices`` argument."""
    if devices == "auto" or devices is None:
        count = torch.cuda.device_count() if accelerator == "cuda" else 1
        return list(range(max(count, 1)))
    if isinstance(devices, str):
        devices = devices.strip()
        if devices == "-1":
            devices = -1
        elif "," in devices:
            devices = [int(x) for x in devices.split(",") if x.strip()]
        else:
            try:
                devices = int(devices)
            except ValueError:
                raise MisconfigurationException(
                    f"`devices={devices!r}` is not a valid value: pass an int, a list or 'auto'."
                ) from None
    if isinstance(devices, bool):
        raise MisconfigurationException(f"`devices={devices!r}` is not a valid value: pass an int, a list or 'auto'.")
    if accelerator == "cpu" and (devices == -1 or isinstance(devices, (list, tuple))):
        # CPU "devices" are processes: Lightning accepts only their number
        raise TypeError(
            "`devices` selected with `CPUAccelerator` should be an int > 0. Pass the number of processes,"
            f" e.g. `devices=2`, instead of {devices!r}."
        )
    if isinstance(devices, int):
        if devices == -1:
            return list(range(max(torch.cuda.device_count(), 1)))
        if devices <= 0:
            raise MisconfigurationException(
                f"`devices={devices}` is not a valid value: it must be a positive number of devices, a list of"
                " device indices, -1 (all) or 'auto'."
            )
        if accelerator == "cuda" and devices > torch.cuda.device_count():
            raise MisconfigurationException(
                f"You requested {devices} CUDA devices but only {torch.cuda.device_count()} are available."
            )
        return list(range(devices))
    if isinstance(devices, (list, tuple)):
        if not devices:
            raise MisconfigurationException("`devices=[]` selects no device: pass at least one index.")
        return [int(d) for d in devices]
    raise MisconfigurationException(f"`devices={devices!r}` is not a valid value: pass an int, a list or 'auto'.")


def create_strategy(strategy: Any, accelerator: str, devices: list[int], num_nodes: int, **options: Any) -> Strategy:
    """The strategy object for the Trainer's ``strategy``/``devices``/``num_nodes`` arguments."""
    if isinstance(strategy, Strategy):
        if getattr(strategy, "_configured", True):
            return strategy
        from ember.distributed import launch

        return launch.create_distributed_strategy(strategy, accelerator, devices, num_nodes, **options)
    name = strategy.lower() if isinstance(strategy, str) else strategy
    multi = len(devices) > 1 or num_nodes > 1
    if name in ("auto", "single_device") and not multi:
        device = torch.device(accelerator, devices[0]) if accelerator == "cuda" else torch.device(accelerator)
        return SingleDeviceStrategy(device)
    if name == "single_device" and multi:
        raise MisconfigurationException(
            "`strategy='single_device'` runs on one device, but several were requested: use `strategy='ddp'`."
        )
    from ember.distributed import launch

    return launch.create_distributed_strategy(name, accelerator, devices, num_nodes, **options)
