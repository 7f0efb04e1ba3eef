"""Dataloaders: counting them, limiting them, samplers for distributed runs, and resumable order."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

from ember.utilities.combined_loader import CombinedLoader, _is_stateful
from ember.utilities.data import sized_len, suggested_max_num_workers
from ember.utilities.dataloader_remake import rebuild_dataloader
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn
from ember.utilities.seed import collect_rng_states, isolate_rng, set_rng_states
from ember.utilities.warnings import PossibleUserWarning

if TYPE_CHECKING:
    from ember.trainer.run import Run
    from ember.trainer.trainer import Trainer


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
            f"When using an `IterableDataset`, `Trainer(limit_{name}_batches)` must be `1.0` or an int. An int"
            f" specifies `num_{name}_batches` to use."
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


def check_loader(loader: Any, fn: str, returned_from: str | None, defined: bool = True, key: str = "") -> None:
    """A TypeError naming where an object that is not an iterable of batches came from.

    ``fn`` is the trainer function (``"fit"``, ``"validate"``...); ``returned_from`` names the hook that
    returned it (``"MyModel.train_dataloader"``), or None when it was passed to ``fn``; ``defined`` is
    False when nothing was passed and no hook defines the data; ``key`` is the loop's kind of data
    (``"train"``, ``"val"``...), which in ``fit`` says which argument it was.
    """
    if isinstance(loader, DataLoader):
        return  # always iterable; an iterator would start its workers
    try:
        # as Lightning, the check makes an iterator of anything else: a loader that shuffles in `__iter__`
        # draws its random numbers there, and the runs that follow draw the same as on Lightning
        iter(loader)
        return
    except TypeError:
        pass
    if returned_from is not None:
        raise TypeError(f"An invalid dataloader was returned from `{returned_from}()`. Found {loader}.")
    # (in `fit`, the argument it was passed as: Lightning names `train_dataloaders` for validation data too)
    prefix = ("val_" if key == "val" else "train_") if fn == "fit" else ""
    message = f"An invalid dataloader was passed to `Trainer.{fn}({prefix}dataloaders=...)`. Found {loader}."
    if not defined:
        name = "train_dataloader" if fn == "fit" else f"{_EVAL_KEYS[fn]}_dataloader"
        message += (
            f" Either pass the dataloader to the `.{fn}()` method OR implement `def {name}(self):` in your"
            " LightningModule/LightningDataModule."
        )
    raise TypeError(message)


_EVAL_KEYS = {"validate": "val", "test": "test", "predict": "predict"}


def _torchdata(sampler: Any, name: str) -> bool:
    """torchdata's stateful stand-in for torch's sampler ``name``, which ``StatefulDataLoader`` makes for
    itself (``shuffle=True`` gives its ``RandomSampler``): the same order, with a position to save."""
    cls = type(sampler)
    return cls.__name__ == name and cls.__module__.startswith("torchdata.")


def _random(sampler: Any) -> bool:
    return isinstance(sampler, RandomSampler) or _torchdata(sampler, "RandomSampler")


def shuffles(loader: Any) -> bool:
    """Whether ``loader`` draws its map-style dataset in a random order (its sampler, or its batch sampler's)."""
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return False
    batch_sampler = loader.batch_sampler
    sampler = getattr(batch_sampler, "sampler", batch_sampler) if batch_sampler is not None else loader.sampler
    return _random(sampler)


def check_workers(loader: Any, name: str, num_devices: int, reloads: bool) -> None:
    """Lightning's hints on a loader's workers: spawned workers without persistence start again each epoch;
    fewer than two workers where this machine's CPUs allow more (``suggested_max_num_workers``); and
    ``pin_memory`` with ``persistent_workers`` while the loaders are reloaded (``reloads``), which torch
    does not handle well."""
    if not isinstance(loader, DataLoader):
        return
    upper_bound = suggested_max_num_workers(num_devices)
    context = loader.multiprocessing_context
    method = context.get_start_method() if context is not None else multiprocessing.get_start_method()
    if loader.num_workers > 0 and method == "spawn" and not loader.persistent_workers:
        rank_zero_warn(
            f"Consider setting `persistent_workers=True` in '{name}' to speed up the dataloader worker initialization."
        )
    elif loader.num_workers < 2 and upper_bound > 1:
        rank_zero_warn(
            f"The '{name}' does not have many workers which may be a bottleneck. Consider increasing the value of the"
            f" `num_workers` argument` to `num_workers={upper_bound}` in the `DataLoader` to improve performance.",
            category=PossibleUserWarning,
        )
    if loader.persistent_workers and loader.pin_memory and reloads:
        rank_zero_warn(
            "The combination of `DataLoader(`pin_memory=True`, `persistent_workers=True`) and `Trainer("
            "reload_dataloaders_every_n_epochs > 0)` can lead to instability due to limitations in PyTorch"
            " (https://github.com/pytorch/pytorch/issues/91252). We recommend setting `pin_memory=False` in this case.",
            category=PossibleUserWarning,
        )


def prepare_loader(
    loader: Any,
    *,
    shuffle: bool,
    distributed: Any | None,
    overfit: str,
    seed_workers: bool,
    predicting: bool = False,
    seed: int | None = None,
) -> Any:
    """Inject a DistributedSampler (or a sequential one for ``overfit_batches``) and worker seeding.

    ``overfit`` names the loader's kind (``"train"``, ``"val"``) when ``overfit_batches`` applies to it, else is empty.
    ``predicting``: a loader that drops its last, smaller batch keeps it, so that every sample gets its
    prediction (as in Lightning). ``seed``: the DistributedSampler's seed (default ``PL_GLOBAL_SEED``).
    """
    if not isinstance(loader, DataLoader):
        return loader
    if isinstance(loader.dataset, IterableDataset):
        return _seed_workers(loader, seed_workers, distributed)  # it draws its own order: overfitting changes nothing
    custom, sampler = _drawing_sampler(loader)
    # a prediction keeps the last, smaller batch; as Lightning, it draws a custom batch sampler in the dataset's order
    changed = predicting and (custom is not None or loader.drop_last)
    if predicting and custom is not None:
        sampler = SequentialSampler(loader.dataset)  # type: ignore[arg-type]  # a map-style dataset has a length
    if overfit and sampler is not None and not isinstance(sampler, SequentialSampler):  # any other order
        sampler = SequentialSampler(loader.dataset)  # type: ignore[arg-type]  # a map-style dataset has a length
        changed = True
    if distributed is not None and not isinstance(sampler, DistributedSampler):
        shuffled = shuffle and not overfit and shuffles(loader)
        sampler = _distributed_sampler(loader, sampler, distributed, shuffled, predicting, seed)
        changed = True
    if changed:
        loader = rebuild_dataloader(loader, sampler, drop_last=False if predicting else None)
    return _seed_workers(loader, seed_workers, distributed)


def warn_if_overfit_reorders(loaders: list[Any], kind: str) -> None:
    """Lightning's warning that ``overfit_batches`` turns the shuffling of the ``kind`` loaders off: once for all
    of them, when one draws in another order than the dataset's (an iterable dataset draws its own: Lightning
    warns for it too, though nothing changes)."""
    if any(_not_sequential(loader) for loader in loaders):
        rank_zero_warn(
            f"You requested to overfit but enabled {kind} dataloader shuffling. We are turning off the {kind}"
            " dataloader shuffling for you."
        )


def _not_sequential(loader: Any) -> bool:
    if not isinstance(loader, DataLoader):
        return False
    if isinstance(loader.dataset, IterableDataset):
        return True
    sampler = _drawing_sampler(loader)[1]
    return sampler is not None and not isinstance(sampler, SequentialSampler)


def _drawing_sampler(loader: DataLoader) -> tuple[Any, Any]:
    """``(custom batch sampler or None, the sampler the indices come from)``: a loader built with
    ``batch_sampler=`` draws them from that batch sampler's sampler."""
    custom = loader.batch_sampler if loader.batch_size is None else None
    return custom, getattr(custom, "sampler", None) if custom is not None else loader.sampler


def _seed_workers(loader: DataLoader, seed_workers: bool, distributed: Any | None) -> DataLoader:
    """With ``seed_everything(workers=True)``, every DataLoader gets Lightning's ``worker_init_fn`` unless it
    has one (an iterable dataset's too; with no workers it is never called)."""
    if seed_workers and loader.worker_init_fn is None:
        from functools import partial

        from ember.utilities.seed import pl_worker_init_function

        loader.worker_init_fn = partial(pl_worker_init_function, rank=distributed.global_rank if distributed else 0)
    return loader


def _distributed_sampler(
    loader: DataLoader, sampler: Any, distributed: Any, shuffled: bool, predicting: bool, seed: int | None
) -> DistributedSampler:
    """This rank's share of the indices ``sampler`` draws (the loader's, or its batch sampler's), as Lightning
    chooses it: ``predict`` takes every sample once (the last ranks get one fewer); a custom sampler is drawn
    on every rank and sharded, keeping its order or weighting; the dataset's own order is shuffled when the
    loader shuffled (``shuffled``)."""
    from ember.distributed.samplers import DistributedSamplerWrapper, UnrepeatedDistributedSamplerWrapper

    options = {
        **distributed.distributed_sampler_kwargs,  # the data-parallel share (model parallel: per replica)
        "seed": int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else seed,
    }
    if sampler is None:  # a batch sampler that draws its indices itself
        sampler = SequentialSampler(loader.dataset)  # type: ignore[arg-type]  # map-style: sized
    if predicting:
        return UnrepeatedDistributedSamplerWrapper(sampler, shuffle=False, **options)
    if not (_random(sampler) or isinstance(sampler, SequentialSampler)):
        return DistributedSamplerWrapper(sampler, shuffle=False, **options)
    return DistributedSampler(loader.dataset, shuffle=shuffled, **options)


def set_sampler_epoch(loader: Any, epoch: int) -> None:
    """Call ``set_epoch`` on the loader's sampler and its batch sampler's sampler (once each) so that
    each epoch shuffles differently in DDP, as Lightning does. A ``CombinedLoader`` (or its batches in
    an evaluation loop) passes it on to each of its loaders."""
    if isinstance(loader, CombinedBatches):
        loader = loader.combined
    for one in _flat(loader):
        samplers = {}
        for sampler in (getattr(one, "sampler", None), getattr(getattr(one, "batch_sampler", None), "sampler", None)):
            if sampler is not None:
                samplers[id(sampler)] = sampler  # by id: a sampler may be unhashable
        for sampler in samplers.values():
            set_epoch = getattr(sampler, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)


def _flat(loader: Any) -> list[Any]:
    """The training loaders: those a ``CombinedLoader`` holds, or the one loader."""
    return list(loader.flattened) if isinstance(loader, CombinedLoader) else [loader]


def _loader_generators(loader: Any) -> list[torch.Generator]:
    """The ``torch.Generator`` objects the training loaders draw their orders and base seeds from, when
    they have their own (``DataLoader(generator=...)``, a sampler's ``generator``), once each, in order."""
    found: dict[int, torch.Generator] = {}
    for one in loader.flattened if isinstance(loader, CombinedLoader) else (loader,):
        sampler = getattr(one, "sampler", None)
        inner = getattr(getattr(one, "batch_sampler", None), "sampler", None)
        for owner in (one, sampler, inner):
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator):
                found.setdefault(id(generator), generator)
    return list(found.values())


