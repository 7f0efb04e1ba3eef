"""Memory helpers under Lightning's names (``lightning.pytorch.utilities.memory``)."""

from __future__ import annotations

import gc
from typing import Any

import torch
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


def is_oom_error(exception: BaseException) -> bool:
    """Whether ``exception`` is a CUDA or host out-of-memory error (or cuDNN's stand-in for one), as in Lightning.

    Example::

        try:
            outputs = model(batch)
        except RuntimeError as error:
            if not is_oom_error(error):
                raise
            garbage_collection_cuda()
    """
    return is_cuda_out_of_memory(exception) or is_cudnn_snafu(exception) or is_out_of_cpu_memory(exception)


def _single_message(exception: BaseException) -> str | None:
    if isinstance(exception, RuntimeError) and len(exception.args) == 1 and isinstance(exception.args[0], str):
        return exception.args[0]
    return None


def is_cuda_out_of_memory(exception: BaseException) -> bool:
    """Whether ``exception`` is CUDA's "out of memory" ``RuntimeError`` (``torch.OutOfMemoryError`` is one)."""
    message = _single_message(exception)
    return message is not None and "CUDA" in message and "out of memory" in message


def is_cudnn_snafu(exception: BaseException) -> bool:
    """Whether ``exception`` is cuDNN's ``CUDNN_STATUS_NOT_SUPPORTED``, which it raises when memory runs out."""
    message = _single_message(exception)
    return message is not None and "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED." in message


def is_out_of_cpu_memory(exception: BaseException) -> bool:
    """Whether ``exception`` is the host allocator's "can't allocate memory" ``RuntimeError``."""
    message = _single_message(exception)
    return message is not None and "DefaultCPUAllocator: can't allocate memory" in message


def garbage_collection_cuda() -> None:
    """Collect garbage and empty the CUDA cache; an out-of-memory error while emptying it is ignored."""
    gc.collect()
    try:
        torch.cuda.empty_cache()
    except RuntimeError as exception:
        if not is_oom_error(exception):
            raise
