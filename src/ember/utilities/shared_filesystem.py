"""``is_shared_filesystem``: whether every process of a job sees the same files under a path.

Example::

    if not is_shared_filesystem(trainer.strategy, "checkpoints/"):
        ...  # each node writes its own copy
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from ember.checkpoint.files import is_local


def is_shared_filesystem(strategy: Any, path: str | os.PathLike | None = None, timeout: int = 3) -> bool:
    """Whether the filesystem under ``path`` (the working directory when None) is shared by all processes.

    A remote path (``s3://...``) counts as shared, and so does a path in a one-process run. Otherwise
    rank 0 creates a file in the folder and the other ranks look for it for up to ``timeout`` seconds;
    every process must call this, as it talks to the others through ``strategy`` (``trainer.strategy``).
    The path must exist on every process and its folder must be writable.
    """
    if path is not None and not is_local(path):
        return True
    where = Path(Path.cwd() if path is None else path).resolve()
    if getattr(strategy, "world_size", 1) == 1:
        return True
    # the same path on every rank is needed for the same file to be found
    if not strategy.reduce_boolean_decision(strategy.broadcast(where) == where, all=True):
        return False
    if not strategy.reduce_boolean_decision(where.exists(), all=True):
        raise FileNotFoundError(
            f"Unable to determine if the path belongs to a shared filesystem. The path does not exist: {where}"
        )
    folder = where.parent if where.is_file() else where
    marker = folder / ".lightning_shared_fs_check"
    marker.unlink(missing_ok=True)
    strategy.barrier()
    if strategy.is_global_zero:
        marker.touch()
        found = True
    else:
        start = time.perf_counter()
        found = False
        while not found and time.perf_counter() - start < timeout:
            found = marker.exists()
            if not found:
                time.sleep(0.01)  # not a busy loop of stat calls on a network filesystem
    strategy.barrier()
    shared = strategy.reduce_boolean_decision(found, all=True)
    with contextlib.suppress(OSError):  # another rank of the same filesystem removed it first
        marker.unlink()
    return bool(shared)
