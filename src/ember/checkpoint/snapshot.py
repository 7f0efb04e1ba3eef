"""A point-in-time copy of a checkpoint dict in host memory, for ``AsyncCheckpointIO`` to write later.

Training goes on mutating the model and optimizer tensors in place while the checkpoint is being
written, so the writer must be handed a copy. ``take_snapshot`` copies every tensor's storage into
host buffers that are reused from one checkpoint to the next (no allocation, no page faults after
the first save), and copies the dicts and lists around them, so that the writer thread serialises
exactly the state of the moment the save was asked for.

- A CUDA storage is copied into pinned memory with ``non_blocking=True`` on the current stream,
  and a CUDA event is recorded after the copies: the training thread does not wait for the
  device; the writer waits for the event before it reads the buffers.
- A CPU storage is copied with ``copy_`` (a real copy: the training step updates it in place).
- Whole storages are copied, and tensors that share one keep sharing it, as ``torch.save`` would
  write them; tensors keep their dtype, shape, strides, ``requires_grad`` and ``Parameter``
  type. Snapshot tensors live on the CPU, so the file records them as CPU tensors.
- Other tensors (sparse, quantized, nested, conjugated, meta, subclasses) are cloned to the CPU.
- Other values: immutable ones are shared, anything else is deep-copied.

Example::

    buffers = HostBuffers()
    snapshot = take_snapshot(trainer_checkpoint, buffers)
    snapshot.wait_copied()  # on the writer thread, before reading
    torch.save(snapshot.checkpoint, path)
"""

from __future__ import annotations

import copy
import enum
from typing import Any

import torch
from torch import Tensor, nn

# values that nothing can change after the save: shared, not copied
_IMMUTABLE = (
    str,
    bytes,
    int,
    float,
    complex,
    bool,
    type(None),
    torch.dtype,
    torch.device,
    torch.Size,
    torch.layout,
    torch.memory_format,
    range,
    frozenset,
    enum.Enum,
)
_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _held_elsewhere(buffer: Tensor) -> bool:
    """Whether something besides ``buffer`` still references its storage (e.g. a plugin kept the tensors).

    Where torch cannot say, assume it does: the buffer is then never reused.
    """
    if _use_count is None:
        return True
    # the buffer tensor and the temporary storage object hold one reference each
    return int(_use_count(buffer.untyped_storage()._cdata)) > 2


class HostBuffers:
    """Host memory for one snapshot, reused by the next one when the storage sizes are the same."""

    def __init__(self) -> None:
        self._buffers: list[tuple[Tensor, bool]] = []  # uint8 tensors, and whether pinned

    def take(self, position: int, nbytes: int, pinned: bool) -> Tensor:
        """The ``position``-th buffer of this snapshot, ``nbytes`` long (reused when it fits exactly)."""
        if position < len(self._buffers):
            buffer, was_pinned = self._buffers[position]
            if buffer.numel() == nbytes and was_pinned == pinned and not _held_elsewhere(buffer):
                return buffer
        buffer = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pinned)
        if position < len(self._buffers):
            self._buffers[position] = (buffer, pinned)
        else:
            self._buffers.append((buffer, pinned))
        return buffer

    @classmethod
    def allocate_like(cls, other: HostBuffers) -> HostBuffers:
        """A set of the same sizes, ready for use: pinned memory is resident once allocated, and
        pageable memory is written once here so that its pages are faulted in now, not by the copy.
        """
        ready = cls()
        for buffer, pinned in other._buffers:
            fresh = torch.empty(buffer.numel(), dtype=torch.uint8, pin_memory=pinned)
            if not pinned:
                fresh.zero_()
            ready._buffers.append((fresh, pinned))
        return ready

    @property
    def nbytes(self) -> int:
        """Host memory held, in bytes."""
        return sum(buffer.numel() for buffer, _ in self._buffers)


class Snapshot:
    """The copied checkpoint dict, and the device events its copies must reach before it is read."""

    def __init__(self, checkpoint: dict[str, Any], events: list[Any]) -> None:
        self.checkpoint = checkpoint
        self._events = events

    def wait_copied(self) -> None:
        """Block until every device-to-host copy has landed (nothing to wait for on the CPU)."""
        for event in self._events:
            event.synchronize()
        self._events = []


def _plain(tensor: Tensor) -> bool:
    """A dense strided tensor whose storage can be copied as bytes."""
    return (
        type(tensor) in (Tensor, nn.Parameter)
        and tensor.layout == torch.strided
        and tensor.device.type != "meta"
        and not tensor.is_quantized
        and not tensor.is_nested
        and not tensor.is_conj()
        and not tensor.is_neg()
    )


class _Copier:
    def __init__(self, buffers: HostBuffers) -> None:
        self._buffers = buffers
        self._position = 0
        self._storages: dict[tuple[str, int, int], Any] = {}  # (device, address, bytes) -> host storage
        self._cuda_devices: set[torch.device] = set()

    def value(self, obj: Any) -> Any:
        if isinstance(obj, Tensor):
            return self.tensor(obj)
        if isinstance(obj, _IMMUTABLE):
            return obj
        if type(obj) is dict:
            return {key: self.value(item) for key, item in obj.items()}
        if isinstance(obj, dict):  # OrderedDict (a state_dict keeps `_metadata` on it), defaultdict
            out = copy.copy(obj)
            for key, item in obj.items():
                out[key] = self.value(item)
            return out
        if type(obj) is list:
            return [self.value(item) for item in obj]
        if type(obj) is tuple:
            return tuple(self.value(item) for item in obj)
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
            return type(obj)(*(self.value(item) for item in obj))
        return copy.deepcopy(obj)

    def tensor(self, tensor: Tensor) -> Tensor:
        if not _plain(tensor):
            return self._clone(tensor)
        storage = tensor.untyped_storage()
        key = (str(storage.device), storage.data_ptr(), storage.nbytes())
        host = self._storages.get(key)
        if host is None:
            host = self._storages[key] = self._copy_storage(storage)
        out = torch.empty(0, dtype=tensor.dtype).set_(host, tensor.storage_offset(), tensor.size(), tensor.stride())
        if isinstance(tensor, nn.Parameter):
            return nn.Parameter(out, requires_grad=tensor.requires_grad)
        return out.requires_grad_() if tensor.requires_grad else out

    def _copy_storage(self, storage: Any) -> Any:
        cuda = storage.device.type == "cuda"
        buffer = self._buffers.take(self._position, storage.nbytes(), pinned=cuda)
        self._position += 1
        host = buffer.untyped_storage()
        host.copy_(storage, non_blocking=cuda)  # on the current stream: ordered before later in-place updates
        if cuda:
            self._cuda_devices.add(storage.device)
        return host

    @staticmethod
    def _clone(tensor: Tensor) -> Tensor:
        detached = tensor.detach()
        out = detached.clone() if tensor.device.type in ("cpu", "meta") else detached.to("cpu")
        return out.requires_grad_() if tensor.requires_grad and out.is_floating_point() else out

    def events(self) -> list[Any]:
        events = []
        for device in self._cuda_devices:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(device))
            events.append(event)
        return events


def take_snapshot(checkpoint: dict[str, Any], buffers: HostBuffers) -> Snapshot:
    """Copy ``checkpoint`` into ``buffers`` (host memory); the result stays valid while training goes on.

    ``buffers`` must not be in use by a snapshot that is still being written.
    """
    copier = _Copier(buffers)
    copied = copier.value(checkpoint)
    return Snapshot(copied, copier.events())
