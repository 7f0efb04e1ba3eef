"""Applying a function to every tensor of a nested batch, and moving batches between devices."""

from __future__ import annotations

import copy
import dataclasses
import sys
from abc import ABC
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import torch
from torch import Tensor


def is_dataclass_instance(value: Any) -> bool:
    """Whether ``value`` is an instance of a dataclass (not the dataclass itself)."""
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def apply_to_tensors(data: Any, fn: Callable[[Tensor], Any]) -> Any:
    """Apply ``fn`` to every tensor inside lists, tuples, namedtuples, dicts and dataclasses."""
    return apply_to_type(data, Tensor, fn)


def apply_to_type(data: Any, kind: type | tuple[type, ...], fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to every object of type ``kind`` inside lists, tuples, namedtuples, dicts and dataclasses."""
    if isinstance(data, kind):
        return fn(data)
    if isinstance(data, Mapping):
        items = {k: apply_to_type(v, kind, fn) for k, v in data.items()}
        return items if type(data) is dict else _same_mapping(data, items)
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(apply_to_type(v, kind, fn) for v in data))
    if isinstance(data, (list, tuple)):
        return type(data)(apply_to_type(v, kind, fn) for v in data)
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):  # another sequence type, as Lightning
        return type(data)([apply_to_type(v, kind, fn) for v in data])  # type: ignore[call-arg]
    if is_dataclass_instance(data):
        return _dataclass_with(data, kind, fn)
    return data


def _dataclass_with(data: Any, kind: type | tuple[type, ...], fn: Callable[[Any], Any]) -> Any:
    """A copy of the dataclass instance ``data`` with ``fn`` applied inside its ``__init__`` fields, as Lightning
    makes it: its ``__init__`` and ``__post_init__`` do not run again, and the other fields keep their values."""
    fields = dataclasses.fields(data)
    values = {field.name: getattr(data, field.name) for field in fields}
    result = copy.deepcopy(data, memo={id(value): value for value in values.values()})  # the fields not copied
    for field in fields:
        value = apply_to_type(values[field.name], kind, fn) if field.init else values[field.name]
        try:
            setattr(result, field.name, value)
        except dataclasses.FrozenInstanceError:
            object.__setattr__(result, field.name, value)
    return result


def convert_to_tensors(data: Any, device: torch.device | str) -> Any:
    """``data`` with its Python numbers and numpy arrays made tensors, and every tensor on ``device``.

    Lightning's conversion: a bool becomes a ``uint8`` tensor (NCCL has no bool), an int an ``int32`` one, a
    float a ``float32`` one. ``self.all_gather`` gathers numbers so.
    """

    def number(value: bool | int | float) -> Tensor:
        if isinstance(value, bool):
            return torch.tensor(value, dtype=torch.uint8, device=device)
        return torch.tensor(value, dtype=torch.int if isinstance(value, int) else torch.float, device=device)

    data = apply_to_type(data, (bool, int, float), number)
    numpy = sys.modules.get("numpy")  # a numpy array can only be here if numpy is imported
    if numpy is not None:
        data = apply_to_type(data, numpy.ndarray, lambda array: torch.from_numpy(array).to(device))
    return move_data_to_device(data, device)


def _same_mapping(data: Mapping, items: dict[Any, Any]) -> Any:
    """``items`` in a mapping of ``data``'s type: made from them, else (a type whose ``__init__`` takes other
    arguments: a ``defaultdict``, torchio's images) a copy of ``data`` with its items replaced, as torch's
    ``default_collate`` makes one. Lightning fails on such a batch."""
    try:
        return type(data)(items)  # type: ignore[call-arg]  # a Mapping subclass
    except (TypeError, ValueError):
        if not isinstance(data, MutableMapping):
            raise
        clone = copy.copy(data)
        clone.update(items)
        return clone


def move_data_to_device(batch: Any, device: torch.device | str) -> Any:
    """Move every tensor of ``batch`` to ``device`` (non-blocking where it is safe).

    Example::

        batch = move_data_to_device({"x": x, "y": [y1, y2]}, torch.device("cuda", 0))
    """
    if isinstance(device, str):
        device = torch.device(device)
    non_blocking = device.type == "cuda"

    def move(data: Any) -> Any:
        if isinstance(data, Tensor):
            return data.to(device, non_blocking=non_blocking)
        moved = data.to(device)  # any object with a `.to` (a PyG `Data`, a `BatchEncoding`), as Lightning moves it
        return data if moved is None else moved  # a `.to` that moves in place and returns nothing

    if isinstance(batch, Tensor):
        return move(batch)
    return apply_to_type(batch, (Tensor, _Transferable), move)


class _Transferable(ABC):  # noqa: B024  # an ABC for its `isinstance`, with no abstract methods
    """What ``move_data_to_device`` moves: any object whose class has a ``to`` method (Lightning's
    ``_TransferableDataType``), at any depth of a batch."""

    @classmethod
    def __subclasshook__(cls, subclass: Any) -> bool:
        return callable(getattr(subclass, "to", None))