def data_rng_states(run: Run) -> dict[str, Any]:
    """Every global RNG state, and the states of the generators the training loaders own: what the data
    order of an epoch is drawn from, so that a resumed run draws the same."""
    states = collect_rng_states()
    loader = run.train_combined_loader
    if loader is not None:
        generators = _loader_generators(loader)
        if generators:
            states["generators"] = [generator.get_state() for generator in generators]
    return states


def set_data_rng_states(run: Run, states: dict[str, Any]) -> None:
    """Restore states from :func:`data_rng_states` (loaders' generators only where they are the same loaders)."""
    set_rng_states(states)
    saved = states.get("generators")
    loader = run.train_combined_loader
    if saved and loader is not None:
        generators = _loader_generators(loader)
        if len(generators) == len(saved):
            for generator, state in zip(generators, saved):
                generator.set_state(state)


def warn_if_workers_persist(run: Run, epoch: int) -> None:
    """A resume after the first epoch with ``persistent_workers=True``: the uninterrupted run's worker processes
    went on drawing from the random streams they started with, which a resumed run cannot take up (they live in
    those processes): say which draws differ, and how to make them exact."""
    if not any(
        getattr(one, "persistent_workers", False) and getattr(one, "num_workers", 0) > 0
        for one in _flat(run.train_combined_loader)
    ):
        return
    rank_zero_warn(
        f"Resuming at epoch {epoch} with a training DataLoader of `persistent_workers=True`: the uninterrupted run's"
        " worker processes have run since its first epoch, and what they drew from the random number generators"
        " (random transforms in `Dataset.__getitem__`) went on from there; this run starts new workers, so those"
        " draws differ from the uninterrupted run's (the data order and the draws of this process do not). For a"
        " bit-exact resume, draw them from a `torch.Generator` seeded from the sample's index and the epoch, or"
        " set `persistent_workers=False`.",
        category=PossibleUserWarning,
    )


