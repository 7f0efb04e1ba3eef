"""Reading one checkpoint file safely, and saying clearly why a file cannot be read.

Loads use ``torch.load(weights_only=True)`` unless the caller says otherwise, so opening a
checkpoint never runs code or imports a class named inside it. A damaged file raises
``CheckpointLoadError``; a file that needs a class safe loading refuses names that class.
"""

from __future__ import annotations

import pickle
import re
import zipfile
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

    ``name`` is how the messages call the file.
    """
    try:
        return torch.load(file, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        message = str(err)
        # A file cut short inside its pickle also surfaces as an UnpicklingError; that is damage,
        # not a refusal, and must not send the user to weights_only=False.
        truncated = isinstance(err.__context__, EOFError) or re.search(r"EOF|ran out of input|truncated", message, re.I)
        if weights_only and "Weights only load failed" in message and not truncated:
            blocked = _blocked_global(message)
            what = f"`{blocked}`" if blocked else "an object that is not plain data"
            raise pickle.UnpicklingError(
                f"Checkpoint {name} needs {what}, which safe loading (`weights_only=True`) refuses to"
                " import. If you trust the file's source, load it with `weights_only=False`; otherwise"
                " allow just that class with `torch.serialization.add_safe_globals([...])`."
            ) from err
        raise CheckpointLoadError(_corrupt_message(name)) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CheckpointLoadError(_corrupt_message(name)) from err


def _blocked_global(message: str) -> str | None:
    match = re.search(r"GLOBAL ([\w.]+)", message)
    return match.group(1) if match else None


def _corrupt_message(name: str) -> str:
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
