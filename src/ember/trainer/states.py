"""What the trainer is doing: the entry point the user called, the loop running now, and the status.

The names and values are Lightning's (``lightning.pytorch.trainer.states``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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