def loads_in_process(run: Run) -> bool:
    """Whether a training loader reads its samples in this process (no worker processes), drawing from this
    process's RNG as it reads."""
    return any(getattr(one, "num_workers", 0) == 0 for one in _flat(run.train_combined_loader))


class ReadAheadRng:
    """Notes in ``run.held_rng`` the RNG states just before training data of unknown length, read in this
    process, reads a batch ahead: the batch a checkpoint written before the next step finds held, not yet
    trained on. A resumed run reads that batch from those states (:func:`read_held_batch`), as the
    interrupted run read it before the steps that followed, so its samples' random draws (augmentation noise,
    an iterable dataset's shuffle, a loader starting again) are the same.

    The torch RNG and the loaders' own generators are noted at every read (about a microsecond); python's and
    numpy's, whose states take some 50 µs to copy, only where the epoch's first read ahead drew from them.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.generators = _loader_generators(run.train_combined_loader)
        self.every_rng: bool | None = None  # python's and numpy's too; None till the first read shows it

    def note(self) -> None:
        """Before a read ahead."""
        if self.every_rng is False:
            held: dict[str, Any] = {"torch": torch.get_rng_state()}
            if self.generators:
                held["generators"] = [generator.get_state() for generator in self.generators]
            self.run.held_rng = held
        else:
            self.run.held_rng = data_rng_states(self.run)

    def seen(self) -> None:
        """After a read ahead: on the first, whether it drew from python's or numpy's RNG."""
        if self.every_rng is None:
            before, after = self.run.held_rng, collect_rng_states(include_cuda=False)
            self.every_rng = before is not None and _python_or_numpy_moved(before, after)


def _python_or_numpy_moved(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether python's or numpy's RNG state differs between two ``collect_rng_states``."""

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
        if isinstance(a, tuple) and isinstance(b, tuple):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return bool(a == b)

    return not all(same(before.get(name), after.get(name)) for name in ("python", "numpy"))


