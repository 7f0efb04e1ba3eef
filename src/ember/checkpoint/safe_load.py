"""Reading one checkpoint file safely, and saying clearly why a file cannot be read.

Loads use ``torch.load(weights_only=True)`` unless the caller says otherwise, so opening a
checkpoint never runs code or imports a class named inside it. A damaged file raises
``CheckpointLoadError``; a file that needs a class safe loading refuses names that class.
"""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from typing import IO, Any

import torch


class CheckpointLoadError(RuntimeError):
    """A checkpoint file exists but cannot be read: it is truncated, corrupt, or not a checkpoint."""


def default_map_location(storage: Any, location: str) -> Any:
    """Map storages saved on a CUDA/MPS/XLA device to the CPU when that device is not available."""
    if location.startswith("cuda") and not torch.cuda.is_available():
        return storage.cpu()
    if location.startswith("mps"):
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return storage.cpu()
    if location.startswith("xla"):
        return storage.cpu()
    return None  # torch's default placement


def load_file(file: IO[bytes], name: str, map_location: Any, weights_only: bool) -> Any:
    """``torch.load`` of one open checkpoint file, with an error that says what is wrong with it.

    ``name`` is how the messages call the file. Whatever goes wrong while reading becomes a
    :class:`CheckpointLoadError`, except a file that safe loading refuses (it needs a class that
    ``weights_only=True`` does not import), which gets its own error naming that class.
    """
    kind = _file_kind(file)
    try:
        return torch.load(file, map_location=map_location, weights_only=weights_only)
    except (FileNotFoundError, MemoryError):
        raise
    except pickle.UnpicklingError as err:
        if kind != "other" and weights_only and _is_refusal(err):
            blocked = _blocked_global(str(err))
            what = f"`{blocked}`" if blocked else "an object that is not plain data"
            # torch's own first words lead, so code that looks for them (as on Lightning) still finds them
            raise pickle.UnpicklingError(
                f"Weights only load failed: checkpoint {name} needs {what}, which safe loading (`weights_only=True`) refuses to"
                " import. If you trust the file's source, load it with `weights_only=False`; otherwise"
                " allow just that class with `torch.serialization.add_safe_globals([...])`."
            ) from err
        raise CheckpointLoadError(_unreadable_message(name, kind)) from err
    except MapLocationError:
        raise
    except Exception as err:
        if isinstance(err, RuntimeError) and _DEVICE_ERRORS.search(str(err)):
            raise  # torch's own words on a device the file's tensors cannot go to: the file is fine
        # the unpickler can fail in many ways on bytes that are not a pickle (KeyError, IndexError,
        # AttributeError, ...): none of them says more to the user than that the file is unreadable
        raise CheckpointLoadError(_unreadable_message(name, kind)) from err


class MapLocationError(RuntimeError):
    """The ``map_location`` given to a checkpoint load is no device, or its function failed."""


# torch's errors for tensors that cannot go where they were saved or where `map_location` sends them
_DEVICE_ERRORS = re.compile(r"Attempting to deserialize object on|don't know how to restore data location")

_MAP_LOCATION_FORMS = (
    "a device ('cpu', 'cuda', 'cuda:1' or a `torch.device`), a dict from the devices the tensors were saved"
    " on to devices ({'cuda:0': 'cpu'}), or a function `(storage, location) -> storage`"
)


def checked_map_location(map_location: Any) -> Any:
    """``map_location`` checked before any byte is read: a device, a dict of devices or a function (whose
    errors are reported as its own, not as a damaged file)."""
    if isinstance(map_location, (str, torch.device)):
        _as_device(map_location, map_location)
    elif isinstance(map_location, dict):
        for device in map_location.values():
            _as_device(device, map_location)
    elif callable(map_location):
        if map_location is default_map_location:
            return map_location
        function = map_location

        def reported(storage: Any, location: str) -> Any:
            try:
                return function(storage, location)
            except Exception as error:
                raise MapLocationError(
                    f"The `map_location` function failed on tensors saved on {location!r}: {error}"
                ) from error

        return reported
    else:
        raise TypeError(
            f"`map_location={map_location!r}` ({type(map_location).__name__}) is not a device: pass {_MAP_LOCATION_FORMS}."
        )
    return map_location


