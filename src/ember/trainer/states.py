"""What the trainer is doing, and how far it has come, as plain data.

``Progress`` holds every counter a resumed run needs; it round-trips through ``state_dict``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any


class TrainerFn(str, Enum):
    """The entry point the user called."""

    FITTING = "fit"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"

    def __str__(self) -> str:
        return self.value


class RunningStage(str, Enum):
    """The loop that is running now (``fit`` alternates between train, sanity check and validate)."""

    TRAINING = "train"
    SANITY_CHECKING = "sanity_check"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"

    @property
    def evaluating(self) -> bool:
        return self in (RunningStage.VALIDATING, RunningStage.TESTING, RunningStage.SANITY_CHECKING)

    @property
    def dataloader_prefix(self) -> str | None:
        if self in (RunningStage.VALIDATING, RunningStage.SANITY_CHECKING):
            return "val"
        return self.value

    def __str__(self) -> str:
        return self.value


class TrainerStatus(str, Enum):
    INITIALIZING = "initializing"
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"

    @property
    def stopped(self) -> bool:
        return self in (TrainerStatus.FINISHED, TrainerStatus.INTERRUPTED)

    def __str__(self) -> str:
        return self.value


@dataclass
class TrainerState:
    """``trainer.state``: the status, the entry point (``fn``) and the running loop (``stage``)."""

    status: TrainerStatus = TrainerStatus.INITIALIZING
    fn: TrainerFn | None = None
    stage: RunningStage | None = None

    @property
    def finished(self) -> bool:
        return self.status == TrainerStatus.FINISHED

    @property
    def stopped(self) -> bool:
        return self.status.stopped


@dataclass
class Progress:
    """The fit loop's counters; everything here goes into a checkpoint.

    ``epoch`` is the epoch being run (``trainer.current_epoch``); ``global_step`` counts optimizer
    steps; ``batches_that_stepped`` counts training batches that closed an accumulation window
    (the step that loggers see); ``epoch_batches`` counts the batches consumed in the current epoch,
    so a mid-epoch resume knows how many to skip; ``epoch_done`` marks a checkpoint written at the
    end of an epoch, after its last batch and validation.
    """

    epoch: int = 0
    global_step: int = 0
    batches_that_stepped: int = 0
    epoch_batches: int = 0
    epoch_done: bool = False
    total_batches: int = 0
    val_checks: int = 0

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        names = {f.name for f in fields(self)}
        for key, value in state.items():
            if key in names:
                setattr(self, key, value)
