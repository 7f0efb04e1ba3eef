"""``DeviceDtypeModuleMixin``: a module's ``device`` and ``dtype``, kept as Lightning keeps them.

They are what the last move asked for (``.to(...)``, ``.cuda()``, ``.cpu()``, ``.double()``, ...), set on the
module and on every such module inside it, so a module without parameters has them too; the Trainer sets
``device`` to the strategy's device when a run sets up.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class DeviceDtypeModuleMixin(nn.Module):
    """``device``/``dtype`` properties that follow the module's moves (Lightning's ``_DeviceDtypeModuleMixin``)."""

    _device: torch.device
    _dtype: Any

    @property
    def device(self) -> torch.device:
        """The device the module was last moved to (``.to``, ``.cuda``, ``.cpu``, or the Trainer's set-up)."""
        device = self._device
        if device.type == "cuda" and device.index is None:  # always with its index, as in Lightning
            return torch.device(f"cuda:{torch.cuda.current_device()}")
        return device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the module was last cast to (``.to``, ``.double``, ``.half``, ``.float``, ``.type``)."""
        return self._dtype

    @dtype.setter
    def dtype(self, new_dtype: Any) -> None:
        # as Lightning: a module is cast, not relabelled
        raise RuntimeError("Cannot set the dtype explicitly. Please use module.to(new_dtype).")

    # ---- device moves keep `device`/`dtype` current, as Lightning's: from the arguments of the move ----------
    def to(self, *args: Any, **kwargs: Any) -> Any:
        """``torch.nn.Module.to``; ``device`` and ``dtype`` become what was asked (a module without parameters
        too), here and in every LightningModule inside."""
        device, dtype = torch._C._nn._parse_to(*args, **kwargs)[:2]
        _update_properties(self, device=device, dtype=dtype)
        return super().to(*args, **kwargs)

    def cuda(self, device: torch.device | int | None = None) -> Any:
        if device is None:
            device = torch.device("cuda", torch.cuda.current_device())
        elif isinstance(device, int):
            device = torch.device("cuda", index=device)
        _update_properties(self, device=device)
        return super().cuda(device=device)

    def cpu(self) -> Any:
        _update_properties(self, device=torch.device("cpu"))
        return super().cpu()

    def type(self, dst_type: torch.dtype | str) -> Any:
        _update_properties(self, dtype=dst_type)
        return super().type(dst_type=dst_type)

    def float(self) -> Any:
        _update_properties(self, dtype=torch.float)
        return super().float()

    def double(self) -> Any:
        _update_properties(self, dtype=torch.double)
        return super().double()

    def half(self) -> Any:
        _update_properties(self, dtype=torch.half)
        return super().half()


def _update_properties(root: nn.Module, device: torch.device | None = None, dtype: Any = None) -> None:
    """``device``/``dtype`` of every module in ``root`` (itself included) set to what a move asked for."""
    for module in root.modules():
        if isinstance(module, DeviceDtypeModuleMixin):
            if device is not None:
                module._device = device
            if dtype is not None:
                module._dtype = dtype