def read_held_batch(run: Run, iterator: Iterator[Any], held_rng: dict[str, Any] | None) -> Iterator[Any]:
    """``iterator`` with the batch the interrupted run held read now, as that run read it: from the RNG states it
    was read with (``held_rng``; the others as the checkpoint left them) and the states noted when a loader
    started again for it. The RNG is as before afterwards: the checkpoint's states came after that read."""
    states = None if held_rng is None else {**data_rng_states(run), **held_rng}
    replay = iterator.replaying_restarts() if isinstance(iterator, CombinedTrainBatches) else contextlib.nullcontext()
    with isolate_rng(), replay:
        if states is not None:
            set_data_rng_states(run, states)
        return read_first_batch(run, iterator)


def skip_one(iterator: Iterator[Any]) -> Any:
    """Advance ``iterator`` by one batch; a DataLoader loading a map-style dataset in this process only
    draws the batch's indices, without reading the samples."""
    from torch.utils.data.dataloader import _DatasetKind, _SingleProcessDataLoaderIter

    if isinstance(iterator, _SingleProcessDataLoaderIter) and iterator._dataset_kind == _DatasetKind.Map:
        next(iterator._sampler_iter)
        iterator._num_yielded += 1
        return None
    return next(iterator)  # worker processes, an iterable dataset or any other iterable: read the batch


_RESTARTS = "restarts"  # the key in ``run.epoch_rng`` of the RNG states before loaders started again


