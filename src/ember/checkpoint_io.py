"""Checkpoint files: crash-safe writes, safe loads, removal, and the filesystem behind a path.

Every write goes to a temp file in the target's folder, is flushed and fsynced, and is then renamed
over the target, so a reader (or a process killed mid-write) only ever sees the old file or the
new one. Loads use ``torch.load(weights_only=True)`` unless the caller says otherwise, so opening a
checkpoint never runs code or imports a class named inside it.

A checkpoint may also be a folder: the sharded layout of ``FSDPStrategy(state_dict_type="sharded")``
(see ``ember.sharded_checkpoint``). Such a folder is moved into place, replaced and removed as a
whole, and ``load_checkpoint`` reads it as its ``meta.pt`` plus the full model weights.

Example::

    from ember.checkpoint_io import atomic_save, load_checkpoint

    atomic_save({"state_dict": model.state_dict()}, "runs/model.ckpt")
    checkpoint = load_checkpoint("runs/model.ckpt", map_location="cpu")
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import re
import secrets
import shutil
import sys
import tempfile
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any, Union

import torch

_PATH = Union[str, Path]

# The file of a sharded checkpoint folder that holds everything but the model and optimizer shards
# (Lightning's name for it).
METADATA_FILENAME = "meta.pt"


class CheckpointLoadError(RuntimeError):
    """A checkpoint file exists but cannot be read: it is truncated, corrupt, or not a checkpoint."""


# ---- filesystems ----------------------------------------------------------------------------
def get_filesystem(path: _PATH, **storage_options: Any) -> Any:
    """The fsspec filesystem that serves ``path`` (local files when it has no protocol).

    Example::

        fs = get_filesystem("memory://ckpts/a.ckpt")
        fs.exists("memory://ckpts/a.ckpt")
    """
    from fsspec.core import url_to_fs

    fs, _ = url_to_fs(str(path), **storage_options)
    return fs


def is_local(path: _PATH) -> bool:
    """Whether ``path`` is on the local filesystem (a plain path or a ``file://`` URL)."""
    text = str(path)
    if "::" in text:
        return False
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", text)
    return match is None or match.group(1) in ("file", "local")


def _local_path(path: _PATH) -> str:
    text = os.fspath(path)
    for prefix in ("file://", "local://"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


# ---- writing --------------------------------------------------------------------------------
_UMASK: int | None = None


def _file_mode() -> int:
    # mkstemp creates files readable by the owner only; give the checkpoint the mode a plain
    # open() would have given it. Reading the umask means setting it, so do it once.
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _fsync_dir(folder: str) -> None:
    # The rename is durable only once the folder's entry is on disk; not possible on Windows.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_sharded_checkpoint(path: _PATH) -> bool:
    """Whether ``path`` is a sharded checkpoint folder: a local folder with a ``meta.pt`` file in it.

    Example::

        is_sharded_checkpoint("checkpoints/epoch=0-step=8.ckpt")  # True for FSDP sharded saves
    """
    local = _local_path(path)
    return is_local(path) and os.path.isdir(local) and os.path.isfile(os.path.join(local, METADATA_FILENAME))


def _hidden_sibling(path: str, kind: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{kind}-{secrets.token_hex(8)}")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2: Any = None


def _exchange(first: str, second: str) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the OS or the filesystem cannot, so the caller falls back to two renames.
    """
    global _renameat2
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    if _renameat2 is None:
        try:
            function = ctypes.CDLL(None, use_errno=True).renameat2
        except (OSError, AttributeError):  # glibc older than 2.28, or another libc
            function = False
        else:
            function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        _renameat2 = function
    if _renameat2 is False:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False  # this filesystem (or a sandbox) does not support the swap
    raise OSError(code, os.strerror(code), first, None, second)


def _is_folder(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path)


def _move_into_place(source: str, target: str) -> None:
    """Rename ``source`` (a file or a folder) over ``target`` so that ``target`` is never partial.

    A file replaces a file (or a link) with ``os.replace``. When either is a folder (a sharded
    checkpoint), the two are swapped atomically and the old one is then deleted; where the OS cannot
    swap, the old one is first renamed to a hidden sibling, so a crash between the two renames
    leaves both checkpoints on disk. A folder that is not a checkpoint is never replaced.
    """
    folder = os.path.dirname(os.path.abspath(target))
    if _is_folder(target) and not is_sharded_checkpoint(target) and os.listdir(target):
        raise IsADirectoryError(
            f"Cannot save the checkpoint to {target}: a folder that is not a checkpoint is there. Choose another"
            " path, or remove that folder."
        )
    if not os.path.lexists(target) or not (_is_folder(source) or _is_folder(target)):
        os.replace(source, target)
    else:
        if not _exchange(source, target):
            aside = _hidden_sibling(target, "old")
            os.rename(target, aside)
            os.rename(source, target)
            source = aside
        _fsync_dir(folder)
        _discard(source)  # now the previous checkpoint
    _fsync_dir(folder)


def _discard(path: str) -> None:
    """Delete a file, link or folder; a folder is renamed aside first, so it never lies half-deleted."""
    if _is_folder(path):
        aside = _hidden_sibling(path, "old") if not os.path.basename(path).startswith(".") else path
        if aside != path:
            os.rename(path, aside)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.remove(path)


def atomic_save(checkpoint: dict[str, Any], path: _PATH, storage_options: dict[str, Any] | None = None) -> None:
    """Write ``checkpoint`` to ``path`` so that ``path`` never holds a partial file.

    The dict is serialised with ``torch.save`` into ``.<name>.tmp-<random>`` next to the target,
    flushed, fsynced and renamed over it; parent folders are created. If anything fails, the
    temp file is removed and the previous file at ``path`` is left untouched.

    Example::

        atomic_save({"epoch": 3, "state_dict": model.state_dict()}, "ckpts/epoch=3.ckpt")
    """
    if is_local(path) and not storage_options:
        _atomic_save_local(checkpoint, _local_path(path))
    else:
        _atomic_save_remote(checkpoint, str(path), storage_options or {})


def _atomic_save_local(checkpoint: dict[str, Any], path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp_path, _file_mode())
        # atomic on POSIX and Windows; a symlink at ``path`` is replaced, not followed, and a sharded
        # checkpoint folder there is swapped out as a whole.
        _move_into_place(tmp_path, path)
    except BaseException:
        try:
            os.remove(tmp_path)
        except FileNotFoundError:
            pass
        raise


def _atomic_save_remote(checkpoint: dict[str, Any], path: str, storage_options: dict[str, Any]) -> None:
    fs = get_filesystem(path, **storage_options)
    parent, _, name = path.rstrip("/").rpartition("/")
    tmp_path = f"{parent}/.{name}.tmp-{secrets.token_hex(8)}"
    # Serialise fully in memory first: a failing torch.save then leaves nothing remote at all.
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    try:
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(tmp_path, "wb") as file:
            file.write(buffer.getbuffer())
        fs.mv(tmp_path, path)
    except BaseException:
        try:
            if fs.exists(tmp_path):
                fs.rm(tmp_path)
        except Exception:
            pass
        raise


def atomic_link(target: _PATH, link_path: _PATH) -> None:
    """Make ``link_path`` a relative symlink to ``target``, replacing whatever was there atomically.

    Where symlinks cannot be made (e.g. Windows without the privilege), ``target`` (a file, or a
    sharded checkpoint folder) is copied instead, through a temp path, so ``link_path`` is again
    never partial. Local paths only.

    Example::

        atomic_link("ckpts/epoch=3-step=40.ckpt", "ckpts/last.ckpt")
    """
    target, link_path = os.path.abspath(_local_path(target)), os.path.abspath(_local_path(link_path))
    folder = os.path.dirname(link_path)
    os.makedirs(folder, exist_ok=True)
    tmp_path = os.path.join(folder, f".{os.path.basename(link_path)}.tmp-{secrets.token_hex(8)}")
    try:
        try:
            os.symlink(os.path.relpath(target, folder), tmp_path)
        except OSError:
            if os.path.isdir(target):
                shutil.copytree(target, tmp_path)
                _fsync_tree(tmp_path)
            else:
                shutil.copyfile(target, tmp_path)
                with open(tmp_path, "rb+") as file:
                    os.fsync(file.fileno())
        _move_into_place(tmp_path, link_path)
    except BaseException:
        if os.path.lexists(tmp_path):
            _discard(tmp_path)
        raise


def _fsync_tree(folder: str) -> None:
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as file:
            os.fsync(file.fileno())
    _fsync_dir(folder)


def remove_checkpoint(path: _PATH) -> None:
    """Delete the checkpoint at ``path`` (a file, or a sharded checkpoint folder with everything in it).

    A checkpoint that is already gone is not an error. A local folder is first renamed to a hidden
    sibling, so a crash during the deletion never leaves a half-deleted checkpoint under its name.
    """
    if is_local(path):
        try:
            _discard(_local_path(path))
        except FileNotFoundError:
            pass
        return
    fs = get_filesystem(path)
    try:
        fs.rm(str(path), recursive=True)
    except FileNotFoundError:
        pass


# ---- loading --------------------------------------------------------------------------------
def _default_map_location(storage: Any, location: str) -> Any:
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


def load_checkpoint(
    path: _PATH | IO[bytes],
    map_location: Any = None,
    weights_only: bool | None = None,
) -> Any:
    """Load a checkpoint file (any fsspec path, or an open binary file).

    ``weights_only=None`` means ``True``: only tensors and plain data are unpickled, so no code in
    the file can run. Pass ``weights_only=False`` only for files you trust.

    A sharded checkpoint folder (``FSDPStrategy(state_dict_type="sharded")``) loads as the dict
    in its ``meta.pt`` plus ``"state_dict"``, the full model weights gathered from the shards; its
    optimizer states stay on disk until the trainer restores them.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        IsADirectoryError: ``path`` is a folder but not a sharded checkpoint.
        CheckpointLoadError: the file is truncated or corrupt.
        pickle.UnpicklingError: the file needs a class or function that safe loading refuses.

    Example::

        checkpoint = load_checkpoint("ckpts/last.ckpt", map_location="cpu")
        model.load_state_dict(checkpoint["state_dict"])
    """
    if weights_only is None:
        weights_only = True
    if map_location is None:
        map_location = _default_map_location
    if not isinstance(path, (str, Path)):
        return _torch_load(path, getattr(path, "name", "<file object>"), map_location, weights_only)
    name = str(path)
    if is_local(name):
        local = _local_path(name)
        if os.path.isdir(local):
            from ember import sharded_checkpoint  # torch.distributed.checkpoint loads on first use

            return sharded_checkpoint.load(local, map_location=map_location, weights_only=weights_only)
        if not os.path.isfile(local):
            raise FileNotFoundError(f"Checkpoint file not found: {name}")
        with open(local, "rb") as file:
            return _torch_load(file, name, map_location, weights_only)
    fs = get_filesystem(name)
    if not fs.exists(name):
        raise FileNotFoundError(f"Checkpoint file not found: {name}")
    if fs.isdir(name):
        raise IsADirectoryError(
            f"Checkpoint {name} is a folder on a remote filesystem: sharded checkpoint folders are read from local"
            " (or mounted) paths only. Copy it to a local folder, or save with `state_dict_type='full'`."
        )
    with fs.open(name, "rb") as file:
        return _torch_load(file, name, map_location, weights_only)


def _torch_load(file: IO[bytes], name: str, map_location: Any, weights_only: bool) -> Any:
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


# ---- hyperparameters that load safely ----------------------------------------------------------
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


__all__ = [
    "METADATA_FILENAME",
    "CheckpointLoadError",
    "atomic_link",
    "atomic_save",
    "get_filesystem",
    "is_local",
    "is_sharded_checkpoint",
    "load_checkpoint",
    "remove_checkpoint",
    "unsafe_hparam_values",
]