def _as_device(device: Any, map_location: Any) -> None:
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise MapLocationError(
            f"`map_location={map_location!r}` names no device: {error}. Pass {_MAP_LOCATION_FORMS}."
        ) from None


# torch.save's two formats: a zip archive, or (before torch 1.6) a pickled magic number first
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _file_kind(file: IO[bytes]) -> str:
    """``"zip"`` or ``"legacy"`` (the formats ``torch.save`` writes), ``"empty"``, or ``"other"``.

    Only the first bytes are read, and the position is put back; a stream that cannot seek is
    taken to be a checkpoint (torch reports what is wrong with it).
    """
    try:
        start = file.tell()
        head = file.read(32)
        file.seek(start)
    except (OSError, AttributeError, ValueError):
        return "zip"
    if not head:
        return "empty"
    if head.startswith(_ZIP_SIGNATURES):
        return "zip"
    if head.startswith(b"\x80") and _LEGACY_MAGIC in head:
        return "legacy"
    return "other"


def _is_refusal(err: pickle.UnpicklingError) -> bool:
    """torch's weights-only unpickler refused the file's content (rather than the file being damaged)."""
    message = str(err)
    # A file cut short inside its pickle also surfaces as an UnpicklingError; that is damage,
    # not a refusal, and must not send the user to weights_only=False.
    truncated = isinstance(err.__context__, EOFError) or re.search(r"EOF|ran out of input|truncated", message, re.I)
    return "Weights only load failed" in message and not truncated


def _blocked_global(message: str) -> str | None:
    match = re.search(r"GLOBAL ([\w.]+)", message)
    return match.group(1) if match else None


def _unreadable_message(name: str, kind: str) -> str:
    if kind == "other":
        return (
            f"Checkpoint {name} is not a readable checkpoint (not a checkpoint file at all: it is neither the zip"
            " archive nor the older format that `torch.save` writes). Check the path: pass a `.ckpt` file written by"
            " `Trainer.save_checkpoint` or `ModelCheckpoint`."
        )
    return (
        f"Checkpoint {name} is not a readable checkpoint (truncated or corrupt). It may have been"
        " written by a process that was killed, or copied incompletely; load another checkpoint"
        " (for example the previous top-k file or `last.ckpt`) or save it again."
    )


_SAFE_SCALARS = (int, float, bool, str, bytes, complex, type(None), torch.dtype, torch.device, torch.Size)


def unsafe_hparam_values(hparams: dict[str, Any]) -> list[str]:
    """Name each value in ``hparams`` that ``torch.load(weights_only=True)`` would refuse to load.

    Plain data loads safely: numbers, strings, bools, None, bytes, tensors, dtypes, devices, and
    lists, tuples, sets, dicts (and ``OrderedDict``) of those. Anything else (a custom class, an
    ``argparse.Namespace``, an enum, a ``defaultdict``) is reported as ``"path (TypeName)"``.

    Example::

        >>> unsafe_hparam_values({"lr": 0.1, "cfg": {"opt": object()}})
        ['cfg.opt (object)']
    """
    found: list[str] = []
    for key, value in hparams.items():
        _collect_unsafe(value, str(key), found)
    return found


def _collect_unsafe(value: Any, where: str, found: list[str]) -> None:
    kind = type(value)
    if kind in _SAFE_SCALARS or (isinstance(value, torch.Tensor) and kind in (torch.Tensor, torch.nn.Parameter)):
        return
    if kind in (list, tuple, set):
        for index, item in enumerate(value):
            _collect_unsafe(item, f"{where}[{index}]", found)
        return
    if kind in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in _SAFE_SCALARS:
                found.append(f"{where} key {key!r} ({type(key).__qualname__})")
            _collect_unsafe(item, f"{where}.{key}", found)
        return
    found.append(f"{where} ({kind.__qualname__})")


def loaded_object(import_path: str) -> Any:
    """The object ``import_path`` names among the modules already loaded; ``None`` if it is not loaded.

    Nothing is imported (a package's lazy attributes count as not loaded), so a name read from a checkpoint
    can be checked against what the program itself has imported.

    Example::

        >>> loaded_object("collections.OrderedDict") is OrderedDict
        True
    """
    import sys

    parts = import_path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:split]))
        if module is None:
            continue
        obj: Any = vars(module).get(parts[split])
        for attr in parts[split + 1 :]:
            obj = getattr(obj, attr, None)
        return obj
    return None
