"""Hook-recording model and callback that run unchanged on Lightning and on Ember.

The classes are built by :func:`make_recording_classes` from a framework's top-level module, so the
same code records the hook order of ``pytorch_lightning`` (to write the reference fixture) and of
``ember`` (to compare against it). Only hook names and simple arguments (stage strings, batch and
dataloader indices, epoch numbers) are recorded, so sequences compare exactly across frameworks.

Example::

    import ember as pl
    calls = []
    RecordingCallback, RecordingModule = make_recording_classes(pl)
    trainer = pl.Trainer(max_epochs=1, callbacks=[RecordingCallback(calls)], logger=False)
    trainer.fit(RecordingModule(calls))
    # calls == [("Callback", "setup", {"stage": "fit"}), ("LightningModule", "setup", {...}), ...]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

Record = tuple  # (owner: str, hook: str, args: dict)


class RandomDataset(Dataset):
    """``length`` random vectors of size ``size``, drawn once from a seeded generator."""

    def __init__(self, size: int = 32, length: int = 64, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.data = torch.randn(length, size, generator=generator)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.data[index]


def _stage(stage: Any) -> str:
    """The stage as a plain string (Lightning passes a str enum such as ``TrainerFn.FITTING``)."""
    return str(getattr(stage, "value", stage))


def as_lists(calls: list) -> list:
    """Records as JSON-shaped lists ``[owner, hook, args]`` (what the fixture file stores)."""
    return [[owner, name, dict(args)] for owner, name, args in calls]


def make_recording_classes(pl: Any) -> tuple[type, type]:
    """Return ``(RecordingCallback, RecordingModule)`` built on the framework module ``pl``.

    ``pl`` is ``pytorch_lightning`` or ``ember``; only ``pl.LightningModule`` and ``pl.Callback``
    (from ``pl.callbacks`` or ``pl``) are used.
    """
    callbacks_module = getattr(pl, "callbacks", None)
    base_callback = getattr(callbacks_module, "Callback", None) or pl.Callback

    def _cb(name: str, fmt: Callable[..., dict] = lambda *a, **k: {}) -> Callable:
        def hook(self, trainer, pl_module, *args, **kwargs):
            self.calls.append(("Callback", name, fmt(*args, **kwargs)))
            return getattr(base_callback, name)(self, trainer, pl_module, *args, **kwargs)

        hook.__name__ = name
        return hook

    def _batch(batch, batch_idx, dataloader_idx=0):
        return {"batch_idx": batch_idx, "dataloader_idx": dataloader_idx}

    def _batch_end(outputs, batch, batch_idx, dataloader_idx=0):
        return {"batch_idx": batch_idx, "dataloader_idx": dataloader_idx}

    def _train_batch_end(outputs, batch, batch_idx):
        return {"batch_idx": batch_idx}

    def _train_batch_start(batch, batch_idx):
        return {"batch_idx": batch_idx}

    callback_hooks: dict[str, Callable] = {
        "on_train_batch_start": _train_batch_start,
        "on_train_batch_end": _train_batch_end,
        "on_validation_batch_start": _batch,
        "on_validation_batch_end": _batch_end,
        "on_test_batch_start": _batch,
        "on_test_batch_end": _batch_end,
        "on_predict_batch_start": _batch,
        "on_predict_batch_end": _batch_end,
        "on_exception": lambda exception: {"type": type(exception).__name__},
        "on_before_optimizer_step": lambda optimizer: {},
    }
    for name in (
        "on_fit_start",
        "on_fit_end",
        "on_sanity_check_start",
        "on_sanity_check_end",
        "on_train_epoch_start",
        "on_train_epoch_end",
        "on_validation_epoch_start",
        "on_validation_epoch_end",
        "on_test_epoch_start",
        "on_test_epoch_end",
        "on_predict_epoch_start",
        "on_predict_epoch_end",
        "on_train_start",
        "on_train_end",
        "on_validation_start",
        "on_validation_end",
        "on_test_start",
        "on_test_end",
        "on_predict_start",
        "on_predict_end",
        "on_before_backward",
        "on_after_backward",
        "on_before_zero_grad",
        "on_save_checkpoint",
        "on_load_checkpoint",
    ):
        callback_hooks[name] = lambda *a, **k: {}

    class RecordingCallback(base_callback):
        """Appends ``("Callback", hook, args)`` to ``calls`` for every Callback hook."""

        def __init__(self, calls: list) -> None:
            self.calls = calls

        def setup(self, trainer, pl_module, stage: str) -> None:
            self.calls.append(("Callback", "setup", {"stage": _stage(stage)}))

        def teardown(self, trainer, pl_module, stage: str) -> None:
            self.calls.append(("Callback", "teardown", {"stage": _stage(stage)}))

        def state_dict(self) -> dict:
            # non-empty, so that the trainer stores it and calls load_state_dict on resume
            self.calls.append(("Callback", "state_dict", {}))
            return {"recorded": True}

        def load_state_dict(self, state_dict: dict) -> None:
            self.calls.append(("Callback", "load_state_dict", {}))

    for name, fmt in callback_hooks.items():
        setattr(RecordingCallback, name, _cb(name, fmt))

    class RecordingModule(pl.LightningModule):
        """Tiny ``Linear(32, 2)`` model recording ``("LightningModule", hook, args)`` per hook."""

        def __init__(
            self, calls: list, batch_size: int = 2, length: int = 64, fail_at_batch: int | None = None
        ) -> None:
            super().__init__()
            self.calls = calls
            self.fail_at_batch = fail_at_batch  # training_step raises RuntimeError there
            self.layer = nn.Linear(32, 2)
            self.batch_size = batch_size
            self.length = length

        def _rec(self, name: str, **args: Any) -> None:
            self.calls.append(("LightningModule", name, args))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x)

        def _loss(self, batch: torch.Tensor) -> torch.Tensor:
            out = self(batch)
            return nn.functional.mse_loss(out, torch.ones_like(out))

        # --- steps -------------------------------------------------------------------------
        def training_step(self, batch, batch_idx):
            self._rec("training_step", batch_idx=batch_idx)
            if batch_idx == self.fail_at_batch:
                raise RuntimeError("planned failure")
            return {"loss": self._loss(batch)}

        def validation_step(self, batch, batch_idx):
            self._rec("validation_step", batch_idx=batch_idx)
            loss = self._loss(batch)
            self.log("val_loss", loss)
            return {"x": loss}

        def test_step(self, batch, batch_idx):
            self._rec("test_step", batch_idx=batch_idx)
            loss = self._loss(batch)
            self.log("test_loss", loss)
            return {"y": loss}

        def predict_step(self, batch, batch_idx):
            self._rec("predict_step", batch_idx=batch_idx)
            return self(batch)

        # --- optimisation ------------------------------------------------------------------
        def configure_optimizers(self):
            self._rec("configure_optimizers")
            optimizer = torch.optim.SGD(self.layer.parameters(), lr=0.1)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

        def configure_callbacks(self):
            self._rec("configure_callbacks")
            return []

        def configure_model(self):
            self._rec("configure_model")

        def backward(self, loss, *args, **kwargs):
            self._rec("backward")
            return super().backward(loss, *args, **kwargs)

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            self._rec("optimizer_step", epoch=epoch, batch_idx=batch_idx)
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

        def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
            self._rec("optimizer_zero_grad", epoch=epoch, batch_idx=batch_idx)
            return super().optimizer_zero_grad(epoch, batch_idx, optimizer)

        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            self._rec("configure_gradient_clipping")
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

        def lr_scheduler_step(self, scheduler, metric):
            self._rec("lr_scheduler_step")
            return super().lr_scheduler_step(scheduler, metric)

        def zero_grad(self, set_to_none: bool = True):
            self._rec("zero_grad")
            return super().zero_grad(set_to_none=set_to_none)

        # --- data --------------------------------------------------------------------------
        def prepare_data(self):
            self._rec("prepare_data")

        def setup(self, stage):
            self._rec("setup", stage=_stage(stage))

        def teardown(self, stage):
            self._rec("teardown", stage=_stage(stage))

        def _loader(self) -> DataLoader:
            return DataLoader(RandomDataset(32, self.length), batch_size=self.batch_size)

        def train_dataloader(self):
            self._rec("train_dataloader")
            return self._loader()

        def val_dataloader(self):
            self._rec("val_dataloader")
            return self._loader()

        def test_dataloader(self):
            self._rec("test_dataloader")
            return self._loader()

        def predict_dataloader(self):
            self._rec("predict_dataloader")
            return self._loader()

        def on_before_batch_transfer(self, batch, dataloader_idx):
            self._rec("on_before_batch_transfer", dataloader_idx=dataloader_idx)
            return super().on_before_batch_transfer(batch, dataloader_idx)

        def transfer_batch_to_device(self, batch, device, dataloader_idx):
            self._rec("transfer_batch_to_device", dataloader_idx=dataloader_idx)
            return super().transfer_batch_to_device(batch, device, dataloader_idx)

        def on_after_batch_transfer(self, batch, dataloader_idx):
            self._rec("on_after_batch_transfer", dataloader_idx=dataloader_idx)
            return super().on_after_batch_transfer(batch, dataloader_idx)

        # --- checkpointing -----------------------------------------------------------------
        def on_save_checkpoint(self, checkpoint):
            self._rec("on_save_checkpoint")

        def on_load_checkpoint(self, checkpoint):
            self._rec("on_load_checkpoint")

    def _lm(name: str, fmt: Callable[..., dict] = lambda *a, **k: {}) -> Callable:
        def hook(self, *args, **kwargs):
            self._rec(name, **fmt(*args, **kwargs))
            return getattr(pl.LightningModule, name)(self, *args, **kwargs)

        hook.__name__ = name
        return hook

    module_hooks: dict[str, Callable] = {
        "on_train_batch_start": _train_batch_start,
        "on_train_batch_end": _train_batch_end,
        "on_validation_batch_start": _batch,
        "on_validation_batch_end": _batch_end,
        "on_test_batch_start": _batch,
        "on_test_batch_end": _batch_end,
        "on_predict_batch_start": _batch,
        "on_predict_batch_end": _batch_end,
        "on_before_optimizer_step": lambda optimizer: {},
    }
    for name in (
        "on_fit_start",
        "on_fit_end",
        "on_train_start",
        "on_train_end",
        "on_validation_start",
        "on_validation_end",
        "on_test_start",
        "on_test_end",
        "on_predict_start",
        "on_predict_end",
        "on_train_epoch_start",
        "on_train_epoch_end",
        "on_validation_epoch_start",
        "on_validation_epoch_end",
        "on_test_epoch_start",
        "on_test_epoch_end",
        "on_predict_epoch_start",
        "on_predict_epoch_end",
        "on_before_zero_grad",
        "on_before_backward",
        "on_after_backward",
        "on_validation_model_zero_grad",
        "on_validation_model_eval",
        "on_validation_model_train",
        "on_test_model_eval",
        "on_test_model_train",
        "on_predict_model_eval",
        "on_predict_model_train",
    ):
        module_hooks[name] = lambda *a, **k: {}
    for name, fmt in module_hooks.items():
        setattr(RecordingModule, name, _lm(name, fmt))

    return RecordingCallback, RecordingModule
