"""Dataloaders: counting them, limiting them, samplers for distributed runs, and resumable order."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from torch.utils.data import BatchSampler, DataLoader, IterableDataset, RandomSampler, SequentialSampler

from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn


def sized_len(loader: Any) -> int | None:
    """``len(loader)``, or None when the loader has no length (an ``IterableDataset``, a generator)."""
    try:
        return len(loader)
    except (TypeError, NotImplementedError):
        return None


def limit_batches(loader: Any, limit: int | float, name: str, length: int | None = None) -> int | float:
    """How many batches of ``loader`` to use for a ``limit_*_batches`` value (int count or fraction).

    ``length`` is ``len(loader)`` when the caller knows it already; a loader without a length counts as
    infinite. An empty loader gives 0 whatever the limit.
    """
    if length is None:
        length = sized_len(loader)
    if length == 0:
        return 0
    total: int | float = float("inf") if length is None else length
    if isinstance(limit, int):
        return min(total, limit)
    if total == float("inf"):
        if limit == 1.0:
            return total
        raise MisconfigurationException(
            f"When using an `IterableDataset` for `{name}`, `Trainer(limit_{name}_batches)` must be `1.0` or an int:"
            " an int sets the number of batches to use."
        )
    batches = int(total * limit)
    if limit > 0 and batches == 0:
        min_fraction = 1.0 / total
        raise MisconfigurationException(
            f"You requested to check {limit} of the `{name}_dataloader` but {limit} * {total} < 1."
            f" Please increase the `limit_{name}_batches` argument. Try at least"
            f" `limit_{name}_batches={min_fraction}`"
        )
    return batches


def as_loader_list(loaders: Any) -> list[Any]:
    """Evaluation loops accept one loader, a list/tuple, or a dict of them."""
    if loaders is None:
        return []
    if isinstance(loaders, Mapping):
        return list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        return list(loaders)
    return [loaders]


def check_loader(loader: Any, name: str) -> None:
    if not isinstance(loader, Iterable) and not hasattr(loader, "__iter__"):
        raise TypeError(
            f"An invalid dataloader was passed to `Trainer.{name}`: found {loader!r}. Pass a"
            " `torch.utils.data.DataLoader` or any iterable of batches."
        )


def _sampler_of(loader: DataLoader) -> Any:
    batch_sampler = loader.batch_sampler
    if batch_sampler is not None and type(batch_sampler) is not BatchSampler:
        return batch_sampler
    return loader.sampler


def rebuild_dataloader(loader: DataLoader, sampler: Any) -> DataLoader:
    """A copy of ``loader`` drawing from ``sampler`` instead (for distributed and overfit runs)."""
    kwargs: dict[str, Any] = {
        "batch_size": loader.batch_size,
        "drop_last": loader.drop_last,
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": loader.generator,
        "prefetch_factor": loader.prefetch_factor,
        "persistent_workers": loader.persistent_workers,
    }
    if loader.batch_size is None:
        # a custom batch sampler: keep it, replacing its sampler where it has one
        batch_sampler: Any = loader.batch_sampler
        if hasattr(batch_sampler, "sampler"):
            batch_sampler.sampler = sampler
        kwargs.pop("batch_size")
        kwargs.pop("drop_last")
        kwargs["batch_sampler"] = batch_sampler
    else:
        kwargs["sampler"] = sampler
    if loader.num_workers == 0:
        kwargs.pop("prefetch_factor")
        kwargs["persistent_workers"] = False
    new = type(loader).__new__(type(loader))
    try:
        DataLoader.__init__(new, loader.dataset, **kwargs)
    except TypeError:
        new = DataLoader(loader.dataset, **kwargs)
    return new


def prepare_loader(loader: Any, *, shuffle: bool, distributed: Any | None, overfit: bool, seed_workers: bool) -> Any:
    """Inject a DistributedSampler (or a sequential one for ``overfit_batches``) and worker seeding."""
    if not isinstance(loader, DataLoader):
        return loader
    if isinstance(loader.dataset, IterableDataset):
        return loader
    changed = False
    sampler = _sampler_of(loader)
    if overfit and isinstance(loader.sampler, RandomSampler):
        rank_zero_warn(
            "You requested to overfit but enabled train dataloader shuffling. We are turning off the train"
            " dataloader shuffling for you."
        )
        sampler = SequentialSampler(loader.dataset)  # type: ignore[arg-type]  # a map-style dataset has a length
        changed = True
    if distributed is not None:
        from torch.utils.data.distributed import DistributedSampler

        if not isinstance(sampler, DistributedSampler):
            sampler = DistributedSampler(
                loader.dataset,
                num_replicas=distributed.world_size,
                rank=distributed.global_rank,
                shuffle=shuffle and not overfit and isinstance(loader.sampler, RandomSampler),
                seed=int(os.environ.get("PL_GLOBAL_SEED", 0)),
            )
            changed = True
    if changed:
        loader = rebuild_dataloader(loader, sampler)
    if seed_workers and loader.num_workers > 0 and loader.worker_init_fn is None:
        from functools import partial

        from ember.utilities.seed import pl_worker_init_function

        loader.worker_init_fn = partial(pl_worker_init_function, rank=distributed.global_rank if distributed else 0)
    return loader


def set_sampler_epoch(loader: Any, epoch: int) -> None:
    """Call ``set_epoch`` on the loader's sampler(s) so each epoch shuffles differently in DDP."""
    for obj in (
        getattr(loader, "sampler", None),
        getattr(loader, "batch_sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
    ):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
