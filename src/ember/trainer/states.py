"""What the trainer is doing: the entry point the user called, the loop running now, and the status.

The names and values are Lightning's (``lightning.pytorch.trainer.states``), and so is their behaviour as
``LightningEnum`` members: equal to their value in any case (``TrainerFn.FITTING == "fit"``), found by it
in a dict or set, and printed by name (``str(TrainerFn.FITTING) == "TrainerFn.FITTING"``); ``.value`` is
the plain string.
"""

from __future__ import annotations

from dataclasses import dataclass

from ember.utilities.enums import LightningEnum


class TrainerFn(LightningEnum):
    """The entry point the user called."""

    FITTING = "fit"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"


class RunningStage(LightningEnum):
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


class TrainerStatus(LightningEnum):
    INITIALIZING = "initializing"
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"

    @property
    def stopped(self) -> bool:
        return self in (TrainerStatus.FINISHED, TrainerStatus.INTERRUPTED)


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