class CombinedTrainBatches(Iterator[Any]):
    """The training batches of a ``CombinedLoader``, without its indices (the loop counts batches itself).

    When a loader starts again in the middle of the epoch (a shorter one in ``max_size_cycle``), a
    shuffling sampler draws a new order from the global RNG as it is at that moment. So that a
    resumed run can draw the same order, the RNG states just before are kept in ``run.epoch_rng``
    (the latest start of each loader; a checkpoint holds them), and :meth:`skip` restores them.

    When the epoch lets go of this iterator, the loaders' iterators (and their worker processes)
    go with it, as a single loader's iterator does.
    """

    def __init__(self, combined: CombinedLoader, run: Run) -> None:
        self._combined = iter(combined)
        modes = combined._iterator
        assert modes is not None, "iter() created it"
        self._restarts = _Restarts(run)
        modes._before_reopen = self._restarts  # holds no reference back to this iterator
        self._modes = modes

    def __next__(self) -> Any:
        return next(self._combined)[0]

    def skip(self, count: int) -> None:
        """Advance past ``count`` batches, reading as few samples as possible, the loaders' orders as before.

        The first batch is read in full: each loader's sampler draws its order when it is first asked
        for indices, after the loaders before it read their samples (which may draw random numbers).
        """
        modes = self._modes
        with self.replaying_restarts():
            try:
                for done in range(count):
                    next(modes)
                    if done == 0:
                        modes._pull = skip_one
            finally:
                modes._pull = next

    @contextlib.contextmanager
    def replaying_restarts(self) -> Iterator[None]:
        """While resuming: a loader that starts again draws from the states the checkpoint noted for that start."""
        self._restarts.replay_from_checkpoint()
        try:
            yield
        finally:
            self._restarts.replay = None

    def release(self) -> None:
        """Drop the loaders' iterators (their workers stop); the CombinedLoader keeps its length."""
        self._modes.reset()

    def __del__(self) -> None:
        self.release()


class _Restarts:
    """Called before a loader of a ``CombinedLoader`` starts again mid-epoch: records the RNG states
    in ``run.epoch_rng``, or, while skipping batches on resume, restores the recorded ones."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.replay: dict[int, Any] | None = None

    def replay_from_checkpoint(self) -> None:
        epoch_rng = self.run.epoch_rng
        self.replay = dict(epoch_rng.get(_RESTARTS, {})) if isinstance(epoch_rng, dict) else {}

    def __call__(self, position: int, index: int) -> None:
        if self.replay is not None:
            saved = self.replay.get(index)
            if saved is not None and saved[0] == position:
                set_data_rng_states(self.run, saved[1])
            return
        epoch_rng = self.run.epoch_rng
        if epoch_rng is None:
            return  # an inexact resume: nothing to record against
        restarts = {**epoch_rng.get(_RESTARTS, {}), index: [position, data_rng_states(self.run)]}
        # a new dict each time: a checkpoint written earlier keeps the states it was given
        self.run.epoch_rng = {**epoch_rng, _RESTARTS: restarts}


# ---- the first epoch's iterator -------------------------------------------------------------
_END = object()  # what `next(iterator, _END)` returns once the data is exhausted


def train_iterator(run: Run) -> Iterator[Any]:
    """A new iterator over the training batches: the loader's own, or the combined batches of several."""
    if run.train_combined is None:
        return iter(run.train_dataloader)
    return CombinedTrainBatches(run.train_combined, run)


@contextlib.contextmanager
def drawing_from(states: Any) -> Iterator[None]:
    """The body draws from the RNG ``states`` (None: from the RNG as it is); the RNG is as before afterwards."""
    if states is None:
        yield
        return
    with isolate_rng():
        set_rng_states(states)
        yield


def make_first_train_iterator(trainer: Trainer, run: Run, sweep_rng: Any = None) -> None:
    """The iterator of a fit's first epoch, made where Lightning makes it: when the fit loop sets its data up, or
    earlier, when ``configure_optimizers`` reads ``trainer.estimated_stepping_batches`` (which loads the data).
    Each DataLoader iterator draws its base seed from the RNG, so the hooks after it draw what they draw there."""
    run.epoch_rng = sweep_rng or data_rng_states(run)
    # after a learning-rate sweep the draws come from the states it left; the run goes on from its own
    with drawing_from(sweep_rng):
        run.train_iterator = train_iterator(run)
        if reads_ahead(trainer, run):
            # as Lightning, which reads a loader of unknown length one batch ahead as soon as it has made
            # the iterator: the first batch is read before `on_train_start`, whatever those hooks do
            run.train_iterator = read_first_batch(run, run.train_iterator)


