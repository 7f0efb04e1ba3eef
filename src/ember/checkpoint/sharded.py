"""Sharded checkpoints: a folder of ``torch.distributed.checkpoint`` (DCP) shards and a ``meta.pt``.

``FSDPStrategy(state_dict_type="sharded")`` and ``ModelParallelStrategy()`` write this layout,
Lightning's (the same file names and keys)::

    epoch=0-step=8.ckpt/
        __0_0.distcp  __1_0.distcp ...   each rank's shards of the model ("model" for FSDP,
                                         "state_dict" for model parallel) and of every optimizer
                                         ("optimizer_0", "optimizer_1", ...)
        .metadata                        DCP's index of the shards (written by rank 0)
        meta.pt                          the rest of the checkpoint dict: epoch, global_step, loops,
                                         callbacks, hyper_parameters, lr_schedulers, ... (rank 0)

Writing is crash-safe: every rank writes into one hidden sibling folder; once all shards and
``meta.pt`` are on disk (fsynced), rank 0 moves the folder over ``path`` in one step. A process
killed mid-write leaves the previous checkpoint at ``path`` untouched.

Reading is safe: ``meta.pt`` loads with ``torch.load(weights_only=True)``, DCP's index is unpickled
against an allowlist of DCP's own record types, and the non-tensor entries (an optimizer's
hyperparameters) must pass ``torch.load(weights_only=True)`` before DCP reads them. Pass
``weights_only=False`` only for folders you trust.

Example::

    from ember.checkpoint.sharded import load

    checkpoint = load("checkpoints/epoch=0-step=8.ckpt")  # meta.pt + full model weights, one process
    model.load_state_dict(checkpoint["state_dict"])
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader, FileSystemWriter, TensorStorageMetadata
from torch.distributed.checkpoint.api import CheckpointException

from ember.checkpoint.files import (
    METADATA_FILENAME,
    atomic_save,
    discard,
    disk_full_error,
    fsync_dir,
    hidden_sibling,
    is_disk_full,
    is_local,
    is_sharded_checkpoint,
    local_path,
    move_into_place,
)
from ember.checkpoint.safe_load import CheckpointLoadError, default_map_location, load_file

MODEL_KEY = "model"
# the model's key in the folders Lightning's ModelParallelStrategy writes; read like MODEL_KEY
_MODEL_KEYS = (MODEL_KEY, "state_dict")
_OPTIMIZER_KEY = re.compile(r"^optimizer_(\d+)$")


def optimizer_key(index: int) -> str:
    """The DCP key of the ``index``-th optimizer's shards: ``"optimizer_0"``, ``"optimizer_1"``, ..."""
    return f"optimizer_{index}"


# ---- writing ---------------------------------------------------------------------------------
def save(strategy: Any, checkpoint: dict[str, Any], path: str | os.PathLike, model_key: str = MODEL_KEY) -> None:
    """Write ``checkpoint`` as a sharded folder at ``path``. Every rank calls it, with its own shards.

    ``checkpoint["state_dict"]`` and ``checkpoint["optimizer_states"]`` hold this rank's shards
    (DTensors, or plain tensors that every rank holds whole); the model's go under ``model_key``,
    all other entries to ``meta.pt``.
    """
    rest = dict(checkpoint)
    shards = {model_key: rest.pop("state_dict")}
    for index, state in enumerate(rest.pop("optimizer_states", [])):
        shards[optimizer_key(index)] = state

    def write(folder: str) -> None:
        try:
            # all ranks: each writes its shards; rank 0 writes the index once every rank has finished
            dcp.save(shards, storage_writer=FileSystemWriter(folder, sync_files=True))
        except CheckpointException as error:
            # DCP's wrapper derives from BaseException: raise what went wrong (e.g. OSError) instead
            raise _causes(error)[0] from error
        if strategy.is_global_zero:
            atomic_save(rest, os.path.join(folder, METADATA_FILENAME))

    save_folder(strategy, path, write)


