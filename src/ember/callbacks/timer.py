"""``Timer``: measures time spent in each stage and stops training once a time budget is used up.

``Trainer(max_time=...)`` adds one. Its state holds the elapsed training time, so a run resumed
from a checkpoint continues the same budget instead of starting a new one.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ember.callbacks.callback import Callback, ignores_outputs, logs_nothing
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer

# the values of Lightning's RunningStage, which key the saved state
_STAGES = ("train", "sanity_check", "validate", "test", "predict")
_INTERVALS = ("step", "epoch")


def timedelta_from_dict(value: dict, where: str) -> timedelta:
    """A duration given as a dict of ``timedelta`` arguments; ``where`` names the argument for the error
    (``"Trainer(max_time"``)."""
    try:
        return timedelta(**value)
    except TypeError as error:  # an unknown key or a value that is no number: timedelta's type, said in full
        raise TypeError(
            f"`{where}={value!r})` is not a duration: {error}. A dict duration takes the arguments of"
            " `datetime.timedelta`, e.g. `dict(hours=1, minutes=30)`."
        ) from None


def _parse_duration(duration: str | timedelta | dict[str, int] | None) -> float | None:
    if duration is None:
        return None
    if isinstance(duration, str):
        match = re.fullmatch(r"(\d+):(\d\d):(\d\d):(\d\d)", duration.strip())
        if not match:
            raise MisconfigurationException(
                f"`Timer(duration={duration!r})` is not a valid duration. Expected a string in the format"
                " DD:HH:MM:SS, e.g. '00:12:00:00' for twelve hours."
            )
        days, hours, minutes, seconds = (int(g) for g in match.groups())
        duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    elif isinstance(duration, dict):
        duration = timedelta_from_dict(duration, "Timer(duration")
    if not isinstance(duration, timedelta):
        raise MisconfigurationException(
            f"`Timer(duration={duration!r})` is not supported: pass a 'DD:HH:MM:SS' string, a `datetime.timedelta`"
            " or a dict of `timedelta` arguments such as `dict(hours=1)`."
        )
    return duration.total_seconds()


class Timer(Callback):
    """Track the time of the train, validation and test loops; stop training when ``duration`` is reached.

    Args:
        duration: ``"DD:HH:MM:SS"``, a :class:`datetime.timedelta`, or a dict of ``timedelta`` arguments.
            ``None`` only measures.
        interval: check the budget after every ``"step"`` or at the end of every ``"epoch"``.
        verbose: log a message when the time limit stops training.

    Raises:
        MisconfigurationException: if ``duration`` has another format or ``interval`` another value.

    Example::

        timer = Timer(duration="00:12:00:00")          # or timedelta(hours=12), or dict(hours=12)
        trainer = Trainer(callbacks=[timer])
        trainer.fit(model)
        timer.time_elapsed("train")                    # seconds
    """

    def __init__(
        self,
        duration: str | timedelta | dict[str, int] | None = None,
        interval: str = "step",
        verbose: bool = True,
    ) -> None:
        super().__init__()
        self._duration = _parse_duration(duration)
        if interval not in _INTERVALS:
            raise MisconfigurationException(
                f"Unsupported parameter value `Timer(interval={interval})`."
                f" Possible choices are: {', '.join(_INTERVALS)}"
            )
        self._interval = interval
        self._verbose = verbose
        self._start_time: dict[str, float | None] = dict.fromkeys(_STAGES)
        self._end_time: dict[str, float | None] = dict.fromkeys(_STAGES)
        self._offset: float = 0  # an int until a checkpoint sets it, as in Lightning (its state shows `0`)

    @staticmethod
    def _stage(stage: Any) -> str:
        value = getattr(stage, "value", stage)
        if value not in _STAGES:
            raise ValueError(f"{stage!r} is not a valid RunningStage; expected one of {', '.join(_STAGES)}.")
        return value

    def start_time(self, stage: str = "train") -> float | None:
        """The ``time.monotonic()`` at which ``stage`` last started, or None."""
        return self._start_time[self._stage(stage)]

    def end_time(self, stage: str = "train") -> float | None:
        """The ``time.monotonic()`` at which ``stage`` last ended, or None."""
        return self._end_time[self._stage(stage)]

    def time_elapsed(self, stage: str = "train") -> float:
        """Seconds spent in ``stage`` (for training, including the time restored from a checkpoint)."""
        stage = self._stage(stage)
        start, end = self._start_time[stage], self._end_time[stage]
        offset = self._offset if stage == "train" else 0
        if start is None:
            return offset
        if end is None:
            return time.monotonic() - start + offset
        return end - start + offset

    def time_remaining(self, stage: str = "train") -> float | None:
        """Seconds left of the budget, or None without a ``duration``."""
        if self._duration is None:
            return None
        return self._duration - self.time_elapsed(stage)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_time["train"] = time.monotonic()
        self._end_time["train"] = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_time["train"] = time.monotonic()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_time["validate"] = time.monotonic()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_time["validate"] = time.monotonic()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_time["test"] = time.monotonic()

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_time["test"] = time.monotonic()

    def on_fit_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        # after a resume the restored budget may already be spent, whatever the interval
        if self._duration is not None:
            self._check_time_remaining(trainer)

    @ignores_outputs
    @logs_nothing
    def on_train_batch_end(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if self._interval == "step" and self._duration is not None:
            self._check_time_remaining(trainer)

    def on_train_epoch_end(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if self._interval == "epoch" and self._duration is not None:
            self._check_time_remaining(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"time_elapsed": {stage: self.time_elapsed(stage) for stage in _STAGES}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset = state_dict.get("time_elapsed", {}).get("train", 0)

    def _check_time_remaining(self, trainer: Trainer) -> None:
        assert self._duration is not None
        should_stop = self.time_elapsed() >= self._duration
        if getattr(trainer, "world_size", 1) > 1:
            # all ranks: rank 0's clock decides, so every rank stops at the same step
            should_stop = trainer.strategy.broadcast(should_stop)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop and self._verbose:
            elapsed = timedelta(seconds=int(self.time_elapsed("train")))
            rank_zero_info(f"Time limit reached. Elapsed time is {elapsed}. Signaling Trainer to stop.")


lightning_style_annotations(Timer)  # Lightning's `typing` forms in the signature
