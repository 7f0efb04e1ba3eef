"""``load_checkpoint``: a checkpoint file, a sharded checkpoint folder, a remote file or an open file.

Example::

    from ember.checkpoint import load_checkpoint

    checkpoint = load_checkpoint("runs/model.ckpt", map_location="cpu")
"""

from __future__ import annotations

import errno
import os
import warnings
from typing import IO, Any

from ember.checkpoint.files import PathLike, get_filesystem, is_local, local_path
from ember.checkpoint.safe_load import checked_map_location, default_map_location, load_file


def load_checkpoint(
    path: PathLike | IO[bytes],
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
        IsADirectoryError: ``path`` is a folder but not a sharded checkpoint (a ``ValueError`` too, as in Lightning).
        CheckpointLoadError: the file is truncated or corrupt.
        MapLocationError: ``map_location`` names no device, or its function failed (``TypeError`` for a
            ``map_location`` of another kind, or a ``path`` that is neither a path nor an open file).
        pickle.UnpicklingError: the file needs a class or function that safe loading refuses.

    Example::

        checkpoint = load_checkpoint("ckpts/last.ckpt", map_location="cpu")
        model.load_state_dict(checkpoint["state_dict"])
    """
    if weights_only is None:
        weights_only = not _torch_forces_full_load()
    if map_location is None:
        map_location = default_map_location
    map_location = checked_map_location(map_location)
    if not isinstance(path, (str, os.PathLike)):
        if not callable(getattr(path, "read", None)):
            raise TypeError(
                f"A checkpoint is read from a path or an open binary file, not {path!r} ({type(path).__name__}):"
                " pass the file's path, e.g. 'checkpoints/last.ckpt'."
            )
        return load_file(path, getattr(path, "name", "<file object>"), map_location, weights_only)
    name = os.fspath(path)
    if is_local(name):
        local = local_path(name)
        if os.path.isdir(local):
            from ember.checkpoint import sharded  # torch.distributed.checkpoint loads on first use

            return sharded.load(local, map_location=map_location, weights_only=weights_only)
        if not os.path.isfile(local):
            raise _not_found(name)
        with open(local, "rb") as file:
            return load_file(file, name, map_location, weights_only)
    fs = get_filesystem(name)
    if not fs.exists(name):
        raise _not_found(name)
    if fs.isdir(name):
        raise IsADirectoryError(
            f"Checkpoint {name} is a folder on a remote filesystem: sharded checkpoint folders are read from local"
            " (or mounted) paths only. Copy it to a local folder, or save with `state_dict_type='full'`."
        )
    with fs.open(name, "rb") as file:
        return load_file(file, name, map_location, weights_only)


def _torch_forces_full_load() -> bool:
    """torch's switch for trusted files: ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` makes a load that did not
    choose ``weights_only`` unpickle fully, with torch's warning (Lightning leaves ``None`` to torch)."""
    true_values = ("1", "y", "yes", "true")
    if os.getenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in true_values:
        return False  # torch forces safe loading itself (and refuses both set at once)
    if os.getenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0").lower() not in true_values:
        return False
    warnings.warn(
        "Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected, since the`weights_only` argument was not"
        " explicitly passed to `torch.load`, forcing weights_only=False.",
        UserWarning,
        stacklevel=3,
    )
    return True


def _not_found(name: str) -> FileNotFoundError:
    """The error for a missing checkpoint, with ``errno`` set as the operating system's (Lightning's) error has it,
    for code that tells the cause by it."""
    error = FileNotFoundError(f"Checkpoint file not found: {name}")
    error.errno = errno.ENOENT
    return error