def save_folder(strategy: Any, path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """A checkpoint folder that every rank writes its part of, put at ``path`` in one step once complete.

    Every rank calls ``write(folder)`` with the same hidden sibling folder of ``path``; after all
    have finished, rank 0 moves it over ``path``. A failure leaves the previous checkpoint there.
    """
    if not is_local(path):
        raise ValueError(
            f"Cannot save a sharded checkpoint to {path}: sharded checkpoints are written to local (or mounted)"
            " folders. Save to a local path, or save full checkpoints for remote URLs"
            " (`FSDPStrategy(state_dict_type='full')`, `ModelParallelStrategy(save_distributed_checkpoint=False)`)."
        )
    target = os.path.abspath(local_path(path))
    # all ranks: rank 0 names the folders, so that every rank writes into the same one
    target, temp = strategy.broadcast((target, hidden_sibling(target, "tmp")) if strategy.is_global_zero else None)
    try:
        write(temp)
        strategy.barrier("sharded checkpoint: shards written")  # all ranks: barrier
        if strategy.is_global_zero:
            fsync_dir(temp)
            move_into_place(temp, target)
    except BaseException as error:
        if strategy.is_global_zero and os.path.lexists(temp):
            discard(temp)
        if is_disk_full(error):
            raise disk_full_error(target, None) from error
        raise


# ---- reading ---------------------------------------------------------------------------------
class ShardedOptimizerState:
    """An optimizer's state that stays in a sharded checkpoint until the optimizer exists.

    ``load`` puts one in ``checkpoint["optimizer_states"]`` per saved optimizer; the strategy calls
    :meth:`load_into` after the model is sharded and the optimizers are built, on every rank.
    """

    def __init__(self, path: str, index: int, weights_only: bool | None = None) -> None:
        self.path = path
        self.index = index
        self.weights_only = weights_only

    def __repr__(self) -> str:
        return f"ShardedOptimizerState({self.path!r}, {optimizer_key(self.index)!r})"

    def load_into(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Read this rank's part of the state into ``optimizer`` (all ranks must call it together)."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=False)
        key = optimizer_key(self.index)
        # the optimizer's own (sharded) state dict is the template: DCP fills each rank's slice
        state = {key: get_optimizer_state_dict(module, optimizer, options=options)}
        _read(state, self.path, self.weights_only, single_process=False)
        set_optimizer_state_dict(module, optimizer, state[key], options=options)


class NotACheckpointFolderError(IsADirectoryError, ValueError):
    """A folder given as a checkpoint that is not one: an ``IsADirectoryError``, and the ``ValueError`` that
    Lightning's sharded strategies raise for it, so that a program catching either catches it."""


def load(path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
    """The checkpoint dict of a sharded folder: ``meta.pt`` plus ``"state_dict"``, the full model weights.

    The weights are read whole in this process, with or without a process group, so a model can be
    rebuilt anywhere (e.g. ``load_from_checkpoint`` on a laptop). Each saved optimizer appears in
    ``"optimizer_states"`` as a :class:`ShardedOptimizerState`, read when the trainer restores it.

    Raises:
        NotACheckpointFolderError: ``path`` is a folder without ``meta.pt``.
        CheckpointLoadError: a shard or the index is missing or damaged.
    """
    path = os.fspath(path)
    if not is_sharded_checkpoint(path):
        raise NotACheckpointFolderError(
            f"The path {path!r} does not point to a valid checkpoint: {path} is a folder but not a sharded"
            f" checkpoint (it has no `{METADATA_FILENAME}`). Pass a checkpoint file, or a folder written with"
            " `FSDPStrategy(state_dict_type='sharded')` or `ModelParallelStrategy()`."
        )
    meta = os.path.join(path, METADATA_FILENAME)
    with open(meta, "rb") as file:
        checkpoint = load_file(
            file,
            meta,
            map_location if map_location is not None else default_map_location,
            weights_only is not False,
        )
    index = _read_index(path, weights_only)
    weights: dict[str, Any] = {}
    model_key = MODEL_KEY
    optimizers: set[int] = set()
    for key, item in index.state_dict_metadata.items():
        location = _location(index, key)
        if location[0] in _MODEL_KEYS and len(location) == 2:
            model_key = location[0]
            weights[location[1]] = _to_fill(item)
        elif isinstance(location[0], str) and (match := _OPTIMIZER_KEY.match(location[0])):
            optimizers.add(int(match.group(1)))
    state = {model_key: weights}
    _read(state, path, weights_only, single_process=True)
    weights = state[model_key]
    if isinstance(map_location, (str, torch.device)):
        weights = {k: v.to(map_location) if isinstance(v, torch.Tensor) else v for k, v in weights.items()}
    checkpoint["state_dict"] = weights
    if optimizers:
        count = max(optimizers) + 1
        checkpoint["optimizer_states"] = [ShardedOptimizerState(path, i, weights_only) for i in range(count)]
    return checkpoint


def read_whole(path: str | os.PathLike, weights_only: bool | None = None) -> dict[str, Any]:
    """Everything a sharded folder holds, read whole in this process, as one checkpoint dict in Lightning's
    layout: ``meta.pt``'s entries, the model's full weights under ``"state_dict"`` and each optimizer's full
    state (keyed by parameter name, as DCP saves it) in ``"optimizer_states"``; on the CPU.

    What ``python -m ember.utilities.consolidate_checkpoint`` writes to one file. The whole checkpoint must
    fit in this process's memory.
    """
    checkpoint = load(path, map_location="cpu", weights_only=weights_only)
    path = os.fspath(path)
    index = _read_index(path, weights_only)
    optimizers: dict[str, Any] = {}
    for key, item in index.state_dict_metadata.items():
        location = _location(index, key)
        if isinstance(location[0], str) and _OPTIMIZER_KEY.match(location[0]):
            _place(optimizers, location, _to_fill(item))
    if optimizers:
        _read(optimizers, path, weights_only, single_process=True)
        checkpoint["optimizer_states"] = [optimizers[optimizer_key(i)] for i in range(len(optimizers))]
    return checkpoint


def _to_fill(item: Any) -> Any:
    """What DCP reads an entry of the index into: an empty tensor of the saved (global) shape, filled from
    every rank's shards, or None for a plain value."""
    return torch.empty(item.size, dtype=item.properties.dtype) if isinstance(item, TensorStorageMetadata) else None


def _place(nested: dict[str, Any], location: tuple[Any, ...], value: Any) -> None:
    """Put ``value`` at ``location`` in ``nested``, creating the dicts (and, for integer steps, the lists)
    on the way: ``("optimizer_0", "param_groups", 0, "lr")``."""
    container: Any = nested
    for step, following in zip(location[:-1], location[1:]):
        empty: Any = [] if isinstance(following, int) else {}
        if isinstance(container, list):
            container.extend(None for _ in range(step + 1 - len(container)))
            if container[step] is None:
                container[step] = empty
        else:
            container.setdefault(step, empty)
        container = container[step]
    last = location[-1]
    if isinstance(container, list):
        container.extend(None for _ in range(last + 1 - len(container)))
    container[last] = value


def _location(index: Any, key: str) -> tuple[Any, ...]:
    """Where the flat DCP key ``key`` sits in the saved nested dict: ``("model", "layer.weight")``."""
    mappings = index.planner_data if isinstance(index.planner_data, dict) else {}
    location = mappings.get(key)
    return tuple(location) if isinstance(location, (tuple, list)) else tuple(key.split(".", 1))


def _read(state: dict[str, Any], path: str, weights_only: bool | None, single_process: bool) -> None:
    """DCP-load ``state`` in place from ``path``; ``single_process`` reads without any collective."""
    reader: FileSystemReader = _SafeReader(path) if weights_only is not False else FileSystemReader(path)
    planner = _SafeLoadPlanner() if weights_only is not False else DefaultLoadPlanner()
    try:
        with warnings.catch_warnings():
            # reading in one process is what `single_process` asks for, not a surprise to warn about
            warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
            dcp.load(state, storage_reader=reader, planner=planner, no_dist=single_process)
    except CheckpointException as error:
        causes = _causes(error)
        for cause in causes:
            if isinstance(cause, pickle.UnpicklingError):
                raise pickle.UnpicklingError(f"Sharded checkpoint {path}: {cause}") from cause
        raise CheckpointLoadError(_damaged(path, causes[0])) from error
    except (OSError, RuntimeError, ValueError, KeyError, EOFError) as error:
        if isinstance(error, pickle.UnpicklingError):
            raise
        raise CheckpointLoadError(_damaged(path, error)) from error


def _causes(error: CheckpointException) -> list[BaseException]:
    """The exceptions that DCP collected from the ranks (at least one)."""
    causes = [failure[0] if isinstance(failure, tuple) else failure for failure in error.failures.values()]
    causes = [cause for cause in causes if isinstance(cause, BaseException)]
    return causes or [RuntimeError(str(error))]


def _damaged(path: str, cause: Any) -> str:
    return (
        f"Sharded checkpoint {path} cannot be read ({type(cause).__name__}: {cause}): a shard or its index is missing"
        " or damaged, e.g. the folder was copied incompletely or the model no longer matches it. Load another"
        " checkpoint (the previous top-k folder or `last.ckpt`), or save it again."
    )


def _read_index(path: str, weights_only: bool | None) -> Any:
    reader = _SafeReader(path) if weights_only is not False else FileSystemReader(path)
    try:
        return reader.read_metadata()
    except pickle.UnpicklingError:
        raise
    except (OSError, EOFError, ValueError, AttributeError) as error:
        raise CheckpointLoadError(_damaged(path, error)) from error


# ---- safe reading ----------------------------------------------------------------------------
_INDEX_MODULES = ("torch.distributed.checkpoint.metadata",)
_INDEX_GLOBALS = {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch.serialization", "_get_layout"),
    ("torch", "Size"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    *(
        (module, name)
        for module in ("pathlib", "pathlib._local")
        for name in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath")
    ),
}


class _IndexUnpickler(pickle.Unpickler):
    """Unpickles DCP's ``.metadata``: its own record types, torch dtypes and sizes, paths; nothing else."""

    def __init__(self, file: Any, folder: str) -> None:
        super().__init__(file)
        self.folder = folder

    def find_class(self, module: str, name: str) -> Any:
        if (
            (module, name) in _INDEX_GLOBALS
            or self._is_index_record(module, name)
            or self._is_torch_constant(module, name)
        ):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"The index (.metadata) of sharded checkpoint {self.folder} needs `{module}.{name}`, which safe loading"
            " refuses to import. If you trust the checkpoint's source, load it with `weights_only=False`."
        )

    @staticmethod
    def _is_index_record(module: str, name: str) -> bool:
        if module not in _INDEX_MODULES:
            return False
        import importlib

        found = getattr(importlib.import_module(module), name, None)
        return isinstance(found, type) and found.__module__ == module

    @staticmethod
    def _is_torch_constant(module: str, name: str) -> bool:
        found = getattr(torch, name, None) if module == "torch" else None
        return isinstance(found, (torch.dtype, torch.layout, torch.memory_format))


class _SafeReader(FileSystemReader):
    """DCP's file reader, whose index must unpickle with :class:`_IndexUnpickler` first."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
        rank = kwargs.get("rank")
        name = ".metadata" if rank is None else f"__{rank}.metadata"
        with open(os.path.join(os.fspath(self.path), name), "rb") as file:
            _IndexUnpickler(file, os.fspath(self.path)).load()
        return super().read_metadata(*args, **kwargs)


class _SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's load planner, except that a non-tensor entry must pass ``torch.load(weights_only=True)``."""

    def load_bytes(self, read_item: Any, value: Any) -> None:
        try:
            torch.load(value, weights_only=True)
        except pickle.UnpicklingError as error:
            raise pickle.UnpicklingError(
                f"The entry `{read_item.dest_index.fqn}` needs an object that safe loading"
                " (`weights_only=True`) refuses to import. If you trust the checkpoint's source, load it with"
                " `weights_only=False`."
            ) from error
        value.seek(0)
        super().load_bytes(read_item, value)  # safe now: the same bytes loaded under weights_only=True


__all__ = ["MODEL_KEY", "ShardedOptimizerState", "load", "optimizer_key", "save", "save_folder"]
