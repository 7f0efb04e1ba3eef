"""Where checkpoints live: filesystems, crash-safe writes, links and removal.

Every write goes to a temp file in the target's folder, is flushed and fsynced, and is then renamed
over the target, so a reader (or a process killed mid-write) only ever sees the old file or the
new one. The temp file is locked while its writer lives, so that :func:`sweep_stale_temporaries`
can remove what a killed writer left behind without touching a save in progress; a full disk
raises an ``OSError(ENOSPC)`` that names the file, the space it needs and the space left. A
checkpoint may also be a folder (the sharded layout of
``FSDPStrategy(state_dict_type="sharded")``, see ``ember.checkpoint.sharded``): such a folder is
moved into place, replaced and removed as a whole.

Example::

    from ember.checkpoint import atomic_save

    atomic_save({"state_dict": model.state_dict()}, "runs/model.ckpt")
"""

from __future__ import annotations

import errno
import io
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from typing import Any, Union

import torch

PathLike = Union[str, os.PathLike]

# The file of a sharded checkpoint folder that holds everything but the model and optimizer shards
# (Lightning's name for it).
METADATA_FILENAME = "meta.pt"
# The key of Ember's own entry in a checkpoint dict (what exact resume needs beyond Lightning's keys).
EMBER_KEY = "ember"


# ---- filesystems ----------------------------------------------------------------------------
def get_filesystem(path: PathLike, **storage_options: Any) -> Any:
    """The fsspec filesystem that serves ``path`` (local files when it has no protocol).

    Example::

        fs = get_filesystem("memory://ckpts/a.ckpt")
        fs.exists("memory://ckpts/a.ckpt")
    """
    from fsspec.core import url_to_fs

    fs, _ = url_to_fs(str(path), **storage_options)
    return fs


def is_local(path: PathLike) -> bool:
    """Whether ``path`` is on the local filesystem (a plain path or a ``file://`` URL)."""
    text = str(path)
    if "::" in text:
        return False
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", text)
    return match is None or match.group(1) in ("file", "local")


