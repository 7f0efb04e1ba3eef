"""Memory helpers under Lightning's names (``lightning.pytorch.utilities.memory``)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ember.utilities.apply_func import apply_to_tensors


def recursive_detach(in_dict: Any, to_cpu: bool = False) -> Any:
    """``in_dict`` with every tensor inside it (at any depth) detached, and moved to the CPU if ``to_cpu``.

    Example::

        outputs = recursive_detach({"loss": loss, "logs": {"acc": acc}}, to_cpu=True)
    """

    def detach(tensor: Tensor) -> Tensor:
        tensor = tensor.detach()
        return tensor.cpu() if to_cpu else tensor

    return apply_to_tensors(in_dict, detach)
