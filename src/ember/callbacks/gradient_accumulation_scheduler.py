"""``GradientAccumulationScheduler``: change ``accumulate_grad_batches`` from epoch to epoch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ember.callbacks.callback import Callback
from ember.utilities.argument_checks import check_type
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.model_helpers import is_overridden
from ember.utilities.rank_zero import rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer


class GradientAccumulationScheduler(Callback):
    """Set ``trainer.accumulate_grad_batches`` at the start of each epoch from a schedule.

    Args:
        scheduling: ``{epoch: factor}`` with zero-based epochs; a factor holds until the next key.
            Epochs before the first key accumulate 1 batch.

    Raises:
        TypeError: if ``scheduling`` is empty.
        MisconfigurationException: if a key is not an int >= 0 or a factor not an int >= 1.

    Example::

        # from the fifth epoch (index 4) on, accumulate 2 batches per optimizer step
        trainer = Trainer(callbacks=[GradientAccumulationScheduler(scheduling={4: 2})])
    """

    def __init__(self, scheduling: dict[int, int]) -> None:
        super().__init__()
        if not scheduling:
            raise TypeError("Empty dict cannot be interpreted correct")
        check_type(
            "GradientAccumulationScheduler",
            "scheduling",
            scheduling,
            (Mapping,),
            "a dict from epochs to factors, e.g. {0: 1, 4: 2}",
        )
        if any(not isinstance(key, int) or key < 0 for key in scheduling):
            raise MisconfigurationException(
                f"Epoch should be an int greater than or equal to 0. Got {list(scheduling.keys())}."
            )
        if any(not isinstance(value, int) or value < 1 for value in scheduling.values()):
            raise MisconfigurationException(
                f"Accumulation factor should be an int greater than 0. Got {list(scheduling.values())}."
            )
        scheduling = dict(scheduling)
        if min(scheduling) != 0:
            scheduling[0] = 1
        self.scheduling = scheduling
        self.epochs = sorted(scheduling)

    def going_to_accumulate_grad_batches(self) -> bool:
        return any(value > 1 for value in self.scheduling.values())

    def get_accumulate_grad_batches(self, epoch: int) -> int:
        """The factor in force at ``epoch``."""
        for scheduled_epoch in reversed(self.epochs):
            if epoch >= scheduled_epoch:
                return self.scheduling[scheduled_epoch]
        return 1

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Refuse settings the schedule cannot work with."""
        if not pl_module.automatic_optimization:
            # Lightning's first sentence (programs match on it), without the line break and indent its text
            # carries, then what to do instead
            raise RuntimeError(
                "Automatic gradient accumulation and the `GradientAccumulationScheduler` is not supported for"
                f" manual optimization: `{type(pl_module).__name__}.training_step` steps the optimizers itself, so"
                " the trainer has no optimizer step to put off. Remove the callback, or switch to automatic"
                " optimization; to accumulate in manual optimization, step every N batches yourself:"
                " `if (batch_idx + 1) % N == 0: opt.step(); opt.zero_grad()`."
            )
        overridden = is_overridden("optimizer_step", pl_module) or is_overridden("optimizer_zero_grad", pl_module)
        if overridden and self.going_to_accumulate_grad_batches():
            rank_zero_warn(
                "When using `Trainer(accumulate_grad_batches != 1)` and overriding"
                " `LightningModule.optimizer_{step,zero_grad}`, the hooks will not be called on every batch"
                " (rather, they are called on every optimization step)."
            )
        if trainer.accumulate_grad_batches != 1:
            raise ValueError(
                "You have set `accumulate_grad_batches` and are using the `GradientAccumulationScheduler`"
                " callback. Either remove `accumulate_grad_batches` from the Trainer or remove the callback."
            )

    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        trainer.accumulate_grad_batches = self.get_accumulate_grad_batches(trainer.current_epoch)


lightning_style_annotations(GradientAccumulationScheduler)  # Lightning's `typing` forms in the signature
