"""Which dataloaders a run uses: requested from the datamodule or module, prepared, and counted."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ember.core.hooks import program_overrides
from ember.trainer.data import (
    CombinedBatches,
    check_loader,
    check_workers,
    limit_batches,
    make_first_train_iterator,
    prepare_loader,
    set_sampler_epoch,
    shuffles,
    warn_if_overfit_reorders,
)
from ember.trainer.states import RunningStage, TrainerFn
from ember.utilities.combined_loader import CombinedLoader, _flatten, _unflatten
from ember.utilities.data import sized_len, warn_if_sized_iterable
from ember.utilities.dataloader_remake import rebuild_dataloader, recording_loader_arguments
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn
from ember.utilities.warnings import PossibleUserWarning

if TYPE_CHECKING:
    from ember.trainer.run import Run
    from ember.trainer.trainer import Trainer


def request(t: Trainer, run: Run, name: str) -> Any:
    """Ask the datamodule, else the module, for ``<name>_dataloader()``."""
    return _requested(t, run, name)[0]


def hook_defined(run: Run, name: str) -> bool:
    """Whether ``<name>_dataloader`` is defined where the call takes its data from: the datamodule given to
    the call, alone (as in Lightning: the module's hook is not asked then), else the module."""
    hook = f"{name}_dataloader"
    if run.datamodule is not None:  # this call's (as Lightning: not one an earlier call left on the trainer)
        return overridden(run.datamodule, hook)
    return run.hooks is not None and run.hooks.module_overrides(hook)


def _requested(t: Trainer, run: Run, name: str) -> tuple[Any, str | None]:
    """What ``<name>_dataloader()`` of the datamodule given to the call, else of the module, returns, and which
    hook returned it (``"MyModel.train_dataloader"``); ``(None, None)`` when it is not defined there."""
    hook = f"{name}_dataloader"
    datamodule = run.datamodule
    if not hook_defined(run, name):
        return None, None
    if datamodule is not None:
        call = run.hooks.call_datamodule if run.hooks is not None else None  # profiled, as in Lightning
        with recording_loader_arguments():
            loaders = call(datamodule, hook) if call is not None else getattr(datamodule, hook)()
        return loaders, f"{type(datamodule).__name__}.{hook}"
    assert run.hooks is not None  # `hook_defined` asked them
    with recording_loader_arguments():
        loaders = run.hooks.call_module(hook)
    return loaders, f"{type(t.lightning_module).__name__}.{hook}"


def _source(t: Trainer, run: Run, name: str, given: Any) -> tuple[Any, str | None, bool]:
    """The loaders a loop runs on: those passed to the trainer function, else those a hook returns.

    Also which hook returned them (None when passed) and whether anything defines them at all, for
    the error about an object that is not an iterable of batches.
    """
    if given is not None:
        return given, None, True
    loaders, returned_from = _requested(t, run, name)
    if returned_from is None:
        undefined(run.datamodule or t.lightning_module, name)
    return loaders, returned_from, True


def undefined(source: Any, name: str) -> None:
    """Raise for a loop with no data: nothing passed, and ``source`` (the call's datamodule, else the module)
    does not define ``<name>_dataloader``. As in Lightning, its base hook says it must be implemented; a hook
    set to None gives Lightning's TypeError."""
    hook = getattr(source, f"{name}_dataloader", None)
    if callable(hook):
        hook()  # LightningModule's: raises that it must be implemented
    fn = {"train": "fit", "val": "validate", "test": "test", "predict": "predict"}[name]
    check_loader(None, fn, None, defined=False)


def _check_loaders(t: Trainer, loaders: list[Any], returned_from: str | None, defined: bool, key: str) -> None:
    fn = t.state.fn.value if t.state.fn is not None else "fit"
    for loader in loaders:
        check_loader(loader, fn, returned_from, defined, key)


def distributed(t: Trainer) -> Any:
    from ember.distributed.processes import runs_distributed  # here: `import ember` loads no strategy

    return t.strategy if (runs_distributed(t.strategy) and t.use_distributed_sampler) else None


def setup_train_dataloader(t: Trainer, run: Run) -> Any:
    """Request, prepare (samplers) and count the training dataloader(s); work out the validation interval.

    Several loaders (a list, tuple or dict of them, or a ``CombinedLoader``) are trained on together
    through a ``CombinedLoader`` in ``max_size_cycle`` mode unless it says otherwise, as in Lightning;
    one loader is iterated directly. Returns the loader, or the ``CombinedLoader`` of several.
    """
    source, returned_from, defined = _source(t, run, "train", run.train_source)
    combined = source if isinstance(source, CombinedLoader) else CombinedLoader(source, "max_size_cycle")
    seed_workers = os.environ.get("PL_SEED_WORKERS", "0") == "1"
    _check_loaders(t, combined.flattened, returned_from, defined, "train")
    sharded = distributed(t)
    if sharded is not None and run.sampler_seed is None:
        run.sampler_seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    if t.overfit_batches:
        warn_if_overfit_reorders(combined.flattened, "train")
    prepared = []
    for loader in combined.flattened:
        loader = prepare_loader(
            loader,
            shuffle=True,
            distributed=sharded,
            overfit="train" if t.overfit_batches else "",
            seed_workers=seed_workers,
            seed=run.sampler_seed,
        )
        prepared.append(_processed_by_strategy(t, loader))
        check_workers(prepared[-1], "train_dataloader", t.num_devices, t.reload_dataloaders_every_n_epochs > 0)
    combined.flattened = prepared
    run.train_dataloader = combined.iterables  # what `trainer.train_dataloader` shows, as in Lightning
    run.train_combined_loader = combined  # `trainer.fit_loop._combined_loader`
    if run.train_combined is None:  # one loader: iterated directly, with no per-batch work added
        run.num_training_batches = count_batches(t, prepared[0], t.limit_train_batches, "train")
    else:
        run.num_training_batches = _count_combined(t, combined)
    if combined._mode == "sequential" and run.num_training_batches != 0:
        # refused once counted (as Lightning counts it), before any training; with no batch to train on, the fit
        # ends without training, as Lightning's, which refuses the mode only when it starts an epoch's batches
        raise ValueError(
            '`_FitLoop` does not support the `CombinedLoader(mode="sequential")` mode.'
            " The available modes are: ['min_size', 'max_size_cycle', 'max_size']"
        )
    run.last_train_reload_epoch = run.progress.epoch
    if run.num_training_batches != 0:
        run.val_check_batch = _val_check_batch(t, run)
    if run.loader_states_to_load:
        # a resumed fit: the stateful loaders continue from the checkpoint's position (Lightning's
        # `fit_loop._load_combined_loader_states`), before any iterator is made from them
        states, run.loader_states_to_load = run.loader_states_to_load, []
        combined._load_state_dicts(states)
        run.loaders_restored = True
    return prepared[0] if run.train_combined is None else combined


def train_loader_states(run: Run) -> list[Any]:
    """The ``state_dict()`` of each stateful training loader, at the position of the batches trained on."""
    combined = run.train_combined_loader
    if combined is None:
        return []
    if run.held_loader_state is not None:  # one loader, read one batch ahead: its state before that read
        return [run.held_loader_state]
    return combined._state_dicts()


def _count_combined(t: Trainer, combined: CombinedLoader) -> int | float:
    """The batches of an epoch on several loaders: each one limited, then combined as the mode says."""
    limits = [
        count_batches(t, loader, t.limit_train_batches, "train", index)
        for index, loader in enumerate(combined.flattened)
    ]
    if combined._mode == "max_size_cycle" and 0 in limits:
        index = limits.index(0)
        raise MisconfigurationException(
            f"The training dataloader #{index} has no batches. Training on several dataloaders cycles through"
            " the shorter ones, so an empty one would end every epoch before its first batch. Give it data or"
            " leave it out."
        )
    combined.limits = limits
    length = combined._length()
    if length == 0:  # after each loader's warning, Lightning's for the combined loader
        rank_zero_warn(
            "Total length of `CombinedLoader` across ranks is zero. Please make sure this was your intention."
        )
    return length


_SKIPPED = {
    "train": "training is skipped",
    "val": "the validation loop is skipped",
    "test": "the test loop is skipped",
    "predict": "prediction is skipped",
}


def count_batches(t: Trainer, loader: Any, limit: int | float, key: str, index: int | None = None) -> Any:
    """The number of batches to use from ``loader``; an empty one is named in a warning and gives 0.

    In a distributed run the lengths of all ranks are added (one all-reduce when the loader is set up,
    as in Lightning), so that every rank skips an empty loop together. A strategy of the program's own that
    overrides ``reduce`` is asked on one device too, as Lightning asks it.
    """
    length = sized_len(loader)
    total = length
    strategy = t.strategy
    if length is not None and (strategy.world_size > 1 or program_overrides(strategy, "reduce")):
        import torch

        # all ranks: each loader is counted on every rank when it is set up
        summed = strategy.reduce(torch.tensor(length, device=strategy.root_device), reduce_op="sum")
        total = int(summed.item())  # host sync: once per loader setup
    if total == 0:
        which = f"`{key}_dataloader`" + (f" #{index}" if index is not None else "")
        rank_zero_warn(
            f"Total length of `{type(loader).__name__}` across ranks is zero. Please make sure this was your"
            f" intention. The {which} has no batches (e.g. a dataset smaller than one batch with"
            f" `drop_last=True`), so {'it is skipped' if index is not None else _SKIPPED[key]}."
        )
        if key == "train" and index is None:
            # Lightning wraps the training loader in a `CombinedLoader` and warns for that one next, with the same count
            rank_zero_warn(
                "Total length of `CombinedLoader` across ranks is zero. Please make sure this was your intention."
            )
        return 0
    if length == 0:
        name = type(loader).__name__
        if not _allow_zero_length(t):
            raise RuntimeError(
                f"`{name}` within local rank has zero length. Please make sure that it returns at least 1 batch."
                f" (The `{key}_dataloader` of rank {strategy.global_rank} is empty while other ranks have batches;"
                " set `allow_zero_length_dataloader_with_multiple_devices = True` on the module or datamodule to allow it.)"
            )
        rank_zero_warn(
            f"Total length of `{name}` across ranks is zero, but local rank has zero length."
            " Please be cautious of uneven batch length."
        )
        return 0
    if length is not None:
        warn_if_sized_iterable(loader)
    return limit_batches(loader, limit, key, length)


def _allow_zero_length(t: Trainer) -> bool:
    module = t.lightning_module
    allowed = bool(getattr(module, "allow_zero_length_dataloader_with_multiple_devices", False))
    if t.datamodule is not None:
        allowed |= bool(getattr(t.datamodule, "allow_zero_length_dataloader_with_multiple_devices", False))
    return allowed


def _val_check_batch(t: Trainer, run: Run) -> int | float:
    """Validate after every this many training batches of an epoch (inf: at the epoch's end, or by time)."""
    batches = run.num_training_batches
    if isinstance(t.val_check_interval, int) and t._val_check_seconds is None:
        if t.val_check_interval > batches and t.check_val_every_n_epoch is not None and t.limit_val_batches > 0:
            raise ValueError(
                f" `val_check_interval` ({t.val_check_interval}) must be less than or equal to the number of the"
                f" training batches ({batches}). If you want to disable validation set"
                " `limit_val_batches` to 0.0 instead. If you want to validate based on the total training batches,"
                " set `check_val_every_n_epoch=None`."
            )
        return t.val_check_interval
    if t._val_check_seconds is not None:
        return float("inf")
    if batches == float("inf"):
        if t.val_check_interval != 1.0:
            raise MisconfigurationException(
                "When using an IterableDataset for `train_dataloader`, `Trainer(val_check_interval)` must be time"
                " based, `1.0` or an int. An int k specifies checking validation every k training batches."
            )
        return float("inf")
    return max(1, int(batches * t.val_check_interval))


def reload_train_dataloader_now(t: Trainer, run: Run) -> bool:
    n = t.reload_dataloaders_every_n_epochs
    last = run.last_train_reload_epoch
    return bool(n) and last is not None and run.progress.epoch - last >= n


def setup_eval_dataloaders(t: Trainer, run: Run, stage: RunningStage) -> list[Any]:
    """Request, prepare and count the dataloaders of an evaluation (or predict) loop.

    Several loaders run one after another, as ``CombinedLoader(mode="sequential")`` runs them; a
    ``CombinedLoader`` in another mode is evaluated as one dataloader of combined batches.
    """
    key = stage.dataloader_prefix or ""
    # the logged step of each evaluation batch counts within these loaders: new loaders count from 0, as in Lightning
    counted = RunningStage.TESTING if key == "test" else RunningStage.VALIDATING
    for seen in [seen for seen in run.eval_steps_seen if seen[0] == counted]:
        del run.eval_steps_seen[seen]
    source, returned_from, defined = _source(t, run, key, run.eval_sources.get(key))
    combined = source if isinstance(source, CombinedLoader) else None
    # the loaders in a flat list, and how to put them back in the structure given (`trainer.<stage>_dataloaders`)
    if combined is not None:
        loaders, structure = combined.flattened, None
    elif source is None:
        loaders, structure = [None], None
    else:
        loaders, structure = _flatten(source)
    _check_loaders(t, loaders, returned_from, defined, key)
    seed_workers = os.environ.get("PL_SEED_WORKERS", "0") == "1"
    # in fit, `overfit_batches` also validates on the same first batches each time, as Lightning does
    overfit = "val" if t.overfit_batches and key == "val" and t.state.fn == TrainerFn.FITTING else ""
    if overfit:
        warn_if_overfit_reorders(loaders, overfit)
    prepared = [_prepare_eval_loader(t, run, key, given, overfit, seed_workers) for given in loaders]
    limit = _batch_limit(t, key)
    several = len(prepared) > 1
    counts = [count_batches(t, loader, limit, key, index if several else None) for index, loader in enumerate(prepared)]
    value = _unflatten(prepared, structure) if structure is not None else (prepared or [None])[0]
    loop_counts = counts
    if combined is not None:
        combined.flattened = prepared
        value = combined.iterables
        if combined._mode != "sequential":
            # the loop runs the combined batches; `num_val_batches` still counts each loader, as in Lightning
            combined.limits = counts
            loop_counts = [combined._length()]
            prepared = [CombinedBatches(combined)]
    run.eval_batches[key] = counts
    run.eval_loop_batches[key] = loop_counts
    run.loaded_eval[key] = prepared
    if key == "val":
        run.val_dataloaders = value
        if t.state.fn == TrainerFn.FITTING:  # the sanity check is fit's: `validate` leaves it empty
            run.num_sanity_val_batches = [min(t.num_sanity_val_steps, n) for n in counts]
    elif key == "test":
        run.test_dataloaders = value
    else:
        run.predict_dataloaders = value
        if combined is not None and combined._mode != "sequential" and sum(counts):
            # as in Lightning, once the loaders are checked and counted (a call with no batches returns None)
            raise ValueError('`trainer.predict()` only supports the `CombinedLoader(mode="sequential")` mode.')
    return prepared


def _prepare_eval_loader(t: Trainer, run: Run, key: str, given: Any, overfit: str, seed_workers: bool) -> Any:
    """One loader of an evaluation (or predict) loop, ready to run: samplers, workers, index recording."""
    shuffled = shuffles(given)
    if shuffled and not overfit:  # overfitting turns the shuffling off, and says so (as Lightning, only that)
        rank_zero_warn(
            f"Your `{key}_dataloader`'s sampler has shuffling enabled, it is strongly recommended that you turn"
            " shuffling off for val/test dataloaders.",
            category=PossibleUserWarning,
        )
    loader = prepare_loader(
        given,
        shuffle=shuffled,  # a distributed sampler put in keeps the loader's choice, as in Lightning
        distributed=distributed(t),
        overfit=overfit,
        seed_workers=seed_workers,
        predicting=key == "predict",
    )
    loader = _processed_by_strategy(t, loader)
    if loader is not given and t.state.fn in (TrainerFn.VALIDATING, TrainerFn.TESTING):
        _warn_sampler_repeats_samples(loader, t.state.fn)
    check_workers(loader, f"{key}_dataloader", t.num_devices, t.reload_dataloaders_every_n_epochs > 0)
    if key == "predict":
        loader = with_index_recording(loader)
    if t.state.fn != TrainerFn.FITTING:  # in fit, each validation sets the epoch it runs in
        set_sampler_epoch(loader, run.progress.epoch)
    return loader


def _batch_limit(t: Trainer, key: str) -> int | float:
    """The ``limit_<stage>_batches`` of an evaluation loop (``"val"``, ``"test"`` or ``"predict"``)."""
    return {"val": t.limit_val_batches, "test": t.limit_test_batches, "predict": t.limit_predict_batches}[key]


def _warn_sampler_repeats_samples(loader: Any, fn: TrainerFn) -> None:
    """Lightning's warning for a ``DistributedSampler`` added to a ``validate``/``test`` loader in a
    multi-process run: it pads the data so that every process gets as many batches. (A loader built with
    ``batch_sampler=`` holds it in its batch sampler.)"""
    samplers = (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None))
    if any(getattr(sampler, "num_replicas", 1) > 1 for sampler in samplers):
        rank_zero_warn(
            f"Using `DistributedSampler` with the dataloaders. During `trainer.{fn.value}()`, it is"
            " recommended to use `Trainer(devices=1, num_nodes=1)` to ensure each sample/batch gets evaluated"
            " exactly once. Otherwise, multi-device settings use `DistributedSampler` that replicates"
            " some samples to make sure all devices have same batch size in case of uneven inputs.",
            category=PossibleUserWarning,
        )


