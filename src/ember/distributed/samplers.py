"""Samplers that share a loader's samples among the ranks of a job (Lightning's names).

* ``DistributedSamplerWrapper``: a loader's own sampler (``WeightedRandomSampler``, a curriculum, ...)
  drawn on every rank, each rank taking every ``world_size``-th index of it, so the custom order or
  weighting is kept in distributed training.
* ``UnrepeatedDistributedSampler`` / ``UnrepeatedDistributedSamplerWrapper``: for ``predict``, every
  sample exactly once; the last ranks get one sample fewer instead of a repeated one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


class _SamplerAsDataset(Dataset):
    """The indices a sampler draws, as a dataset: item ``i`` is the ``i``-th index of the last draw."""

    def __init__(self, sampler: Sampler | Iterable) -> None:
        if not isinstance(sampler, Sized) or len(sampler) == float("inf"):
            raise TypeError(
                f"The loader's sampler `{type(sampler).__name__}` has no finite length (`__len__`), so it cannot be"
                " shared among the ranks of a distributed run. Give it a `__len__`, or share the samples yourself"
                " (a `DistributedSampler` in the loader, or `Trainer(use_distributed_sampler=False)`)."
            )
        self.sampler = sampler
        self._drawn: list[Any] | None = None

    def __getitem__(self, index: int) -> Any:
        if self._drawn is None:
            self._drawn = list(self.sampler)
        return self._drawn[index]

    def __len__(self) -> int:
        return len(self.sampler)

    def draw(self) -> None:
        """Draw the sampler's indices anew (each epoch)."""
        self._drawn = list(self.sampler)


def _drawn_at(drawn: Any, positions: Iterator) -> Iterator:
    """What a new draw of the wrapped sampler holds at this rank's ``positions``."""
    drawn.draw()
    return (drawn[position] for position in positions)


class DistributedSamplerWrapper(DistributedSampler):
    """This rank's share of what ``sampler`` draws: every ``num_replicas``-th index from ``rank``, padded as
    ``DistributedSampler`` pads so that every rank runs as many batches.

    Example::

        sampler = DistributedSamplerWrapper(WeightedRandomSampler(weights, 1000), num_replicas=2, rank=0)
    """

    def __init__(self, sampler: Sampler | Iterable, *args: Any, **kwargs: Any) -> None:
        super().__init__(_SamplerAsDataset(sampler), *args, **kwargs)

    def __iter__(self) -> Iterator:
        return _drawn_at(self.dataset, super().__iter__())

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        sampler = self.dataset.sampler  # type: ignore[attr-defined]
        if callable(getattr(sampler, "set_epoch", None)):
            sampler.set_epoch(epoch)


class UnrepeatedDistributedSampler(DistributedSampler):
    """Every sample once across the ranks: rank ``r`` takes samples ``r, r + n, r + 2n, ...``, so the last
    ranks may run one batch fewer. Right for ``predict``; not for training, where every rank must take part
    in every gradient sync.

    Example::

        sampler = UnrepeatedDistributedSampler(dataset, num_replicas=2, rank=1)  # samples 1, 3, 5, ...
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.dataset, Sized):
            raise TypeError("`UnrepeatedDistributedSampler` needs a dataset with a length (`__len__`).")
        self.total_size = len(self.dataset)
        self.num_samples = len(range(self.rank, self.total_size, self.num_replicas))

    def __iter__(self) -> Iterator:
        if self.shuffle:  # the same permutation on every rank for a given epoch
            generator = torch.Generator()
            generator.manual_seed(self.epoch)
            order = torch.randperm(self.total_size, generator=generator).tolist()
        else:
            order = list(range(self.total_size))
        return iter(order[self.rank : self.total_size : self.num_replicas])


class UnrepeatedDistributedSamplerWrapper(UnrepeatedDistributedSampler):
    """``UnrepeatedDistributedSampler`` over what ``sampler`` draws (the loader's own order)."""

    def __init__(self, sampler: Sampler | Iterable, *args: Any, **kwargs: Any) -> None:
        super().__init__(_SamplerAsDataset(sampler), *args, **kwargs)

    def __iter__(self) -> Iterator:
        return _drawn_at(self.dataset, super().__iter__())