def local_path(path: PathLike) -> str:
    """The filesystem path of a local ``path``: without a ``file://`` (or ``file:``) prefix, and ``~`` expanded.

    As fsspec, which writes Lightning's files, reads it: ``file:/abs/out`` (what ``os.path.normpath`` makes of
    ``file:///abs/out``) is ``/abs/out``, and a logger's ``save_dir="~/logs"`` means the home folder.
    """
    text = os.fspath(path)
    for prefix in ("file://", "file:", "local://", "local:"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    return os.path.expanduser(text)


# Questions about a path that a default run asks every time: the standard library answers them for
# local paths, so that fsspec (15-90 ms to import) loads only for remote ones.
def path_exists(path: PathLike) -> bool:
    return os.path.exists(local_path(path)) if is_local(path) else bool(get_filesystem(path).exists(str(path)))


def is_folder(path: PathLike) -> bool:
    return os.path.isdir(local_path(path)) if is_local(path) else bool(get_filesystem(path).isdir(str(path)))


def is_file(path: PathLike) -> bool:
    return os.path.isfile(local_path(path)) if is_local(path) else bool(get_filesystem(path).isfile(str(path)))


def folder_entries(path: PathLike) -> list[str]:
    """The paths in the folder ``path`` (none when it is missing or not a folder)."""
    if is_local(path):
        local = local_path(path)
        return [os.path.join(local, name) for name in os.listdir(local)] if os.path.isdir(local) else []
    fs = get_filesystem(path)
    return list(fs.ls(str(path), detail=False)) if fs.isdir(str(path)) else []


def open_file(path: PathLike, mode: str = "r", **kwargs: Any) -> Any:
    """``open(path, mode)`` for a local path, the fsspec file for a remote one."""
    if is_local(path):
        return open(local_path(path), mode, **kwargs)  # the caller closes it
    return get_filesystem(path).open(str(path), mode, **kwargs)


# ---- writing --------------------------------------------------------------------------------
def fsync_dir(folder: str) -> None:
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


def is_sharded_checkpoint(path: PathLike) -> bool:
    """Whether ``path`` is a sharded checkpoint folder: a local folder with a ``meta.pt`` file in it.

    Example::

        is_sharded_checkpoint("checkpoints/epoch=0-step=8.ckpt")  # True for FSDP sharded saves
    """
    local = local_path(path)
    return is_local(path) and os.path.isdir(local) and os.path.isfile(os.path.join(local, METADATA_FILENAME))


def hidden_sibling(path: str, kind: str) -> str:
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
            function: Any = ctypes.CDLL(None, use_errno=True).renameat2
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


def move_into_place(source: str, target: str) -> None:
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
            aside = hidden_sibling(target, "old")
            os.rename(target, aside)
            os.rename(source, target)
            source = aside
        fsync_dir(folder)
        discard(source)  # now the previous checkpoint
    fsync_dir(folder)


def discard(path: str) -> None:
    """Delete a file, link or folder; a folder is renamed aside first, so it never lies half-deleted."""
    if _is_folder(path):
        aside = hidden_sibling(path, "del") if not os.path.basename(path).startswith(".") else path
        if aside != path:
            os.rename(path, aside)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.remove(path)


def atomic_save(checkpoint: dict[str, Any], path: PathLike, storage_options: dict[str, Any] | None = None) -> None:
    """Write ``checkpoint`` to ``path`` so that ``path`` never holds a partial file.

    The dict is serialised with ``torch.save`` into ``.<name>.tmp-<random>`` next to the target,
    flushed, fsynced and renamed over it; parent folders are created. If anything fails, the
    temp file is removed and the previous file at ``path`` is left untouched.

    Example::

        atomic_save({"epoch": 3, "state_dict": model.state_dict()}, "ckpts/epoch=3.ckpt")
    """
    if is_local(path) and not storage_options:
        _atomic_save_local(checkpoint, local_path(path))
    else:
        _atomic_save_remote(checkpoint, str(path), storage_options or {})


def _atomic_save_local(checkpoint: dict[str, Any], path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp_path, fd = _create_locked_temp(path)
    keep_open = os.name != "nt"  # the lock lasts until the rename; Windows renames no open file
    try:
        with os.fdopen(fd, "wb", closefd=not keep_open) as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        # atomic on POSIX and Windows; a symlink at ``path`` is replaced, not followed, and a sharded
        # checkpoint folder there is swapped out as a whole.
        move_into_place(tmp_path, path)
    except BaseException as error:
        try:
            os.remove(tmp_path)
        except FileNotFoundError:
            pass
        if keep_open:
            keep_open = False
            os.close(fd)  # the space of the removed temp file is free only once it is closed
        if is_disk_full(error):
            raise disk_full_error(path, _tensor_bytes(checkpoint)) from error
        raise
    finally:
        if keep_open:
            os.close(fd)  # releases the lock, now that the temp name is gone


def _create_locked_temp(path: str) -> tuple[str, int]:
    """A new ``.<name>.tmp-<random>`` file next to ``path``, open for writing and locked by this process.

    It gets the permissions a plain ``open()`` would give (the umask applies). The lock (``flock``)
    tells :func:`sweep_stale_temporaries` that its writer is alive; where locks are not supported the
    sweep goes by the file's age alone.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp_path = hidden_sibling(path, "tmp")
        try:
            fd = os.open(tmp_path, flags, 0o666)
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue
        break
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (ImportError, OSError):
        pass  # no locks here (Windows, some network filesystems)
    return tmp_path, fd


# ---- a full disk ----------------------------------------------------------------------------
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a full disk or an exhausted quota.

    torch's zip writer reports a failed write as ``RuntimeError: [enforce fail at inline_container.cc]
    ... unexpected pos``, with the ``OSError(ENOSPC)`` of the Python file underneath it.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_SPACE:
            return True
        current = current.__cause__ or current.__context__
    return False


def disk_full_error(path: str, needed: int | None) -> OSError:
    """``OSError(ENOSPC)`` naming the checkpoint ``path``, the bytes it needs (if known) and the free space."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free: str = f"{_size(shutil.disk_usage(folder).free)} free"
    except OSError:
        free = "its free space unknown"
    needs = f"needs about {_size(needed)}" if needed else "could not be written"
    return OSError(
        errno.ENOSPC,
        f"No space left on the device to save the checkpoint {path}: it {needs}, and {folder} has {free}."
        " The previous file at that path, if any, is intact. Free some space (or keep fewer checkpoints with"
        " `ModelCheckpoint(save_top_k=...)`), or save to another disk with `ModelCheckpoint(dirpath=...)`",
        path,
    )


def _size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} bytes"  # pragma: no cover


def _tensor_bytes(obj: Any) -> int | None:
    """The bytes of the distinct tensor storages in ``obj`` (a checkpoint dict): at least what it needs on disk."""
    seen: set[tuple[str, int]] = set()
    total = 0
    try:
        for tensor in _tensors(obj, 0):
            storage = tensor.untyped_storage()
            key = (str(tensor.device), storage.data_ptr())
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()
    except Exception:
        return None
    return total or None


def _tensors(obj: Any, depth: int) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 32 and isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value, depth + 1)
    elif depth < 32 and isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value, depth + 1)


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


