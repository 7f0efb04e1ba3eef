"""Dataloader helpers under Lightning's names (``lightning.pytorch.utilities.data``)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import IterableDataset

from ember.utilities.apply_func import is_dataclass_instance
from ember.utilities.dataloader_remake import rebuild_dataloader
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import WarningCache, rank_zero_warn

if TYPE_CHECKING:
    from ember.distributed.strategy import Strategy


def suggested_max_num_workers(local_world_size: int) -> int:
    """An upper bound for a ``DataLoader``'s ``num_workers``: this machine's CPUs shared among the
    ``local_world_size`` processes on it (the Trainer's devices), one left to each main process.

    Example::

        DataLoader(dataset, num_workers=suggested_max_num_workers(trainer.num_devices))
    """
    if local_world_size < 1:
        raise ValueError(f"`local_world_size` should be >= 1, got {local_world_size}.")
    return max(1, _num_cpus_available() // local_world_size - 1)


def _num_cpus_available() -> int:
    """The CPUs this process may run on (its affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def sized_len(dataloader: object) -> int | None:
    """``len(dataloader)``, or ``None`` when it has no length (an ``IterableDataset`` without ``__len__``)."""
    try:
        return len(dataloader)  # type: ignore[arg-type]
    except (TypeError, NotImplementedError):
        return None


def has_iterable_dataset(dataloader: object) -> bool:
    """Whether ``dataloader`` reads an ``IterableDataset``."""
    return isinstance(getattr(dataloader, "dataset", None), IterableDataset)


def has_len_all_ranks(
    dataloader: object,
    strategy: Strategy,
    allow_zero_length_dataloader_with_multiple_devices: bool = False,
) -> bool:
    """Whether ``dataloader`` has a length, checked for emptiness on every rank.

    Returns False when it has no ``__len__``. Otherwise the lengths are summed over the ranks (a
    collective: every rank must call this): an empty total warns; an empty loader on this rank
    while others have batches raises, unless ``allow_zero_length_dataloader_with_multiple_devices``
    (then it warns). A sized ``IterableDataset`` warns that worker processes may duplicate data.

    Raises:
        RuntimeError: this rank's dataloader is empty while another rank's is not.

    Example::

        if has_len_all_ranks(loader, trainer.strategy):
            batches = len(loader)
    """
    local_length = sized_len(dataloader)
    if local_length is None:
        return False
    # all ranks: the lengths are summed; host sync: the total decides what to report
    total = strategy.reduce(torch.tensor(local_length, device=strategy.root_device), reduce_op="sum")
    total_length = int(total.item()) if isinstance(total, torch.Tensor) else int(total)
    name = type(dataloader).__name__
    if total_length == 0:
        rank_zero_warn(f"Total length of `{name}` across ranks is zero. Please make sure this was your intention.")
    if total_length > 0 and local_length == 0:
        if not allow_zero_length_dataloader_with_multiple_devices:
            raise RuntimeError(
                f"`{name}` within local rank has zero length. Please make sure that it returns at least 1 batch."
            )
        rank_zero_warn(
            f"Total length of `{name}` across ranks is zero, but local rank has zero length."
            " Please be cautious of uneven batch length."
        )
    warn_if_sized_iterable(dataloader)
    return True


def warn_if_sized_iterable(dataloader: object) -> None:
    """Lightning's warning for an ``IterableDataset`` with ``__len__``: worker processes may make it wrong."""
    if has_iterable_dataset(dataloader):
        rank_zero_warn(
            "Your `IterableDataset` has `__len__` defined. In combination with multi-process data loading (when"
            " num_workers > 1), `__len__` could be inaccurate if each worker is not configured independently to"
            " avoid having duplicate data."
        )


warning_cache = WarningCache()


def extract_batch_size(batch: Any) -> int:
    """The batch size of ``batch``: the length of its first tensor (1 for a scalar), looking through lists,
    tuples, dicts and dataclasses. Warns once when its tensors disagree (the first one found wins).

    Raises:
        MisconfigurationException: the batch holds no tensor; pass ``self.log(..., batch_size=...)``.

    Example::

        >>> extract_batch_size({"x": torch.zeros(8, 3), "y": torch.zeros(8)})
        8
    """
    message = (
        "We could not infer the batch_size from the batch. Either simplify its structure"
        " or provide the batch_size as `self.log(..., batch_size=batch_size)`."
    )
    sizes: list[int | None] = []
    try:
        _batch_sizes(batch, sizes)
    except RecursionError:
        raise RecursionError(message) from None
    batch_size = None
    for size in sizes:  # (None for a leaf that is not a tensor)
        if batch_size is None:
            batch_size = size
        elif batch_size != size:
            warning_cache.warn(
                "Trying to infer the `batch_size` from an ambiguous collection. The batch size we"
                f" found is {batch_size}. To avoid any miscalculations, use `self.log(..., batch_size=batch_size)`."
            )
            break
    if batch_size is None:
        raise MisconfigurationException(message)
    return batch_size


def _batch_sizes(batch: Any, sizes: list[int | None]) -> None:
    """Appends to ``sizes`` the size of each leaf of ``batch``, in order: a tensor's first dimension (1 for a
    scalar), ``None`` for anything else."""
    if isinstance(batch, torch.Tensor):
        sizes.append(1 if batch.ndim == 0 else batch.size(0))
        return
    # (a tuple, list or dict, the usual batches, is known by its type: the abstract classes' `isinstance`
    # checks cost more than the rest, on every step that logs a value for the epoch)
    kind = type(batch)
    if kind is tuple or kind is list:
        items: Iterable[Any] = batch
    elif kind is dict or isinstance(batch, Mapping):
        items = batch.values()
    elif isinstance(batch, Iterable) and not isinstance(batch, str):
        items = batch
    elif is_dataclass_instance(batch):
        items = [getattr(batch, field.name) for field in dataclasses.fields(batch)]
    else:
        sizes.append(None)
        return
    for item in items:
        _batch_sizes(item, sizes)


def _update_dataloader(dataloader: Any, sampler: Any, mode: Any = None) -> Any:
    """``dataloader`` made again to draw from ``sampler`` (Lightning's private helper, which programs use to put
    a sampler of their own into a loader): as the Trainer makes it for a distributed run, through the loader
    class's own ``__init__`` where it can, a batch sampler copied to draw from ``sampler``. ``mode`` the
    prediction stage (``RunningStage.PREDICTING``) keeps the last, smaller batch, as Lightning does there.

    Example::

        loader = _update_dataloader(loader, DistributedSampler(loader.dataset, shuffle=False))
    """
    predicting = mode is not None and str(getattr(mode, "value", mode)) == "predict"
    return rebuild_dataloader(dataloader, sampler, drop_last=False if predicting else None)
