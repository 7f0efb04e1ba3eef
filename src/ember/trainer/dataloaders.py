"""Which dataloaders a run uses: requested from the datamodule or module, prepared, and counted."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ember.trainer.data import as_loader_list, check_loader, limit_batches, prepare_loader
from ember.trainer.states import RunningStage, TrainerFn
from ember.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


def request(t: Trainer, name: str) -> Any:
    """Ask the datamodule, else the module, for ``<name>_dataloader()``."""
    hook = f"{name}_dataloader"
    if t.datamodule is not None and overridden(t.datamodule, hook):
        return getattr(t.datamodule, hook)()
    if t._hooks.module_overrides(hook):
        return t._hooks.call_module(hook)
    return None


def distributed(t: Trainer) -> Any:
    return t.strategy if (t.strategy.is_distributed and t.use_distributed_sampler) else None


def setup_train_dataloader(t: Trainer) -> Any:
    source = t._train_source if t._train_source is not None else request(t, "train")
    if source is None:
        raise MisconfigurationException(
            "No training data: `train_dataloader()` returned None. Return a DataLoader or pass"
            " `trainer.fit(model, train_dataloaders=...)`."
        )
    if isinstance(source, (list, tuple, dict)) and not is_single_loader(source):
        raise MisconfigurationException(
            "Ember trains on one dataloader: combine several into one dataset or iterable first."
        )
    check_loader(source, "fit")
    seed_workers = os.environ.get("PL_SEED_WORKERS", "0") == "1"
    loader = prepare_loader(
        source, shuffle=True, distributed=distributed(t), overfit=bool(t.overfit_batches), seed_workers=seed_workers
    )
    t.train_dataloader = loader
    t.num_training_batches = limit_batches(loader, t.limit_train_batches, "train")
    t._last_train_reload_epoch = t._progress.epoch
    if isinstance(t.val_check_interval, int) and t._val_check_seconds is None:
        t.val_check_batch = t.val_check_interval
        if t.val_check_batch > t.num_training_batches and t.check_val_every_n_epoch is not None:
            raise ValueError(
                f" `val_check_interval` ({t.val_check_interval}) must be less than or equal to the number of the"
                f" training batches ({t.num_training_batches}). If you want to disable validation set"
                " `limit_val_batches` to 0.0 instead. If you want to validate based on the total training batches,"
                " set `check_val_every_n_epoch=None`."
            )
    elif t._val_check_seconds is not None:
        t.val_check_batch = float("inf")
    elif t.num_training_batches == float("inf"):
        if t.val_check_interval != 1.0:
            raise MisconfigurationException(
                "When using an IterableDataset for `train_dataloader`, `Trainer(val_check_interval)` must be `1.0`"
                " or an int. An int k specifies checking validation every k training batches."
            )
        t.val_check_batch = float("inf")
    else:
        t.val_check_batch = max(1, int(t.num_training_batches * t.val_check_interval))
    return loader


def reload_train_dataloader_now(t: Trainer) -> bool:
    n = t.reload_dataloaders_every_n_epochs
    return bool(n) and t._last_train_reload_epoch is not None and t._progress.epoch - t._last_train_reload_epoch >= n


def setup_eval_dataloaders(t: Trainer, stage: RunningStage) -> list[Any]:
    key = stage.dataloader_prefix
    source = t._eval_sources.get(key)
    if source is None:
        source = request(t, key)
    loaders = as_loader_list(source)
    seed_workers = os.environ.get("PL_SEED_WORKERS", "0") == "1"
    prepared = []
    for loader in loaders:
        check_loader(loader, key)
        loader = prepare_loader(
            loader, shuffle=False, distributed=distributed(t), overfit=False, seed_workers=seed_workers
        )
        if key == "predict" and needs_batch_indices(t):
            loader = with_index_recording(loader, t.predict_loop)
        prepared.append(loader)
    limit = {"val": t.limit_val_batches, "test": t.limit_test_batches, "predict": t.limit_predict_batches}[key]
    t._eval_batches[key] = [limit_batches(loader, limit, key) for loader in prepared]
    t._loaded_eval[key] = prepared
    value = prepared[0] if len(prepared) == 1 else prepared
    if key == "val":
        t.val_dataloaders = value
        steps = t.num_sanity_val_steps
        t.num_sanity_val_batches = [min(steps if steps != -1 else float("inf"), n) for n in t._eval_batches["val"]]
    elif key == "test":
        t.test_dataloaders = value
    else:
        t.predict_dataloaders = value
    return prepared


def eval_dataloaders(t: Trainer, stage: RunningStage) -> list[Any]:
    key = stage.dataloader_prefix
    reload = (
        key == "val"
        and t.state.fn == TrainerFn.FITTING
        and t.reload_dataloaders_every_n_epochs
        and key in t._loaded_eval
        and t._progress.epoch > 0
        and t._progress.epoch % t.reload_dataloaders_every_n_epochs == 0
        and getattr(t, "_val_reload_epoch", None) != t._progress.epoch
    )
    if key not in t._loaded_eval or reload:
        t._val_reload_epoch = t._progress.epoch
        return setup_eval_dataloaders(t, stage)
    return t._loaded_eval[key]


def eval_num_batches(t: Trainer, stage: RunningStage) -> list[int | float]:
    return t._eval_batches.get(stage.dataloader_prefix, [])


def needs_batch_indices(t: Trainer) -> bool:
    from ember.callbacks.prediction_writer import BasePredictionWriter

    return any(isinstance(cb, BasePredictionWriter) for cb in t.callbacks)


def overridden(obj: Any, name: str) -> bool:
    from ember.core.datamodule import LightningDataModule
    from ember.core.hooks import overrides

    return overrides(obj, LightningDataModule, name)


def is_single_loader(source: Any) -> bool:
    from torch.utils.data import DataLoader

    return isinstance(source, DataLoader)


class PredictLoopView:
    """``trainer.predict_loop``: what prediction writers read about the current batch."""

    def __init__(self) -> None:
        self.current_batch_indices: list[int] | None = None


def with_index_recording(loader: Any, view: PredictLoopView) -> Any:
    from torch.utils.data import DataLoader

    if not isinstance(loader, DataLoader) or loader.batch_sampler is None:
        return loader

    class _RecordingBatchSampler:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.sampler = getattr(inner, "sampler", None)
            self.batch_size = getattr(inner, "batch_size", None)
            self.drop_last = getattr(inner, "drop_last", False)

        def __iter__(self):
            for indices in self.inner:
                view.current_batch_indices = list(indices)
                yield indices

        def __len__(self) -> int:
            return len(self.inner)

    if loader.num_workers > 0:
        return loader  # indices recorded in workers would arrive out of step; writers get None
    new = DataLoader(
        loader.dataset,
        batch_sampler=_RecordingBatchSampler(loader.batch_sampler),
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
    )
    return new