def atomic_link(target: PathLike, link_path: PathLike) -> None:
    """Make ``link_path`` a relative symlink to ``target``, replacing whatever was there atomically.

    Where symlinks cannot be made (e.g. Windows without the privilege), ``target`` (a file, or a
    sharded checkpoint folder) is copied instead, through a temp path, so ``link_path`` is again
    never partial. Local paths only.

    Example::

        atomic_link("ckpts/epoch=3-step=40.ckpt", "ckpts/last.ckpt")
    """
    target, link_path = os.path.abspath(local_path(target)), os.path.abspath(local_path(link_path))
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
        move_into_place(tmp_path, link_path)
    except BaseException:
        if os.path.lexists(tmp_path):
            discard(tmp_path)
        raise


def _fsync_tree(folder: str) -> None:
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as file:
            os.fsync(file.fileno())
    fsync_dir(folder)


def remove_checkpoint(path: PathLike) -> None:
    """Delete the checkpoint at ``path`` (a file, or a sharded checkpoint folder with everything in it).

    A checkpoint that is already gone is not an error. A local folder is first renamed to a hidden
    sibling, so a crash during the deletion never leaves a half-deleted checkpoint under its name.
    """
    if is_local(path):
        try:
            discard(local_path(path))
        except FileNotFoundError:
            pass
        return
    fs = get_filesystem(path)
    try:
        fs.rm(str(path), recursive=True)
    except FileNotFoundError:
        pass


def folder_problem(path: PathLike) -> tuple[type[OSError], str] | None:
    """Why files cannot be created under the local folder ``path`` (an error class and a reason), or None.

    The folder need not exist yet: its nearest existing parent must be a folder this process can write
    to. Nothing is created. Remote paths are not checked (their filesystem reports its own errors).

    Example::

        folder_problem("/etc/passwd/ckpts")  # (NotADirectoryError, "'/etc/passwd' is a file, not a folder")
    """
    if not is_local(path):
        return None
    target = os.path.abspath(os.path.expanduser(local_path(path)))
    existing = target
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if os.path.lexists(existing) and not os.path.isdir(existing):
        return NotADirectoryError, f"'{existing}' is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return PermissionError, f"the folder '{existing}' is not writable (a read-only filesystem, or permissions)"
    return None


# ---- what a killed save leaves behind --------------------------------------------------------
# Temp files and folders are hidden siblings of their target: ``.<name>.tmp-<random>`` (being
# written), ``.<name>.old-<random>`` (the previous folder, renamed aside while a new one takes its
# place) and ``.<name>.del-<random>`` (a folder being deleted). Older Ember versions used 8 random
# characters for files.
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<kind>tmp|old|del)-(?:[0-9a-f]{16}|[a-z0-9_]{8})$")

# A temp file or folder is stale once nothing has changed in it for this long (and, for files, no
# live process holds its lock): a save in progress writes continuously, and where locks do not reach
# across machines (some cluster filesystems) the age alone protects a slow save on another node.
STALE_AFTER_SECONDS = 600.0


def sweep_stale_temporaries(folder: PathLike, older_than: float = STALE_AFTER_SECONDS) -> list[str]:
    """Remove what killed saves left in ``folder`` (local paths only); returns the paths removed.

    Only Ember's own hidden temp names are considered, only when they have not changed for
    ``older_than`` seconds, and a temp file whose writer still holds its lock is kept whatever its
    age, so a save in progress in another process (a second trainer writing to the same folder) is
    never touched. A folder renamed aside (``.<name>.old-...``) whose replacement never arrived is the
    only copy of that checkpoint, and is kept.

    Example::

        sweep_stale_temporaries("lightning_logs/version_0/checkpoints")
    """
    if not is_local(folder):
        return []
    folder = local_path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    now = time.time()
    removed = []
    for name in names:
        match = _TEMPORARY.match(name)
        if match is None:
            continue
        path = os.path.join(folder, name)
        if match["kind"] == "old" and not os.path.lexists(os.path.join(folder, match["target"])):
            continue
        try:
            if now - _last_change(path) < older_than:
                continue
            if _remove_unless_locked(path):
                removed.append(path)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def _last_change(path: str) -> float:
    """When ``path`` (and, for a folder, what is in it) was last written.

    A save in progress writes continuously. Folders renamed aside (``old``, ``del``, or the ``tmp``
    name that holds the previous folder after a swap) keep old times, but their owner is deleting
    them anyway.
    """
    newest = os.lstat(path).st_mtime
    if _is_folder(path):
        for entry in os.scandir(path):
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest


def _remove_unless_locked(path: str) -> bool:
    """Delete a stale temp file unless a live writer holds its lock; folders and links go as they are."""
    if os.path.islink(path) or _is_folder(path):
        discard(path)
        return True
    try:
        import fcntl
    except ImportError:  # no locks on this platform (Windows): the age decided
        os.remove(path)
        return True
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its writer is alive
        except OSError:
            pass  # this filesystem has no locks: the age decided
        os.remove(path)
        return True
    finally:
        os.close(fd)