def eval_dataloaders(t: Trainer, run: Run, stage: RunningStage) -> list[Any]:
    """The prepared loaders of an evaluation loop, set up on first use (and reloaded when due in fit).

    In fit, the validation loaders reload once ``reload_dataloaders_every_n_epochs`` epochs have passed
    since they were last loaded, counted as Lightning counts them: a load by the sanity check counts
    only when its epoch validates (``check_val_every_n_epoch``).
    """
    key = stage.dataloader_prefix or ""
    if _batch_limit(t, key) == 0:
        return []  # as Lightning: a loop limited to no batches does not ask for its dataloaders
    epoch = run.progress.epoch
    every = t.reload_dataloaders_every_n_epochs
    fitting = key == "val" and t.state.fn == TrainerFn.FITTING
    last = run.val_reload_epoch if run.val_reload_epoch is not None else -math.inf
    if key in run.loaded_eval and not (fitting and every and epoch - last >= every):
        return run.loaded_eval[key]
    if fitting:
        check_every = t.check_val_every_n_epoch
        validates = check_every is None or (epoch + 1) % check_every == 0
        if validates or stage != RunningStage.SANITY_CHECKING:
            resumed, run.resumed_val_reload_epoch = run.resumed_val_reload_epoch, None
            run.val_reload_epoch = epoch if resumed is None else resumed
    return setup_eval_dataloaders(t, run, stage)


