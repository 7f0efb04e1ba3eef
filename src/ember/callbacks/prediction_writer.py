"""``BasePredictionWriter``: the base class for writing predictions to disk during ``trainer.predict``."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from ember.callbacks.callback import Callback
from ember.utilities.enums import LightningEnum
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer


class WriteInterval(LightningEnum):
    """When a ``BasePredictionWriter`` writes: after each batch, once at the epoch's end, or both.

    Example::

        >>> WriteInterval("batch_and_epoch").on_batch, WriteInterval("epoch").on_batch
        (True, False)
    """

    BATCH = "batch"
    EPOCH = "epoch"
    BATCH_AND_EPOCH = "batch_and_epoch"

    @property
    def on_batch(self) -> bool:
        """Whether predictions are written after every batch."""
        return self in (WriteInterval.BATCH, WriteInterval.BATCH_AND_EPOCH)

    @property
    def on_epoch(self) -> bool:
        """Whether all predictions are written at the end of the epoch."""
        return self in (WriteInterval.EPOCH, WriteInterval.BATCH_AND_EPOCH)


class BasePredictionWriter(Callback):
    """Subclass it to store predictions: per batch, once per epoch, or both.

    Args:
        write_interval: ``"batch"`` calls :meth:`write_on_batch_end` after every predict batch;
            ``"epoch"`` calls :meth:`write_on_epoch_end` with all predictions; ``"batch_and_epoch"`` both.

    Example::

        class TorchWriter(BasePredictionWriter):
            def __init__(self, output_dir):
                super().__init__(write_interval="epoch")
                self.output_dir = output_dir

            def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
                torch.save(predictions, f"{self.output_dir}/predictions_{trainer.global_rank}.pt")

        trainer = Trainer(callbacks=[TorchWriter("out")])
        trainer.predict(model, dataloaders=loader, return_predictions=False)
    """

    def __init__(self, write_interval: Literal["batch", "epoch", "batch_and_epoch"] = "batch") -> None:
        if write_interval not in list(WriteInterval):
            raise MisconfigurationException(f"`write_interval` should be one of {[i.value for i in WriteInterval]}.")
        self.interval = WriteInterval(write_interval)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if "dataloader_iter" in inspect.signature(pl_module.predict_step).parameters:
            raise NotImplementedError("The `PredictionWriterCallback` does not support using `dataloader_iter`.")

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Override with the logic to write one batch's prediction."""
        raise NotImplementedError()

    def write_on_epoch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        """Override with the logic to write all predictions (a list per dataloader when there are several);
        ``batch_indices`` holds one list per dataloader."""
        raise NotImplementedError()

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self.interval.on_batch:
            return
        batch_indices = trainer.predict_loop.current_batch_indices
        self.write_on_batch_end(trainer, pl_module, outputs, batch_indices, batch, batch_idx, dataloader_idx)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Write the loop's predictions, which it keeps on the CPU for an epoch writer (whatever
        ``return_predictions`` says): flat for one dataloader, a list per dataloader for several; the batch indices
        are one list per dataloader, empty for a loader without indices (an iterable dataset), as in Lightning."""
        if not self.interval.on_epoch:
            return
        loop = trainer.predict_loop
        self.write_on_epoch_end(trainer, pl_module, loop.predictions, loop.epoch_batch_indices)


lightning_style_annotations(BasePredictionWriter)  # Lightning's `typing` forms in the signature