def make_unused_iterator(trainer: Trainer, run: Run) -> None:
    """An iterator over the training data that Lightning makes and never trains from, made and dropped for what
    it draws from the RNG: a DataLoader iterator's base seed, and for data read one batch ahead, what reading its
    first batch draws in this process (a shuffle made as the data starts, random transforms)."""
    unused = train_iterator(run)
    if reads_ahead(trainer, run):
        next(unused, None)


def reads_ahead(trainer: Trainer, run: Run) -> bool:
    """Whether the epoch reads its data one batch ahead: data of unknown length, batches handed to the step."""
    return run.num_training_batches == float("inf") and not takes_dataloader_iter(
        trainer.lightning_module, "training_step"
    )


def read_first_batch(run: Run, iterator: Iterator[Any]) -> Iterator[Any]:
    """``iterator`` with its first batch read now (the loader's position before it held for checkpoints)."""
    loader = stateful_single_loader(run)
    if loader is not None:
        run.held_loader_state = loader.state_dict()
    first = next(iterator, _END)
    # data that ran out at once is done, as for Lightning, which does not read it again (an iterator of several
    # loaders cycling the shorter ones would start them again, and draw what they draw as they start)
    return iter(()) if first is _END else itertools.chain((first,), iterator)


def stateful_single_loader(run: Run) -> Any:
    """The training loader when it is the only one and saves its position (``state_dict``), else None."""
    loader = run.train_dataloader
    return loader if run.train_combined is None and _is_stateful(loader) else None


class CombinedBatches:
    """A ``CombinedLoader`` in a mode other than ``sequential``, evaluated as one dataloader of combined batches."""

    def __init__(self, combined: CombinedLoader) -> None:
        self.combined = combined

    def __iter__(self) -> Iterator[Any]:
        for batch, _, _ in self.combined:
            yield batch


class DataLoaderIter(Iterator[tuple[Any, int, int]]):
    """What a step written as ``training_step(self, dataloader_iter)`` receives, Lightning's flavour in which
    the step draws its own batches: ``next(dataloader_iter)`` gives ``(batch, batch_idx, dataloader_idx)``.

    The loop calls the step until the batches run out (``done``) or the step raises ``StopIteration``.
    ``batch``, ``batch_idx`` and ``dataloader_idx`` are the last ones drawn: the batch hooks receive them.
    Batches are not moved to the device: the step moves what it draws.
    """

    def __init__(self, batches: Iterator[tuple[Any, int, int]], length: int | float) -> None:
        self._batches = batches
        self.length = length
        self.fetched = 0
        self.done = length == 0
        self.batch: Any = None
        self.batch_idx = 0
        self.dataloader_idx = 0

    def __next__(self) -> tuple[Any, int, int]:
        if self.done:
            raise StopIteration
        try:
            item = next(self._batches)
        except StopIteration:
            self.done = True
            raise
        self.fetched += 1
        self.done = self.fetched >= self.length
        self.batch, self.batch_idx, self.dataloader_idx = item
        return item


def takes_dataloader_iter(module: Any, step_name: str) -> bool:
    """Whether ``module.<step_name>`` names a ``dataloader_iter`` parameter (the step draws its own batches)."""
    from ember.utilities.signature_utils import is_param_in_hook_signature

    step = getattr(module, step_name, None)
    return step is not None and is_param_in_hook_signature(step, "dataloader_iter", explicit=True)


class ReadAhead:
    """Batches read one ahead, as Lightning's evaluation and prediction loops read them when their number is
    unknown (a dataloader without a length that no limit bounds): the first is read as this is made (before the
    loop's start hooks), each next one before the step of the batch before it, the next dataloader's first
    before the step of the last batch of the one before. ``batches`` gives ``(batch, batch_idx,
    dataloader_idx)`` of every dataloader in turn; ``done`` says whether the batch handed out last was the last.

    Example::

        data = ReadAhead(every_dataloaders_batches)
        for batch in data.batches(0):
            ...  # data.done: this batch is the last
    """

    def __init__(self, batches: Iterator[tuple[Any, int, int]]) -> None:
        self._batches = batches
        self._held = next(batches, None)

    @property
    def done(self) -> bool:
        return self._held is None

    def batches(self, dataloader_idx: int) -> Iterator[Any]:
        """The batches of dataloader ``dataloader_idx``, each handed out once the one after it is read."""
        while self._held is not None and self._held[2] == dataloader_idx:
            batch = self._held[0]
            self._held = next(self._batches, None)
            yield batch