def overridden(obj: Any, name: str) -> bool:
    from ember.core.datamodule import LightningDataModule
    from ember.core.hooks import runs_other_code

    return runs_other_code(obj, LightningDataModule, name)


def with_index_recording(loader: Any) -> Any:
    """``loader`` drawing its batches through an :class:`IndexRecorder`, which notes each batch's sample
    indices as the real iteration draws them (Lightning's ``_IndexBatchSamplerWrapper``): a shuffled
    order is recorded as it comes, and nothing is drawn twice. Loaders without a batch sampler of
    a map-style dataset (an iterable dataset, a custom iterable) have no indices and stay as they are."""
    from torch.utils.data import DataLoader, IterableDataset

    if (
        not isinstance(loader, DataLoader)
        or loader.batch_sampler is None
        or isinstance(loader.dataset, IterableDataset)
        or isinstance(loader.batch_sampler, IndexRecorder)
    ):
        return loader
    # a subclass its own `__init__` cannot make again stays as it is, without indices, rather than half made
    return rebuild_dataloader(loader, None, batch_sampler=IndexRecorder(loader.batch_sampler), required=False)


class IndexRecorder:
    """A batch sampler that hands out ``inner``'s batches and keeps their indices in ``seen``, this
    epoch's, in order. The main process draws every batch, with workers too, so ``seen[i]`` is batch
    ``i``'s even when the loader reads ahead."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sampler = getattr(inner, "sampler", None)
        self.batch_size = getattr(inner, "batch_size", None)
        self.drop_last = getattr(inner, "drop_last", False)
        self.seen: list[list[int]] = []

    def __iter__(self) -> Iterator[Any]:
        self.seen = []
        for indices in self.inner:
            self.seen.append(list(indices))
            yield indices

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:
        # the wrapped batch sampler's other attributes, as Lightning's wrapper carries them over
        if name == "inner" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def estimated_stepping_batches(t: Trainer, run: Run) -> int | float:
    """The total optimizer steps fit will run: epochs x batches / accumulation, capped by ``max_steps``."""
    max_epochs = t.max_epochs if t.max_epochs is not None else (-1 if t.max_steps != -1 else 1000)
    if max_epochs == -1:
        return float("inf") if t.max_steps == -1 else t.max_steps
    if run.train_dataloader is None:
        trains = _trains(t)
        if trains and run.hooks is None:
            # no call set anything up in this process, though one ran: the processes `ddp_spawn` started trained
            raise RuntimeError(
                "`trainer.estimated_stepping_batches` is worked out from the training data that `fit` sets up, and"
                " this process set none up: the last call ran in the processes its strategy started"
                f" (`{type(t.strategy).__name__}`). Read it inside the fit, e.g. in `configure_optimizers`."
            )
        rank_zero_info("Loading `train_dataloader` to estimate number of stepping batches.")
        if trains:  # as Lightning's `fit_loop.setup_data`: nothing to load without a module, a step or batches
            setup_train_dataloader(t, run)
            if run.num_training_batches:
                # and, as it, the first epoch's iterator (in any call: its base seed is drawn from the RNG)
                make_first_train_iterator(t, run)
    total = run.num_training_batches
    if total == float("inf"):
        return t.max_steps
    estimate = math.ceil(total / t.accumulate_grad_batches) * max(max_epochs, 1)
    return min(estimate, t.max_steps) if t.max_steps != -1 else estimate


def _trains(t: Trainer) -> bool:
    from ember.utilities.model_helpers import is_overridden

    return t.limit_train_batches != 0 and is_overridden("training_step", t.lightning_module)


def stop_workers(run: Run) -> None:
    """At the end of a call, stop the worker processes still running, as Lightning does: those of an epoch
    that failed and the persistent workers of every loader."""
    from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

    from ember.trainer.data import CombinedTrainBatches

    # the running epoch's iterator, and one made ahead of an epoch that never ran (a `fit` with nothing
    # left to train makes one, as Lightning does): their workers stop as the last reference goes
    iterators = [run.epoch_iterator, run.train_iterator]
    run.epoch_iterator = run.train_iterator = None
    for live in iterators:
        if isinstance(live, CombinedTrainBatches):
            live.release()
    del iterators, live
    loaders = list(run.train_combined.flattened) if run.train_combined is not None else [run.train_dataloader]
    for prepared in run.loaded_eval.values():
        for loader in prepared:
            loaders += loader.combined.flattened if isinstance(loader, CombinedBatches) else [loader]
    for loader in loaders:
        persistent = getattr(loader, "_iterator", None)
        if isinstance(persistent, _MultiProcessingDataLoaderIter):
            persistent._shutdown_workers()
            loader._iterator = None


def _processed_by_strategy(t: Trainer, loader: Any) -> Any:
    """``loader`` through the strategy's ``process_dataloader`` when a strategy of the program's own overrides it,
    as Lightning passes each prepared dataloader."""
    strategy = t.strategy
    return strategy.process_dataloader(loader) if program_overrides(strategy, "process_dataloader") else loader
